"""Schemathesis drives the running server from its own OpenAPI document.

Every operation gets generated requests (valid and invalid), a bounded number of examples
each, in all phases (examples, coverage, fuzzing, stateful): every response must be no
server error and must match the document (status, content type, headers, body schema).
Requests carry a seeded user's token and cookie (tests/schemathesis.toml), or leave them out;
that user is an admin here, so the admin routes are fuzzed past their 403. A token reset would
make that token worthless for the rest of the run, and a password change needs a live cookie
(the first run revokes and logs out alice's): both are fuzzed in a second run, as a user of
their own (tests/schemathesis-account.toml), after the first.
Run through the `st` command line: its pytest plugin does not load under pytest 9.
"""

import copy
import re
import subprocess
import sys
from pathlib import Path

from conftest import SEED
from live_server import LiveServer

EXAMPLES_PER_OPERATION = 50
CONFIG = Path(__file__).with_name("schemathesis.toml")  # alice's token and cookie
ACCOUNT_CONFIG = Path(__file__).with_name("schemathesis-account.toml")  # fuzz's token and cookie
ACCOUNT_OPERATIONS = ("resetToken", "updateUser")  # PATCH /api/user/token, PATCH /api/user
FUZZ_USER = {"username": "fuzz", "token": "tok-fuzz", "sessions": [{"id": "sess_fuzz", "token": "cookie-fuzz"}]}


def test_every_operation_conforms_to_the_document(tmp_path, database_url):
    seed = copy.deepcopy(SEED)
    seed["users"][0]["admin"] = True  # alice
    seed["users"].append(FUZZ_USER)
    server = LiveServer(tmp_path, database_url, seed, workers=2).start()
    try:
        everything_else = fuzz(server, CONFIG, *select("--exclude-operation-id"))
        account = fuzz(server, ACCOUNT_CONFIG, *select("--include-operation-id"))
    finally:
        server.stop()
    for result, least in ((everything_else, 300), (account, 60)):
        assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
        assert "No issues found" in result.stdout, result.stdout[-3000:]
        generated = int(re.search(r"(\d+) generated", result.stdout).group(1))
        assert generated >= least, result.stdout[-3000:]  # it really sent requests


def select(option: str) -> list[str]:
    return [word for operation in ACCOUNT_OPERATIONS for word in (option, operation)]


def fuzz(server: LiveServer, config: Path, *selection: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "st"), "--config-file", str(config),
         "run", f"{server.base_url}/api/openapi.json", *selection,
         # One worker: with two, hypothesis describes lambdas (ast.parse) from two threads at
         # once and CPython 3.11 fails inside ast ("AST constructor recursion depth mismatch").
         "--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", "20261126", "--workers", "1",
         # A well-formed body may still name no such session, or carry a wrong password:
         # the contract answers those with 400 and 401, so "positive data" may be refused.
         "--exclude-checks", "positive_data_acceptance",
         "--request-timeout", "30", "--warnings", "off", "--no-color"],
        capture_output=True, text=True, timeout=600, check=False,
    )
