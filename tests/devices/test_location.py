"""Location: a session's country and city from SESSIONS_GEOIP_DATABASE, resolved when its address is
recorded (login, activity writes), shown as `location` with the activity fields."""

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import SEED, cookie
from geoip_file import BERLIN, FRANCE, write_geoip_database
from sqlalchemy import select

import models
from zipline_sessions.config.checks import ConfigError
from zipline_sessions.devices.location import open_locator
from zipline_sessions.fixture import seed_file, seeding
from zipline_sessions.storage import clock
from zipline_sessions.storage.database import db

ROOT = Path(__file__).resolve().parents[2]
LOGIN, SESSIONS = "/api/auth/login", "/api/user/sessions"
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/122.0.0.0 Safari/537.36"


@pytest.fixture
def geoip(tmp_path) -> str:
    return str(write_geoip_database(tmp_path / "city.mmdb"))


@pytest.fixture
def located(make_app, geoip):
    """An app with the test file, the activity fields shown, every use recorded."""
    def make(**overrides):
        app = make_app(GEOIP_DATABASE=geoip, ACTIVITY_FIELDS=True, TOUCH_SECONDS=1, **overrides)
        with app.app_context():
            seeding.store_seed(seed_file.parse_seed(SEED, app.config["TTL_SECONDS"], clock.utcnow()))
        return app
    return make


def log_in(client, address: str) -> str:
    response = client.post(LOGIN, json={"username": "alice", "password": "wonderland"},
                           headers={"User-Agent": CHROME}, environ_base={"REMOTE_ADDR": address})
    assert response.status_code == 200
    return response.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]


def current(client, token: str, address: str) -> dict:
    response = client.get(SESSIONS, headers=cookie(token), environ_base={"REMOTE_ADDR": address})
    response.close()  # the activity write runs as the server closes the response
    return response.json["current"]


def stored_location(app, session_id: str):
    with app.app_context():
        location = db.session.execute(select(models.Session.c.location).where(models.Session.c.id == session_id)
                                      ).scalar_one()
        db.session.commit()
    return location


def test_the_reader_answers_country_and_city_or_none(geoip):
    locate = open_locator(geoip)
    assert locate("203.0.113.200") == BERLIN
    assert locate("2001:db8:1:ffff::1") == FRANCE
    assert locate("::ffff:203.0.113.9") == BERLIN  # IPv4-mapped: the IPv4 network
    assert locate("192.0.2.1") == FRANCE  # only a registered country: still the country
    assert [locate(a) for a in ("198.51.100.1", "2001:db8:2::1", "127.0.0.1", None, "", "unix:/x", "fe80::1%eth0")] \
        == [None] * 7
    assert open_locator(None)("203.0.113.1") is None  # no file: no location, ever


def test_a_login_records_where_its_address_is(located):
    app = located()
    client = app.test_client(use_cookies=False)
    berlin = log_in(client, "203.0.113.5")
    shown = current(client, berlin, "203.0.113.5")
    assert shown["location"] == BERLIN
    assert list(shown)[-3:] == ["lastSeenAt", "ip", "location"]
    nowhere = log_in(client, "198.51.100.7")
    assert current(client, nowhere, "198.51.100.7")["location"] is None
    listed = client.get(SESSIONS, headers=cookie(berlin)).json
    assert [row["location"] for row in listed["other"]] == [None, None, None]  # seeded ones: never located


def test_an_activity_write_moves_the_location_with_the_address(located, monkeypatch):
    app = located()
    client = app.test_client(use_cookies=False)
    token = log_in(client, "203.0.113.5")
    session_id = current(client, token, "203.0.113.5")["id"]
    assert stored_location(app, session_id) == BERLIN
    later = clock.utcnow()
    monkeypatch.setattr(clock, "clock_hook", lambda: later)  # the service's clock, held
    later += timedelta(seconds=5)  # past SESSIONS_TOUCH_SECONDS: the next use is written
    current(client, token, "2001:db8:1::42")
    assert stored_location(app, session_id) == FRANCE
    later += timedelta(seconds=5)
    current(client, token, "198.51.100.7")
    assert stored_location(app, session_id) is None  # an address the file does not know: no stale city


def test_truncated_addresses_are_located_and_events_carry_the_location(located):
    app = located(IP_MODE="truncate", WEBHOOK_URL="http://127.0.0.1:9/hook", WEBHOOK_SECRET="s" * 16)
    client = app.test_client(use_cookies=False)
    log_in(client, "203.0.113.5")
    with app.app_context():
        payloads = [json.loads(row) for row in db.session.execute(select(
            models.db.metadata.tables["session_events"].c.payload)).scalars()]
        db.session.commit()
    created = [p for p in payloads if p["type"] == "session.created"]
    assert [(p["session"]["ip"], p["session"]["location"]) for p in created] == [("203.0.113.0", BERLIN)]


def test_the_openapi_document_describes_it(located):
    client = located().test_client(use_cookies=False)
    schema = client.get("/api/openapi.json").json["components"]["schemas"]
    assert list(schema["Session"]["properties"])[-1] == "location"
    assert {"$ref": "#/components/schemas/Location"} in schema["Session"]["properties"]["location"]["anyOf"]
    assert set(schema["Location"]["properties"]) == {"country", "countryCode", "city"}
    assert set(schema["Location"]["properties"]) == {"country", "countryCode", "city"}


@pytest.mark.parametrize("problem", ["missing", "folder", "not-a-database", "empty"])
def test_a_missing_or_unreadable_file_stops_the_start(make_app, tmp_path, problem):
    path = tmp_path / "GeoLite2-City.mmdb"
    if problem == "folder":
        path.mkdir()
    elif problem == "not-a-database":
        path.write_text("<html>a download page, not the file</html>\n" * 100)
    elif problem == "empty":
        path.write_bytes(b"")
    with pytest.raises(ConfigError) as refused:
        make_app(GEOIP_DATABASE=str(path))
    message = refused.value.message
    assert message.startswith("SESSIONS_GEOIP_DATABASE ") and str(path) in message and "\n" not in message


@pytest.mark.parametrize("overrides", [{"IP_MODE": "off"}, {"TOUCH_SECONDS": 0}])
def test_a_location_without_a_recorded_address_stops_the_start(make_app, geoip, overrides):
    with pytest.raises(ConfigError, match="SESSIONS_GEOIP_DATABASE needs the address recorded"):
        make_app(GEOIP_DATABASE=geoip, **overrides)


def test_the_command_line_says_it_in_one_line(tmp_path, database_url):
    env = {"PATH": "/usr/bin:/bin", "SESSIONS_DATABASE_URL": database_url,
           "SESSIONS_GEOIP_DATABASE": str(tmp_path / "absent.mmdb")}
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "--help"], check=False, cwd=ROOT,
                            env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        (f"Error: SESSIONS_GEOIP_DATABASE cannot be read as a MaxMind database: {tmp_path / 'absent.mmdb'}: "
         "No such file or directory")]
