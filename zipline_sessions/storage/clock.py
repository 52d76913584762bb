"""The service's clock: real time in UTC to the millisecond, unless test control holds it."""

from datetime import UTC, datetime

# Where "now" comes from when it is not the real clock: set by fixture/test_control.py when an app with
# SESSIONS_TEST_CONTROL is built (never otherwise); it answers None outside such an app.
clock_hook = None


def utcnow() -> datetime:
    """Now in UTC, naive (as stored), to the millisecond the wire format shows: the service's clock."""
    if clock_hook is not None and (now := clock_hook()) is not None:
        return now
    now = datetime.now(UTC)
    return now.replace(tzinfo=None, microsecond=now.microsecond // 1000 * 1000)
