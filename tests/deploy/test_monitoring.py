"""The PodMonitoring and Rules of every overlay are valid against Managed Service for
Prometheus's own CRDs (prometheus-engine v0.17.2, kept in third_party/), strictly.

The CRDs' openAPIV3Schema is checked with JSON Schema, closed against unknown fields, with
Prometheus durations checked for `format: duration`. Their CEL rules
(x-kubernetes-validations) are not JSON Schema; the ones that apply to fields used here are
restated in `cel_errors` below.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker

from tests.argocd.support import crd_schema
from tests.deploy.support import OVERLAYS, Render
from tests.monitoring.support import API_VERSION, CRD_FILES, CRDS_DIR, DURATION, RULES_MANIFEST

FORMATS = FormatChecker()


@FORMATS.checks("duration")
def _is_duration(value: object) -> bool:
    return not isinstance(value, str) or bool(DURATION.match(value))


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+)(ms|[smhdwy])", duration))


@pytest.fixture(scope="module")
def validators() -> dict[str, Draft202012Validator]:
    result = {}
    for kind, filename in CRD_FILES.items():
        schema = crd_schema(CRDS_DIR / filename, kind, API_VERSION)
        Draft202012Validator.check_schema(schema)
        result[kind] = Draft202012Validator(schema, format_checker=FORMATS)
    return result


def cel_errors(doc: dict[str, Any]) -> list[str]:
    """The CRDs' CEL rules on the fields this repository uses."""
    found = []
    if doc["kind"] == "PodMonitoring":
        for endpoint in doc["spec"].get("endpoints", []):
            timeout, interval = endpoint.get("timeout"), endpoint.get("interval", "")
            if timeout and DURATION.match(timeout) and _seconds(timeout) > _seconds(interval):
                found.append("scrape timeout must not be greater than scrape interval")
            if endpoint.get("port") == 0:
                found.append("Port is required")
    if doc["kind"] == "Rules":
        for group in doc["spec"].get("groups", []):
            for rule in group.get("rules", []):
                if ("record" in rule) == ("alert" in rule):
                    found.append("Must set exactly one of Record or Alert")
                if "annotations" in rule and "alert" not in rule:
                    found.append("Annotations are only allowed for alerting rules")
    return found


def errors(validators: dict[str, Draft202012Validator], doc: dict[str, Any]) -> list[str]:
    schema_errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validators[doc["kind"]].iter_errors(doc)
    ]
    return schema_errors + cel_errors(doc)


@pytest.mark.parametrize("name", [*CRD_FILES.values(), "LICENSE"])
def test_kept_crd_files_match_their_recorded_sha256(name: str) -> None:
    readme = (CRDS_DIR / "README.md").read_text()
    (row,) = [line for line in readme.splitlines() if line.startswith(f"| `{name}` |")]
    recorded = re.findall(r"`([0-9a-f]{64})`", row)
    assert recorded == [hashlib.sha256((CRDS_DIR / name).read_bytes()).hexdigest()]
    # The source is pinned by commit, not by a tag that could move.
    assert re.search(r"/prometheus-engine/[0-9a-f]{40}/", row), row


@pytest.mark.parametrize("kind", sorted(CRD_FILES))
def test_each_overlay_object_is_valid_against_its_crd(
    renders: dict[str, Render], validators: dict[str, Draft202012Validator], kind: str
) -> None:
    for overlay in OVERLAYS:
        doc = renders[overlay].one(kind)
        assert errors(validators, doc) == [], overlay


def _monitoring(renders: dict[str, Render]) -> dict[str, Any]:
    return copy.deepcopy(renders["staging"].one("PodMonitoring"))


def _rules(renders: dict[str, Render]) -> dict[str, Any]:
    return copy.deepcopy(renders["staging"].one("Rules"))


Mutation = Callable[[dict[str, Any]], None]

BROKEN: dict[str, tuple[str, Mutation, str]] = {
    "misspelt endpoints": (
        "PodMonitoring",
        lambda d: d["spec"].__setitem__("endpoint", d["spec"].pop("endpoints")),
        "endpoint",
    ),
    "interval that is not a duration": (
        "PodMonitoring",
        lambda d: d["spec"]["endpoints"][0].__setitem__("interval", "30 seconds"),
        "'30 seconds' is not a 'duration'",
    ),
    "timeout longer than the interval": (
        "PodMonitoring",
        lambda d: d["spec"]["endpoints"][0].__setitem__("timeout", "1m"),
        "scrape timeout must not be greater than scrape interval",
    ),
    "scheme not http(s)": (
        "PodMonitoring",
        lambda d: d["spec"]["endpoints"][0].__setitem__("scheme", "tcp"),
        "'tcp' is not one of",
    ),
    "port as a list": (
        "PodMonitoring",
        lambda d: d["spec"]["endpoints"][0].__setitem__("port", ["http"]),
        "is not of type",
    ),
    "wrong apiVersion": (
        "PodMonitoring",
        lambda d: d.__setitem__("apiVersion", "monitoring.coreos.com/v1"),
        "'monitoring.googleapis.com/v1' was expected",
    ),
    "rule with both record and alert": (
        "Rules",
        lambda d: d["spec"]["groups"][0]["rules"][0].__setitem__("alert", "X"),
        "Must set exactly one of Record or Alert",
    ),
    "annotations on a recording rule": (
        "Rules",
        lambda d: d["spec"]["groups"][0]["rules"][0].__setitem__("annotations", {"a": "b"}),
        "Annotations are only allowed for alerting rules",
    ),
    "misspelt expr": (
        "Rules",
        lambda d: d["spec"]["groups"][0]["rules"][0].__setitem__(
            "expression", d["spec"]["groups"][0]["rules"][0].pop("expr")
        ),
        "'expr' is a required property",
    ),
    "record name with a dash": (
        "Rules",
        lambda d: d["spec"]["groups"][0]["rules"][0].__setitem__("record", "iris-requests"),
        "does not match",
    ),
    "group without rules": (
        "Rules",
        lambda d: d["spec"]["groups"][0].__setitem__("rules", []),
        "should be non-empty",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_schema_rejects(
    case: str, renders: dict[str, Render], validators: dict[str, Draft202012Validator]
) -> None:
    kind, mutate, expected = BROKEN[case]
    doc = _monitoring(renders) if kind == "PodMonitoring" else _rules(renders)
    mutate(doc)
    found = errors(validators, doc)
    assert any(expected in message for message in found), found


def test_pod_monitoring_scrapes_a_named_port_of_the_pods_at_metrics_path(
    renders: dict[str, Render],
) -> None:
    for overlay in OVERLAYS:
        render = renders[overlay]
        pod = render.one("Deployment")["spec"]["template"]
        (endpoint,) = render.one("PodMonitoring")["spec"]["endpoints"]
        ports = {port["name"] for c in pod["spec"]["containers"] for port in c.get("ports", [])}
        assert endpoint["port"] in ports, overlay
        assert endpoint["path"] == "/metrics"


def test_rendered_rules_are_the_rules_file_unchanged(renders: dict[str, Render]) -> None:
    # kustomize must not touch the rules; only namespace and labels are added.
    groups = yaml.safe_load(RULES_MANIFEST.read_text())["spec"]["groups"]
    for overlay in OVERLAYS:
        rules = renders[overlay].one("Rules")
        assert rules["spec"]["groups"] == groups
        assert rules["metadata"]["namespace"] == f"iris-{overlay}"
