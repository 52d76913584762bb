"""Flask commands: seed, create-user, set-admin, set-password, revoke-token, list-sessions, revoke,
purge-expired, events, db-upgrade, backup, check."""

import json

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import BadRequest

import models
from schemas import ActivitySessionSchema, storable_text_problem
from zipline_sessions.activity import events
from zipline_sessions.auth import accounts, reads, sessions
from zipline_sessions.devices import known
from zipline_sessions.fixture import contract_check, seed_file, seeding
from zipline_sessions.security import credentials
from zipline_sessions.security.security_log import security_event
from zipline_sessions.sidecar import account
from zipline_sessions.storage import clock
from zipline_sessions.storage.backup import BackupError, backup_sqlite
from zipline_sessions.storage.database import db, write_transaction
from zipline_sessions.storage.schema import migrate
from zipline_sessions.storage.timestamps import format_timestamp

session_schema = ActivitySessionSchema()
# purge-expired deletes in transactions of this many sessions: none holds the write lock long.
PURGE_CHUNK = 10_000


class StorableText(click.ParamType):
    """An argument that is stored or looked up as text: refused alike on every database when it
    is empty, too long, or holds what PostgreSQL cannot store (NUL, or undecodable bytes, which
    Python hands over as lone surrogates)."""

    name = "text"

    def __init__(self, max_length: int, secret: bool = False, allow_empty: bool = False):
        self.max_length, self.secret, self.allow_empty = max_length, secret, allow_empty

    def convert(self, value, param, ctx):
        shown = "" if self.secret else f"{value!r} "
        if not value:
            if self.allow_empty:
                return value
            self.fail("must not be empty", param, ctx)
        if len(value) > self.max_length:
            self.fail(f"{shown}is longer than {self.max_length} characters", param, ctx)
        problem = storable_text_problem(value)
        if problem is not None:
            self.fail(f"{shown}{problem[0].lower()}{problem[1:-1]}", param, ctx)
        return value


USERNAME = StorableText(255)
SESSION_ID = StorableText(255)


def register(app: Flask) -> None:
    for command in (seed_command, create_user, set_admin, set_password, revoke_token, list_sessions, revoke,
                    purge_expired, events_command, db_upgrade, backup, check):
        app.cli.add_command(command)


@click.command("seed")
@with_appcontext
@click.argument("path", type=click.Path(dir_okay=False))
def seed_command(path):
    """Load users, tokens and sessions from a JSON seed file (all or nothing)."""
    try:
        config = current_app.config
        users = seed_file.parse_seed(seed_file.read_seed_file(path), config["TTL_SECONDS"], clock.utcnow(),
                                max_per_user=config["MAX_PER_USER"])
        user_count, session_count = seeding.store_seed(users)
    except seed_file.SeedError as error:
        raise click.ClickException(f"seed file refused, nothing stored: {error}") from None
    click.echo(f"Seeded {user_count} users and {session_count} sessions.")


@click.command("create-user")
@with_appcontext
@click.argument("username", type=USERNAME)
@click.option("--password", type=StorableText(1024, secret=True, allow_empty=True), is_flag=False, flag_value="",
              default=None, prompt=True, prompt_required=False, hide_input=True, confirmation_prompt=True,
              help="Give a password (asked for when no value follows) so the user can log in.")
@click.option("--admin", "is_admin", is_flag=True, help="Make the user an admin (lists and revokes anyone's sessions).")
def create_user(username, password, is_admin):
    """Create a user and print their new API token (shown this once only)."""
    taken = click.ClickException(f"a user named {username!r} already exists")
    # Hashed before the transaction: the write lock is not held while argon2id runs.
    password_hash = credentials.hash_password(password) if password else None
    try:
        with write_transaction():
            if accounts.find_user_by_name(username) is not None:
                raise taken
            user, token = accounts.create_user(username, password_hash, is_admin=is_admin)
    except IntegrityError:  # another create-user of this name committed first (PostgreSQL)
        raise taken from None
    if is_admin:
        security_event("admin.granted", user=username, userId=user.id, address="cli")
    click.echo(f"Created {'admin' if is_admin else 'user'} {username!r} (id {user.id}).")
    click.echo(f"API token (shown once, store it now): {token}")


@click.command("set-admin")
@with_appcontext
@click.argument("username")
@click.option("--revoke", "withdraw", is_flag=True, help="Withdraw the admin right instead.")
def set_admin(username, withdraw):
    """Make a user an admin, or with --revoke an ordinary user again."""
    user = _user(username)
    with write_transaction():
        accounts.set_admin(user.id, not withdraw)
    security_event("admin.withdrawn" if withdraw else "admin.granted", user=username, userId=user.id,
                   address="cli")
    click.echo(f"{username!r} is {'no longer' if withdraw else 'now'} an admin.")


@click.command("set-password")
@with_appcontext
@click.argument("username", type=USERNAME)
@click.option("--password", prompt="New password", hide_input=True, confirmation_prompt=True,
              help="The new password (asked for, twice, when not given).")
@click.option("--keep-sessions", is_flag=True, help="Do not end the user's sessions.")
@click.option("--keep-token", is_flag=True, help="Do not revoke the user's API token.")
def set_password(username, password, keep_sessions, keep_token):
    """Set a user's password, end every session of theirs and revoke their API token (a leaked
    password: everyone out), unless told to keep them."""
    user = _user(username)
    try:
        revoked, token_revoked = account.set_password(user, password, keep_sessions, keep_token)
    except BadRequest as error:
        raise click.ClickException(f"password refused, nothing changed: {error.description}") from None
    token = "revoked the API token" if token_revoked else "kept the API token" if keep_token else "no API token"
    click.echo(f"Password of {username!r} set; ended {len(revoked)} session(s); {token}.")


@click.command("revoke-token")
@with_appcontext
@click.argument("username", type=USERNAME)
def revoke_token(username):
    """Revoke a user's API token: refused from the next request on; a new one only by PATCH
    /api/user/token with a session cookie."""
    if account.revoke_token(_user(username)):
        click.echo(f"Revoked the API token of {username!r}.")
    else:
        click.echo(f"{username!r} has no API token; nothing to revoke.")


@click.command("list-sessions")
@with_appcontext
@click.argument("username", type=USERNAME)
@click.option("--json", "as_json", is_flag=True, help="Print the sessions as a JSON array.")
def list_sessions(username, as_json):
    """List a user's live sessions, oldest first, with when and from where each was last used."""
    rows = reads.list_sessions(_user(username).id, fields=True)
    if as_json:
        click.echo(json.dumps(session_schema.dump(rows, many=True), ensure_ascii=False))
        return
    for row in session_schema.dump(rows, many=True):
        click.echo("\t".join((row["id"], row["createdAt"], row["lastSeenAt"] or "-", row["ip"] or "-",
                              row["client"], row["device"], row["ua"])))


@click.command("revoke")
@with_appcontext
@click.argument("username", type=USERNAME)
@click.argument("session_id", type=SESSION_ID, required=False)
@click.option("--all", "revoke_all", is_flag=True, help="Revoke every session of the user.")
def revoke(username, session_id, revoke_all):
    """Revoke one session of a user by id, or all of them with --all."""
    if bool(session_id) == revoke_all:
        raise click.UsageError("give either a SESSION_ID or --all")
    user = _user(username)
    try:
        with write_transaction():
            accounts.lock_user(user.id)
            revoked = sessions.revoke_locked(user.id, user.username, None if revoke_all else session_id, keep=None,
                                             reason="operator")
    except BadRequest:
        raise click.ClickException(f"{username!r} has no live session {session_id!r}") from None
    security_event("sessions.revoked", user=username, userId=user.id, bySession=None, revoked=revoked,
                   address="cli")
    click.echo(f"Revoked {len(revoked)} session(s) of {username!r}.")


@click.command("purge-expired")
@with_appcontext
def purge_expired():
    """Delete every expired session."""
    count = 0
    while True:
        with write_transaction():
            purged = len(sessions.purge_expired(PURGE_CHUNK))
        count += purged
        if purged < PURGE_CHUNK:
            break
    while True:  # the known devices unused for 90 days, beyond those purged beside the sessions
        with write_transaction():
            if known.purge_stale(PURGE_CHUNK) < PURGE_CHUNK:
                break
    security_event("sessions.purged", count=count, address="cli")
    click.echo(f"Purged {count} expired session(s).")


@click.command("events")
@with_appcontext
@click.option("--failed", is_flag=True, help="List the events given up on (dead), oldest first.")
@click.option("--retry", is_flag=True, help="Requeue every dead event for delivery now.")
def events_command(failed, retry):
    """Webhook events: how many are owed and dead; --failed lists the dead, --retry requeues them."""
    if failed:
        for event in events.dead_events():
            click.echo("\t".join((event.event_id, event.type, str(event.user_id), format_timestamp(event.created_at),
                                  f"{event.attempts} attempts", event.last_error or "")))
    if retry:
        click.echo(f"Requeued {events.retry_dead()} dead event(s).")
    if not failed and not retry:
        counts = events.counts()
        click.echo(f"{counts['pending']} pending, {counts['dead']} dead.")


@click.command("db-upgrade")
@with_appcontext
def db_upgrade():
    """Bring the database schema to the newest migration (the server does it at start
    unless SESSIONS_AUTO_MIGRATE is false)."""
    migration = migrate()
    if migration.ahead:
        raise click.ClickException(migration.describe())
    gate = current_app.extensions.get("schema_gate")
    if gate is not None:
        gate.behind = False  # this process serves no requests, but an app in a test may
    at_start = current_app.extensions.get("migrated_at_start")
    if not migration.ran and at_start is not None and at_start.ran:
        migration = at_start  # this command's own start ran them (SESSIONS_AUTO_MIGRATE)
    click.echo(migration.describe())


@click.command("backup")
@with_appcontext
@click.argument("path")
def backup(path):
    """Write a consistent copy of the live SQLite database to the new file PATH (the whole backup)."""
    try:
        made = backup_sqlite(db.engine.url, path)
    except BackupError as error:
        raise click.ClickException(f"no backup made: {error}") from None
    click.echo(f"Backed up {made.users} users and {made.sessions} sessions to {made.path} ({made.size} bytes).")


@click.command("check")
@click.argument("url")
@click.option("--token", required=True, help="An API token of the user to check with.")
@click.option("--cookie", help="That user's session cookie: a value (zipline_token=) or name=value.")
@click.option("--allow-writes", is_flag=True, help="Also revoke one other session, and see it go.")
@click.option("--profile", type=click.Choice(contract_check.PROFILES), default="contract", show_default=True,
              help="The error shape to expect.")
def check(url, token, cookie, allow_writes, profile):
    """Run the contract's checks against the server at URL; exit status 1 on a difference."""
    try:
        results = contract_check.run_checks(url, token, cookie, allow_writes, profile)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="URL") from None
    click.echo(contract_check.format_table(results))
    if any(result.outcome == "FAIL" for result in results):
        raise SystemExit(1)


def _user(username: str) -> models.User:
    user = accounts.find_user_by_name(username)
    if user is None:
        raise click.ClickException(f"no user named {username!r}")
    db.session.expunge(user)
    return user
