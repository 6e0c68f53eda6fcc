"""actionlint (with shellcheck on every `run:` script) and checkov's GitHub Actions checks.

Both tools are quiet when they skip something, so each test first proves the tool ran: a
known-bad workflow must be reported, and checkov must have scanned every file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.tools import run_tool
from tests.workflows.support import REPO_ROOT, WORKFLOW_DIR, WORKFLOW_NAMES

# Module-scoped fixtures run once, so every test here shares one xdist worker.
pytestmark = pytest.mark.xdist_group("workflow-linters")

VENV_BIN = Path(sys.executable).parent

# Checks skipped inline (`# checkov:skip=<id>:<reason>`), by file; anything else skipped or
# failed fails the test.
ALLOWED_SKIPS = {
    ("ci.yml", "CKV_GHA_5"),  # the image is built but never pushed
    ("ci.yml", "CKV_GHA_6"),
    ("release.yml", "CKV_GHA_5"),  # signed by actions/attest (Sigstore), not cosign
    ("release.yml", "CKV_GHA_6"),
    ("promote.yml", "CKV_GHA_7"),  # inputs pick overlays; nothing is built
}


def tool_env() -> dict[str, str]:
    """The dev tools first on PATH: actionlint only runs shellcheck if it finds it there."""
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return run_tool("actionlint", "-no-color", "-oneline", *paths, cwd=REPO_ROOT, env=tool_env())


def test_shellcheck_is_on_the_path_actionlint_sees() -> None:
    assert shutil.which("shellcheck", path=tool_env()["PATH"]), "actionlint would skip shellcheck"


def test_actionlint_reports_nothing() -> None:
    files = [WORKFLOW_DIR / f"{name}.yml" for name in WORKFLOW_NAMES]
    result = actionlint(*files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_runs_shellcheck_on_run_scripts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  j:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: rm -rf $DIR/build\n",
        encoding="utf-8",
    )
    result = actionlint(bad)
    assert result.returncode != 0
    assert "SC2086" in result.stdout, result.stdout


CANARY = """\
name: canary
on: issues
permissions: {}
jobs:
  echo:
    runs-on: ubuntu-24.04
    permissions: {}
    steps:
      - run: echo "${{ github.event.issue.title }}"
"""


@pytest.fixture(scope="module")
def checkov_report(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """checkov over a copy of the workflows plus a canary that must fail, run once.

    checkov 3.1's bundled workflow schema predates the `attestations` permission, and
    checkov silently ignores a file its schema rejects. The copy of release.yml leaves that
    one line out so the rest of the file is still checked (a newer checkov needs no edit).
    """
    root = tmp_path_factory.mktemp("checkov")
    ours = root / "ours" / ".github" / "workflows"
    ours.mkdir(parents=True)
    for name in WORKFLOW_NAMES:
        text = (WORKFLOW_DIR / f"{name}.yml").read_text(encoding="utf-8")
        lines = [line for line in text.splitlines() if line.strip() != "attestations: write"]
        (ours / f"{name}.yml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    canary = root / "canary" / ".github" / "workflows"
    canary.mkdir(parents=True)
    (canary / "canary.yml").write_text(CANARY, encoding="utf-8")
    result = run_tool(
        "checkov",
        *("--framework", "github_actions", "--output", "json", "--compact"),
        *("--directory", "ours", "--directory", "canary"),
        cwd=root,
        env={**tool_env(), "BC_SKIP_MAPPING": "TRUE", "BC_SKIP_DOWNLOAD": "TRUE"},
        timeout=300,
    )
    assert result.returncode in (0, 1), result.stderr
    # One JSON document per scanned directory, printed one after the other.
    decoder = json.JSONDecoder()
    reports: list[dict[str, Any]] = []
    text = result.stdout.strip()
    while text:
        document, end = decoder.raw_decode(text)
        reports.extend(document if isinstance(document, list) else [document])
        text = text[end:].strip()
    return reports


def results(report: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [item for part in report for item in part.get("results", {}).get(kind, [])]


def file_name(check: dict[str, Any]) -> str:
    return Path(check["file_path"]).name


def test_checkov_scans_every_workflow(checkov_report: list[dict[str, Any]]) -> None:
    scanned = {
        file_name(c)
        for kind in ("passed_checks", "failed_checks", "skipped_checks")
        for c in results(checkov_report, kind)
    }
    assert {f"{name}.yml" for name in WORKFLOW_NAMES} <= scanned


def test_checkov_reports_the_canary_injection(checkov_report: list[dict[str, Any]]) -> None:
    failed = {(file_name(c), c["check_id"]) for c in results(checkov_report, "failed_checks")}
    assert ("canary.yml", "CKV_GHA_2") in failed


def test_checkov_finds_nothing_in_the_workflows(checkov_report: list[dict[str, Any]]) -> None:
    failed = [
        f"{file_name(c)}: {c['check_id']} {c['check_name']} ({c['resource']})"
        for c in results(checkov_report, "failed_checks")
        if file_name(c) != "canary.yml"
    ]
    assert failed == []


def test_checkov_skips_only_the_documented_checks_with_a_reason(
    checkov_report: list[dict[str, Any]],
) -> None:
    skipped = results(checkov_report, "skipped_checks")
    assert {(file_name(c), c["check_id"]) for c in skipped} == ALLOWED_SKIPS
    for check in skipped:
        assert len(check["check_result"].get("suppress_comment", "").strip()) > 20, check
