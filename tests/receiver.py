"""A webhook receiver on loopback for the events tests: records every delivery, fails the first
ones when asked, and checks signatures with the README's function."""

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_signature_check():
    """verify_signature, defined by running the README's Python block as written."""
    # The block that defines it: never across a fence (other Python blocks come before it).
    block = re.search(r"```python\n((?:(?!```).)*?def verify_signature.*?)```", README.read_text(),
                      re.DOTALL).group(1)
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the README block is what is tested
    return namespace["verify_signature"]


verify_signature = readme_signature_check()


class Receiver:
    def __init__(self, secret: str, port: int = 0, fail_first: int = 0, drip_seconds: float = 0):
        self.secret = secret
        self.fail_first = fail_first
        # > 0: a slow receiver, which sends its 2xx answer one byte every drip_seconds
        self.drip_seconds = drip_seconds
        self.cut_off = threading.Event()  # set when a client hung up on a dripped answer
        self.attempts = []  # (event id, status answered, signature valid, payload), in arrival order
        self.lock = threading.Lock()
        self.port = port
        self.server = None

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                valid = verify_signature(receiver.secret, self.headers.get("X-Zipline-Sessions-Signature", ""), body)
                with receiver.lock:
                    if not valid:
                        status = 401
                    elif receiver.fail_first > 0:
                        receiver.fail_first -= 1
                        status = 503
                    else:
                        status = 204
                    payload = json.loads(body)
                    receiver.attempts.append((self.headers["X-Zipline-Sessions-Event-Id"], status, valid, payload))
                if receiver.drip_seconds:
                    self.drip(b"HTTP/1.1 204 No Content\r\nX-Padding: " + b"." * 200 + b"\r\n\r\n")
                    return
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def drip(self, answer: bytes):
                try:
                    for byte in answer:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(receiver.drip_seconds)
                except OSError:
                    receiver.cut_off.set()
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/sessions"

    def accepted(self) -> list[dict]:
        """The payloads answered 2xx, in arrival order."""
        with self.lock:
            return [payload for _, status, _, payload in self.attempts if status == 204]
