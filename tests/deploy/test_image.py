"""`make image-test` for real: the image is built, then run the way the Deployment runs it.

This needs a Docker engine and a base image already on the machine (`make test` pulls
nothing): the Dockerfile's python:3.11-slim-bookworm, or the substitute `make offline-base`
builds for builders that cannot reach Docker Hub. Without either the test skips and says
what is missing. CI's image job runs the same target with the official base.

What the target checks is scripts/smoke-container.sh's job (its logic is tested against
the real service in tests/scripts/test_smoke_container.py); here it meets the real image.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.support import clean_env, parse_dockerfile

OFFLINE_BASE = "iris-offline-base:bookworm"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.xdist_group("docker-image"),
    # A first build installs both locks from PyPI; with Docker's layer cache it takes seconds.
    pytest.mark.timeout(1800),
]


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def default_base(repo_root: Path) -> str:
    """The Dockerfile's `ARG PYTHON_IMAGE=` default, the base both stages start from."""
    for instruction in parse_dockerfile((repo_root / "Dockerfile").read_text()):
        if instruction.keyword == "ARG" and instruction.arguments.startswith("PYTHON_IMAGE="):
            return instruction.arguments.removeprefix("PYTHON_IMAGE=")
    raise AssertionError("the Dockerfile has no ARG PYTHON_IMAGE=<default>")


@pytest.fixture(scope="module")
def base_image(repo_root: Path) -> str:
    """A base present on this machine: the official one if it is here, else the substitute."""
    if shutil.which("docker") is None:
        pytest.skip("no docker command: the image test needs a Docker engine (README, 'The image')")
    info = docker("info", "--format", "{{.ServerVersion}}")
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["no answer"])[-1]
        pytest.skip(f"no Docker engine answers `docker info` ({reason})")
    official = default_base(repo_root)
    for candidate in (official, OFFLINE_BASE):
        if docker("image", "inspect", candidate).returncode == 0:
            return candidate
    pytest.skip(
        f"neither {official} nor the substitute {OFFLINE_BASE} is on this machine, and the "
        f"tests pull nothing: `docker pull {official}`, or `make offline-base` without Docker Hub"
    )


def test_make_image_test_builds_the_image_and_it_serves_as_the_deployment_runs_it(
    repo_root: Path, base_image: str
) -> None:
    # A tag of its own, so runs side by side never test each other's image; a revision of
    # its own, so /version is known to report what this build was given.
    token = secrets.token_hex(4)
    tag = f"iris-api:pytest-{token}"
    revision = secrets.token_hex(20)
    try:
        result = subprocess.run(
            [
                "make",
                "--no-print-directory",
                "image-test",
                f"IMAGE={tag}",
                f"PYTHON_IMAGE={base_image}",
                f"GIT_REVISION={revision}",
            ],
            cwd=repo_root,
            capture_output=True,
            text=True,
            timeout=1700,
            check=False,
            env=clean_env(),
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-6000:]
        assert "smoke-container: OK" in result.stdout
        for species in ("setosa", "versicolor", "virginica"):
            assert f"POST /predict -> {species}" in result.stdout
        assert f"GET /version names {revision}" in result.stdout
        assert "no compiler, no pandas, no matplotlib" in result.stdout
        assert re.search(r"ready: cold start \d+\.\d+s \(target \d+s\)", result.stdout)
        assert re.search(r"image \d+ bytes", result.stdout)
        # The labels carry the revision too, for whoever inspects the pushed image.
        label = docker(
            "image",
            "inspect",
            "--format",
            '{{index .Config.Labels "org.opencontainers.image.revision"}}',
            tag,
        )
        assert label.stdout.strip() == revision
    finally:
        # --no-prune keeps the parent layers: the next build starts from Docker's cache.
        docker("image", "rm", "--no-prune", tag)
