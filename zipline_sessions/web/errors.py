"""One error shape for every status, chosen by SESSIONS_ERROR_PROFILE.

contract (default): {"statusCode", "error", "message"}, as the contract shows.
zipline-v4: {"error": "E<code>: <message>", "code", "statusCode"}, as Zipline v4 sends it
(its src/lib/api/errors.ts). The status codes are the same in both.
"""

from flask import Flask, current_app, jsonify
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable, default_exceptions

from schemas import error_schema, zipline_error_schema
from zipline_sessions.storage import outage

# A client told the database is unavailable tries again after this many seconds.
RETRY_AFTER_UNAVAILABLE = 1

# Zipline v4's codes for the messages this service shares with it (API_ERRORS in errors.ts).
ZIPLINE_CODES = {
    "Invalid request schema": 1000,
    "Cannot delete current session, use log out instead.": 1021,
    "Session not found in logged in sessions": 1031,
    "Invalid username or password": 1044,
    "Invalid login session": 2000,
    "Invalid token": 2001,
    "Not logged in": 2002,
    "Admin only": 3000,
    "User not found": 4009,
    "Bad request": 9000,
    "Forbidden": 9001,
    "Not found": 9002,
    "Internal server error": 9004,
}
ZIPLINE_MESSAGES = {code: message for message, code in ZIPLINE_CODES.items()}
# A message Zipline has no code for gets one by status. Every other 400 here is a body that
# fails its schema; 503 is the health check's; the rest take Zipline's catch-all codes.
ZIPLINE_CODES_BY_STATUS = {400: 1000, 401: 2000, 403: 9001, 404: 9002, 500: 9004, 503: 6003}
# werkzeug's own wording of each status, which Zipline's generic messages replace.
DEFAULT_DESCRIPTIONS = {status: cls.description for status, cls in default_exceptions.items()}


def error_response(error: HTTPException):
    """The error body for `error` in the configured profile, keeping the headers it carries
    (Allow, Retry-After)."""
    response = error.get_response()
    if current_app.config["ERROR_PROFILE"] == "zipline-v4":
        body = zipline_error_schema.dump(zipline_v4_body(error.code, error.name, error.description))
    else:
        body = error_schema.dump({"statusCode": error.code, "error": error.name, "message": error.description})
    response.set_data(jsonify(body).get_data())
    response.content_type = "application/json"
    return response


def zipline_v4_body(status: int, reason: str, message: str) -> dict:
    """{"error": "E<code>: <message>", "code", "statusCode"} for an error of `status`."""
    code = ZIPLINE_CODES.get(message) or ZIPLINE_CODES_BY_STATUS.get(status, 9000 if status < 500 else 9004)
    if message == DEFAULT_DESCRIPTIONS.get(status):
        # werkzeug's generic sentence: Zipline's generic message when its code means this
        # status, else the status's reason phrase.
        generic = ZIPLINE_MESSAGES.get(code)
        message = generic if generic and ZIPLINE_CODES_BY_STATUS.get(status) == code else reason
    return {"error": f"E{code}: {message}", "code": code, "statusCode": status}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return error_response(error)

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        if outage.database_unavailable(error):
            # Down, restarting, silent past its bound, locked past the busy wait, or full: the
            # client may try again; the operator gets one line, not a traceback per request.
            current_app.logger.warning("Database unavailable: %s", outage.describe(error))
            return error_response(ServiceUnavailable(outage.UNAVAILABLE, retry_after=RETRY_AFTER_UNAVAILABLE))
        # Logged with its traceback for the operator; the client learns nothing of it.
        current_app.logger.exception("Unhandled exception")
        return error_response(InternalServerError("An unexpected error occurred."))
