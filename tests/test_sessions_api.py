"""GET and DELETE /api/user/sessions, as the contract shows them."""

import pytest
from conftest import IPHONE_SAFARI, WINDOWS_CHROME, cookie

URL = "/api/user/sessions"
CONTRACT_CURRENT = {
    "id": "sess_abc123",
    "createdAt": "2024-03-15T10:30:00.000Z",
    "ua": WINDOWS_CHROME,
    "client": "Chrome",
    "device": "Desktop",
}
CONTRACT_OTHER = {
    "id": "sess_def456",
    "createdAt": "2024-03-14T08:15:00.000Z",
    "ua": IPHONE_SAFARI,
    "client": "Mobile Safari",
    "device": "Mobile",
}
ALICE = {"Authorization": "tok-alice", **cookie("cookie-abc")}


def ids(body):
    return [session["id"] for session in body["other"]]


def test_get_with_token_and_cookie_is_the_contract_example(client):
    response = client.get(URL, headers=ALICE)
    assert response.status_code == 200
    assert response.json == {"current": CONTRACT_CURRENT, "other": [CONTRACT_OTHER]}
    assert response.content_type == "application/json"


def test_get_keeps_the_contract_key_order(client):
    body = client.get(URL, headers=ALICE).get_data(as_text=True)
    assert body.startswith('{"current":{"id":"sess_abc123","createdAt":"2024-03-15T10:30:00.000Z","ua":')
    assert '"client":"Chrome","device":"Desktop"},"other":[{"id":"sess_def456"' in body


@pytest.mark.parametrize("authorization", ["tok-alice", "Bearer tok-alice", "bearer tok-alice"])
def test_token_alone_lists_every_session_as_other(client, authorization):
    response = client.get(URL, headers={"Authorization": authorization})
    assert response.status_code == 200
    assert response.json["current"] is None
    assert ids(response.json) == ["sess_def456", "sess_abc123"]  # oldest first


def test_cookie_alone_names_the_user_and_the_current_session(client):
    response = client.get(URL, headers=cookie("cookie-def"))
    assert response.status_code == 200
    assert response.json["current"] == CONTRACT_OTHER
    assert response.json["other"] == [CONTRACT_CURRENT]


def test_token_with_another_users_cookie_has_no_current(client):
    response = client.get(URL, headers={"Authorization": "tok-alice", **cookie("cookie-bob")})
    assert response.status_code == 200
    assert response.json["current"] is None
    assert ids(response.json) == ["sess_def456", "sess_abc123"]


def test_token_with_unknown_cookie_has_no_current(client):
    response = client.get(URL, headers={"Authorization": "tok-alice", **cookie("nope")})
    assert response.status_code == 200
    assert response.json["current"] is None


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "wrong"},
        {"Authorization": ""},
        {"Authorization": "Bearer "},
        {"Authorization": "wrong", **cookie("cookie-abc")},  # a wrong token beats a good cookie
        cookie("nope"),
        cookie(""),
        cookie("sess_abc123"),  # the public id is never a credential
        {"Authorization": "sess_abc123"},
        cookie("cookie-old"),  # expired
        {"Cookie": "other_cookie=cookie-abc"},
    ],
    ids=["neither", "wrong-token", "empty-token", "empty-bearer", "wrong-token-good-cookie",
         "unknown-cookie", "empty-cookie", "id-as-cookie", "id-as-token", "expired-cookie",
         "wrong-cookie-name"],
)
def test_unauthenticated_callers_get_the_contract_401(client, headers):
    for method in (client.get, client.delete):
        response = method(URL, headers=headers, json={"all": True})
        assert response.status_code == 401
        assert response.json == {"statusCode": 401, "error": "Unauthorized", "message": "Invalid login session"}
    assert client.get(URL, headers={"Authorization": "tok-alice"}).json["other"][0]["id"] == "sess_def456"


def test_expired_sessions_are_invisible_and_purged_when_presented(client, app):
    assert "sess_old" not in ids(client.get(URL, headers={"Authorization": "tok-alice"}).json)
    assert client.get(URL, headers=cookie("cookie-old")).status_code == 401
    with app.app_context():
        from models import LoginSession
        from zipline_sessions.storage.database import db

        assert db.session.get(LoginSession, "sess_old") is None


def test_delete_one_session_answers_the_updated_list_and_logs_that_device_out(client):
    response = client.delete(URL, headers=ALICE, json={"sessionId": "sess_def456"})
    assert response.status_code == 200
    assert response.json == {"current": CONTRACT_CURRENT, "other": []}
    assert client.get(URL, headers=cookie("cookie-def")).status_code == 401
    assert client.get(URL, headers=ALICE).json["other"] == []


def test_delete_all_others_keeps_only_the_current_session(client):
    _login_more(client, 2)
    assert len(client.get(URL, headers=ALICE).json["other"]) == 3
    response = client.delete(URL, headers=ALICE, json={"all": True})
    assert response.status_code == 200
    assert response.json == {"current": CONTRACT_CURRENT, "other": []}
    assert client.get(URL, headers=cookie("cookie-def")).status_code == 401
    assert client.get(URL, headers=cookie("cookie-abc")).status_code == 200
    assert client.get(URL, headers=cookie("cookie-bob")).status_code == 200  # bob untouched


def test_delete_all_with_token_only_revokes_every_session_of_that_user(client):
    response = client.delete(URL, headers={"Authorization": "tok-alice"}, json={"all": True})
    assert response.status_code == 200
    assert response.json == {"current": None, "other": []}
    assert client.get(URL, headers=cookie("cookie-abc")).status_code == 401
    assert client.get(URL, headers=cookie("cookie-bob")).status_code == 200


def test_delete_with_token_only_can_revoke_a_named_session(client):
    response = client.delete(URL, headers={"Authorization": "tok-alice"}, json={"sessionId": "sess_abc123"})
    assert response.status_code == 200
    assert ids(response.json) == ["sess_def456"]


def test_sessionid_with_all_false_is_a_plain_sessionid(client):
    response = client.delete(URL, headers=ALICE, json={"sessionId": "sess_def456", "all": False})
    assert response.status_code == 200
    assert response.json["other"] == []


def test_unknown_fields_are_ignored(client):
    response = client.delete(URL, headers=ALICE, json={"sessionId": "sess_def456", "extra": [1, 2]})
    assert response.status_code == 200


def test_cannot_delete_the_current_session(client):
    response = client.delete(URL, headers=ALICE, json={"sessionId": "sess_abc123"})
    assert response.status_code == 400
    assert response.json == {
        "statusCode": 400,
        "error": "Bad Request",
        "message": "Cannot delete current session, use log out instead.",
    }
    assert client.get(URL, headers=ALICE).json["current"]["id"] == "sess_abc123"


@pytest.mark.parametrize("target", ["sess_bob1", "sess_nope", "sess_old", " sess_def456"])
def test_a_session_that_is_not_the_callers_live_one_is_not_found(client, target):
    response = client.delete(URL, headers=ALICE, json={"sessionId": target})
    assert response.status_code == 400
    assert response.json == {
        "statusCode": 400,
        "error": "Bad Request",
        "message": "Session not found in logged in sessions",
    }
    assert client.get(URL, headers=cookie("cookie-bob")).status_code == 200
    assert ids(client.get(URL, headers=ALICE).json) == ["sess_def456"]


def test_other_users_sessions_never_appear(client):
    body = client.get(URL, headers={"Authorization": "tok-bob"}).json
    assert body == {"current": None, "other": [
        {"id": "sess_bob1", "createdAt": "2024-03-16T00:00:00.000Z", "ua": "curl/8.5.0",
         "client": "curl", "device": "Unknown"}
    ]}


def test_head_and_options_do_not_leak_data(client):
    assert client.head(URL).status_code == 401
    assert client.head(URL, headers=ALICE).status_code == 200
    options = client.options(URL)
    assert options.status_code == 200
    assert set(options.headers["Allow"].split(", ")) >= {"GET", "DELETE"}
    assert options.get_data() == b""  # no session listed without credentials


def _login_more(client, count):
    for index in range(count):
        response = client.post("/api/auth/login", json={"username": "alice", "password": "wonderland"},
                               headers={"User-Agent": f"agent-{index}"})
        assert response.status_code == 200
