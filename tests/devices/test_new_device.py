"""New devices: session.created says "newDevice" when the user had no session from the same client
family, device kind and network (/24, /48) in the 90 days before; a security event too. Only
hashes are kept, purged with expired sessions. Forged X-Forwarded-For and User-Agent tricks."""

import json
import re
from datetime import timedelta

import pytest
from conftest import cookie
from sqlalchemy import select, update

import models
from zipline_sessions.activity.events import SessionEvent
from zipline_sessions.devices.known import KnownDevice
from zipline_sessions.fixture import seed_file, seeding
from zipline_sessions.storage import clock
from zipline_sessions.storage.database import db

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36"
CHROME_LATER = CHROME.replace("122.0.0.0", "131.0.6778.86")
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
ANDROID_CHROME = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/122.0.0.0 Mobile Safari/537.36")
HOME = "203.0.113.5"
USERS = {"users": [{"username": "alice", "password": "wonderland"}, {"username": "bob", "password": "builder!"},
                   {"username": "seeded", "password": "seeded-pw",
                    "sessions": [{"ua": CHROME, "expiresAt": "2099-01-01T00:00:00Z"}]}]}
PASSWORDS = {"alice": "wonderland", "bob": "builder!", "seeded": "seeded-pw"}


@pytest.fixture
def make_devices(make_app):
    """An app with events on (kept in the outbox), the test-control clock, USERS seeded."""
    def make(**overrides):
        app = make_app(TEST_CONTROL=True, WEBHOOK_URL="http://127.0.0.1:9/hook", WEBHOOK_SECRET="s" * 16,
                       **overrides)
        with app.app_context():
            seeding.store_seed(seed_file.parse_seed(USERS, app.config["TTL_SECONDS"], clock.utcnow()))
        return app
    return make


@pytest.fixture
def app(make_devices):
    return make_devices()


def log_in(app, ua=CHROME, address=HOME, user="alice", headers=None):
    """A login from `address`; the session token."""
    response = app.test_client(use_cookies=False).post(
        "/api/auth/login", json={"username": user, "password": PASSWORDS[user]},
        headers={"User-Agent": ua, **(headers or {})}, environ_base={"REMOTE_ADDR": address})
    assert response.status_code == 200, response.json
    return response.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]


def new_device_flags(app) -> list:
    """newDevice of each session.created so far, in order (and their keys' order)."""
    with app.app_context():
        rows = db.session.execute(select(SessionEvent.payload).where(SessionEvent.type == "session.created")
                                  .order_by(SessionEvent.id)).scalars().all()
        db.session.commit()
    payloads = [json.loads(row) for row in rows]
    assert all(list(p)[-3:] == ["user", "session", "newDevice"] for p in payloads)
    return [p["newDevice"] for p in payloads]


def is_new(app, **login) -> bool:
    log_in(app, **login)
    return new_device_flags(app)[-1]


def advance(app, days: float) -> None:
    response = app.test_client().post("/__test__/clock", json={"advance": days * 86400})
    assert response.status_code == 200


def known_rows(app) -> list:
    with app.app_context():
        rows = db.session.execute(select(KnownDevice.__table__)).all()
        db.session.commit()
    return rows


def test_the_first_login_is_a_new_device_and_a_security_event(app, security_events):
    assert is_new(app) is True
    assert is_new(app) is False  # the same browser, network and kind again
    alerts = [event for event in security_events if event["event"] == "login.new_device"]
    assert len(alerts) == 1
    assert alerts[0] | {"time": None, "sessionId": None} == {
        "time": None, "event": "login.new_device", "user": "alice", "userId": 1, "sessionId": None,
        "client": "Chrome", "device": "Desktop", "location": None, "address": HOME}


@pytest.mark.parametrize(("first", "then"), [
    ({"ua": CHROME}, {"ua": CHROME_LATER}),  # a new version of the same client
    ({"address": "203.0.113.5"}, {"address": "203.0.113.250"}),  # another host of the /24
    ({"address": "203.0.113.5"}, {"address": "::ffff:203.0.113.9"}),  # the same, IPv4-mapped
    ({"address": "2001:db8:1::1"}, {"address": "2001:db8:1:ffff::2"}),  # another host of the /48
], ids=["version", "ipv4-host", "ipv4-mapped", "ipv6-host"])
def test_the_same_family_kind_and_network_is_a_known_device(app, first, then):
    assert is_new(app, **first) is True
    assert is_new(app, **then) is False


@pytest.mark.parametrize("then", [
    {"address": "203.0.114.5"},  # the next /24
    {"address": "2001:db8:2::1"},  # after 2001:db8:1::1: another /48
    {"ua": FIREFOX},  # another client family
    {"ua": ANDROID_CHROME},  # the same family on another kind of device (Mobile)
    {"ua": ""},  # no User-Agent at all: Unknown, Unknown
], ids=["ipv4-network", "ipv6-network", "family", "kind", "no-ua"])
def test_another_network_family_or_kind_is_a_new_device(app, then):
    first = {"address": "2001:db8:1::1"} if ":" in then.get("address", "") else {}
    assert is_new(app, **first) is True
    assert is_new(app, **then) is True


def test_another_users_device_is_not_yours_and_seeded_sessions_do_not_count(app):
    assert is_new(app, user="alice") is True
    assert is_new(app, user="bob") is True  # the same browser and network, another user
    assert is_new(app, user="seeded") is True  # its seeded Chrome session has no network: not this device


def test_a_device_stays_known_for_90_days_after_its_last_use(app):
    token = log_in(app)
    with app.app_context():  # used on day 5 (an activity write), then logged out on day 6
        session_id = db.session.execute(select(models.Session.c.id)).scalars().all()
        db.session.execute(update(models.Session).where(models.Session.c.fingerprint.is_not(None))
                           .values(last_seen_at=clock.utcnow() + timedelta(days=5)))
        db.session.commit()
    assert len(session_id) == 2  # the seeded user's and alice's
    advance(app, 6)
    assert app.test_client(use_cookies=False).get("/api/auth/logout", headers=cookie(token)).status_code == 200
    advance(app, 88)  # day 94: 89 days after the last use
    assert is_new(app) is False
    advance(app, 90.5)  # day 184.5: 90.5 days after the login of day 94, the latest use
    assert is_new(app) is True


def test_a_live_session_used_lately_counts_however_old_its_login(make_devices):
    app = make_devices(TTL_SECONDS=365 * 86400)
    log_in(app)
    advance(app, 100)
    with app.app_context():  # used yesterday
        db.session.execute(update(models.Session).values(last_seen_at=clock.utcnow() - timedelta(days=1)))
        db.session.commit()
    assert is_new(app) is False  # a login 100 days ago, but used yesterday
    advance(app, 91)
    assert is_new(app) is True  # both still live, neither used in the last 90 days


@pytest.mark.parametrize("purge", ["login", "purge-expired"])
def test_known_devices_are_purged_90_days_after_their_last_use(app, purge):
    for address, days in (("198.51.100.1", 50), ("192.0.2.1", 41)):
        token = log_in(app, address=address)
        assert app.test_client(use_cookies=False).get("/api/auth/logout", headers=cookie(token)).status_code == 200
        advance(app, days)
    assert len(known_rows(app)) == 2  # the ended sessions' devices, of days 0 and 50; now day 91
    if purge == "login":
        log_in(app)  # each login purges (up to 100) expired sessions and stale devices
    else:
        assert app.test_cli_runner().invoke(args=["purge-expired"]).exit_code == 0
    assert len(known_rows(app)) == 1
    assert is_new(app, address="192.0.2.77") is False  # day 50's device, still known
    assert is_new(app, address="198.51.100.77") is True  # day 0's, forgotten


def test_only_hashes_are_kept(app):
    token = log_in(app, address="198.51.100.1")
    app.test_client(use_cookies=False).get("/api/auth/logout", headers=cookie(token))
    (row,) = known_rows(app)
    assert re.fullmatch(r"[0-9a-f]{64}", row.fingerprint)
    assert "198.51.100" not in repr(row) and "Chrome" not in repr(row)


def test_a_rotated_session_is_the_same_device(app):
    token = log_in(app)
    assert is_new(app, headers=cookie(token)) is False  # the browser logs in again over its own session
    assert len(known_rows(app)) == 1  # the replaced session is remembered


def test_with_ip_mode_off_a_device_is_its_client_and_kind(make_devices):
    app = make_devices(IP_MODE="off")
    assert is_new(app) is True
    assert is_new(app, address="198.51.100.1") is False
    assert is_new(app, ua=FIREFOX) is True


@pytest.mark.parametrize("proxies", [0, 1])
def test_a_forged_x_forwarded_for_cannot_claim_a_known_network(make_devices, proxies):
    """The network is the address SESSIONS_TRUSTED_PROXIES makes: a client's own X-Forwarded-For
    entries are never believed (with one proxy, only the entry that proxy appended)."""
    app = make_devices(TRUSTED_PROXIES=proxies)
    home = {"headers": {"X-Forwarded-For": HOME}} if proxies else {"address": HOME}
    assert is_new(app, **home) is True
    if proxies:  # the proxy at 127.0.0.1 appends the attacker's real address to what it sent
        forged = {"headers": {"X-Forwarded-For": f"{HOME}, 198.51.100.66"}, "address": "127.0.0.1"}
    else:
        forged = {"headers": {"X-Forwarded-For": HOME, "X-Real-IP": HOME}, "address": "198.51.100.66"}
    assert is_new(app, **forged) is True
    assert is_new(app, **home) is False


@pytest.mark.parametrize("ua", [
    CHROME + " " + "x" * 5000,  # cut to 1024 characters: still Chrome on Windows
    CHROME.replace("Windows NT 10.0", "Windows NT 10.0\u0000"),
    "  " + CHROME,
], ids=["oversized", "escaped-nul", "leading-spaces"])
def test_user_agent_tricks_only_claim_what_the_client_could_claim_anyway(app, ua):
    """A User-Agent is the client's word: with the right family and kind it passes for a known
    browser, but only from the known network; oddly spelled ones neither fail nor match more."""
    assert is_new(app) is True
    assert is_new(app, ua=ua) is False  # the same claim, from home
    assert is_new(app, ua=ua, address="198.51.100.66") is True  # the same claim from elsewhere


def test_a_nul_or_unpaired_surrogate_in_the_user_agent_is_a_device_like_any(app):
    assert is_new(app, ua="Chrome\x00/122") is True
    assert is_new(app, ua="Chrome\x00/122") is False
