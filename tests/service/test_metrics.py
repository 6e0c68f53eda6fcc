"""Metric updates are added up per event-loop turn and written at its end (service.metrics)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service import metrics

BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01)


def _histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram("t_seconds", "test", ["route"], buckets=BUCKETS, registry=registry)


def test_observations_written_together_equal_observations_written_one_by_one() -> None:
    # Below, on and above every bound, and beyond the last one (+Inf).
    values = [0.0, 0.0001, 0.0005, 0.00051, 0.001, 0.0015, 0.002, 0.005, 0.0099, 0.01, 0.5, 7.0]
    one_by_one, together = CollectorRegistry(), CollectorRegistry()
    single = _histogram(one_by_one).labels("/predict")
    for value in values:
        single.observe(value)

    bulk = _histogram(together).labels("/predict")
    for value in values:
        metrics.observe(bulk, value)
    metrics.flush()

    assert _samples(together) == _samples(one_by_one)


def _rows(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("t_rows_total", {"species": "setosa"})


def _samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """Every sample but the creation time, by name and `le`; the sum to 12 digits (added up
    at once it may round its last bit differently from one value at a time)."""
    text = generate_latest(registry).decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            value = round(sample.value, 12) if sample.name.endswith("_sum") else sample.value
            samples[sample.name, sample.labels.get("le", "")] = value
    assert len(samples) == len(BUCKETS) + 3  # the buckets, +Inf, _count and _sum
    return samples


def test_updates_of_a_turn_are_written_after_it_ends_at_most_a_write_spacing_late() -> None:
    registry = CollectorRegistry()
    counter = Counter("t_rows", "test", ["species"], registry=registry).labels("setosa")
    seen: list[float] = []

    async def requests() -> None:
        for _ in range(5):
            metrics.count(counter)
        seen.append(_rows(registry))  # before the turn ends
        # The turn ends; the write comes then, or WRITE_SPACING after the previous one.
        await asyncio.sleep(metrics.WRITE_SPACING + 0.02)
        seen.append(_rows(registry))

    asyncio.run(requests())

    assert seen == [0.0, 5.0]


def test_render_writes_what_is_pending_and_a_concurrent_render_loses_nothing() -> None:
    registry = CollectorRegistry()
    counter = Counter("t_rows", "test", ["species"], registry=registry).labels("setosa")
    stop = threading.Event()

    def renders() -> None:
        while not stop.is_set():
            metrics.render()

    renderer = threading.Thread(target=renders)
    renderer.start()

    async def requests() -> None:
        for turn in range(200):
            for _ in range(50):
                metrics.count(counter)
            if turn % 10 == 0:
                await asyncio.sleep(0)

    try:
        asyncio.run(requests())
    finally:
        stop.set()
        renderer.join()
    metrics.render()

    assert _rows(registry) == 200 * 50


def test_tallied_rows_are_counted_per_class_after_the_turn_ends() -> None:
    registry = CollectorRegistry()
    family = Counter("t_rows", "test", ["species"], registry=registry)
    counters = tuple(family.labels(name) for name in ("setosa", "versicolor", "virginica"))
    seen: list[list[float | None]] = []

    def counts() -> list[float | None]:
        return [
            registry.get_sample_value("t_rows_total", {"species": name})
            for name in ("setosa", "versicolor", "virginica")
        ]

    async def requests() -> None:
        metrics.tally(counters, np.array([0, 2, 2, 0, 2], dtype=np.intp))
        metrics.tally(counters, np.array([2], dtype=np.intp))
        seen.append(counts())  # before the turn ends
        await asyncio.sleep(metrics.WRITE_SPACING + 0.02)
        seen.append(counts())

    asyncio.run(requests())

    # versicolor was never predicted: its series stays at zero, written or not.
    assert seen == [[0.0, 0.0, 0.0], [2.0, 0.0, 4.0]]


def test_a_request_is_counted_last_so_a_scrape_that_counts_it_sees_all_its_turn_made() -> None:
    registry = CollectorRegistry()
    family = Counter("t_rows", "test", ["species"], registry=registry)
    species = tuple(family.labels(name) for name in ("setosa", "versicolor", "virginica"))
    batches = Counter("t_batches", "test", registry=registry)
    route = ("/t-written-last", "POST", "200")
    metrics.observe_request(*route, 0.0)
    metrics.flush()  # the request's series exist; spy on the values they write to
    duration = metrics.REQUEST_DURATION.labels(*route)
    requests = metrics.REQUESTS.labels(*route)
    written: list[str] = []

    def spy(name: str, value: Any) -> None:
        original = value.inc

        def inc(amount: float) -> None:
            written.append(name)
            original(amount)

        value.inc = inc

    spy("request", requests._value)
    spy("duration", duration._sum)
    for bucket in duration._buckets:
        spy("duration", bucket)
    for child in species:
        spy("species", child._value)
    spy("batch", batches._value)

    async def turn() -> None:
        metrics.observe_request(*route, 0.003)
        metrics.tally(species, np.array([0, 2], dtype=np.intp))
        metrics.count(batches)
        metrics.observe_request(*route, 0.004)
        await asyncio.sleep(metrics.WRITE_SPACING + 0.02)

    asyncio.run(turn())

    assert written[-1] == "request"
    assert written.count("request") == 1  # both requests in one write
    assert {"duration", "species", "batch"} <= set(written)
