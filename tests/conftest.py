import json
from pathlib import Path

import pytest

import seed
from app import create_app
from database import db
from models import utcnow

WINDOWS_CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/122.0.0.0"
IPHONE_SAFARI = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Safari/604.1"

# The contract's two sessions belong to alice; bob and carol are there to be kept apart.
SEED = {
    "users": [
        {
            "username": "alice",
            "password": "wonderland",
            "token": "tok-alice",
            "sessions": [
                {"id": "sess_abc123", "token": "cookie-abc", "ua": WINDOWS_CHROME,
                 "createdAt": "2024-03-15T10:30:00.000Z", "expiresAt": "2099-01-01T00:00:00Z"},
                {"id": "sess_def456", "token": "cookie-def", "ua": IPHONE_SAFARI,
                 "createdAt": "2024-03-14T08:15:00.000Z", "expiresAt": "2099-01-01T00:00:00Z"},
                {"id": "sess_old", "token": "cookie-old", "ua": WINDOWS_CHROME,
                 "createdAt": "2024-01-01T00:00:00Z", "expiresAt": "2024-01-08T00:00:00Z"},
            ],
        },
        {
            "username": "bob",
            "token": "tok-bob",
            "sessions": [{"id": "sess_bob1", "token": "cookie-bob", "ua": "curl/8.5.0",
                          "createdAt": "2024-03-16T00:00:00Z", "expiresAt": "2099-01-01T00:00:00Z"}],
        },
    ]
}


@pytest.fixture
def app(tmp_path):
    """A fresh app on its own SQLite file, seeded with SEED; login not rate limited."""
    app = create_app({
        "TESTING": True,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'sessions.db'}",
        "LOGIN_RATE_LIMIT": "off",
    })
    with app.app_context():
        seed.store_seed(seed.parse_seed(SEED, app.config["TTL_SECONDS"], utcnow()))
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def client(app):
    # Cookies are sent explicitly, as curl and the contract do.
    return app.test_client(use_cookies=False)


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def cookie(token: str) -> dict:
    return {"Cookie": f"zipline_token={token}"}


def write_json(path: Path, document) -> Path:
    path.write_text(json.dumps(document))
    return path
