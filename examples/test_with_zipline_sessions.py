"""Example tests of a client project against zipline-sessions (fixtures in conftest.py)."""

MAYA = {"Authorization": "tok-maya"}
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_2 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/18.2 Mobile/15E148 Safari/604.1")


def test_the_seed_is_there_and_its_expired_session_is_not(zipline_sessions):
    status, _, body = zipline_sessions.call("GET", "/api/user/sessions", headers=MAYA)
    assert status == 200
    assert [(s["id"], s["client"], s["device"]) for s in body["other"]] == [
        ("sess_maya_laptop", "Chrome", "Desktop"), ("sess_maya_phone", "Mobile Safari", "Mobile")]


def test_revoking_everything_lasts_only_for_this_test(zipline_sessions):
    status, _, body = zipline_sessions.call("DELETE", "/api/user/sessions", {"all": True}, MAYA)
    assert (status, body) == (200, {"current": None, "other": []})


def test_the_next_test_has_the_seed_back(zipline_sessions):
    assert len(zipline_sessions.call("GET", "/api/user/sessions", headers=MAYA)[2]["other"]) == 2


def test_a_login_expires_after_seven_days_of_service_time(zipline_sessions):
    zipline_sessions.control("POST", "/clock", {"set": "2027-01-01T09:00:00Z"})
    status, headers, _ = zipline_sessions.call("POST", "/api/auth/login",
                                               {"username": "theo", "password": "hunter2-but-longer"},
                                               {"User-Agent": IPHONE})
    assert status == 200
    cookie = {"Cookie": headers["Set-Cookie"].split(";")[0]}
    current = zipline_sessions.call("GET", "/api/user/sessions", headers=cookie)[2]["current"]
    assert (current["createdAt"], current["device"]) == ("2027-01-01T09:00:00.000Z", "Mobile")
    zipline_sessions.control("POST", "/clock", {"advance": 7 * 24 * 3600})
    assert zipline_sessions.call("GET", "/api/user/sessions", headers=cookie)[0] == 401


def test_the_client_sees_an_outage_and_the_journal_shows_what_it_sent(zipline_sessions):
    zipline_sessions.control("POST", "/faults", {"route": "GET /api/user/sessions", "status": 503, "times": 1})
    assert zipline_sessions.call("GET", "/api/user/sessions", headers=MAYA)[0] == 503
    assert zipline_sessions.call("GET", "/api/user/sessions", headers=MAYA)[0] == 200
    sent = zipline_sessions.control("GET", "/requests")["requests"]
    assert [(r["method"], r["path"], r["status"], r["user"]) for r in sent] == [
        ("GET", "/api/user/sessions", 503, "maya"), ("GET", "/api/user/sessions", 200, "maya")]
