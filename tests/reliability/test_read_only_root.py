"""The service runs with a read-only root filesystem, as the Deployment starts it.

The test lays the tree out as the image does (service/, model/, artifacts/model), then
starts `python -m service` in a private mount namespace in which the whole root
filesystem is remounted read-only; only stand-ins for the Deployment's writable volumes
stay writable. Read-only mounts stop root too, unlike file modes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.http import request
from harness.servers import service_server
from reliability.workload import PREDICT

pytestmark = pytest.mark.integration

# Remount `/` read-only in a private mount namespace, after making each writable stand-in a
# mount of its own (so it stays writable), then run the command.
NAMESPACE_SCRIPT = (
    'for dir in $WRITABLE; do mount --bind "$dir" "$dir"; done; '
    'mount -o remount,bind,ro / && exec "$@"'
)


def api_container(repo_root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    doc = yaml.safe_load((repo_root / "deploy/base/deployment.yaml").read_text())
    pod = doc["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def can_unshare_mounts() -> bool:
    if not shutil.which("unshare") or os.geteuid() != 0:
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def test_deployment_asks_for_a_read_only_root_and_names_its_writable_mounts(
    repo_root: Path,
) -> None:
    pod, container = api_container(repo_root)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"].get("runAsNonRoot") or pod["securityContext"].get(
        "runAsNonRoot"
    )
    assert container.get("volumeMounts"), "a read-only root needs a writable volume for /tmp"


@pytest.mark.skipif(
    not can_unshare_mounts(), reason="needs root and `unshare --mount` to remount / read-only"
)
def test_service_serves_from_a_read_only_tree_with_only_the_declared_mounts_writable(
    repo_root: Path, trained_artifact_dir: Path, tmp_path: Path
) -> None:
    _, container = api_container(repo_root)
    mounts = [Path(m["mountPath"]) for m in container["volumeMounts"]]
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}

    app = tmp_path / "app"
    shutil.copytree(repo_root / "service", app / "service")
    shutil.copytree(repo_root / "model", app / "model")
    shutil.copytree(trained_artifact_dir, app / "artifacts/model")

    # A stand-in directory for each writable volume; paths under a mount (such as
    # IRIS_METRICS_DIR=/tmp/iris-metrics) are moved into its stand-in.
    stand_ins = {mount: tmp_path / f"volume{i}" for i, mount in enumerate(mounts)}
    for directory in stand_ins.values():
        directory.mkdir()

    def relocate(value: str) -> str:
        for mount, stand_in in stand_ins.items():
            if value == str(mount) or value.startswith(f"{mount}/"):
                return str(stand_in) + value[len(str(mount)) :]
        return value

    run_env = {
        "IRIS_MODEL_DIR": "artifacts/model",  # relative to the working directory, as in /app
        "IRIS_METRICS_DIR": relocate(env.get("IRIS_METRICS_DIR", "/tmp/iris-metrics")),
        "IRIS_WORKERS": env.get("IRIS_WORKERS", "2"),
        "WRITABLE": " ".join(str(d) for d in stand_ins.values()),
    }
    if Path("/tmp") in stand_ins:
        run_env["TMPDIR"] = str(stand_ins[Path("/tmp")])
    server = service_server(
        app / "artifacts/model",
        tmp_path,
        env=run_env,
        cwd=app,
        argv_prefix=[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            NAMESPACE_SCRIPT,
            "sh",
        ],
    )
    with server:
        server.wait_ready()
        status, body = request(server.port, "POST", PREDICT.path, PREDICT.body)
        assert status == 200, body
        status, body = server.metrics()
        assert status == 200
        assert b"iris_" in body
        # The server's view of the filesystem really is read-only.
        probe = subprocess.run(
            [
                "nsenter",
                "--target",
                str(server.pid),
                "--mount",
                "sh",
                "-c",
                f"touch {app}/probe || touch /probe",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert probe.returncode != 0
        assert "Read-only file system" in probe.stderr
    assert server.proc is not None
    assert server.proc.returncode == 0, server.log_text()[-2000:]
