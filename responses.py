"""The app's Response class: bodies handed to the server as one piece.

Granian sends a WSGI body that is a list in one step from Rust (`response_bytes`); any other
iterable it drives item by item through Python (`response_iter`). Werkzeug wraps every body
in a ClosingIterator, so every answer took the slow path: a constant Flask view served 1.5x
more requests per second behind Granian once its body came back as a list (README, "Benchmark").
"""

from flask import Response


class WholeBodyResponse(Response):
    def get_app_iter(self, environ):
        """The body as the list of one bytes object it is, where werkzeug has nothing to add:
        a body to send (not HEAD, 1xx, 204 or 304) and nothing to call when it is closed."""
        body = self.response
        if (type(body) is list and len(body) == 1 and type(body[0]) is bytes and not self._on_close
                and environ["REQUEST_METHOD"] != "HEAD" and self.status_code not in _NO_BODY):
            return body
        return super().get_app_iter(environ)


_NO_BODY = frozenset((*range(100, 200), 204, 304))
