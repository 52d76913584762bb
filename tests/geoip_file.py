"""A small MaxMind-format database for the tests, written with mmdb-writer (GeoLite2-City's layout)."""

from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPSet

BERLIN = {"country": "Germany", "countryCode": "DE", "city": "Berlin"}
FRANCE = {"country": "France", "countryCode": "FR", "city": None}  # a network the file knows no city of
# Where each test network is; 198.51.100.0/24 and other addresses are in no network of the file.
NETWORKS = {
    "203.0.113.0/24": {"country": {"iso_code": "DE", "names": {"en": "Germany", "de": "Deutschland"}},
                       "city": {"names": {"en": "Berlin", "de": "Berlin"}}},
    "2001:db8:1::/48": {"country": {"iso_code": "FR", "names": {"en": "France"}}},
    # DB-IP Lite and GeoLite2 may give only the registered country of a network.
    "192.0.2.0/24": {"registered_country": {"iso_code": "FR", "names": {"en": "France"}}},
}


def write_geoip_database(path: Path) -> Path:
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City", languages=["en", "de"],
                        description="zipline-sessions tests")
    for network, record in NETWORKS.items():
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return path
