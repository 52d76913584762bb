"""Who is calling (token, cookie), the request path's lookups, and the session lifecycle the routes share (log in, revoke, log out); for all three uses."""
