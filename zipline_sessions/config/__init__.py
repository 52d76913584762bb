"""The SESSIONS_* settings: defaults, environment, and the checks that stop a bad start in one line; for all three uses."""
