"""One error shape for every status: {"statusCode", "error", "message"} as JSON."""

from flask import Flask, current_app, jsonify
from werkzeug.exceptions import HTTPException, InternalServerError

from schemas import error_schema


def error_response(error: HTTPException):
    """The contract's error body for `error`, keeping headers it carries (Allow, Retry-After)."""
    response = error.get_response()
    body = jsonify(
        error_schema.dump(
            {"statusCode": error.code, "error": error.name, "message": error.description}
        )
    )
    response.set_data(body.get_data())
    response.content_type = "application/json"
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return error_response(error)

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        # Logged with its traceback for the operator; the client learns nothing of it.
        current_app.logger.exception("Unhandled exception")
        return error_response(InternalServerError("An unexpected error occurred."))
