"""Property tests: any JSON as a DELETE body, any text as a login, any string as a User-Agent.

The ones that go through the app run on the suite's database: SQLite, or PostgreSQL when
SESSIONS_TEST_POSTGRES_URL is set (which refuses NUL in text: both must answer alike).
"""

import json

from conftest import cookie
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from schemas import revoke_schema
from zipline_sessions.devices.useragent import DEVICES, MAX_UA_LENGTH, clean_ua, describe

MISSING = object()
# Text that databases take differently (NUL: PostgreSQL refuses it; lone surrogates: not UTF-8),
# drawn often, among any other characters.
AWKWARD = "\x00\ud800\udfff\xe9\u4e2d\U0001f600a "
awkward_text = st.lists(st.sampled_from(AWKWARD) | st.characters(), max_size=30).map("".join)
scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
           | awkward_text)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
# Objects that often hold the two fields, with any values and extra keys beside them.
revoke_like = st.builds(
    lambda base, fields: {**base, **fields},
    st.dictionaries(st.text(max_size=8), scalars, max_size=2),
    st.fixed_dictionaries({}, optional={"sessionId": awkward_text | scalars | st.text(min_size=1, max_size=300),
                                        "all": scalars}),
)
any_body = revoke_like | json_values


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
    return "\x00" not in text  # NUL is refused as well: PostgreSQL cannot hold it


def as_sent(value):
    """`value` as the server reads json.dumps(value): two adjacent lone surrogates become one
    character there (a pair of escapes)."""
    return json.loads(json.dumps(value))


def parses(value) -> bool:
    """Whether the server's JSON parser (orjson) takes json.dumps(value): not with a lone surrogate."""
    try:
        json.dumps(as_sent(value), ensure_ascii=False).encode()
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
    form = expected_form(as_sent(body)) if parses(body) else None
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


def post_json(client, path, body, headers=None):
    # json.dumps, not the client's json=: it writes a lone surrogate as the escape JSON allows.
    return client.open(path, method="POST" if path.endswith("login") else "DELETE", data=json.dumps(body),
                       content_type="application/json", headers=headers)


@given(st.just("alice") | awkward_text, st.just("wonderland") | awkward_text)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_login_text_is_answered_alike_on_every_database(client, username, password):
    response = post_json(client, "/api/auth/login", {"username": username, "password": password})
    username, password = as_sent(username), as_sent(password)
    if (username, password) == ("alice", "wonderland"):
        assert response.status_code == 200 and response.json == {"user": {"id": 1, "username": "alice"}}
    elif all(text and _encodable(text) for text in (username, password)):
        assert response.status_code == 401
        assert response.json == {"statusCode": 401, "error": "Unauthorized", "message": "Invalid username or password"}
    else:
        assert response.status_code == 400
        assert set(response.json) == {"statusCode", "error", "message"} and response.json["error"] == "Bad Request"
        assert "Set-Cookie" not in response.headers


@given(awkward_text)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_session_id_text_is_answered_alike_on_every_database(client, session_id):
    response = post_json(client, "/api/user/sessions", {"sessionId": session_id}, cookie("cookie-abc"))
    assert response.status_code == 400
    assert set(response.json) == {"statusCode", "error", "message"}
    if session_id and _encodable(as_sent(session_id)):
        assert response.json["message"] == "Session not found in logged in sessions"
    assert len(client.get("/api/user/sessions", headers=cookie("cookie-abc")).json["other"]) == 1


header_text = st.text(alphabet=st.characters(exclude_characters="\r\n"), max_size=200)
latin1_bytes = st.binary(max_size=200).map(lambda raw: raw.decode("latin-1").replace("\r", "").replace("\n", ""))


@given(header_text | latin1_bytes | st.sampled_from(["Mozilla/5.0 caf\xe9", "Mozilla/5.0 cafÃ©", ""]))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_user_agent_logs_in_and_is_listed(client, user_agent):
    login = client.post("/api/auth/login", json={"username": "alice", "password": "wonderland"},
                        headers={"User-Agent": user_agent})
    assert login.status_code == 200
    token = login.headers["Set-Cookie"].split(";", 1)[0].split("=", 1)[1]
    listing = client.get("/api/user/sessions", headers=cookie(token))
    assert listing.status_code == 200
    current = json.loads(listing.get_data())["current"]
    assert current["ua"] == clean_ua(user_agent)
    assert isinstance(current["client"], str) and current["device"] in DEVICES


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
