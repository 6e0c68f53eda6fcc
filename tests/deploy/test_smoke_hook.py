"""The PostSync smoke test every overlay renders: an Argo CD hook Job from the release image.

Read from kustomize's real output. The strict schema and checkov scans of tests/deploy cover
these objects as part of each overlay; here are the rules particular to the hook.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from tests.deploy.support import Render, parse_dockerfile

SMOKE = "iris-api-smoke-test"


def job(render: Render) -> dict[str, Any]:
    return render.one("Job", SMOKE)


def pod(render: Render) -> dict[str, Any]:
    return dict(job(render)["spec"]["template"]["spec"])


def test_the_hook_runs_after_each_sync_and_is_deleted_once_it_passed(rendered: Render) -> None:
    annotations = job(rendered)["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "PostSync"
    policies = annotations["argocd.argoproj.io/hook-delete-policy"].split(",")
    # HookSucceeded: gone on success; a failed Job stays for its logs, and
    # BeforeHookCreation lets the next sync replace it under the same name.
    assert sorted(policies) == ["BeforeHookCreation", "HookSucceeded"]
    spec = job(rendered)["spec"]
    assert pod(rendered)["restartPolicy"] == "Never"
    assert spec["backoffLimit"] <= 1
    assert 0 < spec["activeDeadlineSeconds"] <= 600


def test_the_hook_runs_the_image_the_deployment_runs(rendered: Render) -> None:
    (deployment_container,) = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"]
    (hook,) = pod(rendered)["containers"]
    assert hook["image"] == deployment_container["image"]
    assert "@sha256:" in hook["image"]


def test_the_hook_runs_the_smoke_module_the_image_ships(rendered: Render, repo_root: Path) -> None:
    (hook,) = pod(rendered)["containers"]
    assert hook["command"][:3] == ["python", "-m", "service.smoke"]
    # Through the Service of its own namespace, by name.
    assert hook["command"][3] == f"http://{rendered.one('Service')['metadata']['name']}"
    assert (repo_root / "service" / "smoke.py").is_file()
    copied = [
        shlex.split(i.arguments)
        for i in parse_dockerfile((repo_root / "Dockerfile").read_text())
        if i.keyword == "COPY" and i.stage == "runtime"
    ]
    assert ["service/", "service/"] in copied


def test_the_hook_pod_meets_the_restricted_pod_security_standard(rendered: Render) -> None:
    spec = pod(rendered)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    assert not {"hostNetwork", "hostPID", "hostIPC", "volumes"} & set(spec)
    (hook,) = spec["containers"]
    context = hook["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["privileged"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"]["drop"] == ["ALL"]
    assert "add" not in context["capabilities"]
    assert context["runAsUser"] != 0
    # Guaranteed and Autopilot-compatible, like the API.
    assert hook["resources"]["requests"] == hook["resources"]["limits"]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_no_selector_of_the_api_picks_up_the_hook_pod(rendered: Render) -> None:
    labels = job(rendered)["spec"]["template"]["metadata"]["labels"]
    assert not _selects(rendered.one("Service")["spec"]["selector"], labels)
    assert not _selects(
        rendered.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"], labels
    )
    assert not _selects(rendered.one("NetworkPolicy")["spec"]["podSelector"]["matchLabels"], labels)
    assert not _selects(rendered.one("Deployment")["spec"]["selector"]["matchLabels"], labels)


def test_the_network_policies_let_the_hook_reach_the_api_port_and_nothing_else(
    rendered: Render,
) -> None:
    labels = job(rendered)["spec"]["template"]["metadata"]["labels"]
    own = rendered.one("NetworkPolicy", SMOKE)["spec"]
    assert _selects(own["podSelector"]["matchLabels"], labels)
    assert sorted(own["policyTypes"]) == ["Egress", "Ingress"]
    assert own["ingress"] == []
    api_pod_labels = rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    (api_container,) = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"]
    (api_port,) = [p for p in api_container["ports"] if p["name"] == "http"]
    to_api = [rule for rule in own["egress"] if "to" in rule]
    assert len(to_api) == 1
    # An empty `to` would admit every destination.
    (peer,) = to_api[0]["to"]
    assert _selects(peer["podSelector"]["matchLabels"], api_pod_labels)
    assert to_api[0]["ports"] == [{"port": api_port["containerPort"], "protocol": "TCP"}]
    dns = [rule for rule in own["egress"] if "to" not in rule]
    assert dns == [{"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]
    # The API's own policy admits its serving port from any pod, the hook's included.
    serving = [
        rule
        for rule in rendered.one("NetworkPolicy")["spec"]["ingress"]
        if [p["port"] for p in rule["ports"]] in (["http"], [api_port["containerPort"]])
    ]
    assert serving
    assert all("from" not in rule for rule in serving)
