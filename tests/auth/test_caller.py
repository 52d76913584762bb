"""auth/caller.py's own pieces: the session cookie reads as the request's own cookie parser reads it."""

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from zipline_sessions.auth.caller import session_cookie

NAME = "zipline_token"
# Cookie headers built from the pieces that matter to a parser: separators, quotes, escapes,
# spaces and tabs, other cookies, our name, and text outside ASCII.
PIECES = st.sampled_from([NAME, "other", "=", ";", "; ", " ", "\t", '"', "\\", "abc", "tok-1", "é", ",", "==", ""])
HEADERS = st.lists(PIECES, max_size=12).map("".join)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=HEADERS)
@example(header='zipline_token="tok-1"')
@example(header='zipline_token="a\\"b"; other=1')
@example(header="zipline_token = tok-1")
@example(header="zipline_token=\ttok-1")
@example(header="a=1;zipline_token=é")
@example(header="zipline_token=; zipline_token=tok-1")
def test_the_session_cookie_is_what_werkzeug_parses(app, header):
    # As a WSGI server hands it over: the header's bytes decoded as latin-1.
    environ_value = header.encode().decode("latin-1")
    with app.test_request_context(environ_overrides={"HTTP_COOKIE": environ_value}) as context:
        assert session_cookie() == (context.request.cookies.get(NAME) or None)


def test_the_first_of_two_session_cookies_wins(app):
    with app.test_request_context(headers={"Cookie": "a=1; zipline_token=first; zipline_token=second"}):
        assert session_cookie() == "first"
    with app.test_request_context():
        assert session_cookie() is None
