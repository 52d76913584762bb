"""The contract's checks, run over HTTP against any server: this one, a real Zipline, a mock.

Standard library only, so that it runs anywhere (`python contract_check.py URL --token T`);
`flask --app app check` wires the same function. Nothing is revoked unless allow_writes.
"""

import argparse
import http.client
import json
import re
import secrets
import sys
import urllib.parse
from dataclasses import dataclass

PATH = "/api/user/sessions"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
SESSION_FIELDS = ("id", "createdAt", "ua", "client", "device")
CURRENT_NOT_DELETABLE = "Cannot delete current session, use log out instead."
NOT_FOUND = "Session not found in logged in sessions"
INVALID_SESSION = "Invalid login session"
ZIPLINE_CODES = {CURRENT_NOT_DELETABLE: 1021, NOT_FOUND: 1031, INVALID_SESSION: 2000}
PROFILES = ("contract", "zipline-v4")


class CheckFailed(Exception):
    """A difference from the contract, said in a few words."""


@dataclass
class Result:
    check: str
    outcome: str  # PASS, FAIL or SKIP
    detail: str = ""


@dataclass
class Reply:
    status: int
    content_type: str
    body: object


class Target:
    """The server under check, and the caller's credentials."""

    def __init__(self, base_url: str, token: str, cookie: str | None, profile: str):
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.url, self.token, self.profile = url, token, profile
        # A bare value is the contract's zipline_token cookie; name=value names its own.
        self.cookie = cookie if cookie is None or "=" in cookie else f"zipline_token={cookie}"

    def request(self, method: str, body=None, credentials: bool = True) -> Reply:
        connection_class = http.client.HTTPSConnection if self.url.scheme == "https" else http.client.HTTPConnection
        connection = connection_class(self.url.hostname, self.url.port, timeout=30)
        headers = {"Accept": "application/json", "User-Agent": "zipline-sessions-check"}
        if credentials:
            headers["Authorization"] = self.token
            if self.cookie:
                headers["Cookie"] = self.cookie
        payload = None if body is None else json.dumps(body)
        if payload is not None:
            headers["Content-Type"] = "application/json"
        try:
            connection.request(method, self.url.path.rstrip("/") + PATH, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw[:80].decode("utf-8", "replace")
        return Reply(response.status, response.getheader("Content-Type") or "", parsed)


def check_session_list(reply: Reply) -> dict:
    """A 200 whose body is {"current": Session or null, "other": [Session, ...]}."""
    expect(reply.status == 200, f"status {reply.status}, body {reply.body!r}")
    expect_json(reply)
    body = reply.body
    expect(isinstance(body, dict) and set(body) == {"current", "other"}, f"not {{current, other}}: {body!r}")
    expect(isinstance(body["other"], list), f"other is not an array: {body['other']!r}")
    for session in ([body["current"]] if body["current"] is not None else []) + body["other"]:
        check_session(session)
    return body


def check_session(session) -> None:
    expect(isinstance(session, dict) and tuple(sorted(session)) == tuple(sorted(SESSION_FIELDS)),
           f"a session's fields are not {', '.join(SESSION_FIELDS)}: {session!r}")
    for field in SESSION_FIELDS:
        expect(isinstance(session[field], str), f"{field} is not a string: {session[field]!r}")
    expect(TIMESTAMP.match(session["createdAt"]),
           f"createdAt is not ISO 8601 UTC with milliseconds: {session['createdAt']!r}")


def check_error(reply: Reply, status: int, message: str | None, profile: str) -> None:
    """An error of `status` in the profile's shape, with `message` when one is given."""
    expect(reply.status == status, f"status {reply.status}, not {status}: {reply.body!r}")
    expect_json(reply)
    body = reply.body
    if profile == "zipline-v4":
        expect(isinstance(body, dict) and list(body)[:3] == ["error", "code", "statusCode"],
               f"not {{error, code, statusCode}}: {body!r}")
        expect(isinstance(body["code"], int) and body["statusCode"] == status,
               f"code or statusCode wrong: {body!r}")
        expect(isinstance(body["error"], str) and body["error"].startswith(f"E{body['code']}: "),
               f"error is not 'E<code>: <message>': {body['error']!r}")
        if message is not None:
            expected = f"E{ZIPLINE_CODES[message]}: {message}"
            expect(body["error"] == expected, f"error {body['error']!r}, not {expected!r}")
        return
    expect(isinstance(body, dict) and set(body) == {"statusCode", "error", "message"},
           f"not {{statusCode, error, message}}: {body!r}")
    expect(body["statusCode"] == status and isinstance(body["error"], str) and isinstance(body["message"], str),
           f"statusCode, error or message of the wrong type or value: {body!r}")
    if message is not None:
        expect(body["message"] == message, f"message {body['message']!r}, not {message!r}")


def expect_json(reply: Reply) -> None:
    expect(reply.content_type.split(";")[0].strip() == "application/json",
           f"Content-Type {reply.content_type!r}, not application/json")


def expect(condition, detail: str) -> None:
    if not condition:
        raise CheckFailed(detail)


def run_checks(base_url: str, token: str, cookie: str | None = None, allow_writes: bool = False,
               profile: str = "contract") -> list[Result]:
    """Every check against the server at base_url, in order; a failed one does not stop the rest."""
    target = Target(base_url, token, cookie, profile)
    results: list[Result] = []
    state: dict = {}

    def run(name: str, check, skip: str | None = None) -> None:
        if skip:
            results.append(Result(name, "SKIP", skip))
            return
        try:
            results.append(Result(name, "PASS", check() or ""))
        except CheckFailed as failure:
            results.append(Result(name, "FAIL", str(failure)))
        except OSError as error:
            results.append(Result(name, "FAIL", f"no answer: {error}"))

    def listing():
        state["before"] = check_session_list(target.request("GET"))
        if cookie:
            expect(state["before"]["current"] is not None, "the cookie's session is not current")
        return f"current {'set' if state['before']['current'] else 'null'}, {len(state['before']['other'])} other"

    def no_credentials():
        check_error(target.request("GET", credentials=False), 401, INVALID_SESSION, profile)

    def current_not_deletable():
        check_error(target.request("DELETE", {"sessionId": state["before"]["current"]["id"]}), 400,
                    CURRENT_NOT_DELETABLE, profile)

    def unknown_session():
        check_error(target.request("DELETE", {"sessionId": f"sess_check_{secrets.token_hex(8)}"}), 400,
                    NOT_FOUND, profile)

    def neither():
        check_error(target.request("DELETE", {}), 400, None, profile)

    def unchanged():
        after = check_session_list(target.request("GET"))
        expect(after == state["before"], "the session list changed during the read-only checks")

    def revoke_other():
        victim = state["before"]["other"][0]["id"]
        body = check_session_list(target.request("DELETE", {"sessionId": victim}))
        expect(victim not in [session["id"] for session in body["other"]], f"{victim} is still in the answer")
        again = check_session_list(target.request("GET"))
        expect(victim not in [session["id"] for session in again["other"]], f"{victim} is still listed")
        return f"revoked {victim}"

    run("GET with credentials: 200, {current, other}, Session fields", listing)
    listed = "before" in state
    run("GET without credentials: 401 Invalid login session", no_credentials)
    run("DELETE the current session: 400, refused", current_not_deletable,
        skip=None if listed and state["before"]["current"] else "needs --cookie naming a live session")
    run("DELETE an unknown sessionId: 400 Session not found", unknown_session)
    run("DELETE with neither sessionId nor all: 400", neither)
    run("nothing was revoked by the checks above", unchanged, skip=None if listed else "no list to compare")
    run("DELETE one other session (--allow-writes)", revoke_other,
        skip="not asked (--allow-writes)" if not allow_writes
        else None if listed and state["before"]["other"] else "no other session to revoke")
    return results


def format_table(results: list[Result]) -> str:
    width = max(len(result.check) for result in results)
    lines = [f"{'check'.ljust(width)}  result  detail", f"{'-' * width}  ------  ------"]
    lines += [f"{r.check.ljust(width)}  {r.outcome.ljust(6)}  {r.detail}".rstrip() for r in results]
    counts = {outcome: sum(r.outcome == outcome for r in results) for outcome in ("PASS", "FAIL", "SKIP")}
    lines.append(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--token", required=True)
    parser.add_argument("--cookie")
    parser.add_argument("--allow-writes", action="store_true")
    parser.add_argument("--profile", choices=PROFILES, default="contract")
    args = parser.parse_args(argv)
    results = run_checks(args.url, args.token, args.cookie, args.allow_writes, args.profile)
    print(format_table(results))
    return 1 if any(result.outcome == "FAIL" for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
