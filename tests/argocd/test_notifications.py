"""Argo CD Notifications configuration against the v3.5.1 notifications catalog's structure.

The catalog (argoproj/argo-cd notifications_catalog/install.yaml at v3.5.1) is read from the
shared data directory; these tests skip when it is absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.argocd.support import crds_dir

PATCH = Path("argocd/install/argocd-notifications-cm.patch.yaml")
TRIGGERS = ("on-deployed", "on-health-degraded", "on-sync-failed")
# The fields the GitHub service reads from a template (docs: notifications/services/github).
GITHUB_TEMPLATE_KEYS = {"repoURLPath", "revisionPath", "status"}
GITHUB_STATUS_KEYS = {"state", "label", "targetURL"}
GITHUB_STATES = {"success", "failure", "error", "pending"}


@pytest.fixture(scope="module")
def catalog(repo_root: Path) -> dict[str, Any]:
    directory = crds_dir(repo_root)
    path = None if directory is None else directory / "install" / "notifications-catalog.yaml"
    if path is None or not path.is_file():
        pytest.skip("the Argo CD v3.5.1 notifications catalog is not available (../shared)")
    data: dict[str, Any] = yaml.safe_load(path.read_text())["data"]
    return data


@pytest.fixture(scope="module")
def config(repo_root: Path) -> dict[str, Any]:
    doc = yaml.safe_load((repo_root / PATCH).read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("v1", "ConfigMap")
    # The name the v3.5.1 install gives the controller's ConfigMap, which this patches.
    assert doc["metadata"] == {"name": "argocd-notifications-cm"}
    data: dict[str, Any] = doc["data"]
    return data


def parsed(config: dict[str, Any], key: str) -> Any:
    return yaml.safe_load(config[key])


def test_the_triggers_are_the_catalog_s_own_sending_our_templates(
    config: dict[str, Any], catalog: dict[str, Any]
) -> None:
    for name in TRIGGERS:
        (ours,) = parsed(config, f"trigger.{name}")
        (theirs,) = yaml.safe_load(catalog[f"trigger.{name}"])
        assert set(ours) == set(theirs), name
        assert {k: v for k, v in ours.items() if k != "send"} == {
            k: v for k, v in theirs.items() if k != "send"
        }, f"trigger.{name} must keep the catalog's condition"
        (template,) = ours["send"]
        assert f"template.{template}" in config, f"trigger.{name} sends an undefined template"


def test_every_key_is_a_kind_the_catalog_or_the_controller_knows(
    config: dict[str, Any], catalog: dict[str, Any]
) -> None:
    known_prefixes = {key.split(".", 1)[0] for key in catalog}
    assert known_prefixes == {"template", "trigger"}
    for key in config:
        prefix = key.split(".", 1)[0]
        assert prefix in {"template", "trigger", "service", "context"}, key
    assert [key for key in config if key.startswith("service.")] == ["service.github"]


def test_templates_set_a_github_commit_status_per_application(
    config: dict[str, Any], catalog: dict[str, Any]
) -> None:
    catalog_keys = set().union(
        *(yaml.safe_load(v).keys() for k, v in catalog.items() if k.startswith("template."))
    )
    states = {}
    for key in [k for k in config if k.startswith("template.")]:
        template = parsed(config, key)
        assert set(template) <= catalog_keys | {"github"}, key
        github = template["github"]
        assert set(github) <= GITHUB_TEMPLATE_KEYS, key
        assert set(github["status"]) == GITHUB_STATUS_KEYS, key
        assert github["status"]["state"] in GITHUB_STATES
        # The context the promotion gate reads: argocd/iris-staging, argocd/iris-production.
        assert github["status"]["label"] == "argocd/{{.app.metadata.name}}"
        assert github["repoURLPath"] == "{{.app.spec.source.repoURL}}"
        states[key] = github["status"]["state"]
    sent = {name: parsed(config, f"trigger.{name}")[0]["send"][0] for name in TRIGGERS}
    assert states[f"template.{sent['on-deployed']}"] == "success"
    assert states[f"template.{sent['on-health-degraded']}"] == "failure"
    assert states[f"template.{sent['on-sync-failed']}"] == "failure"


def test_the_github_app_credentials_come_from_the_secret_only(config: dict[str, Any]) -> None:
    service = parsed(config, "service.github")
    assert set(service) == {"appID", "installationID", "privateKey"}
    # `$key` is read from the Secret argocd-notifications-secret: nothing secret in Git.
    assert all(str(value).startswith("$") for value in service.values())


def test_the_install_kustomization_applies_the_configuration(repo_root: Path) -> None:
    kustomization = yaml.safe_load((repo_root / "argocd/install/kustomization.yaml").read_text())
    assert {"path": PATCH.name} in kustomization["patches"]


def test_each_environment_subscribes_to_the_three_triggers(repo_root: Path) -> None:
    for env in ("staging", "production"):
        app = yaml.safe_load((repo_root / "argocd" / "apps" / f"{env}.yaml").read_text())
        annotations = app["metadata"]["annotations"]
        subscribed = {
            key.removeprefix("notifications.argoproj.io/subscribe.").split(".")[0]
            for key in annotations
            if key.startswith("notifications.argoproj.io/subscribe.") and key.endswith(".github")
        }
        assert subscribed == set(TRIGGERS), env
        # The status context is argocd/<name>: the gate reads argocd/iris-staging.
        assert app["metadata"]["name"] == f"iris-{env}"
