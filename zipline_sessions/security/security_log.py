"""Security events as one JSON line each: logins, logouts, revocations, purges.

Fields are ids, names, addresses and client/device; never a token, hash or password.
"""

import json
import logging
import sys
from datetime import UTC, datetime

from flask import has_request_context, request

logger = logging.getLogger("zipline_sessions.security")


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "event": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        return json.dumps(line, ensure_ascii=False, default=str)


def configure() -> None:
    """Send security events to stderr (gunicorn's error log), once per process."""
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLineFormatter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def security_event(event: str, **fields) -> None:
    """Log `event` with `fields`, plus the client address when there is a request."""
    if has_request_context():
        fields.setdefault("address", request.remote_addr)
    logger.info(event, extra={"fields": fields})
