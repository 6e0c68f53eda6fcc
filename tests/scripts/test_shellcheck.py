"""Every shell script in scripts/ passes shellcheck, with sourced files followed (-x).

The workflows' inline `run:` scripts are shellchecked by actionlint (tests/workflows).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.scripts.support import REPO_ROOT
from tests.tools import run_tool


def shell_scripts() -> list[Path]:
    return sorted((REPO_ROOT / "scripts").rglob("*.sh"))


def shellcheck(*paths: Path) -> subprocess.CompletedProcess[str]:
    # `# shellcheck source=scripts/...` directives are relative to the repository root.
    return run_tool("shellcheck", "--external-sources", "--format=gcc", *paths, cwd=REPO_ROOT)


def test_the_delivery_scripts_are_all_found() -> None:
    names = {path.relative_to(REPO_ROOT).as_posix() for path in shell_scripts()}
    assert {
        "scripts/gke-bootstrap.sh",
        "scripts/gke-teardown.sh",
        "scripts/gke-common.sh",
        "scripts/install-kustomize.sh",
        "scripts/fetch-argocd-crds.sh",
        "scripts/smoke-container.sh",
        "scripts/kind/lib.sh",
        "scripts/kind/up.sh",
        "scripts/kind/loop.sh",
        "scripts/kind/down.sh",
        "scripts/kind/diagnose.sh",
    } <= names


def test_every_shell_script_is_shellcheck_clean() -> None:
    # scripts/kind/ passes every optional check too (tests/scripts/test_kind.py); one
    # shellcheck run per script is enough on a small machine.
    result = shellcheck(*[p for p in shell_scripts() if p.parent.name != "kind"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_reports_an_unquoted_expansion(tmp_path: Path) -> None:
    """The check above can fail: shellcheck runs and flags a classic mistake."""
    script = tmp_path / "bad.sh"
    script.write_text("#!/usr/bin/env bash\nrm -rf $1/build\n", encoding="utf-8")
    result = shellcheck(script)
    assert result.returncode != 0
    assert "SC2086" in result.stdout


def test_every_runnable_script_is_executable_and_strict() -> None:
    for path in shell_scripts():
        text = path.read_text(encoding="utf-8")
        if text.startswith("#!"):
            assert path.stat().st_mode & 0o111, f"{path} has a shebang but is not executable"
            assert any(
                strict in text
                for strict in ("set -euo pipefail", "set -Eeuo pipefail", "set -uo pipefail")
            ), path
        else:
            # Libraries are sourced, never run, and say which shell they are written for.
            assert "shellcheck shell=bash" in text, path
