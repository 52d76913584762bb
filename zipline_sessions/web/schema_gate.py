"""Every route answers 503 naming the upgrade command while the database is behind the code
(SESSIONS_AUTO_MIGRATE off and `flask --app app db-upgrade` not run yet), never a 500."""

from flask import Flask, request
from werkzeug.exceptions import ServiceUnavailable

from zipline_sessions.storage.schema import BEHIND_MESSAGE, SchemaGate, schema_state


def init_schema_gate(app: Flask) -> None:
    """Look at the schema once, at start; only a database found behind installs the gate, so a
    current one costs its requests nothing. Each worker's gate opens by itself within
    RECHECK_SECONDS of the upgrade."""
    with app.app_context():
        state = schema_state()
    if state == "ahead":
        app.logger.warning("The database schema is newer than this release knows (a newer release migrated "
                           "it): serving, since migrations only add; upgrade this instance too")
    if state != "behind":
        return
    app.logger.warning("The database schema is behind this release: every request answers 503 until "
                       "someone runs flask --app app db-upgrade")
    gate = SchemaGate(behind=True)
    app.extensions["schema_gate"] = gate

    @app.before_request
    def refuse_while_behind():
        # A CORS preflight still passes, so that a browser can read the 503 of the request after it.
        if request.method != "OPTIONS" and gate.still_behind():
            raise ServiceUnavailable(BEHIND_MESSAGE)
