"""The service's log lines (README, "Logs"): the access line escaped, and the app's own lines.

Granian formats its access line in Python (`logging`, `%`-style, one dict of atoms per request)
and copies header values into it as sent. A User-Agent holding `"` could then close its quoted
field and write a status, a time and a second quoted field of its own choosing. Here `\\` becomes
`\\\\`, `"` becomes `\\"`, and a control character `\\xHH` (Apache's escaping), in every text field, so
a line always splits into the same fields and reading `\\"` back gives what was sent.
"""

import logging
import re

from flask import Flask
from flask.logging import default_handler

_UNSAFE = re.compile(r'[\\"\x00-\x1f\x7f]')
_NAMED = {"\\": "\\\\", '"': '\\"'}


def escape(text: str) -> str:
    """`text` with backslash, double quote and control characters escaped."""
    return _UNSAFE.sub(lambda match: _NAMED.get(match[0]) or f"\\x{ord(match[0]):02x}", text)


class AccessLineFormatter(logging.Formatter):
    """A Formatter for Granian's access logger: escapes the atoms before they are formatted."""

    def format(self, record: logging.LogRecord) -> str:
        if isinstance(record.args, dict):
            record = logging.makeLogRecord(record.__dict__)  # the record stays as Granian made it
            record.args = {key: escape(value) if isinstance(value, str) else value
                           for key, value in record.args.items()}
        return super().format(record)


def configure_app_logs(app: Flask) -> None:
    """The app's own lines (the `app` logger and the `zipline_sessions.*` modules' loggers, such
    as webhook delivery) go to stderr through Flask's handler, `[time] LEVEL in module: message`,
    at SESSIONS_LOG_LEVEL. Security events have their own logger and JSON lines
    (security/security_log.py)."""
    level = app.config["LOG_LEVEL"].upper()
    app.logger.setLevel(level)
    package = logging.getLogger("zipline_sessions")
    if default_handler not in package.handlers:
        package.addHandler(default_handler)
    package.setLevel(level)
