"""The Applications point at real overlays, and the AppProject allows exactly what they render."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.argocd.support import Manifest, group_of
from tests.tools import run_tool

pytestmark = pytest.mark.integration  # renders the overlays with real kustomize

IN_CLUSTER = "https://kubernetes.default.svc"
REPO_PLACEHOLDER = "https://github.com/your-org/iris-gitops.git"
FINALIZER = "resources-finalizer.argocd.argoproj.io"
# Not in Git, but the UI's resource tree only reaches the pods through them.
TREE_KINDS = {("apps", "ReplicaSet"), ("", "Pod")}


def test_each_environment_has_one_application_on_its_overlay(
    repo_root: Path, environment_apps: dict[str, Manifest]
) -> None:
    overlays = sorted(p.name for p in (repo_root / "deploy" / "overlays").iterdir() if p.is_dir())
    assert sorted(environment_apps) == [f"iris-{env}" for env in overlays]
    for name, app in environment_apps.items():
        env = name.removeprefix("iris-")
        source = app.doc["spec"]["source"]
        assert source["path"] == f"deploy/overlays/{env}"
        assert (repo_root / source["path"] / "kustomization.yaml").is_file()
        if env == "staging":
            # Staging follows main; production runs the commit a promotion pinned.
            assert source["targetRevision"] == "main"
        else:
            assert re.fullmatch(r"[0-9a-f]{40}", source["targetRevision"]), name


def test_each_application_path_renders_a_deployment(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    for name, objects in rendered.items():
        kinds = {obj["kind"] for obj in objects}
        assert "Deployment" in kinds, f"{name} renders {sorted(kinds)}"


def test_destinations_equal_the_overlay_namespaces(
    repo_root: Path,
    environment_apps: dict[str, Manifest],
    rendered: dict[str, list[dict[str, Any]]],
    project: Manifest,
) -> None:
    for name, app in environment_apps.items():
        destination = app.doc["spec"]["destination"]
        assert destination["server"] == IN_CLUSTER
        overlay = yaml.safe_load(
            (repo_root / app.doc["spec"]["source"]["path"] / "kustomization.yaml").read_text()
        )
        assert destination["namespace"] == overlay["namespace"], name
        namespaces = {
            obj["metadata"]["namespace"] for obj in rendered[name] if "namespace" in obj["metadata"]
        }
        assert namespaces == {destination["namespace"]}, name
    allowed = {(d["server"], d["namespace"]) for d in project.doc["spec"]["destinations"]}
    used = {
        (app.doc["spec"]["destination"]["server"], app.doc["spec"]["destination"]["namespace"])
        for app in environment_apps.values()
    }
    assert allowed == used


def _allowed(entries: list[dict[str, str]], group: str, kind: str, name: str = "") -> bool:
    return any(
        entry["group"] == group
        and entry["kind"] == kind
        and fnmatch.fnmatchcase(name, entry.get("name") or "*")
        for entry in entries
    )


def test_every_rendered_kind_is_allowed_by_the_project_and_nothing_more(
    rendered: dict[str, list[dict[str, Any]]],
    environment_apps: dict[str, Manifest],
    project: Manifest,
) -> None:
    spec = project.doc["spec"]
    namespaced_rules = spec["namespaceResourceWhitelist"]
    cluster_rules = spec.get("clusterResourceWhitelist", [])
    namespaced: set[tuple[str, str]] = set()
    for name, objects in rendered.items():
        for obj in objects:
            group, kind = group_of(obj["apiVersion"]), obj["kind"]
            # The overlays set a namespace, so kustomize leaves it off only cluster-scoped kinds.
            if "namespace" in obj["metadata"]:
                namespaced.add((group, kind))
                assert _allowed(namespaced_rules, group, kind), f"{name}: {group}/{kind} denied"
            else:
                assert _allowed(cluster_rules, group, kind, obj["metadata"]["name"]), (
                    f"{name}: cluster-scoped {group}/{kind} {obj['metadata']['name']} denied"
                )
    # Least privilege the other way round: no kind is allowed that nothing needs.
    listed = {(entry["group"], entry["kind"]) for entry in namespaced_rules}
    assert listed == namespaced | TREE_KINDS
    # CreateNamespace=true goes through the project: exactly the destination namespaces.
    creates = {
        app.doc["spec"]["destination"]["namespace"]
        for app in environment_apps.values()
        if "CreateNamespace=true" in app.doc["spec"]["syncPolicy"]["syncOptions"]
    }
    assert {(e["group"], e["kind"], e.get("name")) for e in cluster_rules} == {
        ("", "Namespace", ns) for ns in creates
    }


def test_every_application_uses_the_project_and_its_one_source_repository(
    applications: dict[str, Manifest], environment_apps: dict[str, Manifest], project: Manifest
) -> None:
    assert project.doc["spec"]["sourceRepos"] == [REPO_PLACEHOLDER]
    for app in applications.values():
        assert app.doc["spec"]["source"]["repoURL"] == REPO_PLACEHOLDER
    for app in environment_apps.values():
        assert app.doc["spec"]["project"] == project.name


@pytest.mark.parametrize("name", ["iris-staging", "iris-production"])
def test_environment_sync_policy_is_automated_and_safe(
    name: str, environment_apps: dict[str, Manifest]
) -> None:
    doc = environment_apps[name].doc
    assert FINALIZER in doc["metadata"]["finalizers"]
    policy = doc["spec"]["syncPolicy"]
    assert policy["automated"] == {"prune": True, "selfHeal": True}
    assert set(policy["syncOptions"]) == {
        "CreateNamespace=true",
        "PruneLast=true",
        "ServerSideApply=true",
        "RespectIgnoreDifferences=true",
    }
    retry = policy["retry"]
    assert retry["limit"] >= 1
    assert set(retry["backoff"]) == {"duration", "factor", "maxDuration"}
    # The only difference ignored is the replica count the HPA owns.
    assert doc["spec"]["ignoreDifferences"] == [
        {
            "group": "apps",
            "kind": "Deployment",
            "name": "iris-api",
            "jsonPointers": ["/spec/replicas"],
        }
    ]


def test_ignored_replicas_belong_to_a_deployment_scaled_by_an_hpa(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    for name, objects in rendered.items():
        hpas = [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
        assert [h["spec"]["scaleTargetRef"]["name"] for h in hpas] == ["iris-api"], name


def test_projects_keep_their_finalizer_and_the_iris_project_warns_on_orphans(
    project: Manifest, root_project: Manifest
) -> None:
    for found in (project, root_project):
        assert FINALIZER in found.doc["metadata"]["finalizers"], found.name
    assert project.doc["spec"]["orphanedResources"] == {"warn": True}


def test_root_application_manages_exactly_the_environment_applications(
    repo_root: Path, applications: dict[str, Manifest], environment_apps: dict[str, Manifest]
) -> None:
    root = applications["iris-root"]
    spec = root.doc["spec"]
    assert root.relpath == "argocd/root.yaml"
    assert spec["destination"] == {"server": IN_CLUSTER, "namespace": "argocd"}
    # Only argocd/apps/: not root.yaml (applied by hand) and not argocd/install/ (Argo CD itself).
    assert spec["source"]["path"] == "argocd/apps"
    assert spec["source"]["directory"] == {"recurse": False}
    base = repo_root / spec["source"]["path"]
    managed = {p.relative_to(repo_root).as_posix() for p in base.iterdir() if p.is_file()}
    assert managed == {app.relpath for app in environment_apps.values()}
    assert set(applications) - set(environment_apps) == {"iris-root"}


def test_nothing_uses_the_default_project(repo_root: Path, manifests: list[Manifest]) -> None:
    # `default` allows every repository, destination and kind; argocd/install/ empties it,
    # and nothing here may rely on it (a forgotten `project: default` must fail closed).
    for manifest in manifests:
        if manifest.kind == "Application":
            assert manifest.doc["spec"]["project"] in {"iris", "iris-root"}, manifest.name
    # Anything under argocd/, the install kustomization's patches included: an Application
    # never names `default`, and a `default` project, where one is written, allows nothing.
    for path in sorted((repo_root / "argocd").rglob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict):
                continue
            if doc.get("kind") == "Application":
                assert (doc.get("spec") or {}).get("project") != "default", path
            if doc.get("kind") == "AppProject" and doc["metadata"]["name"] == "default":
                spec = doc.get("spec") or {}
                assert not spec.get("sourceRepos"), path
                assert not spec.get("destinations"), path


def test_the_root_project_may_create_applications_in_argocd_from_this_repository_only(
    root_project: Manifest, applications: dict[str, Manifest]
) -> None:
    spec = root_project.doc["spec"]
    assert spec["sourceRepos"] == [REPO_PLACEHOLDER]
    assert spec["destinations"] == [{"server": IN_CLUSTER, "namespace": "argocd"}]
    # Exactly one kind; not AppProject, so no commit can widen a project.
    assert spec["namespaceResourceWhitelist"] == [{"group": "argoproj.io", "kind": "Application"}]
    # An empty list denies every cluster-scoped kind (a missing one would too, but say it).
    assert spec["clusterResourceWhitelist"] == []
    assert "namespaceResourceBlacklist" not in spec
    assert "clusterResourceBlacklist" not in spec
    # Only the root runs in it; an environment Application there could create Applications.
    users = sorted(n for n, a in applications.items() if a.doc["spec"]["project"] == "iris-root")
    assert users == ["iris-root"]


def test_projects_are_applied_by_hand_not_synced_from_git(
    manifests: list[Manifest], applications: dict[str, Manifest]
) -> None:
    # The root syncs argocd/apps only, and that directory holds only Applications.
    root_path = applications["iris-root"].doc["spec"]["source"]["path"]
    synced = [m for m in manifests if m.relpath.startswith(root_path + "/")]
    assert synced
    assert {m.kind for m in synced} == {"Application"}
    assert {m.relpath for m in manifests if m.kind == "AppProject"} == {"argocd/root.yaml"}


@pytest.mark.parametrize("name", ["iris-root", "iris-staging", "iris-production"])
def test_every_application_retries_on_the_newest_revision_and_diffs_server_side(
    name: str, applications: dict[str, Manifest]
) -> None:
    doc = applications[name].doc
    # A revert must not wait behind five retries of the revision it replaces.
    assert doc["spec"]["syncPolicy"]["retry"]["refresh"] is True
    annotations = doc["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/compare-options"] == "ServerSideDiff=true"
    assert "ServerSideApply=true" in doc["spec"]["syncPolicy"]["syncOptions"]


def test_only_production_waits_for_a_person_before_the_root_prunes_it(
    applications: dict[str, Manifest],
) -> None:
    def sync_options(name: str) -> str | None:
        annotations = applications[name].doc["metadata"].get("annotations", {})
        value = annotations.get("argocd.argoproj.io/sync-options")
        return None if value is None else str(value)

    assert sync_options("iris-production") == "Prune=confirm"
    assert sync_options("iris-staging") is None
    # The root itself still prunes (so a removed staging goes away on its own).
    assert applications["iris-root"].doc["spec"]["syncPolicy"]["automated"]["prune"] is True


def test_yamllint_is_clean(repo_root: Path) -> None:
    result = run_tool("yamllint", "--strict", "--format", "parsable", "argocd", cwd=repo_root)
    assert result.returncode == 0, result.stdout + result.stderr
