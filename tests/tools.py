"""Helpers shared across the test packages: the pinned dev tools and glob patterns."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest


def venv_tool(name: str) -> Path:
    """A tool from the pinned dev environment, next to the interpreter running the tests."""
    candidate = Path(sys.executable).parent / name
    if not candidate.exists():
        pytest.fail(f"{name} is not installed next to {sys.executable}: run `make dev`")
    return candidate


def run_tool(
    name: str,
    *args: str | Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run a dev tool (see venv_tool) to completion; the caller judges its exit code."""
    return subprocess.run(
        [str(venv_tool(name)), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def kustomize_command() -> tuple[str, ...]:
    """The overlay renderer: $KUSTOMIZE (`make test` sets it from scripts/find-kustomize.sh),
    else `kubectl kustomize`."""
    return tuple(shlex.split(os.environ.get("KUSTOMIZE", "kubectl kustomize")))


def glob_regex(pattern: str, wildcards: Mapping[str, str]) -> str:
    """`pattern` as a regular expression: each wildcard becomes its regex, all else is literal.

    The wildcards are tried in the order given, so list `**/` before `**` before `*`.
    Each file format that uses globs has its own dialect; the callers say which.
    """
    regex = ""
    position = 0
    while position < len(pattern):
        for wildcard, replacement in wildcards.items():
            if pattern.startswith(wildcard, position):
                regex += replacement
                position += len(wildcard)
                break
        else:
            regex += re.escape(pattern[position])
            position += 1
    return regex
