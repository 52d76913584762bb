"""Gunicorn settings for zipline-sessions: gunicorn -c gunicorn.conf.py 'app:create_app()'.

Each can be overridden on the command line (-b, -w, ...) or with the variables below.
"""

import multiprocessing
import os

bind = os.environ.get("SESSIONS_BIND", "127.0.0.1:8000")
# Sync workers: each request is short and mostly waits on the database.
workers = int(os.environ.get("SESSIONS_WORKERS", multiprocessing.cpu_count() * 2 + 1))
worker_class = "sync"
timeout = 30
# On SIGTERM, workers finish the requests they have before exiting, within this long.
graceful_timeout = 20
keepalive = 5

# Access log to stdout without the query string, cookies or Authorization header:
# address, time, method, path (no query), protocol, status, size, seconds, user agent.
accesslog = os.environ.get("SESSIONS_ACCESS_LOG", "-")
if accesslog == "off":
    accesslog = None
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(L)s "%(a)s"'
errorlog = "-"
loglevel = os.environ.get("SESSIONS_LOG_LEVEL", "info")
