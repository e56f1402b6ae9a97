"""Prometheus metrics (/metrics) and the structured access log, from one ASGI middleware.

Per endpoint (the route's template, never the path a caller sent, which may carry a record
id): requests by status, latency, errors; at scrape time, the pool's use and the age of the
published state. Each access log line is JSON with the method, the route template, the status,
the duration and the key's name; no query string (a client search's query holds names), no
body, no client address.

With several uvicorn workers the counters are shared through PROMETHEUS_MULTIPROC_DIR
(prometheus_client's multiprocess mode; pipelines/api/server.py sets it up).
"""

from __future__ import annotations

import json
import logging
import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

access_log = logging.getLogger("consent_center.api.access")

REQUESTS = Counter("consent_api_requests", "API requests", ["endpoint", "method", "status"])
ERRORS = Counter(
    "consent_api_errors", "API answers with a 4xx or 5xx status", ["endpoint", "status"]
)
LATENCY = Histogram(
    "consent_api_request_seconds",
    "API request latency",
    ["endpoint", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


class StateCollector:
    """Gauges read at scrape time: this worker's pool, and the published state's age."""

    def __init__(self, app) -> None:
        self.app = app

    def collect(self):
        pool = getattr(self.app.state, "pool", None)
        apool = getattr(self.app.state, "apool", None)
        if pool is not None:
            stats = pool.get_stats()
            if apool is not None:
                for key, value in apool.get_stats().items():
                    stats[key] = stats.get(key, 0) + value
            for name, key, text in (
                ("consent_api_pool_size", "pool_size", "connections in this worker's pool"),
                ("consent_api_pool_available", "pool_available", "idle connections"),
                ("consent_api_pool_waiting", "requests_waiting", "requests waiting for one"),
            ):
                yield GaugeMetricFamily(name, text, value=stats.get(key, 0))
            age = GaugeMetricFamily(
                "consent_published_state_age_seconds",
                "Seconds since the state the API answers from was published",
            )
            try:
                with pool.connection(timeout=2) as conn:
                    row = conn.execute(
                        "select extract(epoch from clock_timestamp() - max(published_at)) "
                        "from consent.publication"
                    ).fetchone()
                if row and row[0] is not None:
                    age.add_metric([], float(row[0]))
            except Exception:
                pass
            yield age


def registry_for(app) -> CollectorRegistry:
    """This app's registry: the request metrics (every worker's, in multiprocess mode) and the
    gauges read at scrape time."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        for metric in (REQUESTS, ERRORS, LATENCY):
            registry.register(metric)
    registry.register(StateCollector(app))
    return registry


def metrics_text(registry: CollectorRegistry) -> tuple[bytes, str]:
    return generate_latest(registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts, times and logs every HTTP request (pure ASGI: no per-request task overhead)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            code = status["code"]
            elapsed = time.perf_counter() - started
            REQUESTS.labels(endpoint, method, str(code)).inc()
            LATENCY.labels(endpoint, method).observe(elapsed)
            if code >= 400:
                ERRORS.labels(endpoint, str(code)).inc()
            caller = (
                getattr(scope.get("state", {}).get("caller"), "name", None)
                if isinstance(scope.get("state"), dict)
                else None
            )
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    json.dumps(
                        {
                            "method": method,
                            "endpoint": endpoint,
                            "status": code,
                            "ms": round(elapsed * 1000, 2),
                            "key": caller,
                        }
                    )
                )
