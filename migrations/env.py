"""Alembic environment: runs on the connection storage/schema.py's migrate() hands over, or,
from the alembic command line, on the app's own database."""

from alembic import context

from zipline_sessions.storage.database import db


def run_migrations(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=db.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
        transactional_ddl=True,  # SQLite and PostgreSQL both roll DDL back: all or nothing
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    from app import create_app
    from zipline_sessions.fixture import tables  # noqa: F401  (test control's tables, for autogenerate)

    with create_app({"AUTO_MIGRATE": False}).app_context(), db.engine.connect() as own_connection:
        run_migrations(own_connection)
        own_connection.commit()
