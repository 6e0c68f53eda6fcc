"""The locks: exact, hashed, closed under their own dependencies, and one pin per package.

A lock is installed alone with `pip install --no-deps --require-hashes`, so a package it
forgets is simply missing at run time (python-dateutil without six once broke training in
the image while the whole suite passed). These tests recompute each lock's closure from its
`.in` file and the installed packages' own metadata, so dropping any package from a lock, or
adding one nothing needs, fails here.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

LOCKS = ("serve", "train", "dev", "gitops", "bench")
# Locks whose every package is installed in the test environment (.venv is dev.lock).
INSTALLED_HERE = ("serve", "train", "dev", "gitops")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    applies_here: bool
    hashes: tuple[str, ...]


def entries(path: Path) -> Iterator[str]:
    """Each requirement of a lock as one line, continuation lines joined, comments dropped."""
    entry = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        entry += " " + line.removesuffix("\\").strip()
        if not line.endswith("\\"):
            yield entry.strip()
            entry = ""
    if entry:
        yield entry.strip()


def read_lock(path: Path) -> dict[str, Pin]:
    pins = {}
    for entry in entries(path):
        spec = entry.split(" --", 1)[0]
        requirement = Requirement(spec)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{path.name}: {spec!r} is not an exact pin"
        pin = Pin(
            name=normalise(requirement.name),
            version=specifier.version,
            applies_here=requirement.marker is None or requirement.marker.evaluate(),
            hashes=tuple(HASH.findall(entry)),
        )
        pins[pin.name] = pin
    return pins


def read_in(path: Path) -> list[Requirement]:
    """The direct requirements of an .in file, following `-r other.in` includes."""
    found = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found += read_in(path.parent / line.removeprefix("-r ").strip())
        elif line:
            found.append(Requirement(line))
    return found


def closure(direct: list[Requirement]) -> set[str]:
    """Every distribution the direct requirements need here, from installed metadata."""
    environment: dict[str, str] = dict(default_environment())
    needed: set[str] = set()
    todo = [(r, frozenset(r.extras)) for r in direct]
    while todo:
        requirement, extras = todo.pop()
        name = normalise(requirement.name)
        if name in needed:
            continue
        needed.add(name)
        for text in metadata.requires(name) or []:
            dependency = Requirement(text)
            wanted = dependency.marker is None or any(
                dependency.marker.evaluate({**environment, "extra": extra})
                for extra in ("", *extras)
            )
            if wanted:
                todo.append((dependency, frozenset(dependency.extras)))
    return needed


@pytest.fixture(scope="module")
def locks(repo_root: Path) -> dict[str, dict[str, Pin]]:
    return {name: read_lock(repo_root / "requirements" / f"{name}.lock") for name in LOCKS}


@pytest.mark.parametrize("lock", LOCKS)
def test_every_lock_entry_is_an_exact_pin_with_hashes(
    locks: dict[str, dict[str, Pin]], lock: str
) -> None:
    assert locks[lock], f"{lock}.lock pins nothing"
    unhashed = [pin.name for pin in locks[lock].values() if not pin.hashes]
    assert not unhashed, f"{lock}.lock has entries without --hash: {unhashed}"


@pytest.mark.parametrize("lock", LOCKS)
def test_lock_names_only_paths_inside_the_repository(repo_root: Path, lock: str) -> None:
    text = (repo_root / "requirements" / f"{lock}.lock").read_text(encoding="utf-8")
    # Annotations such as "# via -c <file>" must not record where `make lock` staged files.
    assert not re.findall(r"(?<![\w.])/[\w.-]+/", text), f"{lock}.lock names an absolute path"


@pytest.mark.parametrize("lock", INSTALLED_HERE)
def test_lock_is_exactly_the_closure_of_its_inputs(
    repo_root: Path, locks: dict[str, dict[str, Pin]], lock: str
) -> None:
    pinned = {name for name, pin in locks[lock].items() if pin.applies_here}
    needed = closure(read_in(repo_root / "requirements" / f"{lock}.in"))
    assert not needed - pinned, f"{lock}.lock misses {sorted(needed - pinned)}"
    assert not pinned - needed, f"{lock}.lock pins what nothing needs: {sorted(pinned - needed)}"


def test_the_closure_check_sees_a_transitive_dependency() -> None:
    # python-dateutil needs six; a lock that forgets six must be caught by the check above.
    assert "six" in closure([Requirement("python-dateutil")])


def test_shared_packages_have_one_pin_in_every_lock(locks: dict[str, dict[str, Pin]]) -> None:
    for first in INSTALLED_HERE:
        for second in INSTALLED_HERE:
            for name in locks[first].keys() & locks[second].keys():
                a, b = locks[first][name], locks[second][name]
                assert (a.version, a.hashes) == (b.version, b.hashes), (
                    f"{name}: {first}.lock pins {a.version}, {second}.lock pins {b.version}"
                )


def test_serve_is_inside_train_is_inside_dev(locks: dict[str, dict[str, Pin]]) -> None:
    assert locks["serve"].keys() <= locks["train"].keys() <= locks["dev"].keys()
    assert locks["gitops"].keys() <= locks["dev"].keys()
    # What serving must never carry: training's data and plotting stacks.
    assert not {"pandas", "matplotlib", "pillow", "fonttools"} & locks["serve"].keys()


def test_the_model_libraries_are_identical_for_training_and_serving(
    locks: dict[str, dict[str, Pin]],
) -> None:
    # The artifact refuses a runtime whose versions differ from the ones it was trained with.
    for name in ("scikit-learn", "numpy", "joblib", "scipy", "threadpoolctl"):
        assert locks["serve"][name].version == locks["train"][name].version


def test_installed_environment_matches_the_dev_lock(locks: dict[str, dict[str, Pin]]) -> None:
    for pin in locks["dev"].values():
        if pin.applies_here:
            assert metadata.version(pin.name) == pin.version, f"{pin.name} differs from dev.lock"


def make_dry_run(repo_root: Path, *args: str) -> list[str]:
    result = subprocess.run(
        ["make", "--always-make", "--dry-run", *args],
        cwd=repo_root,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.splitlines()


@pytest.mark.parametrize(
    ("target", "lock"),
    [
        ("venv", "train.lock"),
        ("venv-serve", "serve.lock"),
        ("dev", "dev.lock"),
    ],
)
def test_every_install_requires_hashes_and_wheels(repo_root: Path, target: str, lock: str) -> None:
    commands = [shlex.split(line) for line in make_dry_run(repo_root, target, "VENV=/x/venv")]
    installs = [c for c in commands if "pip" in c and "install" in c]
    assert installs, f"make {target} installs nothing"
    for install in installs:
        assert {"--require-hashes", "--only-binary=:all:", "--no-deps"} <= set(install), install
    assert any(f"requirements/{lock}" in install for install in installs)
    # The environment is checked alone, right after the install.
    checks = [i for i, c in enumerate(commands) if c[-1:] == ["check"] and "pip" in c]
    assert checks, f"make {target} never runs pip check"
    assert checks[-1] > max(i for i, c in enumerate(commands) if c in installs)
