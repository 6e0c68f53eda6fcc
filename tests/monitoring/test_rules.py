"""The SLO rules: in sync with the Rules object, accepted and unit-tested by promtool, and
built on the metrics, routes and histogram buckets the service really has."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from service import metrics
from service.routes import ROUTES
from tests.monitoring.support import (
    REPO_ROOT,
    RULE_FILE,
    RULE_TESTS,
    RULES_MANIFEST,
    alerts,
    exported_names,
    metric_names,
    recorded,
    rules,
)

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian/Ubuntu: apt-get install prometheus; "
    "CI installs a checksum-pinned release)",
)
# Scrape health, written by the scraper itself for every target.
SCRAPER = {"up"}
ROUTE_MATCHER = re.compile(r'route=~"([^"]+)"')
LE_MATCHER = re.compile(r'le="([^"]+)"')


def _sync_rules() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sync_rules", REPO_ROOT / "scripts/sync_rules.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def promtool(*args: str | Path, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_rule_file_holds_exactly_the_groups_of_the_rules_object() -> None:
    plain = yaml.safe_load(RULE_FILE.read_text())
    manifest = yaml.safe_load(RULES_MANIFEST.read_text())
    assert plain == {"groups": manifest["spec"]["groups"]}
    # Byte for byte what `make rules` writes, so a hand edit of the copy cannot slip in.
    assert RULE_FILE.read_text() == _sync_rules().render(RULES_MANIFEST.read_text())


def test_sync_rules_check_reports_a_stale_copy_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _sync_rules()
    (tmp_path / "deploy/base").mkdir(parents=True)
    (tmp_path / "monitoring").mkdir()
    edited = RULES_MANIFEST.read_text().replace('le="0.025"', 'le="0.05"')
    (tmp_path / "deploy/base/rules.yaml").write_text(edited)
    (tmp_path / "monitoring/prometheus-rules.yaml").write_text(RULE_FILE.read_text())
    monkeypatch.setattr(module, "REPO_ROOT", tmp_path)
    assert module.main(["--check"]) == 1
    assert (tmp_path / "monitoring/prometheus-rules.yaml").read_text() == RULE_FILE.read_text()
    assert module.main([]) == 0
    assert 'le="0.05"' in (tmp_path / "monitoring/prometheus-rules.yaml").read_text()
    assert module.main(["--check"]) == 0


def test_sync_rules_refuses_a_file_that_is_not_a_rules_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = _sync_rules()
    (tmp_path / "deploy/base").mkdir(parents=True)
    (tmp_path / "deploy/base/rules.yaml").write_text("kind: ConfigMap\n")
    monkeypatch.setattr(module, "REPO_ROOT", tmp_path)
    assert module.main([]) == 2
    error = capsys.readouterr().err.strip()
    assert error == "sync_rules: deploy/base/rules.yaml is not a Rules object"
    assert not (tmp_path / "monitoring/prometheus-rules.yaml").exists()


@needs_promtool
def test_promtool_accepts_the_rule_file() -> None:
    result = promtool("check", "rules", RULE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


@pytest.mark.slow
@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        cases.extend(test.get("alert_rule_test", []))
    return cases


@pytest.mark.parametrize("alert", sorted(alerts()))
def test_every_alert_has_series_that_fire_it_and_series_that_must_not(alert: str) -> None:
    cases = [case for case in _cases() if case["alertname"] == alert]
    assert any(case["exp_alerts"] for case in cases), f"nothing fires {alert}"
    assert any(not case["exp_alerts"] for case in cases), f"nothing keeps {alert} quiet"


def test_burn_rate_alerts_use_the_workbook_windows_and_factors() -> None:
    # 14.4 spends 2% of a 30-day budget in 1 hour, 6 spends 5% in 6 hours.
    expected = {"Fast": ("1h", "5m", "14.4"), "Slow": ("6h", "30m", "6")}
    checked = set()
    for name, rule in alerts().items():
        speed = next((s for s in expected if name.endswith(f"{s}Burn")), None)
        if speed is None:
            continue
        checked.add((rule["labels"]["slo"], speed))
        long_window, short_window, factor = expected[speed]
        expr = " ".join(rule["expr"].split())
        objective = "0.999" if rule["labels"]["slo"] == "availability" else "0.99"
        threshold = f"> ({factor} * (1 - {objective}))"
        assert expr.count(threshold) == 2, expr
        assert f":ratio_rate{long_window} {threshold}" in expr, expr
        assert f":ratio_rate{short_window} {threshold}" in expr, expr
    # Both objectives have both alerts: a renamed alert would otherwise go unchecked.
    assert checked == {(slo, speed) for slo in ("availability", "latency") for speed in expected}


def test_rules_read_only_metrics_the_service_exports_or_rules_record() -> None:
    known = exported_names() | SCRAPER | recorded()
    assert alerts()
    assert recorded()
    for rule in rules():
        assert metric_names(rule["expr"]) <= known, rule.get("record") or rule.get("alert")


def test_metric_names_finds_the_metrics_and_nothing_else() -> None:
    expr = 'sum by (namespace, le) (rate(x_total{route=~"/a|b(c)"}[5m])) / on (ns) y:z:w > bool 1'
    assert metric_names(expr) == {"x_total", "y:z:w"}
    assert metric_names('absent(up{job="iris-api"} == 1)') == {"up"}


def test_exported_names_follow_the_metric_definitions() -> None:
    assert {
        "iris_http_requests_total",
        "iris_http_request_duration_seconds_bucket",
        "iris_predictions_total",
        "iris_model_info",
    } <= exported_names()


def test_route_matcher_selects_exactly_the_prediction_routes() -> None:
    # The route label is the route's path template (service.routes.ROUTES); every POST
    # route predicts, nothing else does.
    post_routes = {route.path for route in ROUTES if route.method == "POST"}
    other_routes = {route.path for route in ROUTES if route.method != "POST"}
    assert post_routes, "the service declares no POST route"
    patterns = {m for rule in rules() for m in ROUTE_MATCHER.findall(rule["expr"])}
    (pattern,) = patterns  # one definition of "prediction route" everywhere
    matcher = re.compile(f"^(?:{pattern})$")  # PromQL anchors its regular expressions
    assert {path for path in post_routes if matcher.match(path)} == post_routes
    assert not {path for path in other_routes if matcher.match(path)}
    assert not matcher.match("unmatched")


def test_latency_threshold_is_a_bucket_bound_twice_the_bench_p99_or_more() -> None:
    bounds = {float(m) for rule in rules() for m in LE_MATCHER.findall(rule["expr"])}
    (threshold,) = bounds
    buckets = metrics.REQUEST_DURATION._upper_bounds  # the histogram as the service builds it
    assert threshold in buckets
    bench = json.loads((REPO_ROOT / "bench" / "results" / "latest.json").read_text())
    cases = bench["cases"].values()
    p99s = [case["p99_ms"] / 1000 for case in cases if case["server"] == "iris-api"]
    assert p99s, "bench/results/latest.json has no case for this service"
    assert threshold >= 2 * max(p99s)
    # The tightest bucket that leaves that margin: not looser than the bench justifies.
    assert threshold == min(bound for bound in buckets if bound >= 2 * max(p99s))
