"""pytest-zipline-sessions: zipline-sessions run for a test session (fixtures in plugin.py)."""

from pytest_zipline_sessions.service import StartError, ZiplineSessions

__all__ = ["ServiceSession", "StartError", "ZiplineSessions"]


def __getattr__(name: str):
    """ServiceSession, imported on first use (it brings in requests; see clients.py)."""
    if name == "ServiceSession":
        from pytest_zipline_sessions.clients import ServiceSession

        return ServiceSession
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
