"""The database: handle and write transactions, the request path's reader, bulk loads, migrations, the service clock, the wire format of dates; for all three uses."""
