"""gunicorn settings of both web services, read from environment variables.

Use it as
`gunicorn -c python:services.gunicorn_conf 'services.records.web:create_app()'`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from shared.config import ConfigurationError, web_threads


def _env_int(key: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{key}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigurationError(f"{key}={raw!r} must be at least {minimum}")
    return value


bind = [os.environ.get("PUPIL_RECORDS_BIND", "").strip() or "127.0.0.1:8000"]
workers = _env_int("WEB_CONCURRENCY", 2)
# Requests that wait (long-polls of the feed, reads with `min_position`) hold
# a thread each, so a worker has more threads than the host has cores. The web
# apps let at most half of them wait (PUPIL_RECORDS_MAX_WAITING_REQUESTS), so
# the rest stay free for other requests, `/healthz` and `/readyz` included.
threads = web_threads(os.environ)
worker_class = "gthread"

# A worker that misses its heartbeat this long is killed and replaced. Long-poll
# requests of the event feed (up to 30 s) run in worker threads, and the
# heartbeat comes from the worker's main loop, so they do not count against it.
timeout = _env_int("PUPIL_RECORDS_WORKER_TIMEOUT", 60)
# Seconds a worker gets after SIGTERM to finish the requests in progress.
graceful_timeout = _env_int("PUPIL_RECORDS_GRACEFUL_TIMEOUT", 10)
keepalive = 5

accesslog = "-"
# Only the address, time, method, route template (never the path or query,
# which hold ids and search terms), status, size, duration and request id.
# gunicorn's default format would add the user name of a Basic Authorization
# header, the referrer and the user agent.
access_log_format = (
    '%(h)s %(t)s "%(m)s %({pupil_records.route}e)s" %(s)s %(b)s %(M)sms '
    "%({x-request-id}o)s"
)
errorlog = "-"
loglevel = os.environ.get("PUPIL_RECORDS_LOG_LEVEL", "info").lower()

# Without preload, gunicorn calls the app factory in each worker after fork, so
# every worker builds its own Application. With preload the master would build
# it and the forked workers would share its psycopg connections and hang.
preload_app = False

# gunicorn 25.1 and later open a control socket at one fixed path per user by
# default, so two instances on one host (records and archive) would collide.
# The process supervisor is `pupil-records run` or the container runtime.
control_socket_disable = True

proc_name = os.environ.get("PUPIL_RECORDS_PROC_NAME") or None

# prometheus-client's multiprocess mode: each worker writes its request
# metrics to files in this folder, and `/metrics` adds them up.
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def on_starting(server: object) -> None:
    """Empty the metrics folder, whose files belong to earlier runs, at startup."""
    folder = os.environ.get(METRICS_DIR_VARIABLE, "").strip()
    if not folder:
        return
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


def child_exit(server: object, worker: Any) -> None:
    """Remove the live-gauge files of an exited worker, as multiprocess mode needs."""
    if os.environ.get(METRICS_DIR_VARIABLE, "").strip():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
