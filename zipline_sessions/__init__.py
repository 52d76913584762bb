"""zipline-sessions' code, grouped by job (README, "Layout"); app.py, models.py, schemas.py, cli.py and serve.py stand above it."""
