"""Secrets and password hashes, the login limit and its counters, the cross-site rule, the security log; for all three uses."""
