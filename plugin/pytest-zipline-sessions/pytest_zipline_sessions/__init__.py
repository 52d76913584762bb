"""pytest-zipline-sessions: zipline-sessions run for a test session (fixtures in plugin.py)."""

from pytest_zipline_sessions.service import ServiceSession, StartError, ZiplineSessions

__all__ = ["ServiceSession", "StartError", "ZiplineSessions"]
