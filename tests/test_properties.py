"""Property tests: any JSON as a DELETE body, any string as a User-Agent."""

import json

from conftest import cookie
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from schemas import revoke_schema
from useragent import DEVICES, MAX_UA_LENGTH, clean_ua, describe

MISSING = object()
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
# Objects that often hold the two fields, with any values and extra keys beside them.
revoke_like = st.builds(
    lambda base, fields: {**base, **fields},
    st.dictionaries(st.text(max_size=8), scalars, max_size=2),
    st.fixed_dictionaries({}, optional={"sessionId": scalars | st.text(min_size=1, max_size=300),
                                        "all": scalars}),
)
any_body = json_values | revoke_like


def expected_form(body):
    """Which form the contract accepts `body` as: "sessionId", "all", or None (refused)."""
    if not isinstance(body, dict):
        return None
    session_id, wants_all = body.get("sessionId", MISSING), body.get("all", MISSING)
    if wants_all is not MISSING and not isinstance(wants_all, bool):
        return None
    if session_id is not MISSING and not (isinstance(session_id, str) and 1 <= len(session_id) <= 255
                                          and _encodable(session_id)):
        return None
    if wants_all is True:
        return "all" if session_id is MISSING else None
    return "sessionId" if session_id is not MISSING else None


def _encodable(text):
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


@given(any_body)
@settings(max_examples=600)
def test_the_revoke_schema_accepts_exactly_the_two_forms(body):
    form = expected_form(body)
    try:
        loaded = revoke_schema.load(body) if isinstance(body, dict) else None
    except ValidationError:
        loaded = None
    if form is None:
        assert loaded is None
    elif form == "all":
        assert loaded == {"all": True}
    else:
        assert loaded["sessionId"] == body["sessionId"] and loaded.get("all") in (None, False)


@given(any_body)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_json_body_is_answered_in_the_contract_shape(client, body):
    response = client.delete("/api/user/sessions", data=json.dumps(body), content_type="application/json",
                             headers=cookie("cookie-abc"))
    form = expected_form(body)
    if form is None:
        assert response.status_code == 400
        assert set(response.json) == {"statusCode", "error", "message"}
        assert response.json["message"] != "Session not found in logged in sessions"
    elif form == "all":
        assert response.status_code == 200 and response.json["other"] == []
    else:
        assert response.status_code in (200, 400)
        if response.status_code == 400:
            assert response.json["message"] in ("Session not found in logged in sessions",
                                                 "Cannot delete current session, use log out instead.")


any_code_points = st.lists(st.integers(0, 0x10FFFF), max_size=3000).map(lambda points: "".join(map(chr, points)))


@given(st.text(max_size=3000) | any_code_points | st.binary(max_size=3000).map(lambda raw: raw.decode("latin-1")))
@settings(max_examples=500)
def test_any_user_agent_gives_a_client_and_a_known_device(raw):
    ua = clean_ua(raw)
    assert len(ua) <= MAX_UA_LENGTH and "\x00" not in ua
    ua.encode("utf-8")
    client, device = describe(ua)
    assert isinstance(client, str) and client
    assert device in DEVICES
