"""Functions shared by the image and manifest tests (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.tools import glob_regex, kustomize_command

OVERLAYS = ("staging", "production")
# The same renderer `make manifests` uses; KUSTOMIZE="kustomize" picks a standalone binary
# (CI pins the one Argo CD bundles).
KUSTOMIZE = kustomize_command()


@dataclass(frozen=True)
class Render:
    """One overlay rendered by kustomize: the YAML text, its file and its objects."""

    overlay: str
    path: Path
    documents: list[dict[str, Any]]

    def one(self, kind: str, name: str = "iris-api") -> dict[str, Any]:
        """The single object of `kind` named `name`; fails the test unless there is one."""
        found = [
            doc for doc in self.documents if doc["kind"] == kind and doc["metadata"]["name"] == name
        ]
        assert len(found) == 1, f"{self.overlay}: expected one {kind}, found {len(found)}"
        return found[0]


def render(overlay_dir: Path) -> str:
    """`kubectl kustomize <dir>`; fails the calling test with kustomize's own message."""
    if shutil.which(KUSTOMIZE[0]) is None:
        pytest.fail(
            f"{KUSTOMIZE[0]} is not on PATH: it renders the overlays ({' '.join(KUSTOMIZE)})"
        )
    result = subprocess.run(
        [*KUSTOMIZE, str(overlay_dir)], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"kustomize cannot render {overlay_dir}:\n{result.stderr}")
    return result.stdout


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without an outer make's flags, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    env.update(extra)
    return env


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction after joining continuation lines."""

    stage: str
    keyword: str
    arguments: str
    line: int

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form RUN/CMD/ENTRYPOINT; fails on shell form."""
        assert self.arguments.startswith("["), f"line {self.line}: {self.keyword} is in shell form"
        value = json.loads(self.arguments)
        assert isinstance(value, list)
        return [str(item) for item in value]


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order, each tagged with the name (or index) of its build stage.

    Comment lines inside a continuation are dropped, as the Docker builder does.
    """
    instructions: list[Instruction] = []
    stage = ""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        keyword, _, arguments = " ".join(part for part in pending if part).partition(" ")
        pending = []
        keyword = keyword.upper()
        if keyword == "FROM":
            words = arguments.split()
            as_index = [w.upper() for w in words].index("AS") if "AS" in arguments.upper() else -1
            stage = words[as_index + 1] if as_index >= 0 else str(len(instructions))
        instructions.append(Instruction(stage, keyword, arguments.strip(), start))
    return instructions


def assignments(arguments: str) -> dict[str, str]:
    """`KEY=value KEY2="value 2"` (ENV, LABEL, ARG) as a dict; a bare ARG name maps to ""."""
    result = {}
    for word in shlex.split(arguments):
        key, _, value = word.partition("=")
        result[key] = value
    return result


# .dockerignore follows Go's filepath.Match, plus `**` for any number of directories.
DOCKERIGNORE_WILDCARDS = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex over slash-separated relative paths."""
    return re.compile(glob_regex(pattern.strip().lstrip("/").rstrip("/"), DOCKERIGNORE_WILDCARDS))


def build_context(repo_root: Path) -> list[Path]:
    """Files `docker build .` would send, per .dockerignore (relative paths, sorted).

    Implements the rules this repository's .dockerignore uses: ordered patterns,
    `!` re-includes, `*`/`?`/`**`, and a pattern that matches a directory
    matching everything below it.
    """
    rules = []
    for line in (repo_root / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            rules.append((negate, _pattern_regex(line.removeprefix("!"))))

    def excluded(relative: str) -> bool:
        parts = relative.split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        verdict = False
        for negate, regex in rules:
            if any(regex.fullmatch(candidate) for candidate in candidates):
                verdict = not negate
        return verdict

    def may_reinclude(relative_dir: str) -> bool:
        prefix = relative_dir + "/"
        return any(
            negate and (regex.pattern.startswith(re.escape(prefix)) or ".*" in regex.pattern)
            for negate, regex in rules
        )

    files = []
    for directory, dirnames, filenames in os.walk(repo_root):
        here = Path(directory).relative_to(repo_root).as_posix()
        here = "" if here == "." else here + "/"
        dirnames[:] = [d for d in dirnames if not excluded(here + d) or may_reinclude(here + d)]
        files.extend(Path(here + name) for name in filenames if not excluded(here + name))
    return sorted(files)


def quantity(value: str | int) -> Decimal:
    """A Kubernetes resource quantity in base units (cores, bytes)."""
    suffixes = {
        "m": Decimal("0.001"),
        "Ki": Decimal(2**10),
        "Mi": Decimal(2**20),
        "Gi": Decimal(2**30),
        "k": Decimal(10**3),
        "M": Decimal(10**6),
        "G": Decimal(10**9),
    }
    text = str(value)
    for suffix, factor in sorted(suffixes.items(), key=lambda item: -len(item[0])):
        if text.endswith(suffix):
            return Decimal(text.removesuffix(suffix)) * factor
    return Decimal(text)
