"""Repository-wide rules: one CI entry point, lint and types clean (locks: test_locks.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def test_ci_entry_point_runs_exactly_make_test(repo_root: Path) -> None:
    commands = [
        line.strip()
        for line in (repo_root / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands[-1] == "make test"
    assert all(c.startswith(("set ", "cd ")) for c in commands[:-1]), commands


def run_tool(repo_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=repo_root, capture_output=True, text=True, check=False
    )


def test_ruff_finds_nothing(repo_root: Path) -> None:
    result = run_tool(repo_root, "ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_code_is_ruff_formatted(repo_root: Path) -> None:
    result = run_tool(repo_root, "ruff", "format", "--check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_packages_pass_mypy_strict(repo_root: Path, tmp_path: Path) -> None:
    result = run_tool(repo_root, "mypy", "--cache-dir", str(tmp_path / "mypy"))
    assert result.returncode == 0, result.stdout + result.stderr
