"""Last activity of each session, and the session events' outbox and webhook delivery; for the sidecar (and any use that turns them on)."""
