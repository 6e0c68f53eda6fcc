"""What the rendered overlays must say, read from kustomize's real output.

Each rule here is one a reviewer would check by hand: immutable image
references, selectors that never change, the HPA alone owning the replica
count, rollouts that never drop capacity, a locked-down pod, sizing that GKE
Autopilot accepts unchanged.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.support import OVERLAYS, Render, quantity

EXPECTED_KINDS = {
    "ServiceAccount",
    "Deployment",
    "Service",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "PodMonitoring",
    "Rules",
}
RECOMMENDED_LABELS = {
    "app.kubernetes.io/name": "iris-api",
    "app.kubernetes.io/component": "inference",
    "app.kubernetes.io/part-of": "iris-gitops",
}
SELECTOR = {"app.kubernetes.io/name": "iris-api"}
# The PostSync smoke test the release component adds beside the API
# (tests/deploy/test_smoke_hook.py).
SMOKE_TEST = "iris-api-smoke-test"
SMOKE_KINDS = {"Job", "NetworkPolicy"}
# <region>-docker.pkg.dev/<project>/<repository>/iris-api:sha-<hex>@sha256:<64 hex>
IMMUTABLE_IMAGE = re.compile(
    r"^(?P<region>[a-z]+-[a-z]+[0-9])-docker\.pkg\.dev/"
    r"(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9])/(?P<repository>[a-z][a-z0-9-]*)/iris-api"
    r":sha-[0-9a-f]{7,40}@sha256:[0-9a-f]{64}$"
)
# Keys an overlay's kustomization.yaml may use: anything else (commonLabels,
# patchesStrategicMerge, replicas, vars...) is deprecated or fights the HPA.
OVERLAY_KEYS = {"apiVersion", "kind", "namespace", "resources", "patches", "components"}
DEPRECATED_KUSTOMIZE_KEYS = {
    "bases",
    "commonLabels",
    "patchesStrategicMerge",
    "patchesJson6902",
    "vars",
    "replicas",
}


def container(render: Render) -> dict[str, Any]:
    containers = render.one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def env_of(render: Render) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container(render)["env"]}


def api_objects(render: Render) -> list[dict[str, Any]]:
    return [doc for doc in render.documents if doc["metadata"]["name"] != SMOKE_TEST]


def test_overlay_renders_every_kind_once_in_its_namespace(rendered: Render) -> None:
    kinds = [doc["kind"] for doc in api_objects(rendered)]
    assert sorted(kinds) == sorted(EXPECTED_KINDS)
    smoke = [doc["kind"] for doc in rendered.documents if doc["metadata"]["name"] == SMOKE_TEST]
    assert sorted(smoke) == sorted(SMOKE_KINDS)
    for doc in rendered.documents:
        assert doc["metadata"]["name"] in ("iris-api", SMOKE_TEST)
        assert doc["metadata"]["namespace"] == f"iris-{rendered.overlay}"


def test_every_object_and_the_pods_carry_the_recommended_labels(rendered: Render) -> None:
    for doc in api_objects(rendered):
        assert RECOMMENDED_LABELS.items() <= doc["metadata"]["labels"].items(), doc["kind"]
    pod_labels = rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert RECOMMENDED_LABELS.items() <= pod_labels.items()


def selectors(render: Render) -> dict[str, Any]:
    deployment = render.one("Deployment")["spec"]
    return {
        "Deployment": deployment["selector"],
        "Service": render.one("Service")["spec"]["selector"],
        "PodDisruptionBudget": render.one("PodDisruptionBudget")["spec"]["selector"],
        "NetworkPolicy": render.one("NetworkPolicy")["spec"]["podSelector"],
        "PodMonitoring": render.one("PodMonitoring")["spec"]["selector"],
        "topologySpreadConstraints": [
            constraint["labelSelector"]
            for constraint in deployment["template"]["spec"]["topologySpreadConstraints"]
        ],
    }


def test_selectors_are_identical_across_overlays(renders: dict[str, Render]) -> None:
    # A Deployment's selector is immutable: an overlay that changed it could
    # never be synced over the running one.
    first, *others = (selectors(renders[overlay]) for overlay in OVERLAYS)
    for other in others:
        assert other == first


def test_selectors_name_only_the_stable_label_and_match_the_pods(rendered: Render) -> None:
    pod_labels = rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    found = selectors(rendered)
    flat = [
        found["Deployment"]["matchLabels"],
        found["Service"],
        found["PodDisruptionBudget"]["matchLabels"],
        found["NetworkPolicy"]["matchLabels"],
        found["PodMonitoring"]["matchLabels"],
        *(selector["matchLabels"] for selector in found["topologySpreadConstraints"]),
    ]
    for selector in flat:
        # kustomize `labels:` must not have reached a selector.
        assert selector == SELECTOR
        assert selector.items() <= pod_labels.items()


def test_overlay_image_is_a_full_immutable_reference(rendered: Render) -> None:
    image = container(rendered)["image"]
    assert IMMUTABLE_IMAGE.match(image), (
        f"{rendered.overlay}: {image} is not <registry>:<tag>@<digest>"
    )


@pytest.mark.parametrize("overlay_name", OVERLAYS)
def test_overlay_takes_its_image_from_the_one_shared_release_entry(
    deploy_dir: Path, overlay_name: str
) -> None:
    kustomization = yaml.safe_load(
        (deploy_dir / "overlays" / overlay_name / "kustomization.yaml").read_text()
    )
    assert set(kustomization) <= OVERLAY_KEYS
    assert kustomization["namespace"] == f"iris-{overlay_name}"
    # No overlay names an image of its own: production renders the release of the commit
    # it is pinned to, so both always run what that commit released.
    assert kustomization["components"] == ["../../release"]
    release = yaml.safe_load((deploy_dir / "release" / "kustomization.yaml").read_text())
    assert release["kind"] == "Component"
    (entry,) = release["images"]
    assert set(entry) == {"name", "newName", "newTag", "digest"}
    base = yaml.safe_load((deploy_dir / "base" / "deployment.yaml").read_text())
    assert entry["name"] == base["spec"]["template"]["spec"]["containers"][0]["image"]
    assert re.fullmatch(r"sha-[0-9a-f]{7,40}", entry["newTag"])
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", entry["digest"])


def test_no_kustomization_uses_deprecated_or_replica_fields(deploy_dir: Path) -> None:
    paths = sorted(deploy_dir.rglob("kustomization.yaml"))
    folders = {path.parent.relative_to(deploy_dir).as_posix() for path in paths}
    assert {"base", "release", *(f"overlays/{name}" for name in OVERLAYS)} <= folders
    for path in paths:
        kustomization = yaml.safe_load(path.read_text())
        assert not DEPRECATED_KUSTOMIZE_KEYS & set(kustomization), path
        for label_set in kustomization.get("labels", []):
            assert label_set.get("includeSelectors") is False, path


def test_patches_are_small_files_named_after_their_kind(deploy_dir: Path) -> None:
    for overlay_name in OVERLAYS:
        folder = deploy_dir / "overlays" / overlay_name
        kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
        listed = {patch["path"] for patch in kustomization.get("patches", [])}
        on_disk = {path.name for path in folder.glob("*.patch.yaml")}
        assert listed == on_disk, f"{overlay_name}: every patch file is listed and vice versa"
        for name in listed:
            patch = yaml.safe_load((folder / name).read_text())
            assert name == f"{patch['kind'].lower()}.patch.yaml"
            assert len((folder / name).read_text().splitlines()) <= 20


def test_production_is_a_load_balancer_and_staging_stays_in_cluster(
    renders: dict[str, Render],
) -> None:
    assert renders["production"].one("Service")["spec"]["type"] == "LoadBalancer"
    assert renders["staging"].one("Service")["spec"]["type"] == "ClusterIP"


def test_service_targets_the_named_container_port(rendered: Render) -> None:
    (port,) = rendered.one("Service")["spec"]["ports"]
    container_ports = {p["name"]: p["containerPort"] for p in container(rendered)["ports"]}
    assert port["targetPort"] in container_ports
    assert port["port"] == 80


def test_the_hpa_alone_owns_the_replica_count(rendered: Render) -> None:
    deployment = rendered.one("Deployment")
    hpa = rendered.one("HorizontalPodAutoscaler")["spec"]
    assert "replicas" not in deployment["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    (metric,) = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"


def test_each_overlay_sizes_its_own_autoscaling(renders: dict[str, Render]) -> None:
    bounds = {
        overlay: (
            renders[overlay].one("HorizontalPodAutoscaler")["spec"]["minReplicas"],
            renders[overlay].one("HorizontalPodAutoscaler")["spec"]["maxReplicas"],
        )
        for overlay in OVERLAYS
    }
    assert bounds["staging"] != bounds["production"]
    # Production keeps a pod in each of three zones.
    assert bounds["production"][0] >= 3


@pytest.mark.parametrize("overlay_name", OVERLAYS)
def test_each_overlay_states_its_own_replica_range_and_disruption_budget(
    deploy_dir: Path, overlay_name: str
) -> None:
    folder = deploy_dir / "overlays" / overlay_name
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    patched = {
        yaml.safe_load((folder / patch["path"]).read_text())["kind"]
        for patch in kustomization.get("patches", [])
    }
    assert {"HorizontalPodAutoscaler", "PodDisruptionBudget"} <= patched


def allowed_disruptions(pdb: dict[str, Any], replicas: int) -> int:
    """How many of `replicas` healthy pods the budget lets an eviction take at once."""
    spec = pdb["spec"]
    if "maxUnavailable" in spec:
        value = spec["maxUnavailable"]
        if isinstance(value, str) and value.endswith("%"):
            return math.ceil(replicas * int(value[:-1]) / 100)
        return int(value)
    value = spec["minAvailable"]
    if isinstance(value, str) and value.endswith("%"):
        return replicas - math.ceil(replicas * int(value[:-1]) / 100)
    return replicas - int(value)


def test_the_disruption_budget_never_blocks_a_node_drain(rendered: Render) -> None:
    hpa = rendered.one("HorizontalPodAutoscaler")["spec"]
    pdb = rendered.one("PodDisruptionBudget")
    for replicas in range(hpa["minReplicas"], hpa["maxReplicas"] + 1):
        allowed = allowed_disruptions(pdb, replicas)
        # At least one pod can always go, and never more than half at once.
        assert 1 <= allowed <= max(1, replicas // 2), (rendered.overlay, replicas, allowed)


def test_a_rollout_never_drops_serving_capacity(rendered: Render) -> None:
    strategy = rendered.one("Deployment")["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert strategy["rollingUpdate"]["maxSurge"] >= 1


def test_pods_are_spread_over_zones_and_nodes(rendered: Render) -> None:
    spec = rendered.one("Deployment")["spec"]["template"]["spec"]
    keys = {c["topologyKey"] for c in spec["topologySpreadConstraints"]}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}


def test_the_pod_is_locked_down(rendered: Render) -> None:
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert rendered.one("ServiceAccount")["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == rendered.one("ServiceAccount")["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = container(rendered)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] >= 10000
    assert context["runAsGroup"] >= 10000
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context["runAsUser"] == pod["securityContext"]["runAsUser"]


def test_only_emptydir_volumes_are_writable(rendered: Render) -> None:
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    for mount in container(rendered)["volumeMounts"]:
        assert "emptyDir" in volumes[mount["name"]], mount


def test_network_policy_admits_the_serving_port_and_the_metrics_port_from_the_cluster(
    rendered: Render,
) -> None:
    policy = rendered.one("NetworkPolicy")["spec"]
    assert "Ingress" in policy["policyTypes"]
    serving, scrape = policy["ingress"]
    assert "from" not in serving  # clients come from anywhere, but only to this port
    assert serving["ports"] == [{"port": "http", "protocol": "TCP"}]
    # The scrape: only pods of the cluster (any namespace), only to the metrics port.
    assert scrape["from"] == [{"namespaceSelector": {}}]
    assert scrape["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    container_ports = {p["name"] for p in container(rendered)["ports"]}
    assert container_ports == {"http", "metrics"}


def test_the_service_never_exposes_the_metrics_port(rendered: Render) -> None:
    (port,) = rendered.one("Service")["spec"]["ports"]
    assert port["targetPort"] == "http"
    metrics = {p["name"]: p["containerPort"] for p in container(rendered)["ports"]}["metrics"]
    assert port["port"] != metrics


def test_network_policy_denies_every_outgoing_connection(rendered: Render) -> None:
    # Egress listed with no rule denies all of it, DNS included: the service opens none.
    policy = rendered.one("NetworkPolicy")["spec"]
    assert "Egress" in policy["policyTypes"]
    assert policy.get("egress", []) == []
    assert policy["podSelector"] == selectors(rendered)["NetworkPolicy"]


def test_production_turns_the_interactive_docs_off_and_staging_keeps_them(
    renders: dict[str, Render],
) -> None:
    # tests/deploy/test_service_contract.py checks the name is a real setting.
    assert env_of(renders["production"])["IRIS_DOCS_ENABLED"] == "false"
    assert "IRIS_DOCS_ENABLED" not in env_of(renders["staging"])


def test_termination_grace_outlasts_prestop_and_the_graceful_timeout(rendered: Render) -> None:
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    pre_stop = container(rendered)["lifecycle"]["preStop"]["sleep"]["seconds"]
    graceful = int(env_of(rendered)["IRIS_GRACEFUL_TIMEOUT"])
    assert pre_stop >= 5, "endpoint removal needs a few seconds to reach every node"
    assert pod["terminationGracePeriodSeconds"] > pre_stop + graceful


def test_liveness_is_lenient_and_distinct_from_readiness(rendered: Render) -> None:
    spec = container(rendered)
    liveness, readiness = spec["livenessProbe"], spec["readinessProbe"]
    assert liveness["httpGet"]["path"] != readiness["httpGet"]["path"]
    # A busy pod must miss probes for a long while before it is restarted.
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 30
    assert liveness["timeoutSeconds"] >= 2
    startup = spec["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30


def test_resources_are_guaranteed_and_autopilot_compatible(rendered: Render) -> None:
    resources = container(rendered)["resources"]
    requests, limits = resources["requests"], resources["limits"]
    # Limits equal requests: Guaranteed QoS, and Autopilot changes nothing.
    assert requests == limits
    cpu, memory = quantity(requests["cpu"]), quantity(requests["memory"])
    # Autopilot (general-purpose class): CPU in 250m steps here, at least 50m;
    # memory between 1 and 6.5 GiB per vCPU.
    assert cpu >= Decimal("0.25")
    assert (cpu / Decimal("0.25")) % 1 == 0
    gib_per_cpu = memory / Decimal(2**30) / cpu
    assert Decimal(1) <= gib_per_cpu <= Decimal("6.5"), gib_per_cpu
    # The /tmp emptyDir counts against ephemeral storage: it must fit.
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    size_limits = [quantity(v["emptyDir"]["sizeLimit"]) for v in pod["volumes"]]
    assert quantity(requests["ephemeral-storage"]) >= sum(size_limits)


def test_the_pod_monitoring_scrapes_the_metrics_port_and_path(rendered: Render) -> None:
    (endpoint,) = rendered.one("PodMonitoring")["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["path"] == "/metrics"
    assert "metrics" in {p["name"] for p in container(rendered)["ports"]}


def test_prometheus_annotations_point_at_the_metrics_port(rendered: Render) -> None:
    annotations = rendered.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    container_ports = {p["name"]: p["containerPort"] for p in container(rendered)["ports"]}
    assert int(annotations["prometheus.io/port"]) == container_ports["metrics"]
    assert annotations["prometheus.io/path"] == "/metrics"
