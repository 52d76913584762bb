"""Marshmallow schemas for every body the API reads or writes, and the body loader."""

from flask import request
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from zipline_sessions.devices.useragent import DEVICES


class Timestamp(fields.String):
    """2024-03-15T10:30:00.000Z (OpenAPI: date-time). Session rows carry it as this text
    already: the list queries read it so (timestamps.WireTimestamp)."""


class StrictBoolean(fields.Boolean):
    """JSON true or false only: not "true", not 1."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


def storable_text_problem(text: str) -> str | None:
    """Why `text` cannot be stored or looked up alike on every database, or None.

    Lone surrogates (legal in JSON, not in UTF-8) can be neither hashed nor stored; NUL is
    text to SQLite but PostgreSQL refuses it, so both refuse it here.
    """
    if "\x00" in text:
        return "Must not contain a NUL character."
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "Not valid Unicode text."
    return None


def storable(text: str) -> None:
    problem = storable_text_problem(text)
    if problem is not None:
        raise ValidationError(problem)


class RequestSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # Zipline ignores fields it does not know; so do we.


class SessionSchema(Schema):
    id = fields.String(required=True)
    createdAt = Timestamp(attribute="created_at", required=True)
    ua = fields.String(required=True)
    client = fields.String(required=True)
    device = fields.String(required=True, validate=validate.OneOf(DEVICES))


class LocationSchema(Schema):
    """Where a session's address is (devices/location.py), names in English."""

    country = fields.String(required=True, metadata={"example": "Germany"})
    countryCode = fields.String(required=True, metadata={"description": "ISO 3166-1 alpha-2", "example": "DE"})
    city = fields.String(required=True, allow_none=True, metadata={"example": "Berlin"})


class ActivitySessionSchema(SessionSchema):
    """A Session with its last activity after the contract's five fields
    (SESSIONS_ACTIVITY_FIELDS=true; always in the admin list and the CLI)."""

    lastSeenAt = Timestamp(attribute="last_seen_at", required=True, allow_none=True,
                           metadata={"description": "When the session was last used (null: not since "
                                                    "activity was recorded)"})
    ip = fields.String(required=True, allow_none=True,
                       metadata={"description": "The client address of its last use, as SESSIONS_IP_MODE "
                                                "keeps it (null: not kept)"})
    location = fields.Nested(LocationSchema, required=True, allow_none=True,
                             metadata={"description": "Where that address is, from SESSIONS_GEOIP_DATABASE "
                                                      "(null: no file, or the address is not in it)"})


class SessionListSchema(Schema):
    current = fields.Nested(SessionSchema, allow_none=True, required=True)
    other = fields.List(fields.Nested(SessionSchema), required=True)


class ActivitySessionListSchema(Schema):
    current = fields.Nested(ActivitySessionSchema, allow_none=True, required=True)
    other = fields.List(fields.Nested(ActivitySessionSchema), required=True)


class RevokeSchema(RequestSchema):
    """DELETE /api/user/sessions: exactly one of sessionId or all: true."""

    sessionId = fields.String(validate=[validate.Length(min=1, max=255), storable])
    all = StrictBoolean()

    @validates_schema
    def exactly_one(self, data, **kwargs):
        wants_all = data.get("all") is True
        if wants_all and "sessionId" in data:
            raise ValidationError("Provide either sessionId or all: true, not both.")
        if not wants_all and "sessionId" not in data:
            raise ValidationError("Provide either sessionId or all: true.")


# A username, as at creation (flask create-user, a seed file) and at rename (PATCH /api/user).
USERNAME_RULES = [validate.Length(min=1, max=255), storable]


class LoginSchema(RequestSchema):
    username = fields.String(required=True, validate=USERNAME_RULES)
    password = fields.String(required=True, validate=[validate.Length(min=1, max=1024), storable])


# PATCH /api/user: the rules of a new password (the one that needs the username: sidecar/account.py).
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024






class UserSchema(Schema):
    id = fields.Integer(required=True)
    username = fields.String(required=True)






class AdminSessionListSchema(Schema):
    """/api/admin/users/<username>/sessions: the user and all their live sessions, oldest first."""

    user = fields.Nested(UserSchema, required=True)
    sessions = fields.List(fields.Nested(ActivitySessionSchema), required=True)


class LoginResponseSchema(Schema):
    user = fields.Nested(UserSchema, required=True)








class LogoutResponseSchema(Schema):
    loggedOut = fields.Boolean(required=True)


class EventCountsSchema(Schema):
    pending = fields.Integer(required=True, metadata={"description": "Events not yet taken by the receiver"})
    dead = fields.Integer(required=True, metadata={"description": "Events given up on after SESSIONS_WEBHOOK_MAX_AGE"})


class HealthSchema(Schema):
    status = fields.String(required=True)
    events = fields.Nested(EventCountsSchema, metadata={"description": "Only when SESSIONS_WEBHOOK_URL is set"})


class ErrorSchema(Schema):
    statusCode = fields.Integer(required=True)
    error = fields.String(required=True)
    message = fields.String(required=True)


class ZiplineErrorSchema(Schema):
    """Zipline v4's error body (SESSIONS_ERROR_PROFILE=zipline-v4), keys in its order."""

    error = fields.String(required=True, metadata={"example": "E1031: Session not found in logged in sessions"})
    code = fields.Integer(required=True, metadata={"example": 1031})
    statusCode = fields.Integer(required=True, metadata={"example": 400})


session_list_schema = SessionListSchema()
activity_session_list_schema = ActivitySessionListSchema()


# A Session's fields on the wire, in the schemas' order: the rows of the request path carry
# these columns first and in this order (models.PUBLIC_COLUMNS, ACTIVITY_COLUMNS).
SESSION_FIELDS = tuple(SessionSchema().fields)
ACTIVITY_SESSION_FIELDS = tuple(ActivitySessionSchema().fields)


def dump_session_list(listing: dict, activity_fields: bool = False) -> dict:
    """session_list_schema.dump(listing) (activity_session_list_schema's with `activity_fields`),
    written out for the request path, from rows whose first columns are SESSION_FIELDS's.

    marshmallow's generic dump costs more than the rest of a GET together; this gives the
    same body (tests/test_schemas.py holds the two equal), and the schema stays the
    definition of the wire format.
    """
    names = ACTIVITY_SESSION_FIELDS if activity_fields else SESSION_FIELDS
    current = listing["current"]
    return {
        "current": None if current is None else dict(zip(names, current)),
        "other": [dict(zip(names, row)) for row in listing["other"]],
    }


revoke_schema = RevokeSchema()
admin_session_list_schema = AdminSessionListSchema()
login_schema = LoginSchema()
login_response_schema = LoginResponseSchema()
logout_response_schema = LogoutResponseSchema()
health_schema = HealthSchema()
error_schema = ErrorSchema()
zipline_error_schema = ZiplineErrorSchema()


def request_json() -> object:
    """The request body parsed as JSON: 415 unless it is declared JSON, 400 unless it parses."""
    if not request.is_json:
        raise UnsupportedMediaType("Content-Type must be application/json.")
    try:
        return request.get_json()
    except (BadRequest, RecursionError):  # RecursionError: absurdly deep nesting
        raise BadRequest("Request body is not valid JSON.") from None


def load_body(schema: Schema) -> dict:
    """The request's JSON object, validated by `schema`; 415 or 400 otherwise."""
    data = request_json()
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object.")
    try:
        return schema.load(data)
    except ValidationError as error:
        raise BadRequest(describe_errors(error.messages)) from None


def describe_errors(messages, path: str = "") -> str:
    """Flatten marshmallow's error dict into one readable sentence."""
    if isinstance(messages, dict):
        parts = []
        for key, value in messages.items():
            where = path if key == "_schema" else f"{path}.{key}" if path else str(key)
            parts.append(describe_errors(value, where))
        return " ".join(parts)
    text = " ".join(str(m) for m in messages) if isinstance(messages, list) else str(messages)
    return f"{path}: {text}" if path else text
