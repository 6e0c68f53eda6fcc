"""The GitOps tool starts as the README says, in an environment of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gitops.cli import main
from gitops.imageref import ImageRef
from tests.gitops.support import REPO_ROOT, ref

SCRIPT = REPO_ROOT / "scripts" / "gitops.sh"


def test_python_without_ruamel_gets_one_line_pointing_at_the_script() -> None:
    # -S leaves out every site-packages directory, so ruamel.yaml cannot be imported.
    result = subprocess.run(
        [sys.executable, "-S", "-m", "gitops", "status"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert "lacks ruamel.yaml" in result.stderr
    assert "scripts/gitops.sh" in result.stderr


@pytest.mark.parametrize(
    ("command", "hint"),
    [
        (None, "`python -m gitops history production`"),  # the workflows' invocation
        ("scripts/gitops.sh", "`scripts/gitops.sh history production`"),  # what the script sets
    ],
)
def test_hints_name_the_command_that_ran_the_tool(
    repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str | None,
    hint: str,
) -> None:
    # A developer runs scripts/gitops.sh, where a bare `python -m gitops` would lack
    # ruamel.yaml: the command a refusal tells them to run must be the one they ran.
    if command is None:
        monkeypatch.delenv("GITOPS_COMMAND", raising=False)
    else:
        monkeypatch.setenv("GITOPS_COMMAND", command)
    assert main(["-C", str(repo), "promote", "production", "staging"]) == 2
    assert hint in capsys.readouterr().err


@pytest.mark.integration
def test_edits_end_with_the_commit_and_push_to_run(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-C", str(repo), "set-image", "staging", ref(1)]) == 0
    lines = capsys.readouterr().out.splitlines()
    tag = ImageRef.parse(ref(1)).tag
    assert lines[-1] == (
        f"now commit and push: git commit -m 'staging: set {tag}' "
        "deploy/release/kustomization.yaml deploy/release/release.yaml && git push"
    )
    # Nothing changed, nothing to push.
    assert main(["-C", str(repo), "set-image", "staging", ref(1)]) == 0
    assert "now commit and push" not in capsys.readouterr().out


@pytest.mark.integration
def test_script_installs_the_gitops_lock_once_then_runs_the_tool(tmp_path: Path) -> None:
    venv = tmp_path / "venv-gitops"
    env = {
        **{key: value for key, value in os.environ.items() if key != "PYTHONPATH"},
        "GITOPS_VENV": str(venv),
        "PYTHON": sys.executable,  # any Python 3.11 builds the venv; this one is at hand
    }
    runs = [
        subprocess.run(
            [str(SCRIPT), "-C", str(REPO_ROOT), "status", "--json"],
            cwd=tmp_path,  # works from outside the clone too
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        for _ in range(2)
    ]
    first, second = runs
    assert first.returncode == 0, first.stderr
    assert "installing requirements/gitops.lock (ruamel.yaml)" in first.stderr
    assert second.returncode == 0, second.stderr
    assert second.stderr == ""  # installed once
    assert '"environments"' in second.stdout
    usage = subprocess.run(
        [str(SCRIPT), "--help"], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert usage.stdout.startswith("usage: scripts/gitops.sh")
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = {line.split("==")[0].lower() for line in installed.splitlines()}
    assert "ruamel.yaml" in names or "ruamel-yaml" in names
    assert "scikit-learn" not in names  # its own tiny environment, not .venv
