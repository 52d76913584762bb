"""User-Agent -> client and device."""

import pytest
from conftest import IPHONE_SAFARI, WINDOWS_CHROME

from zipline_sessions.devices.useragent import DEVICES, MAX_UA_LENGTH, clean_ua, describe

CASES = [
    (WINDOWS_CHROME, "Chrome", "Desktop"),
    (IPHONE_SAFARI, "Mobile Safari", "Mobile"),
    (("Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 "
     "Mobile/15E148 Safari/604.1"), "Mobile Safari", "Tablet"),
    (("Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 "
     "Safari/537.36"), "Chrome", "Tablet"),
    (("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 "
     "Mobile Safari/537.36"), "Chrome", "Mobile"),
    (("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.0 Safari/605.1.15"), "Safari", "Desktop"),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0", "Firefox", "Desktop"),
    ("Googlebot/2.1 (+http://www.google.com/bot.html)", "Googlebot", "Bot"),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "bingbot", "Bot"),
    ("curl/8.5.0", "curl", "Unknown"),
    ("", "Unknown", "Unknown"),
    ("zzz", "Unknown", "Unknown"),
]


@pytest.mark.parametrize(("ua", "client", "device"), CASES)
def test_describe(ua, client, device):
    assert describe(clean_ua(ua)) == (client, device)


@pytest.mark.parametrize("raw", ["x" * 100_000, "\ud800\udfff\ud800", "\x00\x01\x7f", "é" * 3000, "Mozilla/5.0 (" * 500])
def test_any_string_gives_a_bounded_ua_and_a_known_device(raw):
    ua = clean_ua(raw)
    assert len(ua) <= MAX_UA_LENGTH
    ua.encode("utf-8")
    assert "\x00" not in ua
    client, device = describe(ua)
    assert client and device in DEVICES


def test_clean_ua_of_a_missing_header_is_empty():
    assert clean_ua(None) == ""
