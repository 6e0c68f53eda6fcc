"""The rendered overlays and the Dockerfile pass the real validators and scanners.

kubernetes-validate checks every object strictly against the schema of the
Kubernetes version we target; checkov (kubernetes, on the rendered overlays, and
dockerfile) must report zero failed checks; yamllint and hadolint must be silent.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.support import OVERLAYS, Render, clean_env
from tests.tools import run_tool

# The GKE minor version the manifests target.
KUBERNETES_VERSION = "1.34.0"

pytestmark = pytest.mark.xdist_group("deploy-scanners")


def kubernetes_validate(path: Path) -> subprocess.CompletedProcess[str]:
    return run_tool("kubernetes-validate", "--strict", "-k", KUBERNETES_VERSION, path)


# Custom resources: kubernetes-validate has no schema for them (it warns and passes them);
# tests/monitoring validates them against their own CRDs.
CUSTOM_KINDS = {"PodMonitoring", "Rules"}


def test_rendered_overlay_is_valid_for_the_target_kubernetes_version(rendered: Render) -> None:
    result = kubernetes_validate(rendered.path)
    assert result.returncode == 0, result.stdout + result.stderr
    # One "passed" line per built-in object: nothing was skipped as an unknown kind.
    passed = re.findall(r"passed for resource (\S+)", result.stdout + result.stderr)
    built_in = [doc for doc in rendered.documents if doc["kind"] not in CUSTOM_KINDS]
    assert len(passed) == len(built_in), result.stdout + result.stderr


def test_kubernetes_validate_rejects_a_field_the_schema_does_not_know(
    renders: dict[str, Render], tmp_path: Path
) -> None:
    # Proves --strict is in force: the same Deployment with one misspelt field fails.
    deployment = renders["staging"].one("Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = kubernetes_validate(path)
    assert result.returncode != 0
    assert "replica" in result.stdout + result.stderr


def failed(report: dict[str, Any]) -> list[str]:
    return [
        f"{check['check_id']} {check['resource']}: {check['check_name']}"
        for check in report["results"]["failed_checks"]
    ]


@pytest.mark.parametrize("framework", ["kubernetes", "dockerfile"])
def test_checkov_reports_no_failed_check(
    checkov_reports: dict[str, dict[str, Any]], framework: str
) -> None:
    report = checkov_reports[framework]
    assert failed(report) == []
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 0


def test_checkov_scanned_the_deployment_of_every_overlay(
    checkov_reports: dict[str, dict[str, Any]],
) -> None:
    # Zero failures means nothing unless each overlay's Deployment was actually checked.
    framework = "kubernetes"
    passed_checks = checkov_reports[framework]["results"]["passed_checks"]
    resources = {check["resource"] for check in passed_checks}
    for overlay in OVERLAYS:
        namespace = f"iris-{overlay}"
        assert any(f"Deployment.{namespace}.iris-api" in r for r in resources), (
            f"checkov ({framework}) checked no Deployment in {namespace}: {sorted(resources)}"
        )


def test_checkov_checked_the_runtime_user_and_healthcheck_of_the_dockerfile(
    checkov_reports: dict[str, dict[str, Any]],
) -> None:
    passed_checks = checkov_reports["dockerfile"]["results"]["passed_checks"]
    passed = {check["check_id"] for check in passed_checks}
    # Non-root last USER, a created user, a HEALTHCHECK. The pinned base (CKV_DOCKER_7) is
    # a build argument checkov cannot read; test_dockerfile.py checks its default instead.
    assert {"CKV_DOCKER_8", "CKV_DOCKER_3", "CKV_DOCKER_2"} <= passed


def comment_above(lines: list[str], index: int) -> str:
    """The comment text on the line before `index`, or "" when that line is not a comment."""
    above = lines[index - 1].strip() if index > 0 else ""
    return above.removeprefix("#").strip() if above.startswith("#") else ""


def test_every_checkov_skip_carries_its_reason(repo_root: Path) -> None:
    text = (repo_root / ".checkov.yaml").read_text()
    config = yaml.safe_load(text)
    lines = text.splitlines()
    for key in ("skip-check", "skip-path"):
        for entry in config.get(key) or []:
            index = next(i for i, line in enumerate(lines) if line.strip() == f"- {entry}")
            reason = comment_above(lines, index)
            assert len(reason) > 10, f".checkov.yaml: {key} {entry!r} needs a reason above it"


def test_no_checkov_skip_annotation_hides_in_the_manifests(deploy_dir: Path) -> None:
    # Skips live in .checkov.yaml with a reason, not scattered as annotations.
    paths = sorted(deploy_dir.rglob("*.yaml"))
    read = {path.relative_to(deploy_dir).as_posix() for path in paths}
    assert {
        "base/deployment.yaml",
        *(f"overlays/{name}/kustomization.yaml" for name in OVERLAYS),
    } <= read
    for path in paths:
        assert "checkov.io/skip" not in path.read_text(), path


def test_yamllint_is_clean(repo_root: Path) -> None:
    result = run_tool(
        "yamllint",
        "--strict",
        "--format",
        "parsable",
        "deploy",
        ".checkov.yaml",
        ".yamllint.yaml",
        cwd=repo_root,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_clean(repo_root: Path) -> None:
    # hadolint exits 1 on any finding, info level included.
    result = run_tool("hadolint", "--no-color", "Dockerfile", cwd=repo_root, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_ignores_carry_their_reason(repo_root: Path) -> None:
    lines = (repo_root / "Dockerfile").read_text().splitlines()
    for index, line in enumerate(lines):
        if "hadolint ignore" in line:
            reason = comment_above(lines, index)
            assert len(reason) > 10, f"Dockerfile line {index + 1}: say why above the ignore"
            assert "hadolint" not in reason, f"Dockerfile line {index + 1}: say why, not what"


@pytest.fixture
def make_copy(repo_root: Path, tmp_path: Path) -> Path:
    """A copy of the repository's Makefile, deploy/ and the renderer lookup, so the real
    build/ is left alone."""
    shutil.copy2(repo_root / "Makefile", tmp_path / "Makefile")
    shutil.copytree(repo_root / "deploy", tmp_path / "deploy")
    (tmp_path / "scripts").mkdir()
    for script in ("find-kustomize.sh", "install-kustomize.sh"):
        shutil.copy2(repo_root / "scripts" / script, tmp_path / "scripts" / script)
    return tmp_path


def make_manifests(directory: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("make") is None:
        pytest.fail("make is not on PATH")
    return subprocess.run(
        ["make", "--no-print-directory", "manifests"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=clean_env(TMPDIR=str(directory)),
    )


@pytest.mark.integration
def test_make_manifests_writes_each_rendered_overlay(
    make_copy: Path, renders: dict[str, Render]
) -> None:
    result = make_manifests(make_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    for overlay in OVERLAYS:
        written = make_copy / "build" / "manifests" / f"{overlay}.yaml"
        assert written.read_text() == renders[overlay].path.read_text()


@pytest.mark.integration
def test_make_manifests_leaves_the_old_files_when_an_overlay_fails_to_render(
    make_copy: Path,
) -> None:
    out = make_copy / "build" / "manifests"
    out.mkdir(parents=True)
    (out / "staging.yaml").write_text("previous\n")
    broken = make_copy / "deploy" / "overlays" / "production" / "kustomization.yaml"
    broken.write_text(broken.read_text().replace("../../base", "../../no-such-base"))
    result = make_manifests(make_copy)
    assert result.returncode != 0
    assert (out / "staging.yaml").read_text() == "previous\n"
    assert not (out / "production.yaml").exists()
