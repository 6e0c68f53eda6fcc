"""The pieces of the kind loop (scripts/kind/) that run without Docker or a cluster.

kind itself needs a Docker engine, so e2e.yml runs the whole loop on GitHub's runners.
Here the parts it is built from run for real: the git daemon command of the in-cluster git
server serves a repository that git pushes to and fetches from over git://, the release
bump script pushes through it, and the GitOps tool accepts the in-cluster repository URL
and the image name the loop deploys.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.scripts.support import REPO_ROOT
from tests.tools import free_port

KIND_DIR = REPO_ROOT / "scripts" / "kind"
DIGEST = "sha256:" + "ab" * 32


def lib_values(*names: str) -> dict[str, str]:
    """Values that scripts/kind/lib.sh defines, read by sourcing it in bash."""
    script = 'source scripts/kind/lib.sh && for n in "$@"; do printf "%s=%s\\n" "$n" "${!n}"; done'
    result = subprocess.run(
        ["bash", "-c", script, "lib", *names],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={**os.environ, "HOME": "/nonexistent"},
    )
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


def git(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    result = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout


def gitops(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitops", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        check=False,
    )


@pytest.fixture
def project_clone(tmp_path: Path) -> Path:
    """A git repository holding this project's argocd/ and deploy/, as the loop's clone does."""
    clone = tmp_path / "repo"
    clone.mkdir()
    for part in ("argocd", "deploy"):
        shutil.copytree(REPO_ROOT / part, clone / part)
    git("init", "--quiet", "--initial-branch=main", cwd=clone)
    git("add", "--all", cwd=clone)
    git("commit", "--quiet", "-m", "project", cwd=clone)
    return clone


def test_gitops_accepts_the_in_cluster_repository_url(project_clone: Path) -> None:
    url = lib_values("IN_CLUSTER_REPO_URL")["IN_CLUSTER_REPO_URL"]
    result = gitops("set-repo", url, cwd=project_clone)
    assert result.returncode == 0, result.stderr
    root = (project_clone / "argocd" / "root.yaml").read_text(encoding="utf-8")
    assert f"repoURL: {url}" in root


def test_gitops_accepts_the_image_the_loop_deploys(project_clone: Path) -> None:
    name = lib_values("DEPLOY_NAME")["DEPLOY_NAME"]
    ref = f"{name}:sha-0123456789ab@{DIGEST}"
    result = gitops("set-image", "staging", ref, cwd=project_clone)
    assert result.returncode == 0, result.stderr
    result = gitops("promote", "staging", "production", cwd=project_clone)
    assert result.returncode == 0, result.stderr


def git_server_manifests() -> dict[str, dict]:
    docs = yaml.safe_load_all((KIND_DIR / "git-server.yaml").read_text(encoding="utf-8"))
    return {doc["kind"]: doc for doc in docs}


def test_in_cluster_url_names_the_git_server_service() -> None:
    values = lib_values("IN_CLUSTER_REPO_URL", "GIT_NAMESPACE", "ARGOCD_VERSION")
    service = git_server_manifests()["Service"]
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    assert values["IN_CLUSTER_REPO_URL"] == f"git://{host}/iris-gitops.git"
    assert service["metadata"]["namespace"] == values["GIT_NAMESPACE"]
    assert [port["port"] for port in service["spec"]["ports"]] == [9418]
    # The git server reuses Argo CD's image, so it must be the version the loop installs.
    container = git_server_manifests()["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"quay.io/argoproj/argocd:{values['ARGOCD_VERSION']}"


@pytest.fixture
def git_daemon(tmp_path: Path) -> Iterator[str]:
    """The git server's own command (git-server.yaml), run here on a free local port."""
    container = git_server_manifests()["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["sh", "-c"]
    script: str = container["args"][0]
    root = tmp_path / "srv-git"
    port = free_port()
    # Only the storage path and the listening address differ from the pod.
    assert script.count("/srv/git") == 3, script
    local = script.replace(
        "--base-path=/srv/git /srv/git",
        f"--base-path={root} --listen=127.0.0.1 --port={port} {root}",
    ).replace("/srv/git/", f"{root}/")
    daemon = subprocess.Popen(
        ["sh", "-c", local],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"},
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if daemon.poll() is not None or time.monotonic() > deadline:
                    stderr = daemon.stderr.read().decode() if daemon.stderr else ""
                    pytest.fail(f"git daemon did not start: {stderr}")
                time.sleep(0.1)
        yield f"git://127.0.0.1:{port}/iris-gitops.git"
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
        if daemon.stderr:
            daemon.stderr.close()


@pytest.mark.integration
def test_git_server_serves_main_for_push_and_fetch(git_daemon: str, project_clone: Path) -> None:
    # An empty repository whose HEAD is main, as Argo CD expects for targetRevision main.
    assert git("ls-remote", "--symref", git_daemon, "HEAD", cwd=project_clone) == ""
    git("push", "--quiet", git_daemon, "main", cwd=project_clone)
    heads = git("ls-remote", "--symref", git_daemon, "HEAD", cwd=project_clone)
    assert heads.startswith("ref: refs/heads/main\tHEAD\n"), heads
    assert git("rev-parse", "HEAD", cwd=project_clone).strip() in heads


@pytest.mark.integration
def test_release_bump_script_pushes_through_the_git_server(
    git_daemon: str, project_clone: Path, tmp_path: Path
) -> None:
    git("push", "--quiet", git_daemon, "main", cwd=project_clone)
    name = lib_values("DEPLOY_NAME")["DEPLOY_NAME"]
    ref = f"{name}:sha-0123456789ab@{DIGEST}"
    bump = subprocess.run(
        [str(REPO_ROOT / "scripts" / "release" / "bump-staging.sh"), ref],
        cwd=project_clone,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "GITOPS_REMOTE": git_daemon,
            "PYTHON": sys.executable,
            "GIT_CONFIG_GLOBAL": os.devnull,
        },
        check=False,
    )
    assert bump.returncode == 0, bump.stdout + bump.stderr
    # A second clone, as Argo CD's repo server makes one, sees the bump on main.
    reader = tmp_path / "reader"
    git("clone", "--quiet", git_daemon, str(reader), cwd=tmp_path)
    overlay = (reader / "deploy" / "overlays" / "staging" / "kustomization.yaml").read_text()
    assert DIGEST in overlay
    assert "sha-0123456789ab" in overlay
