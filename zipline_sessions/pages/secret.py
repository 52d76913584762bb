"""The key that signs the pages' CSRF tokens and their small cookie: SESSIONS_SECRET_KEY, or one
made at random once and kept in the database, so that every worker, host and restart agrees."""

from sqlalchemy import String, select
from sqlalchemy.orm import Mapped, mapped_column

from zipline_sessions.security import credentials
from zipline_sessions.storage.database import db, write_transaction
from zipline_sessions.storage.upsert import upsert

KEY_NAME = "pages"


class ServiceSecret(db.Model):
    """A secret of the service's own making (never logged, never shown)."""

    __tablename__ = "service_secrets"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))


_SECRETS = ServiceSecret.__table__


def stored_key() -> str:
    """The database's key for the pages, made now if there is none yet. Two workers that start
    at once both try to insert; the first insert wins and both read its value."""
    found = db.session.execute(select(_SECRETS.c.value).where(_SECRETS.c.name == KEY_NAME)).scalar()
    if found is not None:
        return found
    with write_transaction():
        insert = upsert(_SECRETS)
        db.session.execute(insert.values(name=KEY_NAME, value=credentials.new_token())
                           .on_conflict_do_nothing(index_elements=[_SECRETS.c.name]))
    return db.session.execute(select(_SECRETS.c.value).where(_SECRETS.c.name == KEY_NAME)).scalar_one()
