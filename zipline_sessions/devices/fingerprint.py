"""A login's device fingerprint: client family, device kind and network, hashed per user.

Two logins are the same device when the user, the client family (not its version), the device
kind and the network (an IPv4 /24, an IPv6 /48) are the same. Only the SHA-256 of those is
kept (devices/known.py), never the address or the User-Agent.
"""

import hashlib
import ipaddress
import json

# The network a device is known by: an IPv4 /24, an IPv6 /48 (as SESSIONS_IP_MODE=truncate keeps it).
NETWORK_PREFIX = {4: 24, 6: 48}
# A known device stays known this long after its session's last use.
KNOWN_FOR_DAYS = 90


def network_of(address: str | None) -> str:
    """The /24 or /48 an address is in ("203.0.113.0/24"); "" when there is none or it is not an
    IP address (a Unix socket's peer). An IPv4-mapped IPv6 address is its IPv4 one."""
    if not address:
        return ""
    try:
        parsed = ipaddress.ip_address(address.strip("[]").partition("%")[0])
    except ValueError:
        return ""
    if parsed.version == 6 and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return str(ipaddress.ip_network((parsed, NETWORK_PREFIX[parsed.version]), strict=False))


def fingerprint(user_id: int, client: str, device: str, network: str) -> str:
    """The hex SHA-256 of what makes a device: the user, client family, device kind, network.

    JSON keeps the parts apart, so no client name can pass for another part ("a", "b/c" and
    "a/b", "c" hash differently).
    """
    text = json.dumps([user_id, client, device, network], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
