"""A real Prometheus scrapes the real service and evaluates the project's rules.

promtool proves the rules compute the right thing from series written by hand; this proves
the metric names, labels and multiprocess aggregation the rules rely on are what the
service really exports. Debian's `prometheus` is started on loopback with a generated
configuration: the job is named and the path taken from the PodMonitoring, as Managed
Service for Prometheus names them, the `namespace` label is added as managed collection adds
it, and the rule file is monitoring/prometheus-rules.yaml with every group evaluated each
second instead of at its shipped interval (the expressions and their windows are untouched).
The service is scraped every second while known traffic goes through it: predictions of
each species on every prediction route, client errors, probes. The recording rules are then
read through the HTTP API and compared with what was sent and what the service counted.

Every series that only appears with its first request is primed (one request each) and
scraped before the measured traffic: a counter's first sample is where `rate` starts
counting. The species counters exist at zero from boot, so their rates see every prediction.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from harness.http import request, try_request
from harness.ports import free_port
from harness.servers import Server, ServiceServer, start_service
from service.routes import ROUTES
from tests.monitoring.support import (
    REPO_ROOT,
    RULE_FILE,
    SeriesKey,
    alerts,
    dashboard,
    dashboard_queries,
    recorded,
    samples,
)

PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        PROMETHEUS is None,
        reason="prometheus is not installed (Debian/Ubuntu: apt-get install prometheus)",
    ),
    # One Prometheus and one service for the whole module, on one xdist worker.
    pytest.mark.xdist_group("live-prometheus"),
]

PODMONITORING = REPO_ROOT / "deploy" / "base" / "podmonitoring.yaml"
NAMESPACE = "iris-live"
# rate() over the rules' 5-minute windows: requests per second times this are requests.
WINDOW_SECONDS = 300
# After the last request, rules are read once this many scrapes have followed it: rate()
# extrapolates to the window's end by up to 1.1 scrape intervals, which is then at most a
# third of the counted span.
SETTLE_SECONDS = 4.0
DEADLINE_SECONDS = 45.0

PREDICTION_ROUTES = frozenset(route.path for route in ROUTES if route.method == "POST")
# Typical flowers of each species, far from the class boundaries.
FLOWERS = {
    "setosa": [5.1, 3.5, 1.4, 0.2],
    "versicolor": [5.9, 2.8, 4.3, 1.3],
    "virginica": [6.7, 3.1, 5.6, 2.4],
}
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")

_T = TypeVar("_T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Call:
    """One request of the traffic: where it goes, its body and the status it must get."""

    path: str
    body: bytes
    status: int


def _single(species: str) -> Call:
    row = dict(zip(FEATURES, FLOWERS[species], strict=True))
    return Call("/predict", json.dumps(row).encode(), 200)


def _batch(*species: str) -> Call:
    rows = [dict(zip(FEATURES, FLOWERS[name], strict=True)) for name in species]
    return Call("/predict/batch", json.dumps({"instances": rows}).encode(), 200)


def _v2(*species: str) -> Call:
    data = [value for name in species for value in FLOWERS[name]]
    tensor = {"name": "features", "shape": [len(species), 4], "datatype": "FP32", "data": data}
    return Call("/v2/models/iris/infer", json.dumps({"inputs": [tensor]}).encode(), 200)


# The species mix differs on purpose: a mixed-up label would change the shares.
MEASURED = [
    *[_single("setosa")] * 9,
    *[_single("versicolor")] * 5,
    *[_single("virginica")] * 2,
    *[_batch("setosa", "virginica", "virginica", "versicolor")] * 4,
    *[_v2("versicolor", "virginica", "virginica")] * 3,
    # Client errors: in the availability SLI's denominator, never in its numerator.
    *[Call("/predict", b'{"sepal_length": 5.1}', 422)] * 6,
    *[Call("/predict/batch", b'{"instances": []}', 422)] * 3,
    *[Call("/v2/models/iris/infer", b'{"inputs": []}', 400)] * 2,
] * 3
# One request for each series that appears with its first request.
PRIMING = list(dict.fromkeys(MEASURED))


def _answered_species(path: str, body: bytes) -> list[str]:
    answer = json.loads(body)
    if path == "/predict":
        return [answer["species"]]
    if path == "/predict/batch":
        return [row["species"] for row in answer["predictions"]]
    (labels,) = [output for output in answer["outputs"] if output["name"] == "label"]
    return list(labels["data"])


def _prediction_requests(exposed: Mapping[SeriesKey, float]) -> dict[tuple[str, str], float]:
    """Requests answered on the prediction routes, by (route, status)."""
    counts: dict[tuple[str, str], float] = {}
    for (name, frozen), value in exposed.items():
        labels = dict(frozen)
        if name == "iris_http_requests_total" and labels["route"] in PREDICTION_ROUTES:
            assert labels["method"] == "POST"
            counts[labels["route"], labels["status"]] = value
    return counts


def _histogram(exposed: Mapping[SeriesKey, float], name: str, le: str | None = None) -> float:
    """Sum of a duration histogram sample over the successful prediction requests."""
    total = 0.0
    for (sample, frozen), value in exposed.items():
        labels = dict(frozen)
        if sample != name or labels.get("le") != le:
            continue
        if labels["route"] in PREDICTION_ROUTES and labels["status"].startswith("2"):
            total += value
    return total


def live_rule_file(shipped: str) -> dict[str, Any]:
    """The shipped rule file with every group at the global evaluation interval."""
    groups = yaml.safe_load(shipped)["groups"]
    return {"groups": [{k: v for k, v in group.items() if k != "interval"} for group in groups]}


def prometheus_config(metrics_port: int, rule_file: Path) -> dict[str, Any]:
    """Scrape the metrics port every second as the PodMonitoring describes it."""
    monitor = yaml.safe_load(PODMONITORING.read_text())
    (endpoint,) = monitor["spec"]["endpoints"]
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rule_file)],
        "scrape_configs": [
            {
                "job_name": monitor["metadata"]["name"],
                "metrics_path": endpoint["path"],
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{metrics_port}"],
                        "labels": {"namespace": NAMESPACE},
                    }
                ],
            }
        ],
    }


def _poll(server: Server, what: str, probe: Callable[[], _T | None]) -> _T:
    """Wait until `probe` returns something, at most DEADLINE_SECONDS, while `server` runs."""
    found: list[_T] = []

    def ready() -> bool:
        value = probe()
        if value is not None:
            found.append(value)
        return bool(found)

    try:
        server.wait_until(ready, timeout=DEADLINE_SECONDS, interval=0.2)
    except RuntimeError as exc:
        raise AssertionError(f"waiting for {what}: {exc}") from None
    return found[0]


def _counted(service: ServiceServer, sent: int) -> dict[SeriesKey, float]:
    """The service's samples once all `sent` prediction requests are counted: a worker
    records a request after its answer has gone out, so a client can be a moment ahead."""

    def counts(exposed: dict[SeriesKey, float]) -> tuple[float, float]:
        counted = sum(_prediction_requests(exposed).values())
        observed = sum(
            value
            for (name, labels), value in exposed.items()
            if name == "iris_http_request_duration_seconds_count"
            and dict(labels)["route"] in PREDICTION_ROUTES
        )
        return counted, observed

    status, text = service.metrics_when(
        lambda text: counts(samples(text)) == (sent, sent), timeout=DEADLINE_SECONDS
    )
    exposed = samples(text)
    assert status == 200, text
    assert counts(exposed) == (sent, sent), f"the service counted {counts(exposed)} of {sent}"
    return exposed


class Prometheus(Server):
    """A Prometheus process and its HTTP API."""

    def api(self, path: str, **params: str) -> Any:
        status, body = request(self.port, "GET", f"{path}?{urlencode(params)}", timeout=10)
        answer = json.loads(body)
        assert status == 200, f"{path} {params}: {status} {body[:500]!r}"
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The instant vector of `expr` (now, or at `at`)."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        result: list[dict[str, Any]] = self.api("/api/v1/query", **params)["result"]
        return result

    def value(self, expr: str, at: float | None = None) -> float:
        """The one value `expr` has."""
        result = self.query(expr, at)
        assert len(result) == 1, f"{expr}: {result}"
        return float(result[0]["value"][1])

    def poll(self, what: str, probe: Callable[[], _T | None]) -> _T:
        return _poll(self, what, probe)

    def wait_scraped(self, wanted: Mapping[tuple[str, str], float]) -> float:
        """Wait until Prometheus holds `wanted` request counts; the latest sample's time."""
        selector = f'iris_http_requests_total{{namespace="{NAMESPACE}", method="POST"}}'

        def probe() -> float | None:
            values = {
                (s["metric"]["route"], s["metric"]["status"]): float(s["value"][1])
                for s in self.query(selector)
            }
            scraped = {key: value for key, value in values.items() if key[0] in PREDICTION_ROUTES}
            if scraped != wanted:
                return None
            # Read after the values: a sample at least as recent as the one that held them.
            return max(float(s["value"][1]) for s in self.query(f"timestamp({selector})"))

        return self.poll(f"the counts {dict(wanted)}", probe)


@dataclass
class Live:
    """The traffic sent and what the service and Prometheus made of it."""

    prometheus: Prometheus
    service: ServiceServer
    model_version: str
    baseline: dict[SeriesKey, float]
    final: dict[SeriesKey, float]
    species: Counter[str] = field(default_factory=Counter)
    per_worker: dict[int, float] = field(default_factory=dict)
    at: float = 0.0

    def __str__(self) -> str:
        figures = {
            record.removeprefix("namespace:"): round(self.rule(record), 4)
            for record in sorted(recorded())
            if record.startswith("namespace:")
        }
        return (
            f"{len(PRIMING) + len(MEASURED)} prediction requests, per worker "
            f"{sorted(self.per_worker.values())}, species {dict(self.species)}, rules {figures}"
        )

    def value(self, expr: str) -> float:
        """`expr` at the instant the checks read."""
        return self.prometheus.value(expr, self.at)

    def rule(self, record: str) -> float:
        return self.value(f'{record}{{namespace="{NAMESPACE}"}}')


def _send(service: ServiceServer, calls: list[Call], species: Counter[str]) -> None:
    for call in calls:
        status, body = service.post(call.path, call.body)
        assert status == call.status, (call.path, status, body[:300])
        if status == 200:
            species.update(_answered_species(call.path, body))


def _requests_per_worker(service: ServiceServer, workdir: Path) -> dict[int, float]:
    """Prediction requests each worker counted, from its own file in the metrics directory."""
    counts = {}
    for pid in service.workers():
        alone = workdir / f"worker-{pid}"
        alone.mkdir()
        shutil.copy(service.metrics_dir / f"counter_{pid}.db", alone)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))  # type: ignore[no-untyped-call]
        own = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in registry.collect()
            for sample in family.samples
        }
        counts[pid] = sum(_prediction_requests(own).values())
    return counts


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, trained_artifact_dir: Path) -> Iterator[Live]:
    assert PROMETHEUS is not None
    workdir = tmp_path_factory.mktemp("live-prometheus")
    service = start_service(trained_artifact_dir, workdir, workers=2)
    rule_file = workdir / "rules.yaml"
    rule_file.write_text(yaml.safe_dump(live_rule_file(RULE_FILE.read_text())))
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(service.metrics_port, rule_file)))
    port = free_port()
    prometheus = Prometheus(
        name="prometheus",
        argv=[
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        port=port,
        cwd=workdir,
        log_path=workdir / "prometheus.log",
    )
    try:
        prometheus.start()
        prometheus.wait_until(
            lambda: try_request(port, "GET", "/-/ready") == 200,
            timeout=DEADLINE_SECONDS,
            interval=0.1,
        )
        metadata = json.loads((trained_artifact_dir / "metadata.json").read_text())
        live = Live(prometheus, service, metadata["model_version"], {}, {})
        # The species counters, at zero, are scraped before the first prediction.
        zero = f'iris_predictions_total{{namespace="{NAMESPACE}"}} == 0'
        prometheus.poll(
            "the species counters at zero",
            lambda: True if len(prometheus.query(zero)) == len(FLOWERS) else None,
        )
        _send(service, PRIMING, live.species)
        live.baseline = _counted(service, len(PRIMING))
        prometheus.wait_scraped(_prediction_requests(live.baseline))
        started = time.monotonic()
        _send(service, MEASURED, live.species)
        for _ in range(5):
            service.get("/readyz")  # probes: no prediction route, in no SLI
        live.final = _counted(service, len(PRIMING) + len(MEASURED))
        last_scrape = prometheus.wait_scraped(_prediction_requests(live.final))
        record = f'namespace:iris_prediction_requests:rate5m{{namespace="{NAMESPACE}"}}'
        live.at = prometheus.poll(
            "the rules to evaluate the final counts",
            lambda: next(
                (
                    float(s["value"][1])
                    for s in prometheus.query(f"timestamp({record})")
                    if float(s["value"][1]) >= last_scrape + SETTLE_SECONDS
                ),
                None,
            ),
        )
        live.per_worker = _requests_per_worker(service, workdir)
        # The figures, for a run with --log-cli-level=INFO.
        log.info("traffic to rules read in %.1f s; %s", time.monotonic() - started, live)
        yield live
    finally:
        prometheus.stop()
        service.stop()


def test_every_project_rule_loads_and_evaluates_without_error(live: Live) -> None:
    groups = live.prometheus.api("/api/v1/rules")["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(loaded) == recorded() | set(alerts())
    unhealthy = [name for name, rule in loaded.items() if rule["health"] != "ok"]
    assert not unhealthy, {name: loaded[name].get("lastError") for name in unhealthy}


def test_prometheus_holds_the_sum_of_what_every_gunicorn_worker_counted(live: Live) -> None:
    assert len(live.per_worker) == 2
    # Fresh connections spread over both workers' sockets: each served its share.
    assert all(count > 0 for count in live.per_worker.values()), live.per_worker
    served = sum(_prediction_requests(live.final).values())
    assert sum(live.per_worker.values()) == served == len(PRIMING) + len(MEASURED)
    scraped = live.prometheus.query(
        f'iris_http_requests_total{{namespace="{NAMESPACE}", method="POST"}}', live.at
    )
    assert len({s["metric"]["route"] for s in scraped}) == 3  # /predict, batch and v2
    assert "pid" not in scraped[0]["metric"]  # one series per label set, not per worker
    assert sum(float(s["value"][1]) for s in scraped) == served


def test_request_rate_counts_the_prediction_requests_and_not_the_probes(live: Live) -> None:
    measured = len(MEASURED)
    counted = live.rule("namespace:iris_prediction_requests:rate5m") * WINDOW_SECONDS
    # rate() counts from the first sample (after priming) and extrapolates a little.
    assert measured <= counted <= 1.5 * measured, counted


def test_error_ratio_is_zero_when_client_errors_but_no_5xx_were_answered(live: Live) -> None:
    assert live.rule("namespace:iris_prediction_errors:rate5m") == 0
    assert live.rule("namespace:iris_prediction_errors:ratio_rate5m") == 0
    for window in ("30m", "1h", "6h"):
        assert live.rule(f"namespace:iris_prediction_errors:ratio_rate{window}") == 0
    # The 4xx are in the denominator: successes are the 2xx share of all requests.
    sent = Counter(call.status for call in MEASURED)
    successes = live.rule("namespace:iris_prediction_successes:rate5m")
    requests = live.rule("namespace:iris_prediction_requests:rate5m")
    assert successes / requests == pytest.approx(sent[200] / sum(sent.values()), rel=0.03)


def test_latency_sli_is_the_slow_share_the_service_histogram_recorded(live: Live) -> None:
    count = "iris_http_request_duration_seconds_count"
    bucket = "iris_http_request_duration_seconds_bucket"
    successes = _histogram(live.final, count) - _histogram(live.baseline, count)
    fast = _histogram(live.final, bucket, "0.025") - _histogram(live.baseline, bucket, "0.025")
    assert successes == sum(1 for call in MEASURED if call.status == 200)
    slow = live.rule("namespace:iris_prediction_slow:ratio_rate5m")
    assert slow == pytest.approx(1 - fast / successes, abs=0.02)
    p50, p90, p99 = (
        live.rule(f"namespace:iris_prediction_latency_seconds:{q}_rate5m")
        for q in ("p50", "p90", "p99")
    )
    assert 0 < p50 <= p90 <= p99 <= 2.5


def test_predictions_by_species_match_the_answers_sent(live: Live) -> None:
    assert set(live.species) == set(FLOWERS)
    scraped = {
        s["metric"]["species"]: float(s["value"][1])
        for s in live.prometheus.query(
            f'sum by (species) (iris_predictions_total{{namespace="{NAMESPACE}"}})', live.at
        )
    }
    assert scraped == dict(live.species)
    rates = {
        s["metric"]["species"]: float(s["value"][1])
        for s in live.prometheus.query(
            f'namespace_species:iris_predictions:rate5m{{namespace="{NAMESPACE}"}}', live.at
        )
    }
    total_rate, total = sum(rates.values()), sum(live.species.values())
    # Every species counter started at zero in the same scrape: the shares are exact.
    shares = {name: rate / total_rate for name, rate in rates.items()}
    assert shares == pytest.approx({name: n / total for name, n in live.species.items()}, rel=1e-9)


def test_budgets_are_whole_without_errors_and_follow_the_slow_share(live: Live) -> None:
    assert live.rule("namespace:iris_availability_budget:remaining_30d") == 1
    latency = live.rule("namespace:iris_latency_budget:remaining_30d")
    bucket = "iris_http_request_duration_seconds_bucket"
    count = "iris_http_request_duration_seconds_count"
    slow = _histogram(live.final, count) - _histogram(live.final, bucket, "0.025")
    assert latency == 1 if slow == 0 else latency < 1


def test_model_info_is_one_series_naming_the_served_model(live: Live) -> None:
    series = live.prometheus.query(f'iris_model_info{{namespace="{NAMESPACE}"}}', live.at)
    # The gauge's multiprocess mode "max" reports the model once, not once per worker.
    assert len(series) == 1, series
    assert series[0]["metric"]["model_version"] == live.model_version
    assert float(series[0]["value"][1]) == 1


def test_no_target_alert_stays_quiet_while_the_pod_is_scraped(live: Live) -> None:
    assert live.value(f'up{{job="iris-api", namespace="{NAMESPACE}"}}') == 1
    assert live.prometheus.query(alerts()["IrisNoTargetScraped"]["expr"], live.at) == []


def test_live_rule_file_changes_only_the_group_intervals() -> None:
    shipped = yaml.safe_load(RULE_FILE.read_text())["groups"]
    live = live_rule_file(RULE_FILE.read_text())["groups"]
    assert [group["rules"] for group in live] == [group["rules"] for group in shipped]
    assert all("interval" not in group for group in live)
    assert any("interval" in group for group in shipped)


def test_every_dashboard_query_returns_data_from_the_live_prometheus(live: Live) -> None:
    empty = [query for query in dashboard_queries(dashboard()) if not live.prometheus.query(query)]
    assert empty == []
