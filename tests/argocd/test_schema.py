"""Every manifest in argocd/ is valid against Argo CD v3.5.1's own CRD schema, strictly."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.argocd.support import Manifest, argocd_manifests

REPO_ROOT = Path(__file__).resolve().parents[2]
ALL = argocd_manifests(REPO_ROOT)


def errors(validator: Draft202012Validator, doc: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(doc)
    ]


@pytest.mark.parametrize("manifest", ALL, ids=[f"{m.relpath}:{m.kind}/{m.name}" for m in ALL])
def test_manifest_is_valid_against_its_crd(
    manifest: Manifest, validators: dict[str, Draft202012Validator]
) -> None:
    assert manifest.kind in validators, f"{manifest.relpath}: unexpected kind {manifest.kind}"
    assert errors(validators[manifest.kind], manifest.doc) == []


def test_argocd_holds_the_projects_the_root_and_one_application_per_environment() -> None:
    names = sorted((m.relpath, m.kind, m.name) for m in ALL)
    assert names == [
        ("argocd/apps/production.yaml", "Application", "iris-production"),
        ("argocd/apps/staging.yaml", "Application", "iris-staging"),
        ("argocd/root.yaml", "AppProject", "iris"),
        ("argocd/root.yaml", "AppProject", "iris-root"),
        ("argocd/root.yaml", "Application", "iris-root"),
    ]


def _app(name: str) -> dict[str, Any]:
    (found,) = [m for m in ALL if m.kind == "Application" and m.name == name]
    return copy.deepcopy(found.doc)


def _project() -> dict[str, Any]:
    (found,) = [m for m in ALL if m.kind == "AppProject" and m.name == "iris"]
    return copy.deepcopy(found.doc)


def _rename(mapping: dict[str, Any], old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


Mutation = Callable[[dict[str, Any]], None]

BROKEN_APPLICATIONS: dict[str, tuple[Mutation, str]] = {
    "misspelt destination": (
        lambda d: _rename(d["spec"], "destination", "destinaton"),
        "destinaton",
    ),
    "repoUrl instead of repoURL": (
        lambda d: _rename(d["spec"]["source"], "repoURL", "repoUrl"),
        "repoUrl",
    ),
    "prune as a string": (
        lambda d: d["spec"]["syncPolicy"]["automated"].__setitem__("prune", "yes"),
        "'yes' is not of type 'boolean'",
    ),
    "retry limit as a string": (
        lambda d: d["spec"]["syncPolicy"]["retry"].__setitem__("limit", "5"),
        "'5' is not of type 'integer'",
    ),
    "retry refresh as a string": (
        lambda d: d["spec"]["syncPolicy"]["retry"].__setitem__("refresh", "true"),
        "'true' is not of type 'boolean'",
    ),
    "misspelt retry refresh": (
        lambda d: _rename(d["spec"]["syncPolicy"]["retry"], "refresh", "refesh"),
        "refesh",
    ),
    "unknown syncPolicy field": (
        lambda d: d["spec"]["syncPolicy"].__setitem__("autoSync", True),
        "autoSync",
    ),
    "misspelt finalizers": (
        lambda d: _rename(d["metadata"], "finalizers", "finalizer"),
        "finalizer",
    ),
    "missing project": (lambda d: d["spec"].pop("project"), "'project' is a required property"),
    "ignoreDifferences without kind": (
        lambda d: d["spec"]["ignoreDifferences"][0].pop("kind"),
        "'kind' is a required property",
    ),
    "wrong apiVersion": (
        lambda d: d.__setitem__("apiVersion", "argoproj.io/v1"),
        "'argoproj.io/v1alpha1' was expected",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_APPLICATIONS))
def test_application_schema_rejects(case: str, validators: dict[str, Draft202012Validator]) -> None:
    mutate, expected = BROKEN_APPLICATIONS[case]
    doc = _app("iris-staging")
    mutate(doc)
    found = errors(validators["Application"], doc)
    assert any(expected in message for message in found), found


BROKEN_PROJECTS: dict[str, tuple[Mutation, str]] = {
    "misspelt whitelist key": (
        lambda d: _rename(d["spec"]["namespaceResourceWhitelist"][0], "kind", "knd"),
        "knd",
    ),
    "orphanedResources.warn as a string": (
        lambda d: d["spec"]["orphanedResources"].__setitem__("warn", "true"),
        "'true' is not of type 'boolean'",
    ),
    "sourceRepos as a string": (
        lambda d: d["spec"].__setitem__("sourceRepos", "https://example.com/x.git"),
        "is not of type 'array'",
    ),
    "unknown destination field": (
        lambda d: d["spec"]["destinations"][0].__setitem__("cluster", "in-cluster"),
        "cluster",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_PROJECTS))
def test_appproject_schema_rejects(case: str, validators: dict[str, Draft202012Validator]) -> None:
    mutate, expected = BROKEN_PROJECTS[case]
    doc = _project()
    mutate(doc)
    found = errors(validators["AppProject"], doc)
    assert any(expected in message for message in found), found


@pytest.mark.parametrize(("count", "valid"), [(3, True), ("3", True), (2.5, False), (True, False)])
def test_int_or_string_fields_accept_both_and_nothing_else(
    count: object, valid: bool, validators: dict[str, Draft202012Validator]
) -> None:
    doc = _app("iris-staging")
    doc["spec"]["source"]["kustomize"] = {"replicas": [{"name": "iris-api", "count": count}]}
    assert (errors(validators["Application"], doc) == []) is valid


def test_fields_the_crd_leaves_open_stay_open(validators: dict[str, Draft202012Validator]) -> None:
    # helm.valuesObject is x-kubernetes-preserve-unknown-fields: any keys are legal there,
    # so closing every object blindly would reject valid Applications.
    doc = _app("iris-staging")
    doc["spec"]["source"]["helm"] = {"valuesObject": {"anything": {"nested": [1, "two"]}}}
    assert errors(validators["Application"], doc) == []
