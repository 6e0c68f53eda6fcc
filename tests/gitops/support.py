"""The GitOps tool and the release bump script run on real repositories (harness.git)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from tests.tools import kustomize_command

REPO_ROOT = Path(__file__).resolve().parents[2]
BUMP_SCRIPT = REPO_ROOT / "scripts" / "release" / "bump-staging.sh"
HOST = "europe-west1-docker.pkg.dev/iris-demo-123/iris/iris-api"


def ref(n: int) -> str:
    """A distinct, valid image reference per number, like the ones a release pushes."""
    digest = hashlib.sha256(f"image {n}".encode()).hexdigest()
    commit = hashlib.sha1(f"commit {n}".encode(), usedforsecurity=False).hexdigest()[:7]
    return f"{HOST}:sha-{commit}@sha256:{digest}"


def overlay(repo: Path, env: str) -> Path:
    return repo / "deploy" / "overlays" / env / "kustomization.yaml"


def app_file(repo: Path, env: str) -> Path:
    return repo / "argocd" / "apps" / f"{env}.yaml"


def pin_of(repo: Path, env: str) -> str:
    """The targetRevision of `env`'s Application in the working tree."""
    doc = yaml.safe_load(app_file(repo, env).read_text(encoding="utf-8"))
    return str(doc["spec"]["source"]["targetRevision"])


def set_pin(repo: Path, env: str, sha: str) -> None:
    """Pin an Application by hand, as a person editing the file would."""
    path = app_file(repo, env)
    text = path.read_text(encoding="utf-8")
    old = f"targetRevision: {pin_of(repo, env)}"
    assert text.count(old) == 1
    path.write_text(text.replace(old, f"targetRevision: {sha}"), encoding="utf-8")


def release_file(repo: Path) -> Path:
    """The file that holds the image every environment runs."""
    return repo / "deploy" / "release" / "kustomization.yaml"


def record_file(repo: Path) -> Path:
    return repo / "deploy" / "release" / "release.yaml"


def rendered(repo: Path, env: str) -> str:
    """What Argo CD applies for `env` with `repo` as main: the working tree for an environment
    that follows main, the pinned commit's deploy/ for a pinned one."""
    pin = pin_of(repo, env) if app_file(repo, env).exists() else "main"
    with tempfile.TemporaryDirectory() as scratch:
        root = repo
        if re.fullmatch(r"[0-9a-f]{40}", pin):
            archive = subprocess.run(
                ["git", "archive", pin, "deploy"], cwd=repo, capture_output=True, check=True
            )
            subprocess.run(["tar", "-x", "-C", scratch], input=archive.stdout, check=True)
            root = Path(scratch)
        proc = subprocess.run(
            [*kustomize_command(), str(root / "deploy" / "overlays" / env)],
            capture_output=True,
            text=True,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def deployed_image(repo: Path, env: str) -> str:
    """The image the rendered Deployment of `env` runs, straight from kustomize."""
    docs = yaml.safe_load_all(rendered(repo, env))
    (deployment,) = [d for d in docs if d and d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return str(container["image"])


def gitops(repo: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """`python -m gitops` as the workflows run it, from the repository's root."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **extra_env}
    return subprocess.run(
        [sys.executable, "-m", "gitops", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def bump_env(**extra: str) -> dict[str, str]:
    """The release job's environment: the venv's Python, no sleeping between retries."""
    return {**os.environ, "PYTHON": sys.executable, "GITOPS_RETRY_DELAY": "0", **extra}


def bump(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the release job's bump script in `repo`, exactly as the workflow does."""
    return subprocess.run(
        [str(BUMP_SCRIPT), *args],
        cwd=repo,
        env=bump_env(**env),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def start_bump(repo: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """The same, started in the background to race other bumps."""
    return subprocess.Popen(
        [str(BUMP_SCRIPT), *args],
        cwd=repo,
        env=bump_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# --- Argo CD Applications as `kubectl get application -o json` prints them ---------------------

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SHA = "0123456789abcdef0123456789abcdef01234567"


def stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def application(
    revision: str | None = SHA,
    *,
    sync: str = "Synced",
    health: str = "Healthy",
    healthy_since: datetime | None = NOW - timedelta(minutes=30),
    phase: str | None = "Succeeded",
    started: datetime = NOW - timedelta(minutes=32),
    finished: datetime | None = NOW - timedelta(minutes=29),
    message: str = "successfully synced (all tasks run)",
    hook_phase: str = "Succeeded",
) -> dict[str, Any]:
    """staging's Application with the status Argo CD writes after syncing `revision`."""
    app = yaml.safe_load((REPO_ROOT / "argocd/apps/staging.yaml").read_text(encoding="utf-8"))
    source = copy.deepcopy(app["spec"]["source"])
    destination = copy.deepcopy(app["spec"]["destination"])
    if revision is None:
        app["status"] = {"sync": {"status": "Unknown"}, "health": {"status": "Unknown"}}
        return app
    health_status: dict[str, Any] = {"status": health}
    if healthy_since is not None:
        health_status["lastTransitionTime"] = stamp(healthy_since)
    status: dict[str, Any] = {
        "sync": {
            "status": sync,
            "revision": revision,
            "comparedTo": {"source": source, "destination": destination},
        },
        "health": health_status,
        "reconciledAt": stamp(NOW - timedelta(seconds=20)),
        "resourceHealthSource": "appTree",
        "sourceType": "Kustomize",
        "controllerNamespace": "argocd",
        "summary": {"images": [ref(1).split("@")[0]]},
        "resources": [
            {
                "version": "v1",
                "kind": "Service",
                "namespace": "iris-staging",
                "name": "iris-api",
                "status": "Synced",
            },
            {
                "group": "apps",
                "version": "v1",
                "kind": "Deployment",
                "namespace": "iris-staging",
                "name": "iris-api",
                "status": "Synced",
            },
        ],
    }
    if phase is not None:
        operation_state: dict[str, Any] = {
            "operation": {
                "initiatedBy": {"automated": True},
                "retry": {
                    "limit": 5,
                    "refresh": True,
                    "backoff": {"duration": "10s", "factor": 2, "maxDuration": "3m"},
                },
                "sync": {
                    "revision": revision,
                    "prune": True,
                    "syncOptions": app["spec"]["syncPolicy"]["syncOptions"],
                },
            },
            "phase": phase,
            "message": message,
            "startedAt": stamp(started),
            "syncResult": {
                "revision": revision,
                "source": source,
                "resources": [
                    {
                        "group": "batch",
                        "version": "v1",
                        "kind": "Job",
                        "namespace": "iris-staging",
                        "name": "iris-api-smoke-test",
                        "status": "Synced",
                        "hookType": "PostSync",
                        "hookPhase": hook_phase,
                        "syncPhase": "PostSync",
                        "message": f"Job {hook_phase.lower()}",
                    }
                ],
            },
        }
        if finished is not None:
            operation_state["finishedAt"] = stamp(finished)
        status["operationState"] = operation_state
        if phase == "Succeeded" and finished is not None:
            status["history"] = [
                {
                    "id": 3,
                    "revision": revision,
                    "deployStartedAt": stamp(started),
                    "deployedAt": stamp(finished),
                    "source": source,
                    "initiatedBy": {"automated": True},
                }
            ]
    app["status"] = status
    return app


def kubectl_stand_in(directory: Path) -> dict[str, str]:
    """A kubectl in `directory` that records its arguments and prints $FAKE_APPLICATION (or
    fails as kubectl does when there is no such Application); the environment to use it."""
    script = directory / "kubectl"
    directory.mkdir(parents=True)
    script.write_text(
        "#!/usr/bin/env bash\n"
        'printf "%s\\n" "$*" >>"$FAKE_KUBECTL_LOG"\n'
        'if [[ ! -f "$FAKE_APPLICATION" ]]; then\n'
        "  echo 'Error from server (NotFound): applications.argoproj.io' \\\n"
        "    '\"iris-staging\" not found' >&2\n"
        "  exit 1\n"
        "fi\n"
        'cat "$FAKE_APPLICATION"\n',
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {
        "GITOPS_KUBECTL": f"{script} --context kind-iris",
        "FAKE_KUBECTL_LOG": str(directory.parent / "kubectl.log"),
        "FAKE_APPLICATION": str(directory.parent / "application.json"),
    }


def serve_application(env: dict[str, str], app: dict[str, Any]) -> None:
    """What the kubectl stand-in prints from now on."""
    Path(env["FAKE_APPLICATION"]).write_text(json.dumps(app), encoding="utf-8")
