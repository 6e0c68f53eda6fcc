"""What the monitoring tests share: the kept CRDs, the rule groups, the dashboard's queries,
PromQL's metric names and the samples of a text exposition."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from service import metrics

REPO_ROOT = Path(__file__).resolve().parents[2]
CRDS_DIR = REPO_ROOT / "third_party" / "prometheus-engine"
API_VERSION = "monitoring.googleapis.com/v1"
CRD_FILES = {
    "PodMonitoring": "monitoring.googleapis.com_podmonitorings.yaml",
    "Rules": "monitoring.googleapis.com_rules.yaml",
}
RULES_MANIFEST = REPO_ROOT / "deploy" / "base" / "rules.yaml"
RULE_FILE = REPO_ROOT / "monitoring" / "prometheus-rules.yaml"
RULE_TESTS = REPO_ROOT / "monitoring" / "rules.test.yaml"
DASHBOARD = REPO_ROOT / "monitoring" / "dashboard.json"

# A Prometheus duration, as the CRDs' `format: duration` means it (model.ParseDuration).
DURATION = re.compile(r"^(?:0|(?:\d+y)?(?:\d+w)?(?:\d+d)?(?:\d+h)?(?:\d+m)?(?:\d+s)?(?:\d+ms)?)$")

# Words of PromQL that are not metric names: functions are recognised by their "(".
_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
}  # fmt: skip


def rule_groups() -> list[dict[str, Any]]:
    """The rule groups of the Rules object in deploy/base."""
    groups: list[dict[str, Any]] = yaml.safe_load(RULES_MANIFEST.read_text())["spec"]["groups"]
    return groups


def rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


def recorded() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def exported_names() -> set[str]:
    """The sample names the metrics of service/metrics.py are exposed under."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    names = set()
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            names |= {metric._name + suffix for suffix in suffixes[metric._type]}
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads.

    Strings, label matchers, grouping clauses and range selectors are dropped first; what
    is left that looks like an identifier and is neither a function (followed by "(") nor
    a keyword is a metric name.
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        following = text[match.end() :].lstrip()
        if following.startswith("(") or word.lower() in _KEYWORDS:
            continue
        if re.fullmatch(r"\d+(?:e\d+)?", word):
            continue
        names.add(word)
    return names


def dashboard() -> dict[str, Any]:
    """monitoring/dashboard.json."""
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_queries(node: object) -> Iterator[str]:
    """Every PromQL query (`prometheusQuery`) anywhere in a dashboard, in order."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "prometheusQuery":
                yield value
            else:
                yield from dashboard_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_queries(item)


SeriesKey = tuple[str, frozenset[tuple[str, str]]]


def samples(text: str) -> dict[SeriesKey, float]:
    """Every sample of a Prometheus text exposition, keyed by sample name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
