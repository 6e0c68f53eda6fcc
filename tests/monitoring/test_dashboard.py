"""monitoring/dashboard.json: Cloud Monitoring's v1 dashboard format, queries that read only
what the running service exports or the rules record, and every signal an operator needs."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from harness.servers import start_service
from tests.monitoring.dashboard_schema import DASHBOARD as SCHEMA
from tests.monitoring.dashboard_schema import tile_problems
from tests.monitoring.support import (
    dashboard,
    dashboard_queries,
    metric_names,
    recorded,
    rules,
    samples,
)

VALIDATOR = Draft202012Validator(SCHEMA)


def format_errors(candidate: dict[str, Any]) -> list[str]:
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in VALIDATOR.iter_errors(candidate)
    ]
    return errors + tile_problems(candidate)


def unknown_metrics(candidate: dict[str, Any], known: set[str]) -> dict[str, set[str]]:
    """Per query, the metric names it reads that are in `known` neither."""
    found = {query: metric_names(query) - known for query in dashboard_queries(candidate)}
    return {query: names for query, names in found.items() if names}


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory, trained_artifact_dir: Path
) -> Iterator[set[str]]:
    """The sample names the running service's /metrics shows once it has answered a
    prediction and a client error (labelled series appear with their first request)."""
    server = start_service(trained_artifact_dir, tmp_path_factory.mktemp("dashboard"), workers=1)
    try:
        row = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
        assert server.post("/predict", json.dumps(row).encode())[0] == 200
        assert server.post("/predict", b"{}")[0] == 422

        def both_counted(text: str) -> bool:  # written when each answer's turn ends
            answered = [
                value
                for (name, labels), value in samples(text).items()
                if name == "iris_http_requests_total" and dict(labels)["route"] == "/predict"
            ]
            return sum(answered) == 2

        status, text = server.metrics_when(both_counted)
        assert status == 200
        assert both_counted(text), text
        yield {name for name, _ in samples(text)}
    finally:
        server.stop()


def test_dashboard_follows_the_documented_v1_dashboard_format() -> None:
    assert format_errors(dashboard()) == []


def test_committed_dashboard_carries_neither_name_nor_etag() -> None:
    # The API names a new dashboard; the bootstrap adds the etag of the one it updates.
    assert not {"name", "etag", "labels"} & set(dashboard())


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["mosaicLayout"]["tiles"][1]["widget"]["xyChart"].update(yaxis={}), "yaxis"),
        (
            lambda d: d["mosaicLayout"]["tiles"][1]["widget"].update(text={"content": "x"}),
            "is valid under each",
        ),
        (lambda d: d.update(gridLayout={"widgets": []}), "gridLayout"),
        (lambda d: d["mosaicLayout"]["tiles"][1].update(xPos=8), "wider than the 12 columns"),
        (lambda d: d["mosaicLayout"]["tiles"][1].update(yPos=1), "overlaps"),
        (
            lambda d: d["mosaicLayout"]["tiles"][1]["widget"]["xyChart"]["dataSets"][0].update(
                minAlignmentPeriod="1m"
            ),
            "1m",
        ),
        (
            lambda d: d["mosaicLayout"]["tiles"][1]["widget"]["xyChart"]["dataSets"][0][
                "timeSeriesQuery"
            ].update(timeSeriesQueryLanguage="fetch x"),
            "timeSeriesQueryLanguage",
        ),
    ],
    ids=[
        "misspelt-field",
        "two-contents",
        "second-layout",
        "outside-grid",
        "overlap",
        "duration",
        "mql",
    ],
)
def test_the_format_check_refuses_what_the_api_would(change: Any, expected: str) -> None:
    broken = copy.deepcopy(dashboard())
    change(broken)
    errors = format_errors(broken)
    assert any(expected in error for error in errors), errors


def test_every_metric_a_dashboard_query_names_is_exported_or_recorded(exported: set[str]) -> None:
    assert {"iris_http_requests_total", "iris_predictions_total", "iris_model_info"} <= exported
    assert unknown_metrics(dashboard(), exported | recorded()) == {}


def test_a_misspelt_metric_in_a_dashboard_query_is_caught(exported: set[str]) -> None:
    text = json.dumps(dashboard()).replace("iris_model_info", "iris_model_infos")
    assert unknown_metrics(json.loads(text), exported | recorded()) == {
        "max by (namespace, model_version, git_revision, inference) (iris_model_infos)": {
            "iris_model_infos"
        }
    }


def test_dashboard_shows_every_signal_the_operations_section_promises() -> None:
    read = {name for query in dashboard_queries(dashboard()) for name in metric_names(query)}
    assert {
        "namespace:iris_prediction_requests:rate5m",  # request rate
        "namespace:iris_prediction_errors:ratio_rate5m",  # error ratio
        "namespace:iris_prediction_latency_seconds:p50_rate5m",  # latency percentiles
        "namespace:iris_prediction_latency_seconds:p90_rate5m",
        "namespace:iris_prediction_latency_seconds:p99_rate5m",
        "namespace_species:iris_predictions:rate5m",  # predictions by class
        "namespace:iris_availability_budget:remaining_30d",  # error budget remaining
        "namespace:iris_latency_budget:remaining_30d",
        "iris_model_info",  # model version per environment
    } <= read
    # Per environment: every query keeps the namespace label, which names the environment.
    for query in dashboard_queries(dashboard()):
        assert "by (namespace" in query or metric_names(query) <= recorded(), query


def test_dashboard_selects_the_prediction_routes_as_the_rules_do() -> None:
    matcher = re.compile(r'route=~"([^"]+)"')
    in_rules = {m for rule in rules() for m in matcher.findall(rule["expr"])}
    in_dashboard = {m for query in dashboard_queries(dashboard()) for m in matcher.findall(query)}
    assert in_dashboard
    assert in_dashboard == in_rules
