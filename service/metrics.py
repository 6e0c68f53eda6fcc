"""Prometheus metrics, named iris_<thing>_<unit>.

Under gunicorn every worker is its own process, so the client library's multiprocess
mode is used: service.server points PROMETHEUS_MULTIPROC_DIR at a directory before any
worker imports this module, each worker writes its samples there, and /metrics adds
them up across workers. Without that variable (tests, a bare uvicorn) the metrics live
in this process's default registry.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter(
    "iris_http_requests",
    "HTTP requests answered, by route template, method and status code.",
    ["route", "method", "status"],
)
REQUEST_DURATION = Histogram(
    "iris_http_request_duration_seconds",
    "Time from receiving a request to sending the response, by route, method and status.",
    ["route", "method", "status"],
    # The service answers in well under a millisecond; the upper buckets catch stalls.
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
PREDICTIONS = Counter(
    "iris_predictions",
    "Rows predicted, by predicted species (batch and v2 requests count every row).",
    ["species"],
)
MODEL_INFO = Gauge(
    "iris_model_info",
    "The model being served (always 1; the labels say which).",
    ["model_version", "git_revision", "inference"],
    # Every worker serves the same model: report it once, not once per process.
    multiprocess_mode="max",
)

_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request and record its duration."""
    key = (route, method, status)
    child = _children.get(key)
    if child is None:
        # labels() takes a lock and builds a key each time; the children are cached.
        label = str(status)
        child = (
            REQUESTS.labels(route, method, label),
            REQUEST_DURATION.labels(route, method, label),
        )
        _children[key] = child
    child[0].inc()
    child[1].observe(seconds)


def render() -> tuple[bytes, str]:
    """The Prometheus text exposition of all metrics (of all workers) and its content type."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
