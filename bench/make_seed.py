"""Write a seed file of N users x K sessions.

python bench/make_seed.py USERS SESSIONS_PER_USER OUT.json [PASSWORD_USERS]
Tokens are predictable on purpose (tok-N, cookie-N-K, password-N) so a load generator can use
them. Only the first PASSWORD_USERS users (default 0) get a password: argon2id is slow by design.
"""

import json
import sys

AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/122.0.0.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
    "curl/8.5.0",
]


def main(users: int, per_user: int, out: str, password_users: int = 0) -> None:
    with open(out, "w") as handle:
        handle.write('{"users": [')
        for n in range(users):
            sessions = [
                {"id": f"sess_{n}_{k}", "token": f"cookie-{n}-{k}", "ua": AGENTS[(n + k) % len(AGENTS)],
                 "createdAt": f"2024-03-{1 + k % 28:02d}T10:{n % 60:02d}:00.000Z"}
                for k in range(per_user)
            ]
            entry = {"username": f"user{n}", "token": f"tok-{n}", "sessions": sessions}
            if n < password_users:
                entry["password"] = f"password-{n}"
            handle.write(("," if n else "") + json.dumps(entry))
        handle.write("]}")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 0)
