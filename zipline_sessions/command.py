"""The `zipline-sessions` command of an installed service: `serve`, and every flask command of the app.

Installed, the design's top-level modules (app, models, schemas, cli, serve) and migrations/ are in
zipline_sessions/_entry/, which is on no import path: this command puts that folder on its own
process's sys.path, so `import app` in anyone else's code never finds them. In a checkout (or an
editable install) the folder is the checkout itself.
"""

import sys
from pathlib import Path

PACKAGED = Path(__file__).resolve().parent / "_entry"
HELP = ("zipline-sessions: `serve` runs the service (`serve-each SPEC`: several, for the pytest plugin); the "
        "other commands act on its database. "
        "All are configured by the SESSIONS_* environment variables (README, 'Configuration').")


def entry_folder() -> Path:
    """Where app.py and migrations/ are: inside the installed distribution, else the checkout."""
    return PACKAGED if (PACKAGED / "app.py").is_file() else PACKAGED.parents[1]


def _create_app():
    from app import create_app

    return create_app()


def commands():
    """The click group: `serve` and the app's flask commands (built only when one is asked for,
    so that `serve` starts without importing click or Flask's CLI before serve.py's first line)."""
    import click
    from flask.cli import FlaskGroup

    @click.command("serve")
    def serve_command():
        """Run the service with Granian, configured by SESSIONS_* variables (as `python serve.py`)."""
        import serve

        sys.exit(serve.main())

    group = FlaskGroup(name="zipline-sessions", create_app=_create_app, load_dotenv=False, help=HELP)
    group.add_command(serve_command)
    return group


def main() -> None:
    folder = str(entry_folder())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    if sys.argv[1:] == ["serve"]:
        # Outside click, exactly as `python serve.py`: a wrong setting is one line, exit status 2.
        import serve

        sys.exit(serve.main())
    if sys.argv[1:2] == ["serve-each"]:
        # Several services from one start (the pytest plugin's, one per xdist worker): serve.py.
        import serve

        sys.exit(serve.serve_each(sys.argv[2:]))
    commands().main(prog_name="zipline-sessions")
