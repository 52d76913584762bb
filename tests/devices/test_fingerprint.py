"""A device's fingerprint: client family, kind and network (/24, /48), hashed per user; the
migration's frozen copy agrees with the code."""

import importlib.util
from pathlib import Path

import pytest
from sqlalchemy import select, text

import models
from zipline_sessions.devices.fingerprint import fingerprint, network_of
from zipline_sessions.storage.database import db
from zipline_sessions.storage.schema import migrate

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "versions" / "0009_known_devices.py"


@pytest.mark.parametrize(("address", "network"), [
    ("203.0.113.77", "203.0.113.0/24"),
    ("203.0.113.0", "203.0.113.0/24"),  # as SESSIONS_IP_MODE=truncate stores it
    ("::ffff:203.0.113.9", "203.0.113.0/24"),  # IPv4-mapped: its IPv4 network
    ("2001:db8:1234:5678::9", "2001:db8:1234::/48"),
    ("[2001:db8:1234::1]", "2001:db8:1234::/48"),
    ("fe80::1%eth0", "fe80::/48"),
    ("", ""), (None, ""), ("unix:/run/app.sock", ""), ("203.0.113.256", ""),
])
def test_the_network_of_an_address(address, network):
    assert network_of(address) == network


def test_a_fingerprint_is_a_hash_of_all_four_parts_kept_apart():
    base = fingerprint(1, "Chrome", "Desktop", "203.0.113.0/24")
    assert len(base) == 64 and int(base, 16) >= 0
    others = {fingerprint(2, "Chrome", "Desktop", "203.0.113.0/24"), fingerprint(1, "Firefox", "Desktop", "203.0.113.0/24"),
              fingerprint(1, "Chrome", "Mobile", "203.0.113.0/24"), fingerprint(1, "Chrome", "Desktop", "198.51.100.0/24"),
              fingerprint(1, 'Chrome", "Desktop', "", "203.0.113.0/24")}  # a family that mimics the separator
    assert base not in others and len(others) == 5
    assert fingerprint(1, "Chrome", "Desktop", "203.0.113.0/24") == base
    assert fingerprint(1, "\ud800", "Unknown", "") != fingerprint(1, "\ufffd", "Unknown", "")  # no crash either


def test_the_migration_backfills_with_the_same_formula():
    spec = importlib.util.spec_from_file_location("migration_0008", MIGRATION)
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    for address in ("203.0.113.77", "203.0.113.0", "::ffff:203.0.113.9", "2001:db8:1234::", None, "x"):
        assert migration._network(address) == network_of(address)
        assert (migration._fingerprint(7, "Mobile Safari", "Mobile", migration._network(address))
                == fingerprint(7, "Mobile Safari", "Mobile", network_of(address)))


def test_the_upgrade_gives_existing_sessions_their_fingerprint(make_app):
    """Sessions from before 0008 get the fingerprint of their last recorded address (no address:
    their client and kind alone), so the next login from that device is not announced as new."""
    old = make_app(AUTO_MIGRATE=False)
    with old.app_context():
        migrate("0007")
        with db.engine.begin() as connection:
            connection.execute(text("INSERT INTO users (id, username, created_at) VALUES (1, 'olga', :at)"),
                               {"at": "2024-01-01 00:00:00.000000"})
            connection.execute(
                text("INSERT INTO sessions (id, token_hash, user_id, created_at, expires_at, ua, client, device, ip) "
                     "VALUES (:id, :id, 1, '2024-01-01 00:00:00.000000', '2099-01-01 00:00:00.000000', '', "
                     "'Chrome', 'Desktop', :ip)"),
                [{"id": f"sess_{n}", "ip": ip} for n, ip in enumerate(["203.0.113.77", "2001:db8:1::", None])])
    upgraded = make_app()
    with upgraded.app_context():
        stored = dict(db.session.execute(select(models.Session.c.id, models.Session.c.fingerprint)).all())
        db.session.commit()
    assert stored == {"sess_0": fingerprint(1, "Chrome", "Desktop", "203.0.113.0/24"),
                      "sess_1": fingerprint(1, "Chrome", "Desktop", "2001:db8:1::/48"),
                      "sess_2": fingerprint(1, "Chrome", "Desktop", "")}
