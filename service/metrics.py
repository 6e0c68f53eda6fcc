"""Prometheus metrics, named iris_<thing>_<unit>, and the port that serves them.

Under gunicorn every worker is its own process, so the client library's multiprocess
mode is used: service.server points PROMETHEUS_MULTIPROC_DIR at a directory before any
worker imports this module, each worker writes its samples there, and /metrics adds
them up across workers. Without that variable (tests, a bare uvicorn) the metrics live
in this process's default registry.

/metrics is not a route of the API: `serve` answers it on its own port
(IRIS_METRICS_PORT) from a thread of the gunicorn master, so a load balancer in front of
the API port never exposes it, and a scrape costs the workers nothing.
"""

from __future__ import annotations

import atexit
import errno
import math
import os
import socket
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from threading import Thread
from typing import Any, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import numpy as np
import numpy.typing as npt
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

from service.turns import EndOfTurn

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_T = TypeVar("_T")

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


WRITE_SPACING = 0.05
"""Seconds between a worker's writes of its metric updates, at least (see _Pending)."""


class _Pending:
    """Counter and histogram updates of this turn of the event loop, written at its end,
    and no sooner than WRITE_SPACING after the previous write.

    In multiprocess mode every update is a locked write to a memory-mapped file (~2 us;
    a histogram observation takes two): a /predict request made four, ~9 us, a tenth of
    what the service spends on it. Under load many requests finish in one turn of the
    event loop, and turns follow each other every few hundred microseconds; the updates
    are added up here and written once per series at most every WRITE_SPACING, so a
    scrape sees them that much later at most (Prometheus scrapes every 15 s or so). On a
    quiet worker they are written when the turn ends. render() writes what is pending
    first, and so does the process's exit; a worker killed outright loses at most the
    last WRITE_SPACING of its updates.

    Updates are queued in deques, whose append and popleft are atomic: a test thread
    rendering while the app's loop runs in another thread loses nothing.
    """

    def __init__(self) -> None:
        self._counts: deque[tuple[Counter, float]] = deque()
        self._observations: deque[tuple[tuple[Histogram, Counter | None], float]] = deque()
        self._tallies: deque[tuple[tuple[Counter, ...], npt.NDArray[np.intp]]] = deque()
        self._end_of_turn = EndOfTurn(self.flush, WRITE_SPACING)
        atexit.register(self.flush)

    def count(self, counter: Counter, amount: float) -> None:
        """Add `amount` to a counter child."""
        self._counts.append((counter, amount))
        self._end_of_turn.schedule()

    def tally(self, counters: tuple[Counter, ...], indices: npt.NDArray[np.intp]) -> None:
        """Add 1 to `counters[i]` for each i in `indices` (e.g. the class of each row)."""
        self._tallies.append((counters, indices))
        self._end_of_turn.schedule()

    def observe(self, series: tuple[Histogram, Counter | None], value: float) -> None:
        """Observe `value` on a histogram child, and count it on the paired counter child
        if there is one (a request's duration and its count)."""
        self._observations.append((series, value))
        self._end_of_turn.schedule()

    def flush(self) -> None:
        """Write every pending update: one increment per counter, bucket and sum.

        The request counters are written last: another process may read the files in the
        middle of a flush, and a scrape that shows a request counted then shows all the
        other updates its turn made (its duration, its predicted classes) too.
        """
        totals: dict[Counter, float] = {}
        for counter, amount in _drain(self._counts):
            totals[counter] = totals.get(counter, 0) + amount
        tallied: dict[tuple[Counter, ...], list[npt.NDArray[np.intp]]] = {}
        for counters, indices in _drain(self._tallies):
            tallied.setdefault(counters, []).append(indices)
        for counters, arrays in tallied.items():
            added = np.bincount(np.concatenate(arrays), minlength=len(counters)).tolist()
            for counter, amount in zip(counters, added, strict=True):
                if amount:
                    totals[counter] = totals.get(counter, 0) + amount
        observed: dict[tuple[Histogram, Counter | None], list[float]] = {}
        for series, value in _drain(self._observations):
            observed.setdefault(series, []).append(value)
        for (histogram, paired), values in observed.items():
            _observe_all(histogram, values)
            if paired is not None:
                totals[paired] = totals.get(paired, 0) + len(values)
        for counter, total in totals.items():
            counter.inc(total)


def _drain(queue: deque[_T]) -> Iterator[_T]:
    """Take entries off `queue` until it is empty (another thread may take some too)."""
    pop = queue.popleft
    while queue:
        try:
            yield pop()
        except IndexError:
            return


def _observe_all(histogram: Histogram, values: list[float]) -> None:
    """Histogram.observe for each of `values`, with one write per bucket and one for the sum.

    Histogram has no public call for several observations; this does what observe() does
    (sum, then the first bucket whose bound is >= the value) through the same attributes,
    of the exact prometheus-client version the locks pin; tests/service/test_metrics.py
    checks the result against observe() one value at a time.
    """
    bounds = histogram._upper_bounds
    counts: dict[int, int] = {}
    for value in values:
        index = bisect_left(bounds, value)
        counts[index] = counts.get(index, 0) + 1
    histogram._sum.inc(math.fsum(values))
    for index, count in counts.items():
        histogram._buckets[index].inc(count)


_pending = _Pending()
# (duration histogram, request counter) per (route, method, status), as flush() takes them.
_children: dict[tuple[str, str, int], tuple[Histogram, Counter]] = {}


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request and record its duration."""
    key = (route, method, status)
    child = _children.get(key)
    if child is None:
        # labels() takes a lock and builds a key each time; the children are cached.
        label = str(status)
        child = (
            REQUEST_DURATION.labels(route, method, label),
            REQUESTS.labels(route, method, label),
        )
        _children[key] = child
    _pending.observe(child, seconds)


def count(counter: Counter, amount: float = 1) -> None:
    """Increment a counter child (e.g. of PREDICTIONS) at the end of this event-loop turn."""
    _pending.count(counter, amount)


def tally(counters: tuple[Counter, ...], indices: npt.NDArray[np.intp]) -> None:
    """Add 1 to `counters[i]` for each i in `indices`, at the end of this event-loop turn."""
    _pending.tally(counters, indices)


def observe(histogram: Histogram, value: float) -> None:
    """Observe `value` on a histogram child at the end of this event-loop turn."""
    _pending.observe((histogram, None), value)


def flush() -> None:
    """Write the pending updates of this process now."""
    _pending.flush()


def render() -> tuple[bytes, str]:
    """The Prometheus text exposition of all metrics (of all workers) and its content type."""
    flush()  # this process's pending updates; each worker writes its own at its turn's end
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


# --- the metrics port ---------------------------------------------------------------------

METRICS_PATH = "/metrics"

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class MetricsPortError(Exception):
    """The metrics port cannot be bound; the message says which and what to do."""


def _metrics_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("PATH_INFO") != METRICS_PATH or environ.get("REQUEST_METHOD") not in (
        "GET",
        "HEAD",
    ):
        body = b'{"detail":"Not Found: this port serves GET /metrics only"}'
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [body]
    body, content_type = render()
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds are not worth a log line each."""


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _IPv6Server(_ThreadingServer):
    address_family = socket.AF_INET6


_server: WSGIServer | None = None


def serve(host: str, port: int) -> WSGIServer:
    """Answer GET /metrics on `host`:`port` from a daemon thread of this process.

    Raises MetricsPortError when the port is taken or the address cannot be bound.
    """
    global _server  # one metrics port per process
    server_class = _IPv6Server if ":" in host else _ThreadingServer
    try:
        server = make_server(host, port, _metrics_app, server_class, _QuietHandler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise MetricsPortError(
                f"metrics port {port} is in use; set IRIS_METRICS_PORT to a free port"
            ) from None
        raise MetricsPortError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None
    Thread(target=server.serve_forever, name="iris-metrics", daemon=True).start()
    _server = server
    return server


def close_inherited() -> None:
    """In a forked worker: close the metrics socket inherited from the master, which keeps
    serving it (the worker has no thread behind the copy)."""
    global _server  # the copy belongs to the master
    if _server is not None:
        _server.socket.close()
        _server = None
