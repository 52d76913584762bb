"""A session's device: client and kind (User-Agent), place (GeoIP), each user's known devices; for all uses."""
