"""Where a browser goes after signing in: `rd`, when it is safe, else "Your devices".

Safe is a path on this origin, or a URL on an origin of SESSIONS_REDIRECT_ORIGINS (a file host
on a sibling subdomain). Anything a browser could read as another host is not: `//host`,
`/\\host`, a scheme (`javascript:`, `https://other`), user info (`https://ok@evil`), control
characters (browsers drop tab and newline, so `/\\t/evil` is `//evil` to them), and the same
again once percent-decoding has been undone, in case something on the way decodes it.
"""

from urllib.parse import quote, unquote, urlsplit

from flask import current_app

from zipline_sessions.security.crosssite import normalise_origin, own_origin

HOME = "/auth/sessions"
MAX_LENGTH = 4096
# Characters that stay as they are in a Location header (printable ASCII, '%' included so that
# escapes are kept); anything else (a space, non-ASCII) is percent-encoded as UTF-8.
LOCATION_SAFE = "!#$%&'()*+,-./:;=?@[]^_`{|}~"


def safe_redirect(rd: str | None) -> str:
    """`rd` when a browser may be sent there after signing in, else HOME."""
    if not rd or len(rd) > MAX_LENGTH or _unsafe(rd):
        return HOME
    decoded = rd
    for _ in range(3):  # %252F%252F... is undone in as many steps as it was done
        decoded, previous = unquote(decoded), decoded
        if decoded == previous:
            break
        if _unsafe(decoded):
            return HOME
    if rd.startswith("/"):
        return quote(rd, safe=LOCATION_SAFE)
    return quote(rd, safe=LOCATION_SAFE) if _allowed_origin(rd) else HOME


def _unsafe(text: str) -> bool:
    return (text.startswith("//") or "\\" in text
            or any(ord(c) < 0x21 and c != " " or ord(c) == 0x7F for c in text))


def _allowed_origin(url: str) -> bool:
    """An absolute http(s) URL on this origin or on one of SESSIONS_REDIRECT_ORIGINS."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return False
    origin = normalise_origin(f"{parts.scheme}://{parts.netloc}")
    if origin is None:  # user info, a bad port
        return False
    allowed = {normalise_origin(o) for o in current_app.config["REDIRECT_ORIGINS"]}
    return origin in allowed or origin == own_origin()


def login_url(original_uri: str | None) -> str:
    """The sign-in page, to come back to `original_uri` (what the proxy says the browser asked
    for) when that is a safe path: percent-encoded whole, so `?`, `&` and `#` survive."""
    target = safe_redirect(original_uri)
    if target == HOME or not target.startswith("/"):
        return "/auth/login"
    return "/auth/login?rd=" + quote(target, safe="/")
