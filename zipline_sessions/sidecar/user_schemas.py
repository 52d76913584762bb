"""The bodies of the user routes (sidecar/user.py): PATCH /api/user, the token reset, and Zipline v4's user object."""

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from schemas import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    USERNAME_RULES,
    RequestSchema,
    SessionSchema,
    Timestamp,
    UserSchema,
    storable,
)

# Zipline v4's other fields of the PATCH /api/user body, which this service does not keep.
ZIPLINE_PROFILE_FIELDS = ("avatar", "view")


class UserUpdateSchema(RequestSchema):
    """PATCH /api/user: a new username, a new password with the current one, or both; Zipline's
    avatar and view are refused by name."""

    username = fields.String(validate=USERNAME_RULES)
    password = fields.String(validate=[
        validate.Length(min=MIN_PASSWORD_LENGTH, error="Must be at least {min} characters."),
        validate.Length(max=MAX_PASSWORD_LENGTH, error="Must be at most {max} characters."),
        storable])
    # Not checked beyond what can be compared: a wrong one is "incorrect", and "" is missing.
    currentPassword = fields.String(validate=[validate.Length(max=MAX_PASSWORD_LENGTH), storable])

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def nothing_it_does_not_keep(self, data, original, **kwargs):
        refused = [name for name in ZIPLINE_PROFILE_FIELDS if isinstance(original, dict) and name in original]
        if refused:
            raise ValidationError({name: ["Cannot be changed here: only username and password can."]
                                   for name in refused})


class TokenResetSchema(RequestSchema):
    """PATCH /api/user/token by a session cookie (the contract's profile): the current password."""

    currentPassword = fields.String(validate=[validate.Length(max=MAX_PASSWORD_LENGTH), storable])


class ZiplineSessionSchema(SessionSchema):
    """A session in Zipline v4's user object: the contract's fields and the user's id."""

    userId = fields.String(required=True)


class ZiplineUserSchema(Schema):
    """Zipline v4's user object (its src/lib/db/models/user.ts), keys in its order, ids as
    strings; what this service does not keep has Zipline's value for "none"."""

    id = fields.String(required=True)
    username = fields.String(required=True)
    createdAt = Timestamp(required=True)
    updatedAt = Timestamp(required=True, metadata={"description": "createdAt: updates are not kept"})
    role = fields.String(required=True, validate=validate.OneOf(("USER", "ADMIN")))
    view = fields.Dict(required=True, metadata={"description": "Always {}: no view settings are kept"})
    avatar = fields.String(required=True, allow_none=True, metadata={"description": "Always null"})
    sessions = fields.List(fields.Nested(ZiplineSessionSchema), required=True)
    oauthProviders = fields.List(fields.Dict(), required=True, metadata={"description": "Always []"})
    totpEnabled = fields.Boolean(required=True, metadata={"description": "Always false"})
    passkeys = fields.List(fields.Dict(), required=True, metadata={"description": "Always []"})
    quota = fields.Dict(required=True, allow_none=True, metadata={"description": "Always null"})


class ZiplineUserResponseSchema(Schema):
    """GET and PATCH /api/user, login, in the zipline-v4 profile."""

    user = fields.Nested(ZiplineUserSchema, required=True)


class ZiplineTokenResetResponseSchema(Schema):
    user = fields.Nested(ZiplineUserSchema, required=True)
    token = fields.String(required=True)


class TokenResetResponseSchema(Schema):
    """PATCH /api/user/token: the user and their new API token, shown this once."""

    user = fields.Nested(UserSchema, required=True)
    token = fields.String(required=True)
user_update_schema = UserUpdateSchema()
token_reset_schema = TokenResetSchema()
zipline_user_schema = ZiplineUserSchema()
token_reset_response_schema = TokenResetResponseSchema()
