"""User-Agent header -> the stored ua, client and device of a session.

ua-parser (with PyYAML, which it imports) is imported on first use: under test control the
service starts without it, and a start with a seed file, or the first login, brings it in.
"""

from functools import lru_cache

MAX_UA_LENGTH = 1024
UNKNOWN = "Unknown"
DEVICES = ("Desktop", "Mobile", "Tablet", "Bot", UNKNOWN)

_DESKTOP_OS = {
    "Mac OS X", "macOS", "Linux", "Ubuntu", "Debian", "Fedora", "Red Hat", "SUSE",
    "Arch Linux", "Linux Mint", "Gentoo", "Chrome OS", "ChromeOS", "FreeBSD",
    "OpenBSD", "NetBSD", "Solaris", "Windows",
}
_MOBILE_OS = {
    "iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Firefox OS",
    "Symbian OS", "Tizen", "HarmonyOS", "webOS",
}
_MOBILE_DEVICES = {"iPhone", "iPod", "Generic Smartphone", "Generic Feature Phone"}


def clean_ua(header: str | None) -> str:
    """The ua as stored: bounded in length, and text every database accepts."""
    text = (header or "")[:MAX_UA_LENGTH]
    # Lone surrogates and NUL cannot be stored (PostgreSQL refuses both).
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


@lru_cache(maxsize=4096)
def describe(ua: str) -> tuple[str, str]:
    """The (client, device) of a cleaned ua; unknown parts are "Unknown"."""
    import ua_parser

    result = ua_parser.parse(ua)
    agent, os, device = result.user_agent, result.os, result.device
    client = agent.family if agent and agent.family != "Other" else UNKNOWN
    return client, _device_kind(ua, client, os.family if os else "", device)


def _device_kind(ua: str, client: str, os_family: str, device) -> str:
    family = device.family if device else ""
    brand = (device.brand or "") if device else ""
    lowered = ua.lower()
    if family == "Spider" or any(word in client.lower() for word in ("bot", "spider", "crawler")):
        return "Bot"
    if (
        family == "iPad"
        or brand == "Generic_Android_Tablet"
        or "tablet" in family.lower()
        or "kindle" in family.lower()
        or (os_family == "Android" and "mobile" not in lowered)
    ):
        return "Tablet"
    if family in _MOBILE_DEVICES or os_family in _MOBILE_OS or "mobile" in client.lower():
        return "Mobile"
    if os_family in _DESKTOP_OS or os_family.startswith("Windows") or family == "Mac":
        return "Desktop"
    return UNKNOWN


def warm_up() -> None:
    """Import ua-parser and build its matchers now rather than on the first login."""
    import ua_parser

    ua_parser.parse("Mozilla/5.0")
