"""A session's User-Agent read as its client and device kind; for all three uses."""
