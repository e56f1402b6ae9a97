"""`consent-center serve`: the API on uvicorn, with graceful shutdown on SIGTERM.

uvicorn stops taking connections on SIGTERM or SIGINT and lets the requests in flight finish
(up to CONSENT_API_GRACE seconds, default 10) before the pool closes. With several workers
(CONSENT_API_WORKERS) uvicorn's supervisor starts them from the app factory; the database URL
is resolved once here (starting the embedded server if it is the one in use) and handed to
them, and the metrics are shared through a private folder under CONSENT_HOME.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys

import uvicorn

from pipelines.settings import Settings

HOST_ENV, PORT_ENV, WORKERS_ENV = "CONSENT_API_HOST", "CONSENT_API_PORT", "CONSENT_API_WORKERS"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8400

LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        # uvicorn's own access log prints the query string (record ids, a search's names):
        # ours (consent_center.api.access) prints the route template instead
        "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        "consent_center.api": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}


def serve(
    settings: Settings, database_url: str, host: str | None, port: int | None, workers: int | None
) -> None:
    host = host or os.environ.get(HOST_ENV) or DEFAULT_HOST
    port = port or int(os.environ.get(PORT_ENV) or DEFAULT_PORT)
    workers = workers or int(os.environ.get(WORKERS_ENV) or 1)
    os.environ["CONSENT_API_DATABASE_URL"] = database_url
    if workers > 1:
        folder = settings.home / "api-metrics"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(mode=0o700, parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    # uvicorn shuts down gracefully on SIGTERM or SIGINT, then raises the signal again to end the
    # process: ended here with status 0, a clean stop for systemd, scripts and supervisors
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _stopped)
    uvicorn.run(
        "pipelines.api.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=LOG_CONFIG,
        access_log=False,
        timeout_graceful_shutdown=int(os.environ.get("CONSENT_API_GRACE") or 10),
        server_header=False,
    )


def _stopped(signum, frame) -> None:
    sys.exit(0)
