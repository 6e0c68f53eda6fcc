"""Fixtures for the Argo CD manifest tests: the CRD schemas and the rendered overlays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.argocd.support import (
    CRD_FILES,
    CRDS_ENV,
    Manifest,
    argocd_manifests,
    crds_dir,
    kustomize,
    load_schema,
)


@pytest.fixture(scope="session")
def validators(repo_root: Path) -> dict[str, Draft202012Validator]:
    """A strict validator per Argo CD kind, built from the v3.5.1 CRDs."""
    directory = crds_dir(repo_root)
    if directory is None:
        pytest.skip(
            f"Argo CD v3.5.1 CRDs not found: set {CRDS_ENV} to a directory holding "
            f"{', '.join(CRD_FILES.values())} (argoproj/argo-cd, manifests/crds/)"
        )
    result = {}
    for kind in CRD_FILES:
        schema = load_schema(directory, kind)
        Draft202012Validator.check_schema(schema)
        result[kind] = Draft202012Validator(schema)
    return result


@pytest.fixture(scope="session")
def manifests(repo_root: Path) -> list[Manifest]:
    found = argocd_manifests(repo_root)
    assert found, "argocd/ holds no manifests"
    return found


@pytest.fixture(scope="session")
def applications(manifests: list[Manifest]) -> dict[str, Manifest]:
    return {m.name: m for m in manifests if m.kind == "Application"}


@pytest.fixture(scope="session")
def project(manifests: list[Manifest]) -> Manifest:
    """The AppProject of the environment Applications."""
    (found,) = [m for m in manifests if m.kind == "AppProject" and m.name == "iris"]
    return found


@pytest.fixture(scope="session")
def root_project(manifests: list[Manifest]) -> Manifest:
    """The AppProject of the app of apps."""
    (found,) = [m for m in manifests if m.kind == "AppProject" and m.name == "iris-root"]
    return found


@pytest.fixture(scope="session")
def environment_apps(applications: dict[str, Manifest]) -> dict[str, Manifest]:
    """The Applications that deploy an overlay (every one but the app of apps)."""
    return {
        name: app
        for name, app in applications.items()
        if app.doc["spec"]["source"]["path"].startswith("deploy/overlays/")
    }


@pytest.fixture(scope="session")
def rendered(
    repo_root: Path, environment_apps: dict[str, Manifest]
) -> dict[str, list[dict[str, Any]]]:
    """What each environment Application's path renders to, keyed by Application name."""
    return {
        name: kustomize(repo_root / app.doc["spec"]["source"]["path"])
        for name, app in environment_apps.items()
    }
