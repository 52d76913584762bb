"""Is a request cross-site? Browsers say so (Sec-Fetch-Site, Origin); logout and the account changes listen."""

from urllib.parse import urlsplit

from flask import current_app, request
from werkzeug.exceptions import Forbidden

CROSS_SITE_REFUSED = "Cross-site {} refused"
DEFAULT_PORTS = {"http": 80, "https": 443}


def refuse_cross_site(what: str = "logout", message: str | None = None) -> None:
    """403 "Cross-site <what> refused" (or `message`) when the browser says another site sent
    this request.

    Refused: `Sec-Fetch-Site: cross-site`, or an `Origin` that is not the service's own;
    unless that Origin is one the operator allowed (SESSIONS_CORS_ORIGINS). A request with
    neither header (curl, scripts) is not a browser's cross-site request: allowed.
    """
    origin = request.headers.get("Origin")
    cross_site = request.headers.get("Sec-Fetch-Site", "").strip().lower() == "cross-site"
    if origin is None and not cross_site:
        return
    seen = normalise_origin(origin) if origin is not None else None
    if seen is not None and seen in {normalise_origin(o) for o in current_app.config["CORS_ORIGINS"]}:
        return
    if cross_site or seen is None or seen != own_origin():
        raise Forbidden(message or CROSS_SITE_REFUSED.format(what))


def own_origin() -> str | None:
    """The service's origin as browsers see it: SESSIONS_PUBLIC_ORIGIN, else the request's
    scheme (ProxyFix applied) and Host."""
    public = current_app.config["PUBLIC_ORIGIN"]
    return normalise_origin(public or f"{request.scheme}://{request.host}")


def normalise_origin(text: str) -> str | None:
    """scheme://host[:port], lower case, without a default port; None when `text` is not an
    origin (an opaque "null", a path, a bad port)."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if (scheme not in DEFAULT_PORTS or not host or parts.path not in ("", "/") or parts.query or parts.fragment
            or parts.username is not None):
        return None
    if ":" in host:  # IPv6: urlsplit took off the brackets
        host = f"[{host}]"
    return f"{scheme}://{host}" + ("" if port in (None, DEFAULT_PORTS[scheme]) else f":{port}")
