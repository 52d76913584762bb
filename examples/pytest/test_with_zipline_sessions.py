"""Tests of a client project against zipline-sessions, with pytest-zipline-sessions installed.

pytest.ini names the seed (../seed.json); the service is the zipline-sessions command on PATH.
These are also the plugin's own tests (tests/installed/ runs them in a venv outside the repository).
"""

import pytest

IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_2 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/18.2 Mobile/15E148 Safari/604.1")


def test_theo_sees_his_new_session(zipline_login):  # the README's five lines
    theo = zipline_login("theo", "hunter2-but-longer")
    sessions = theo.get("/api/user/sessions").json()
    assert sessions["current"]["client"] == "Python Requests"
    assert len(sessions["other"]) == 3


def test_theo_logs_in_and_sees_his_new_session_first(zipline_login):
    theo = zipline_login("theo", "hunter2-but-longer", user_agent=IPHONE)
    sessions = theo.get("/api/user/sessions").json()
    assert (sessions["current"]["client"], sessions["current"]["device"]) == ("Mobile Safari", "Mobile")
    assert [s["id"] for s in sessions["other"]] == ["sess_theo_mac", "sess_theo_firefox", "sess_theo_android"]


def test_the_seed_is_there_and_its_expired_session_is_not(zipline_sessions):
    maya = zipline_sessions.session(Authorization="tok-maya")
    assert [(s["id"], s["client"], s["device"]) for s in maya.get("/api/user/sessions").json()["other"]] == [
        ("sess_maya_laptop", "Chrome", "Desktop"), ("sess_maya_phone", "Mobile Safari", "Mobile")]


def test_revoking_everything_lasts_only_for_this_test(zipline_sessions):
    answer = zipline_sessions.session(Authorization="tok-maya").delete("/api/user/sessions", json={"all": True})
    assert (answer.status_code, answer.json()) == (200, {"current": None, "other": []})


def test_the_next_test_has_the_seed_back(zipline_sessions):
    assert len(zipline_sessions.session(Authorization="tok-maya").get("/api/user/sessions").json()["other"]) == 2


def test_a_login_expires_after_seven_days_of_service_time(zipline_sessions, zipline_login):
    zipline_sessions.set_clock("2027-01-01T09:00:00Z")
    theo = zipline_login("theo", "hunter2-but-longer")
    assert theo.get("/api/user/sessions").json()["current"]["createdAt"] == "2027-01-01T09:00:00.000Z"
    assert zipline_sessions.advance_clock(7 * 24 * 3600) == "2027-01-08T09:00:00.000Z"
    assert theo.get("/api/user/sessions").status_code == 401


def test_the_client_sees_an_outage_and_the_journal_shows_what_it_sent(zipline_sessions):
    zipline_sessions.fault("GET /api/user/sessions", status=503, times=1)
    maya = zipline_sessions.session(Authorization="tok-maya")
    assert [maya.get("/api/user/sessions").status_code for _ in range(2)] == [503, 200]
    assert [(r["method"], r["path"], r["status"], r["user"]) for r in zipline_sessions.journal()] == [
        ("GET", "/api/user/sessions", 503, "maya"), ("GET", "/api/user/sessions", 200, "maya")]


@pytest.mark.zipline_sessions_seed({"users": [{"username": "solo", "password": "only-one-here", "token": "tok-solo"}]})
def test_a_marked_test_starts_from_its_own_seed(zipline_sessions, zipline_login):
    assert zipline_sessions.session(Authorization="tok-maya").get("/api/user/sessions").status_code == 401
    assert zipline_login("solo", "only-one-here").get("/api/user/sessions").json()["other"] == []


def test_after_a_marked_test_the_configured_seed_is_back(zipline_sessions):
    assert zipline_sessions.session(Authorization="tok-solo").get("/api/user/sessions").status_code == 401
    assert zipline_sessions.session(Authorization="tok-maya").get("/api/user/sessions").status_code == 200


def test_a_reset_without_a_seed_empties_the_store(zipline_sessions):
    assert zipline_sessions.reset(None) == {"users": 0, "sessions": 0}
    assert zipline_sessions.session(Authorization="tok-maya").get("/api/user/sessions").status_code == 401


def test_a_wrong_password_is_a_clear_failure_of_the_login_factory(zipline_login):
    with pytest.raises(AssertionError, match="login of 'theo' refused: 401"):
        zipline_login("theo", "not-his-password")
