"""How this service uses Flask: its app class, its answers (bodies in one piece, JSON by
orjson) and its routing rule.

Granian sends a WSGI body that is a list in one step from Rust (`response_bytes`); any other
iterable it drives item by item through Python (`response_iter`). Werkzeug wraps every body in a
ClosingIterator, so every answer took the slow path: a constant Flask view served 1.5x more
requests per second behind Granian once its body came back as a list (README, "Benchmark").
JSON bodies are orjson's: keys in the order given, UTF-8 as is, compact, the same bytes Zipline's
own server sends (JSON.stringify), several times faster than the standard library's encoder.
"""

from functools import lru_cache

import orjson
from flask import Flask, Response, request_tearing_down
from flask.globals import request_ctx
from flask.json.provider import JSONProvider
from werkzeug.routing import MapAdapter
from werkzeug.routing import Rule as WerkzeugRule


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
# How many functions SessionsApp.ensure_sync remembers: every view and hook, with room to spare.
SYNCED_FUNCTIONS = 256
# How many bindings to a host SessionsApp.create_url_adapter keeps.
BOUND_HOSTS = 64


class OrjsonProvider(JSONProvider):
    mimetype = "application/json"

    def dumps(self, obj, **kwargs) -> str:
        return orjson.dumps(obj).decode()

    def loads(self, s, **kwargs):
        return orjson.loads(s)

    def response(self, *args, **kwargs):
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(orjson.dumps(obj) + b"\n", content_type=self.mimetype)


class Rule(WerkzeugRule):
    """werkzeug's Rule, which may refuse the HEAD it adds to every GET route (`head=False`):
    a HEAD of logout would log out, since HEAD runs the GET view."""

    def __init__(self, string: str, *, head: bool = True, **options):
        super().__init__(string, **options)
        if not head and self.methods is not None:
            self.methods.discard("HEAD")


class SessionsApp(Flask):
    """Flask for this service: every answer is no-store, every view a plain function, no
    static files; answers are WholeBodyResponse with orjson bodies, and routes may refuse HEAD
    (Rule)."""

    response_class = WholeBodyResponse
    json_provider_class = OrjsonProvider
    url_rule_class = Rule

    def __init__(self, import_name: str):
        super().__init__(import_name, static_folder=None, instance_relative_config=True)
        # Flask inspects each view, hook and teardown on every request (a microsecond each on
        # the GET path). Bounded: after_this_request gets a new closure per request.
        self._synced = lru_cache(maxsize=SYNCED_FUNCTIONS)(super().ensure_sync)
        # create_url_adapter's, by what werkzeug's Map.bind_to_environ reads of the environ
        self._bindings: dict = {}

    def ensure_sync(self, func):
        """Flask's, remembered for the most recently used functions."""
        return self._synced(func)

    def create_url_adapter(self, request):
        """Flask's, with werkzeug's binding to the request's host done once per host rather than
        on every request (it reads the Host header twice and runs the IDNA codec: about 4 us of
        a GET's ~120 in-process). The adapter Flask makes for the first request of a host, scheme
        and script root is copied for each request with its own path, method and query string.
        Flask's own code binds every request when SERVER_NAME, TRUSTED_HOSTS, host or subdomain
        matching are set, and for a host it refuses (werkzeug's BadHost)."""
        if (request is None or self.config["SERVER_NAME"] is not None or self.config["TRUSTED_HOSTS"] is not None
                or self.url_map.host_matching or self.subdomain_matching):
            return super().create_url_adapter(request)
        environ = request.environ
        get = environ.get
        key = (get("HTTP_HOST"), get("SERVER_NAME"), get("SERVER_PORT"), get("wsgi.url_scheme"), get("SCRIPT_NAME"),
               get("HTTP_CONNECTION"), get("HTTP_UPGRADE"))
        bound = self._bindings.get(key)
        if bound is None:
            bound = super().create_url_adapter(request)
            if len(self._bindings) >= BOUND_HOSTS:
                self._bindings.clear()  # Host headers are the client's to choose: kept bounded
            self._bindings[key] = bound
        # request.host, which Flask sets here to check TRUSTED_HOSTS, is left to werkzeug to
        # work out if something asks for it: with no trusted hosts it is the same value.
        adapter = object.__new__(MapAdapter)
        adapter.__dict__.update(bound.__dict__)
        path = environ.get("PATH_INFO")
        adapter.path_info = "/" if path is None else path.encode("latin1").decode(errors="replace")
        adapter.default_method = environ["REQUEST_METHOD"]
        adapter.query_args = environ.get("QUERY_STRING", "")
        return adapter

    def preprocess_request(self):
        """Flask's, when something is registered to run before requests (test control's hooks);
        with nothing registered, nothing to look up per blueprint on every request."""
        if self.before_request_funcs or self.url_value_preprocessors:
            return super().preprocess_request()
        return None

    def process_response(self, response):
        """Nothing this service answers is for a cache to keep: session lists, logins, cookies,
        tokens, verify's answers (a revocation denies the very next request), errors.

        Then Flask's, which looks up after_request functions per blueprint; with none registered
        (the production app without CORS), only the request's own (after_this_request) run, and
        there is no Flask session to save (this service keeps none)."""
        response.headers["Cache-Control"] = "no-store"
        context = request_ctx._get_current_object()
        if self.after_request_funcs or not self.session_interface.is_null_session(context._session):
            return super().process_response(response)
        for func in context._after_request_functions:
            response = self.ensure_sync(func)(response)
        return response

    def do_teardown_request(self, exc=None):
        """Flask's when a teardown_request function is registered; otherwise only its signal
        (RequestContext.pop always passes `exc`)."""
        if self.teardown_request_funcs:
            return super().do_teardown_request(exc)
        request_tearing_down.send(self, _async_wrapper=self.ensure_sync, exc=exc)
        return None
