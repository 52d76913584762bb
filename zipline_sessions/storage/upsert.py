"""The database's own INSERT, the one with ON CONFLICT clauses (SQLite's and PostgreSQL's are
different constructs in SQLAlchemy). The dialect's module is imported on first use: on SQLite a
start never imports PostgreSQL's (a few percent of the service's import time: `python -X importtime`
counted about 37 ms of its 1.3 s)."""

from importlib import import_module

from sqlalchemy import Table

from zipline_sessions.storage.database import db


def upsert(table: Table):
    """INSERT into `table` for the database of the current session, ready for
    `.on_conflict_do_nothing` or `.on_conflict_do_update`."""
    return import_module(f"sqlalchemy.dialects.{db.session.get_bind().dialect.name}").insert(table)
