"""The build-push-digest half of the kind loop (scripts/kind/image.sh), run for real.

A real Docker engine builds, and a real registry (distribution v2, the program the
registry:2 image runs) serves, on a free loopback port with a generated configuration.
The image is a small one made here, from a copy of this machine's /bin/sh and the C
library it needs, so the tests need no network and no registry to pull from; what they
check is the scripts: the order (nothing pushed after a failed build), the whole build log
on the terminal, the failing command named, and that the digest the overlay gets is the
one the registry serves.

Skipped, with the reason, without a Docker engine or the registry program (Debian's
docker-registry package).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.ports import free_port
from tests.scripts.support import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("docker")]

KIND_DIR = REPO_ROOT / "scripts" / "kind"
IMAGE_PATH = "iris-kind/iris/iris-api"
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)


def docker(*args: str, timeout: float = 120, stdin: bytes | None = None) -> bytes:
    result = subprocess.run(
        ["docker", *args], input=stdin, capture_output=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr.decode()}"
    return result.stdout


@pytest.fixture(scope="module")
def docker_engine() -> None:
    if shutil.which("docker") is None:
        pytest.skip("docker is not installed: the kind image step builds with a Docker engine")
    info = subprocess.run(["docker", "info"], capture_output=True, timeout=60, check=False)
    if info.returncode != 0:
        pytest.skip("the Docker engine does not answer (`docker info` failed): start dockerd")


@pytest.fixture(scope="module")
def base_image(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A tiny image: /bin/sh (dash) and the libraries it loads, imported with docker import."""
    root = tmp_path_factory.mktemp("base-root")
    shell = Path("/bin/dash")
    if not shell.exists() or shutil.which("ldd") is None:
        pytest.skip("needs /bin/dash and ldd to make a base image without a registry")
    libraries = subprocess.run(
        ["ldd", str(shell)], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    files = [shell] + [
        Path(word) for line in libraries.splitlines() for word in line.split() if word[0] == "/"
    ]
    for path in files:
        target = root / path.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path.resolve(), target)
    (root / "bin" / "sh").symlink_to("dash")
    (root / "tmp").mkdir()
    # An image of its own, whatever else runs: two copies of this fixture built in the same
    # second would otherwise be byte for byte the same image, and the first one torn down
    # would remove the other's.
    (root / "etc").mkdir()
    (root / "etc" / "iris-kind-test").write_text(uuid.uuid4().hex + "\n")
    tar = subprocess.run(
        ["tar", "-C", str(root), "-c", "."], capture_output=True, timeout=60, check=True
    ).stdout
    tag = "iris-kind-test/base:" + hashlib.sha256(tar).hexdigest()[:12]
    docker("import", "-", tag, stdin=tar)
    yield tag
    # The classic builder keeps the container of a failed step; then the image can go.
    containers = docker("ps", "--all", "--quiet", "--filter", f"ancestor={tag}").split()
    if containers:
        docker("rm", "--force", *[c.decode() for c in containers])
    docker("rmi", "--force", tag)


@pytest.fixture(scope="module")
def registry(
    docker_engine: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[int, Path]]:
    """distribution v2 on 127.0.0.1:<free port>, storing in a temporary directory."""
    program = shutil.which("docker-registry") or shutil.which("registry")
    if program is None:
        pytest.skip("no registry program: apt-get install docker-registry (distribution v2)")
    directory = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = directory / "config.yml"
    config.write_text(
        json.dumps(
            {
                "version": 0.1,
                "log": {"level": "warn"},
                "storage": {"filesystem": {"rootdirectory": str(directory / "data")}},
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        ),
        encoding="utf-8",
    )
    log = (directory / "registry.log").open("wb")
    process = subprocess.Popen([program, "serve", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"the registry did not start: {(directory / 'registry.log').read_text()}"
                    )
                time.sleep(0.2)
        yield port, directory
    finally:
        pushed = docker("images", "--format", "{{.Repository}}:{{.Tag}}").decode().split()
        ours = [image for image in pushed if image.startswith(f"localhost:{port}/")]
        if ours:
            docker("rmi", "--force", *ours)
        process.terminate()
        process.wait(timeout=20)
        log.close()


def repository_copy(tmp_path: Path, dockerfile: str) -> Path:
    """A git repository with scripts/kind/ and the given Dockerfile, committed."""
    copy = tmp_path / "project"
    shutil.copytree(
        KIND_DIR, copy / "scripts" / "kind", ignore=shutil.ignore_patterns("__pycache__")
    )
    (copy / "Dockerfile").write_text(dockerfile, encoding="utf-8")
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    for args in (
        ["init", "--quiet", "--initial-branch=main"],
        ["add", "--all"],
        ["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "--quiet", "-m", "p"],
    ):
        subprocess.run(["git", *args], cwd=copy, env=env, check=True, timeout=60)
    return copy


def run_image_step(
    copy: Path, port: int, tmp_path: Path, **env: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(copy / "scripts" / "kind" / "image.sh")],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={
            **os.environ,
            "HOME": str(tmp_path),
            "KIND_STATE_DIR": str(tmp_path / "state"),
            "KIND_REGISTRY_PORT": str(port),
            "PYTHON": sys.executable,
            "GIT_CONFIG_GLOBAL": os.devnull,
            **env,
        },
    )
    return result, time.monotonic() - started


def registry_get(port: int, path: str, *, method: str = "GET") -> tuple[dict[str, str], bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v2/{path}",
        method=method,
        headers={"Accept": ", ".join(MANIFEST_TYPES)},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(response.headers), response.read()


def tags(port: int) -> list[str]:
    try:
        _, body = registry_get(port, f"{IMAGE_PATH}/tags/list")
    except urllib.error.HTTPError as error:
        # distribution answers 404 NAME_UNKNOWN for a repository nothing was pushed to.
        if error.code == 404:
            return []
        raise
    return list(json.loads(body).get("tags") or [])


def test_a_broken_build_stops_at_once_names_the_step_and_pushes_nothing(
    base_image: str, registry: tuple[int, Path], tmp_path: Path
) -> None:
    port, _ = registry
    # What a missing dependency looks like in the build: the training step's traceback.
    broken = (
        f"FROM {base_image}\n"
        "RUN echo 'ModuleNotFoundError: No module named six' >&2 && exit 3\n"
        "RUN echo 'never built'\n"
    )
    copy = repository_copy(tmp_path, broken)
    result, seconds = run_image_step(copy, port, tmp_path)
    assert result.returncode != 0
    # The build's own output, not a summary of it.
    assert "ModuleNotFoundError: No module named six" in result.stderr
    assert "never built" not in result.stderr.replace("RUN echo 'never built'", "")
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("image.sh: error: docker build of "), last
    assert "the whole log is " in last
    log = Path(last.rsplit("the whole log is ", 1)[1])
    assert "ModuleNotFoundError" in log.read_text(encoding="utf-8")
    assert "push" not in result.stderr.lower()
    assert tags(port) == []
    assert not (tmp_path / "state" / "state.env").exists()
    assert seconds < 120, f"took {seconds:.0f}s"


def test_the_reference_recorded_is_the_digest_the_registry_serves(
    base_image: str, registry: tuple[int, Path], tmp_path: Path
) -> None:
    port, _ = registry
    dockerfile = (
        f'FROM {base_image}\nARG GIT_REVISION=unknown\nRUN echo "$GIT_REVISION" > /revision\n'
    )
    copy = repository_copy(tmp_path, dockerfile)
    result, _ = run_image_step(copy, port, tmp_path)
    assert result.returncode == 0, result.stderr
    ref = result.stdout.strip().splitlines()[-1]
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=copy, capture_output=True, text=True, check=True
    ).stdout.strip()
    tag = f"sha-{commit[:12]}"
    name_tag, digest = ref.split("@")
    assert name_tag == f"local-docker.pkg.dev/{IMAGE_PATH}:{tag}"

    # Asked independently: the registry serves that digest for the tag, and it is the
    # sha256 of the manifest it returns for it.
    headers, manifest = registry_get(port, f"{IMAGE_PATH}/manifests/{tag}")
    assert headers["Docker-Content-Digest"] == digest
    assert "sha256:" + hashlib.sha256(manifest).hexdigest() == digest
    _, by_digest = registry_get(port, f"{IMAGE_PATH}/manifests/{digest}")
    assert by_digest == manifest

    state = (tmp_path / "state" / "state.env").read_text(encoding="utf-8")
    assert state.splitlines() == [f"SOURCE_SHA={commit}", f"REF_A={ref}"]

    # The overlay gets exactly this reference (the same command kind-up runs).
    project = tmp_path / "state" / "repo"
    for part in ("argocd", "deploy", "gitops"):
        shutil.copytree(REPO_ROOT / part, project / part)
    subprocess.run(["git", "add", "--all"], cwd=project, check=True, timeout=60)
    set_image = subprocess.run(
        [sys.executable, "-m", "gitops", "set-image", "staging", ref],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert set_image.returncode == 0, set_image.stderr
    # Both overlays read the image from the one release component (docs/gitops.md).
    release = (project / "deploy" / "release" / "kustomization.yaml").read_text()
    assert f"digest: {digest}" in release
    assert f"newTag: {tag}" in release

    # Again for the same commit: the pushed image is reused, not rebuilt.
    again, _ = run_image_step(copy, port, tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == ref
    assert "reusing" in again.stderr
    assert "Step 1/" not in again.stderr
    assert "[1/" not in again.stderr


def test_a_push_to_a_registry_that_is_down_is_retried_then_named(
    base_image: str, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there
    docker("tag", base_image, f"localhost:{port}/{IMAGE_PATH}:retry")
    script = "set -Eeuo pipefail\nsource scripts/kind/lib.sh\nsleep() { :; }\npush_image retry\n"
    try:
        result = subprocess.run(
            ["bash", "-c", script],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env={**os.environ, "KIND_REGISTRY_PORT": str(port), "HOME": str(tmp_path)},
        )
    finally:
        docker("rmi", f"localhost:{port}/{IMAGE_PATH}:retry")
    assert result.returncode != 0
    assert result.stderr.count("attempt ") == 3, result.stderr
    assert "giving up after 4 attempts" in result.stderr
    assert f"docker push localhost:{port}/{IMAGE_PATH}:retry failed 4 times" in result.stderr
