"""argocd/install/ and scripts/argocd-install.sh: Argo CD v3.5.1 as this project installs it.

The kustomization names Argo CD's install manifest by an immutable URL; the renderer checks
the file against the sha256 recorded beside it before kustomize sees it. Offline, the tests
hand the renderer a local copy of that file (tests/scripts/support.py says where it is
looked for) and skip, saying so, without one. What they render is what the bootstrap applies.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from tests.argocd.support import crds_dir, load_schema
from tests.scripts.support import (
    ARGOCD_SUMS,
    REPO_ROOT,
    pinned_sha256,
    require_upstream_install_manifest,
)

pytestmark = pytest.mark.xdist_group("gke-argocd-install")

RENDER = REPO_ROOT / "scripts" / "argocd-install.sh"
INSTALL = REPO_ROOT / "argocd" / "install"
# argoproj/argo-cd, tag v3.5.1.
V3_5_1_COMMIT = "109ca7ca71139e514114499d294a492e7910a965"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}


def render(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(RENDER), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    manifest = require_upstream_install_manifest()
    out = tmp_path_factory.mktemp("argocd-install") / "argocd.yaml"
    result = render("--from", manifest, "--output", out)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(out.read_text(encoding="utf-8")) if doc]


def remote_resources() -> list[str]:
    kustomization = yaml.safe_load((INSTALL / "kustomization.yaml").read_text(encoding="utf-8"))
    return [r for r in kustomization["resources"] if re.match(r"https?://", r)]


def test_the_upstream_manifest_is_named_by_commit_and_pinned_by_sha256() -> None:
    (url,) = remote_resources()
    assert url == (
        f"https://raw.githubusercontent.com/argoproj/argo-cd/{V3_5_1_COMMIT}/manifests/install.yaml"
    )
    sums = [
        line.split()
        for line in ARGOCD_SUMS.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    assert sums == [[pinned_sha256(), url]]
    assert re.fullmatch(r"[0-9a-f]{64}", pinned_sha256())


def test_every_workload_container_has_cpu_and_memory_requests(
    rendered: list[dict[str, Any]],
) -> None:
    workloads = [doc for doc in rendered if doc["kind"] in WORKLOAD_KINDS]
    assert {doc["metadata"]["name"] for doc in workloads} >= {
        "argocd-application-controller",
        "argocd-repo-server",
        "argocd-server",
        "argocd-applicationset-controller",
        "argocd-notifications-controller",
        "argocd-dex-server",
        "argocd-redis",
    }
    missing = [
        f"{doc['metadata']['name']}/{container['name']}"
        for doc in workloads
        for key in ("initContainers", "containers")
        for container in doc["spec"]["template"]["spec"].get(key, [])
        if not {"cpu", "memory"} <= set(container.get("resources", {}).get("requests", {}))
    ]
    assert missing == []


def cpu(value: str) -> float:
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def mebibytes(value: str) -> float:
    units = {"Mi": 1, "Gi": 1024}
    return float(value[:-2]) * units[value[-2:]]


def pod_requests(doc: dict[str, Any]) -> tuple[float, float]:
    """What a Pod of the workload requests: the larger of its biggest init container and
    the sum of its containers, per resource (Kubernetes' effective request)."""
    spec = doc["spec"]["template"]["spec"]

    def requests(container: dict[str, Any]) -> tuple[float, float]:
        found = container["resources"]["requests"]
        return cpu(found["cpu"]), mebibytes(found["memory"])

    regular = [requests(c) for c in spec["containers"]]
    init = [requests(c) for c in spec.get("initContainers", [])]
    return (
        max([sum(c for c, _ in regular), *(c for c, _ in init)]),
        max([sum(m for _, m in regular), *(m for _, m in init)]),
    )


def test_each_pod_fits_autopilot_so_what_is_billed_is_what_is_written(
    rendered: list[dict[str, Any]],
) -> None:
    """GKE Autopilot (general-purpose class): at least 50m CPU and 52 MiB per Pod, and
    1 to 6.5 GiB of memory per vCPU; outside that, it raises the request."""
    total_cpu = total_memory = 0.0
    for doc in rendered:
        if doc["kind"] not in WORKLOAD_KINDS:
            continue
        pod_cpu, pod_memory = pod_requests(doc)
        name = doc["metadata"]["name"]
        assert pod_cpu >= 0.05, name
        assert pod_memory >= 52, name
        assert 1 <= (pod_memory / 1024) / pod_cpu <= 6.5, (
            f"{name}: {pod_memory}Mi for {pod_cpu} CPU"
        )
        total_cpu += pod_cpu * doc["spec"].get("replicas", 1)
        total_memory += pod_memory * doc["spec"].get("replicas", 1)
    # Against ~3.5 vCPU and ~14 GiB of Autopilot defaults without requests.
    assert total_cpu <= 1.0, total_cpu
    assert total_memory <= 1.5 * 1024, total_memory


def test_memory_is_limited_and_cpu_is_not(rendered: list[dict[str, Any]]) -> None:
    for doc in rendered:
        if doc["kind"] not in WORKLOAD_KINDS:
            continue
        spec = doc["spec"]["template"]["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            limits = container["resources"].get("limits", {})
            assert set(limits) == {"memory"}, f"{doc['metadata']['name']}/{container['name']}"
            requested = mebibytes(container["resources"]["requests"]["memory"])
            assert mebibytes(limits["memory"]) >= requested


def test_the_default_project_is_emptied_so_a_stray_application_fails_closed(
    rendered: list[dict[str, Any]],
) -> None:
    (project,) = [doc for doc in rendered if doc["kind"] == "AppProject"]
    assert project["metadata"] == {"name": "default", "namespace": "argocd"}
    spec = project["spec"]
    # Every permissive field Argo CD's own default sets is named, so server-side apply
    # replaces it on a cluster where Argo CD created `default` first.
    assert spec["sourceRepos"] == []
    assert spec["sourceNamespaces"] == []
    assert spec["destinations"] == []
    assert spec["clusterResourceWhitelist"] == []
    assert spec["namespaceResourceBlacklist"] == [{"group": "*", "kind": "*"}]


def test_the_default_project_is_valid_against_the_v3_5_1_crd(
    rendered: list[dict[str, Any]],
) -> None:
    directory = crds_dir(REPO_ROOT)
    if directory is None:
        pytest.skip("Argo CD v3.5.1 CRDs not found (ARGOCD_CRDS_DIR or ../shared/argocd-crds)")
    (project,) = [doc for doc in rendered if doc["kind"] == "AppProject"]
    validator = Draft202012Validator(load_schema(directory, "AppProject"))
    assert [error.message for error in validator.iter_errors(project)] == []


def test_everything_namespaced_lands_in_argocd_after_its_namespace(
    rendered: list[dict[str, Any]],
) -> None:
    assert rendered[0]["kind"] == "Namespace"
    assert rendered[0]["metadata"]["name"] == "argocd"
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    for doc in rendered[1:]:
        if doc["kind"] not in cluster_scoped:
            assert doc["metadata"].get("namespace") == "argocd", doc["metadata"]["name"]


def test_the_images_are_the_ones_v3_5_1_ships(rendered: list[dict[str, Any]]) -> None:
    images = {
        container["image"]
        for doc in rendered
        if doc["kind"] in WORKLOAD_KINDS
        for container in doc["spec"]["template"]["spec"]["containers"]
    }
    assert "quay.io/argoproj/argocd:v3.5.1" in images


def test_a_copy_with_another_sha256_is_refused_and_nothing_written(tmp_path: Path) -> None:
    original = require_upstream_install_manifest()
    tampered = tmp_path / "install.yaml"
    tampered.write_bytes(original.read_bytes() + b"\n# one more line\n")
    out = tmp_path / "out.yaml"
    result = render("--from", tampered, "--output", out)
    assert result.returncode != 0
    assert "none of those pinned" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_a_failed_download_is_refused_with_the_way_out(tmp_path: Path) -> None:
    out = tmp_path / "out.yaml"
    # curl cannot reach anything with this proxy; the renderer must say how to proceed.
    env = {
        "PATH": "/usr/bin:/bin",
        "https_proxy": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
    }
    result = subprocess.run(
        ["bash", str(RENDER), "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode != 0
    assert "pass a copy with --from FILE" in result.stderr
    assert not out.exists()


def test_unknown_option_is_refused() -> None:
    result = render("--frm", "x")
    assert result.returncode != 0
    assert "unknown option: --frm" in result.stderr


def test_the_kind_loop_installs_the_same_pinned_file() -> None:
    """Both clusters run the same Argo CD: kind's pin equals the one recorded here."""
    text = (REPO_ROOT / "scripts" / "kind" / "lib.sh").read_text(encoding="utf-8")
    commit = re.search(r'ARGOCD_COMMIT="([0-9a-f]{40})"', text)
    digest = re.search(r'ARGOCD_INSTALL_SHA256="([0-9a-f]{64})"', text)
    assert commit, "scripts/kind/lib.sh names no ARGOCD_COMMIT"
    assert digest, "scripts/kind/lib.sh names no ARGOCD_INSTALL_SHA256"
    assert commit.group(1) == V3_5_1_COMMIT
    assert digest.group(1) == pinned_sha256()
