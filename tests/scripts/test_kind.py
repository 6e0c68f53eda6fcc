"""The pieces of the kind loop (scripts/kind/) that run without Docker or a cluster.

kind itself needs a Docker engine, so e2e.yml runs the whole loop on GitHub's runners.
Here the parts it is built from run for real: the git daemon command of the in-cluster git
server serves a repository that git pushes to and fetches from over git://, the release
bump script pushes through it, and the GitOps tool accepts the in-cluster repository URL
and the image name the loop deploys.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from harness.ports import free_port
from tests.argocd.support import CRDS_ENV, crds_dir
from tests.deploy.support import OVERLAYS, quantity, render
from tests.scripts.support import REPO_ROOT, write_stand_in
from tests.tools import run_tool

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
    git("commit", "--quiet", "-am", "staging", cwd=project_clone)
    # No Argo CD Notifications report to GitHub from kind: the loop promotes with --force.
    result = gitops("promote", "staging", "production", "--force", cwd=project_clone)
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
    release = (reader / "deploy" / "release" / "kustomization.yaml").read_text()
    assert DIGEST in release
    assert "sha-0123456789ab" in release


# --- the scripts' own machinery, run in bash ------------------------------------------------

# How every script in scripts/kind/ starts (tests below check they do).
PRELUDE = """set -Eeuo pipefail
shopt -s inherit_errexit 2>/dev/null || true
source scripts/kind/lib.sh
trap 'on_error "$?" "$BASH_COMMAND"' ERR
"""


def bash_with_lib(
    body: str, tmp_path: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`body` run by bash after the prelude every kind script has, from the repository root."""
    script = tmp_path / "script.sh"
    script.write_text(PRELUDE + body, encoding="utf-8")
    return subprocess.run(
        ["bash", str(script)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={
            **os.environ,
            "HOME": str(tmp_path),
            "KIND_STATE_DIR": str(tmp_path / "state"),
            "PYTHON": sys.executable,
            **(env or {}),
        },
    )


def kind_scripts() -> list[Path]:
    return sorted(path for path in KIND_DIR.glob("*.sh") if path.name != "lib.sh")


@pytest.mark.parametrize("script", kind_scripts(), ids=lambda path: path.name)
def test_every_kind_script_stops_inside_substitutions_too(script: Path) -> None:
    text = script.read_text(encoding="utf-8")
    assert "shopt -s inherit_errexit" in text
    assert 'source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"' in text
    if script.name != "diagnose.sh":  # it collects what it can and never stops
        assert "set -Eeuo pipefail" in text
        assert """trap 'on_error "$?" "$BASH_COMMAND"' ERR""" in text


def test_kind_scripts_are_clean_with_every_shellcheck_check_enabled() -> None:
    # tests/scripts/test_shellcheck.py checks the other scripts with the default checks.
    result = run_tool(
        "shellcheck",
        "--enable=all",
        "--external-sources",
        "--format=gcc",
        *sorted(KIND_DIR.glob("*.sh")),
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_failing_command_in_a_function_stops_the_script_and_is_named(tmp_path: Path) -> None:
    body = """
build() { echo building; ls /nonexistent/context; echo "never printed"; }
build
echo "never reached"
"""
    result = bash_with_lib(body, tmp_path)
    assert result.returncode != 0
    assert "never" not in result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("script.sh: error: exit 2 at "), last
    assert "script.sh line 6, in build" in last
    assert last.endswith("from: ls /nonexistent/context"), last


def test_a_failure_inside_a_substitution_stops_it_where_bash_allows(tmp_path: Path) -> None:
    body = """
version() { false; echo "1.0"; }
v="$(version)"
echo "got ${v}"
"""
    result = bash_with_lib(body, tmp_path)
    # bash 4.4+ (inherit_errexit): the substitution stops at `false`, so does the script.
    assert result.returncode != 0
    assert "got" not in result.stdout


def test_retry_backs_off_doubling_and_returns_the_last_status(tmp_path: Path) -> None:
    body = """
sleep() { printf 'slept %s\\n' "$1"; }
status=0
retry 4 bash -c 'exit 7' || status=$?
echo "status ${status}"
"""
    result = bash_with_lib(body, tmp_path, env={"RETRY_DELAY": "3"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["slept 3", "slept 6", "slept 12", "status 7"]
    assert "giving up after 4 attempts" in result.stderr


def test_retry_stops_at_the_first_success(tmp_path: Path) -> None:
    counter = tmp_path / "tries"
    body = f"""
sleep() {{ :; }}
retry 5 bash -c 'echo x >> "{counter}"; [[ $(wc -l < "{counter}") -ge 2 ]]'
echo done
"""
    result = bash_with_lib(body, tmp_path)
    assert result.returncode == 0, result.stderr
    assert counter.read_text().count("x") == 2


def test_fetch_pinned_accepts_the_recorded_checksum_only(tmp_path: Path) -> None:
    upstream = tmp_path / "components.yaml"
    upstream.write_text("kind: List\n", encoding="utf-8")
    good = hashlib.sha256(upstream.read_bytes()).hexdigest()
    dest = tmp_path / "downloads" / "components.yaml"
    ok = bash_with_lib(f'fetch_pinned "file://{upstream}" {good} "{dest}"', tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert dest.read_bytes() == upstream.read_bytes()

    upstream.write_text("kind: List\nitems: [changed]\n", encoding="utf-8")
    other = tmp_path / "other.yaml"
    bad = bash_with_lib(f'fetch_pinned "file://{upstream}" {good} "{other}"', tmp_path)
    assert bad.returncode != 0
    assert f"not the recorded {good}" in bad.stderr
    assert not other.exists()
    assert not other.with_name("other.yaml.part").exists()


def test_the_pins_are_immutable_references() -> None:
    values = lib_values(
        "KIND_NODE_IMAGE",
        "ARGOCD_INSTALL_URL",
        "ARGOCD_INSTALL_SHA256",
        "METRICS_SERVER_URL",
        "METRICS_SERVER_SHA256",
        "KIND_MIN_VERSION",
    )
    assert re.fullmatch(r"kindest/node:v[0-9.]+@sha256:[0-9a-f]{64}", values["KIND_NODE_IMAGE"])
    # A commit, not a tag: the bytes behind the checksum cannot move.
    assert re.fullmatch(
        r"https://raw\.githubusercontent\.com/argoproj/argo-cd/[0-9a-f]{40}/manifests/install\.yaml",
        values["ARGOCD_INSTALL_URL"],
    )
    assert values["METRICS_SERVER_URL"].endswith("/releases/download/v0.9.0/components.yaml")
    for name in ("ARGOCD_INSTALL_SHA256", "METRICS_SERVER_SHA256"):
        assert re.fullmatch(r"[0-9a-f]{64}", values[name]), name
    assert values["KIND_MIN_VERSION"] == "0.27.0"


def test_argocd_install_checksum_matches_the_v3_5_1_manifest() -> None:
    crds = crds_dir(REPO_ROOT)
    copy = crds / "install" / "install.yaml" if crds else None
    if copy is None or not copy.is_file():
        pytest.skip(f"no local copy of Argo CD v3.5.1's install.yaml (set {CRDS_ENV})")
    want = lib_values("ARGOCD_INSTALL_SHA256")["ARGOCD_INSTALL_SHA256"]
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == want


# --- port-forwards ----------------------------------------------------------------------------

FAKE_PORT_FORWARD = """#!/bin/sh
# kubectl stand-in: answers like `kubectl port-forward`, then stays up as that process.
echo "Forwarding from 127.0.0.1:43127 -> 9418"
exec sleep 300
"""


def test_port_forward_stops_the_kubectl_process_it_started(tmp_path: Path) -> None:
    write_stand_in(tmp_path / "bin", "kubectl", FAKE_PORT_FORWARD)
    body = """
port_forward iris-git service/git-server 9418
echo "port ${PF_PORT} pid ${PF_PID}"
tr '\\0' ' ' < "/proc/${PF_PID}/cmdline"; echo
stop_port_forward "${PF_PID}"
kill -0 "${PF_PID}" 2>/dev/null && echo "still running" || echo "stopped"
echo "left: [${PF_PIDS}]"
"""
    path = f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"
    result = bash_with_lib(body, tmp_path, env={"PATH": path})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("port 43127 pid ")
    # The PID is kubectl's own (here exec'd into sleep), not a subshell's.
    assert lines[1].strip() == "sleep 300"
    assert lines[2:] == ["stopped", "left: [ ]"] or lines[2:] == ["stopped", "left: []"]


def test_port_forward_that_never_starts_is_reported_and_cleaned_up(tmp_path: Path) -> None:
    write_stand_in(
        tmp_path / "bin", "kubectl", '#!/bin/sh\necho "error: service not found" >&2\nexit 1\n'
    )
    body = """
if port_forward iris-git service/git-server 9418; then echo started; else echo "failed"; fi
echo "left: [${PF_PIDS// /}]"
"""
    path = f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"
    result = bash_with_lib(body, tmp_path, env={"PATH": path})
    assert result.stdout.splitlines() == ["failed", "left: []"], result.stderr
    assert "did not start: error: service not found" in result.stderr


# --- preflight --------------------------------------------------------------------------------


def preflight(
    tmp_path: Path, *, cpus: int, memory_mib: int, cgroup: int, kind: str, extra: str = ""
) -> subprocess.CompletedProcess[str]:
    """preflight.sh with docker and kind stand-ins reporting the given machine."""
    bin_dir = tmp_path / "bin"
    write_stand_in(
        bin_dir,
        "docker",
        "#!/bin/sh\n"
        'case "$*" in\n'
        f'  "info --format"*) echo "{cpus} {memory_mib * 1024 * 1024} {cgroup}" ;;\n'
        '  "ps "*) ;;\n'
        "esac\n",
    )
    write_stand_in(bin_dir, "kind", f'#!/bin/sh\necho "kind {kind} go1.25.5 linux/amd64"\n')
    write_stand_in(bin_dir, "kubectl", "#!/bin/sh\nexit 0\n")
    return subprocess.run(
        ["bash", str(KIND_DIR / "preflight.sh"), *extra.split()],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "PYTHON": sys.executable,
            "KIND_SKIP_LB_CHECK": "1",
            # Nothing listens there, so the registry port counts as free.
            "KIND_REGISTRY_PORT": str(free_port()),
        },
    )


def test_preflight_passes_a_two_cpu_four_gib_machine_in_seconds(tmp_path: Path) -> None:
    started = time.monotonic()
    result = preflight(tmp_path, cpus=2, memory_mib=3900, cgroup=2, kind="v0.31.0")
    assert result.returncode == 0, result.stderr
    assert "preflight (all) ok: Docker 2 CPUs, 3900 MiB, kind 0.31.0" in result.stderr
    assert time.monotonic() - started < 10


def test_preflight_lists_every_problem_with_what_to_change(tmp_path: Path) -> None:
    result = preflight(tmp_path, cpus=1, memory_mib=2048, cgroup=1, kind="v0.26.0")
    assert result.returncode == 1
    problems = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == 4, result.stderr
    assert (
        "Docker has 1 CPU(s); the loop needs 2: Docker Desktop: Settings > Resources"
        in (problems[0])
    )
    assert "Docker has 2048 MiB of memory; the loop needs 4 GiB" in problems[1]
    assert "colima start --cpu 2 --memory 4" in problems[1]
    assert "kind is 0.26.0; the loop needs v0.27.0 or newer" in problems[2]
    assert "cgroup v1" in problems[3]


def test_preflight_image_side_skips_the_cluster_checks(tmp_path: Path) -> None:
    result = preflight(tmp_path, cpus=4, memory_mib=16000, cgroup=1, kind="v0.20.0", extra="image")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("have", "want", "ok"),
    [("0.27.0", "0.27.0", True), ("0.31.0", "0.27.0", True), ("1.0", "0.27.0", True),
     ("0.26.9", "0.27.0", False), ("0.3.0", "0.27.0", False), ("0.27", "0.27.0", True)],
)  # fmt: skip
def test_preflight_compares_versions_numerically(have: str, want: str, ok: bool) -> None:
    script = (
        f'source <(sed -n "/^version_at_least()/,/^}}/p" scripts/kind/preflight.sh)\n'
        f"version_at_least {have} {want}"
    )
    result = subprocess.run(["bash", "-c", script], cwd=REPO_ROOT, check=False, timeout=10)
    assert (result.returncode == 0) is ok


# --- the kind sizing ----------------------------------------------------------------------------


def sized_clone(tmp_path: Path) -> Path:
    """deploy/ and the kind sizing, as the work clone has them after add_kind_sizing."""
    clone = tmp_path / "clone"
    shutil.copytree(REPO_ROOT / "deploy", clone / "deploy")
    shutil.copytree(KIND_DIR / "sizing", clone / "scripts" / "kind" / "sizing")
    result = bash_with_lib(f'add_kind_sizing "{clone}"', tmp_path)
    assert result.returncode == 0, result.stderr
    git("init", "--quiet", "--initial-branch=main", cwd=clone)
    git("add", "--all", cwd=clone)
    git("commit", "--quiet", "-m", "sized", cwd=clone)
    return clone


# CPU the kind node's own pods request before anything of ours (kube-apiserver 250m,
# controller-manager 200m, scheduler 100m, etcd 100m, two CoreDNS 100m each, kindnet 100m),
# and what scripts/kind adds: metrics-server (100m in its release manifest) and the git
# daemon (git-server.yaml). Argo CD v3.5.1's install.yaml requests nothing.
KIND_SYSTEM_CPU = Decimal("0.95")
METRICS_SERVER_CPU = Decimal("0.1")


def test_the_kind_sizing_fits_both_environments_and_two_rollouts_on_two_cpus(
    tmp_path: Path,
) -> None:
    clone = sized_clone(tmp_path)
    git_server = git_server_manifests()["Deployment"]["spec"]["template"]["spec"]
    total = (
        KIND_SYSTEM_CPU
        + METRICS_SERVER_CPU
        + quantity(git_server["containers"][0]["resources"]["requests"]["cpu"])
    )
    for overlay in OVERLAYS:
        docs = [d for d in yaml.safe_load_all(render(clone / "deploy" / "overlays" / overlay)) if d]
        deployment = next(d for d in docs if d["kind"] == "Deployment")
        hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 2), overlay
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        requests = container["resources"]["requests"]
        surge = deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
        # The minimum replicas, plus the surge pod of a rollout in each environment at once.
        total += quantity(requests["cpu"]) * (hpa["spec"]["minReplicas"] + surge)
        # The limit stays above the request: start-up (imports, model load) is not throttled.
        assert quantity(container["resources"]["limits"]["cpu"]) >= 1
        # Each sync ends with the PostSync smoke test Job (deploy/release/job.yaml); counted
        # as if both ran next to both surge pods, which the loop never does at once.
        job = next(d for d in docs if d["kind"] == "Job")
        assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PostSync"
        (smoke,) = job["spec"]["template"]["spec"]["containers"]
        total += quantity(smoke["resources"]["requests"]["cpu"])
    # At least 0.3 CPU of headroom for what requests nothing but still runs (Argo CD, the
    # kubelet).
    assert total <= Decimal("1.7"), total


def test_the_kind_sizing_leaves_the_repository_overlays_alone() -> None:
    for overlay in OVERLAYS:
        text = (REPO_ROOT / "deploy" / "overlays" / overlay / "kustomization.yaml").read_text()
        assert "scripts/kind" not in text


def test_add_kind_sizing_refuses_an_overlay_with_transformers_of_its_own(tmp_path: Path) -> None:
    clone = sized_clone(tmp_path)
    again = bash_with_lib(f'add_kind_sizing "{clone}"', tmp_path)
    assert again.returncode != 0
    assert "deploy/overlays/staging/kustomization.yaml already has transformers:" in again.stderr


def test_gitops_edits_keep_the_kind_sizing(tmp_path: Path) -> None:
    clone = sized_clone(tmp_path)
    shutil.copytree(REPO_ROOT / "argocd", clone / "argocd")
    git("add", "argocd", cwd=clone)
    git("commit", "--quiet", "-m", "argocd", cwd=clone)
    name = lib_values("DEPLOY_NAME")["DEPLOY_NAME"]
    ref = f"{name}:sha-0123456789ab@{DIGEST}"
    result = gitops("set-image", "staging", ref, cwd=clone)
    assert result.returncode == 0, result.stderr
    git("commit", "--quiet", "-am", "staging", cwd=clone)
    # As up.sh does it: nothing reports commit statuses from kind.
    result = gitops("promote", "staging", "production", "--force", cwd=clone)
    assert result.returncode == 0, result.stderr
    for overlay in OVERLAYS:
        text = (clone / "deploy" / "overlays" / overlay / "kustomization.yaml").read_text()
        assert "transformers:\n  - ../../../scripts/kind/sizing" in text
    # Both overlays take the image from the one release entry.
    assert DIGEST in (clone / "deploy" / "release" / "kustomization.yaml").read_text()


# --- diagnostics --------------------------------------------------------------------------------


def test_diagnose_writes_the_whole_bundle_even_when_the_cluster_is_gone(tmp_path: Path) -> None:
    # kubectl and kind stand-ins that fail like a deleted cluster: the bundle still gets
    # every file, each saying what failed, and the script still exits 0.
    bin_dir = tmp_path / "bin"
    gone = '#!/bin/sh\necho "The connection to the server 127.0.0.1:6443 was refused" >&2\nexit 1\n'
    write_stand_in(bin_dir, "kubectl", gone)
    write_stand_in(bin_dir, "kind", gone)
    (tmp_path / "state" / "logs").mkdir(parents=True)
    (tmp_path / "state" / "logs" / "build-sha-0123.log").write_text("Step 1/9\n")
    out = tmp_path / "bundle"
    result = subprocess.run(
        ["bash", str(KIND_DIR / "diagnose.sh"), str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(tmp_path),
            "KIND_STATE_DIR": str(tmp_path / "state"),
            "PYTHON": sys.executable,
        },
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    files = {path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file()}
    for expected in (
        "summary.txt",
        "applications.yaml",
        "nodes.txt",
        "iris-staging/describe.txt",
        "iris-production/events.txt",
        "argocd/argocd-application-controller.log",
        "argocd/argocd-repo-server.log",
        "iris-git/git-server.log",
        "kind-export.txt",
        "build-logs/build-sha-0123.log",
    ):
        assert expected in files, expected
    summary = (out / "summary.txt").read_text(encoding="utf-8")
    assert "no Applications" in summary
    controller = (out / "argocd" / "argocd-application-controller.log").read_text()
    assert "connection to the server 127.0.0.1:6443 was refused" in controller
    assert "(exit 1)" in controller
