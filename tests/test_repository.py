"""Repository-wide rules: pinned locks, one CI entry point, lint and types clean."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!-]+)$")


def requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    result = {}
    for line in requirement_lines(path):
        match = PIN.match(line)
        assert match, f"{path.name}: {line!r} is not an exact pin"
        result[normalise(match["name"])] = match["version"]
    return result


@pytest.mark.parametrize("lock", ["runtime.lock", "dev.lock", "bench.lock"])
def test_every_lock_line_is_an_exact_pin(repo_root: Path, lock: str) -> None:
    assert pins(repo_root / "requirements" / lock)


@pytest.mark.parametrize(
    ("source", "lock"), [("runtime.in", "runtime.lock"), ("dev.in", "dev.lock")]
)
def test_every_direct_requirement_is_pinned_in_its_lock(
    repo_root: Path, source: str, lock: str
) -> None:
    pinned = pins(repo_root / "requirements" / lock)
    for line in requirement_lines(repo_root / "requirements" / source):
        name = normalise(re.split(r"[\[<>=!~ ]", line, maxsplit=1)[0])
        assert name in pinned, f"{source} names {name}, which {lock} does not pin"


def test_dev_lock_never_repins_a_runtime_package(repo_root: Path) -> None:
    runtime = pins(repo_root / "requirements" / "runtime.lock")
    dev = pins(repo_root / "requirements" / "dev.lock")
    assert not set(runtime) & set(dev)


def test_installed_runtime_matches_the_lock(repo_root: Path) -> None:
    from importlib.metadata import version

    for name, pinned in pins(repo_root / "requirements" / "runtime.lock").items():
        assert version(name) == pinned, f"{name} is {version(name)}, runtime.lock pins {pinned}"


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
