"""Where an address is: country and city from a MaxMind-format file (GeoLite2, DB-IP Lite).

SESSIONS_GEOIP_DATABASE names the file; it is opened once at start (a missing or unreadable file
stops the start) and read through maxminddb's memory map, shared by the forked workers. A
lookup is made only when an address is recorded (a login, an activity write), never per request.
maxminddb is imported only when a file is named.
"""

import ipaddress
import os
from collections.abc import Callable

from flask import Flask

from zipline_sessions.config.checks import ConfigError

# The language of the names kept (both GeoLite2 and DB-IP Lite have English names).
LANGUAGE = "en"

Locator = Callable[[str | None], dict | None]


def open_locator(path: str | None) -> Locator:
    """A function from an address to its location ({"country", "countryCode", "city"}, or None:
    not in the file); with no file, one that always answers None."""
    if not path:
        return _nowhere
    import maxminddb

    if os.path.isdir(path):
        raise ConfigError(f"SESSIONS_GEOIP_DATABASE is a folder, not a MaxMind database file: {path}")
    try:
        reader = maxminddb.open_database(path)
        reader.get("127.0.0.1" if reader.metadata().ip_version == 4 else "::1")  # fails on a broken tree
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error) or type(error).__name__
        raise ConfigError(f"SESSIONS_GEOIP_DATABASE cannot be read as a MaxMind database: {path}: {reason}") from None
    return lambda address: locate(reader, address)


def init_location(app: Flask) -> None:
    app.extensions["locate"] = open_locator(app.config["GEOIP_DATABASE"])


def locate(reader, address: str | None) -> dict | None:
    """The location `reader` gives `address`; None when the file has no country for it."""
    if not address:
        return None
    try:
        parsed = ipaddress.ip_address(address.strip("[]").partition("%")[0])
        if parsed.version == 6 and parsed.ipv4_mapped is not None:
            parsed = parsed.ipv4_mapped  # not every file maps ::ffff:0:0/96 onto its IPv4 networks
        record = reader.get(parsed)
    except ValueError:  # not an IP address, or an IPv6 one in an IPv4-only file
        return None
    if not isinstance(record, dict):
        return None
    country = record.get("country") or record.get("registered_country")
    if not isinstance(country, dict) or not country.get("iso_code"):
        return None
    return {"country": _name(country) or country["iso_code"], "countryCode": country["iso_code"],
            "city": _name(record.get("city"))}


def _name(place) -> str | None:
    names = place.get("names") if isinstance(place, dict) else None
    name = names.get(LANGUAGE) if isinstance(names, dict) else None
    return name if isinstance(name, str) and name else None


def _nowhere(address: str | None) -> None:
    return None
