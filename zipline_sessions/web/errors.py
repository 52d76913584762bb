"""One error shape for every status, chosen by SESSIONS_ERROR_PROFILE.

contract (default): {"statusCode", "error", "message"}, as the contract shows.
zipline-v4: {"error": "E<code>: <message>", "code", "statusCode"}, as Zipline v4 sends it
(its src/lib/api/errors.ts), with the status its codeToHttpStatus gives a code of its own
(so a failed login is 400 E1044 there, 401 in the contract's profile). README, "Zipline
compatibility".
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
    "Username already exists": 1038,
    "Invalid username or password": 1044,
    "Current password is incorrect": 1066,
    "Current password is required to set a new password": 1067,
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
# Our refusals of a case Zipline answers with another of its messages: DELETE /api/user/sessions
# with {}, {"all": false}, or a sessionId of "" (or longer than any) falls through to "not found" there.
ZIPLINE_ANSWERS = {
    "Provide either sessionId or all: true.": "Session not found in logged in sessions",
    "sessionId: Length must be between 1 and 255.": "Session not found in logged in sessions",
}
# Zipline's codeToHttpStatus: 1xxx 400, 2xxx 401, 3xxx 403, 4xxx 404, 5xxx 413, 6xxx 500; 9xxx by table.
ZIPLINE_STATUS_BY_THOUSAND = {1: 400, 2: 401, 3: 403, 4: 404, 5: 413, 6: 500}
ZIPLINE_STATUS_OVERRIDES = {9000: 400, 9001: 403, 9002: 404, 9004: 500, 9005: 500}
# A message Zipline has no code for gets one by status. Every other 400 here is a body that
# fails its schema; 503 is the health check's; the rest take Zipline's catch-all codes.
ZIPLINE_CODES_BY_STATUS = {400: 1000, 401: 2000, 403: 9001, 404: 9002, 500: 9004, 503: 6003}
# An error that names no cause (an injected fault: its exception's `generic` is true) gets the code
# Zipline gives no cause in particular: its catch-alls (9000 Bad request for any 4xx, 9001
# Forbidden, 9002 Not found, 9004 Internal server error for any 5xx), and 2000 for a 401, the one
# thing a 401 says there; never 1000 (a body that fails its schema) nor 6003 (the health check).
ZIPLINE_GENERIC_CODES = {401: 2000, 403: 9001, 404: 9002}
# werkzeug's own wording of each status, which Zipline's generic messages replace.
DEFAULT_DESCRIPTIONS = {status: cls.description for status, cls in default_exceptions.items()}


def error_response(error: HTTPException):
    """The error body for `error` in the configured profile, keeping the headers it carries
    (Allow, Retry-After)."""
    response = error.get_response()
    if current_app.config["ERROR_PROFILE"] == "zipline-v4":
        code, message = getattr(error, "zipline", (None, error.description))
        body = zipline_error_schema.dump(zipline_v4_body(error.code, error.name, message, code,
                                                         generic=getattr(error, "generic", False)))
        response.status_code = body["statusCode"]
    else:
        body = error_schema.dump({"statusCode": error.code, "error": error.name, "message": error.description})
    response.set_data(jsonify(body).get_data())
    response.content_type = "application/json"
    return response


def zipline_v4_body(status: int, reason: str, message: str, code: int | None = None,
                    generic: bool = False) -> dict:
    """{"error": "E<code>: <message>", "code", "statusCode"} for an error of `status` (`code`:
    Zipline's, when the raiser knows it). A message of Zipline's takes its code and the status
    Zipline gives that code; any other keeps its status and takes a code by status. A `generic`
    error (an injected fault) keeps its status whatever its message, with a catch-all code."""
    if generic:
        code = ZIPLINE_CODES.get(message) or ZIPLINE_GENERIC_CODES.get(status, 9000 if status < 500 else 9004)
        return {"error": f"E{code}: {message}", "code": code, "statusCode": status}
    message = ZIPLINE_ANSWERS.get(message, message)
    code = code or ZIPLINE_CODES.get(message)
    if code is not None:
        status = ZIPLINE_STATUS_OVERRIDES.get(code) or ZIPLINE_STATUS_BY_THOUSAND.get(code // 1000, 500)
        return {"error": f"E{code}: {message}", "code": code, "statusCode": status}
    code = ZIPLINE_CODES_BY_STATUS.get(status, 9000 if status < 500 else 9004)
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
