""""Your devices" as the page shows it: this browser's session first, then the others, most
recently used first, each with its times as wire text and as text for a person (UTC)."""

from typing import NamedTuple

from sqlalchemy import bindparam, select

from models import User
from zipline_sessions.auth.caller import Caller
from zipline_sessions.storage.reader import read_tuples
from zipline_sessions.storage.timestamps import parse_date

# The page's one read beside the caller's: the username, on the request path's reader.
_USERNAME = select(User.username).where(User.id == bindparam("user_id"))


class Device(NamedTuple):
    """A session's row as the caller's rows hold it (wire order, then its activity), and whether
    it is this browser's."""

    id: str
    signed_in: str  # wire timestamp (UTC, milliseconds, Z)
    ua: str
    client: str
    device: str
    last_active: str | None  # wire timestamp, or None where activity is not recorded
    address: str | None
    current: bool


def listing(caller: Caller) -> dict:
    """The page's context: the username and the devices in the page's order."""
    found = [Device(*row[:7], current=row[0] == caller.session_id) for row in caller.sessions]
    # Most recently used first: the last activity, or the sign-in where none is recorded
    # (wire timestamps sort as text).
    found.sort(key=lambda d: (d.current, d.last_active or d.signed_in, d.signed_in, d.id), reverse=True)
    found_user = read_tuples(_USERNAME, {"user_id": caller.user_id})
    return {"username": found_user[0][0] if found_user else "", "devices": found, "others": len(found) - 1}


def readable(wire: str) -> str:
    """A wire timestamp as a person reads it without a script: `15 Mar 2024, 10:30 UTC`."""
    moment = parse_date(wire)
    return f"{moment.day} {moment:%b %Y, %H:%M} UTC" if moment else wire


def signed_out_message(count: int) -> str:
    return f"Signed out {count} other session{'' if count == 1 else 's'}."
