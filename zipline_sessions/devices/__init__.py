"""A session's device: its User-Agent read as client and device kind, its place (GeoIP), and the user's known devices; for all three uses."""
