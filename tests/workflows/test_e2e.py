"""e2e.yml: runs when what the image or the cluster is made from changes, and fails usefully.

The path filters are derived, not remembered: every file the Docker build context holds
(after .dockerignore), every COPY source of the Dockerfile, and every lock the Makefile's
image targets install must match them. The node image it creates the cluster with is the
one scripts/kind/lib.sh pins, the image is built before the cluster, and a failure uploads
the diagnostics bundle.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from tests.deploy.support import build_context, parse_dockerfile
from tests.workflows.support import REPO_ROOT, github_glob_matches, workflow


def e2e_paths() -> list[str]:
    paths = workflow("e2e").triggers["pull_request"]["paths"]
    assert isinstance(paths, list)
    return [str(path) for path in paths]


def matched(path: str) -> bool:
    return any(github_glob_matches(pattern, path) for pattern in e2e_paths())


def tracked(path: str) -> list[str]:
    """Files git tracks at or under `path` (a file or a directory)."""
    result = subprocess.run(
        ["git", "ls-files", "--", path],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.splitlines()


def copy_sources() -> list[str]:
    """The sources of every COPY/ADD from the build context (not --from another stage)."""
    sources = []
    for instruction in parse_dockerfile((REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")):
        if instruction.keyword not in {"COPY", "ADD"}:
            continue
        words = instruction.arguments.split()
        if any(word.startswith("--from=") for word in words):
            continue
        operands = [word for word in words if not word.startswith("--")]
        sources += operands[:-1]
    return sources


def test_every_copy_source_of_the_dockerfile_starts_e2e() -> None:
    sources = copy_sources()
    assert sources, "no COPY lines found in the Dockerfile"
    for source in sources:
        files = tracked(source.rstrip("/"))
        assert files, f"COPY {source}: nothing tracked there"
        unmatched = [path for path in files if not matched(path)]
        assert unmatched == [], f"COPY {source}: {unmatched} would not start e2e"


def test_every_file_in_the_build_context_starts_e2e() -> None:
    context = [Path(path).as_posix() for path in build_context(REPO_ROOT)]
    tracked_files = set(tracked("."))
    unmatched = [path for path in context if path in tracked_files and not matched(path)]
    assert unmatched == []
    for path in ("Dockerfile", ".dockerignore"):
        assert matched(path), path


def image_make_targets() -> list[str]:
    """The make targets the Dockerfile's RUN lines call."""
    targets = []
    for instruction in parse_dockerfile((REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")):
        if instruction.keyword == "RUN":
            targets += re.findall(r"\bmake\s+([a-z][\w-]*)", instruction.arguments)
    return targets


def makefile_prerequisite_files(target: str, seen: set[str] | None = None) -> set[str]:
    """Files named by `target`'s rule in the Makefile, following its target prerequisites."""
    seen = seen if seen is not None else set()
    if target in seen:
        return set()
    seen.add(target)
    text = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    files: set[str] = set()
    for match in re.finditer(rf"^{re.escape(target)}\s*:([^\n#]*)((?:\n\t[^\n]*)*)", text, re.M):
        prerequisites, recipe = match.group(1), match.group(2)
        files |= set(re.findall(r"requirements/[\w.-]+\.lock", prerequisites + recipe))
        for word in prerequisites.split():
            if "$(" in word:
                # $(VENV)/.stamp style prerequisites name a rule of their own.
                stamp = word.split("/")[-1]
                for rule in re.findall(rf"^(\$\(VENV\)/{re.escape(stamp)})\s*:", text, re.M):
                    files |= makefile_prerequisite_files(rule, seen)
            elif not word.startswith("|"):
                files |= makefile_prerequisite_files(word, seen)
    return files


def test_the_makefile_and_the_locks_the_image_installs_start_e2e() -> None:
    targets = image_make_targets()
    assert targets, "the Dockerfile runs no make target"
    assert matched("Makefile")
    locks = set().union(*(makefile_prerequisite_files(target) for target in targets))
    assert locks, f"make {targets} name no requirements/*.lock"
    for lock in sorted(locks):
        assert matched(lock), lock


def test_what_the_cluster_runs_and_the_loop_itself_start_e2e() -> None:
    for path in (
        "deploy/overlays/staging/kustomization.yaml",
        "argocd/root.yaml",
        "gitops/__main__.py",
        "scripts/release/bump-staging.sh",
        "scripts/kind/lib.sh",
        "scripts/kind/sizing/patches.yaml",
        ".github/workflows/e2e.yml",
    ):
        assert matched(path), path


def steps() -> list[dict[str, Any]]:
    return [step for _, step in workflow("e2e").steps()]


def index_of(predicate: Any) -> int:
    for position, step in enumerate(steps()):
        if predicate(step):
            return position
    raise AssertionError("no such step in e2e.yml")


def kind_action() -> dict[str, Any]:
    return steps()[index_of(lambda s: str(s.get("uses", "")).startswith("helm/kind-action@"))]


def lib_value(name: str) -> str:
    text = (REPO_ROOT / "scripts" / "kind" / "lib.sh").read_text(encoding="utf-8")
    match = re.search(rf'^readonly {name}="([^"]+)"', text, re.M)
    assert match, name
    return match.group(1)


def test_the_cluster_runs_the_node_image_lib_sh_pins() -> None:
    inputs = kind_action()["with"]
    assert inputs["node_image"] == lib_value("KIND_NODE_IMAGE")
    version = inputs["version"].lstrip("v").split(".")
    minimum = lib_value("KIND_MIN_VERSION").split(".")
    assert [int(part) for part in version] >= [int(part) for part in minimum]
    assert inputs["cloud_provider"] is True


def test_the_image_is_built_before_the_cluster_exists() -> None:
    build = index_of(lambda s: s.get("run", "").strip() == "make kind-image")
    cluster = index_of(lambda s: str(s.get("uses", "")).startswith("helm/kind-action@"))
    up = index_of(lambda s: s.get("run", "").strip() == "make kind-up")
    assert build < cluster < up


def test_every_long_step_has_a_timeout_so_diagnostics_still_run() -> None:
    for command in ("make kind-image", "make kind-up", "make kind-loop"):
        step = steps()[index_of(lambda s, c=command: s.get("run", "").strip() == c)]
        assert isinstance(step.get("timeout-minutes"), int), command
    total = sum(int(step.get("timeout-minutes", 0)) for step in steps())
    # The steps' own limits end before the job's, so the failure() steps get to run.
    assert total < workflow("e2e").jobs["kind"]["timeout-minutes"]


def test_a_failure_uploads_the_diagnostics_bundle() -> None:
    job = workflow("e2e").jobs["kind"]
    bundle = job["env"]["KIND_DIAGNOSTICS_DIR"]
    upload = steps()[
        index_of(lambda s: str(s.get("uses", "")).startswith("actions/upload-artifact@"))
    ]
    assert upload["if"] == "${{ failure() }}"
    assert bundle.endswith("/" + upload["with"]["path"])
    diagnose = steps()[index_of(lambda s: "scripts/kind/diagnose.sh" in s.get("run", ""))]
    assert diagnose["if"] == "${{ failure() }}"


def test_the_build_cache_key_covers_what_the_build_stage_is_made_from() -> None:
    cache = steps()[index_of(lambda s: str(s.get("uses", "")).startswith("actions/cache@"))]
    key = cache["with"]["key"]
    for source in {*copy_sources(), "Dockerfile", "Makefile"} - {"service/"}:
        stem = source.rstrip("/")
        assert stem in key or (stem.startswith("requirements/") and "requirements/*.lock" in key), (
            source
        )
    job_env = workflow("e2e").jobs["kind"]["env"]
    assert Path(job_env["KIND_BUILD_CACHE"]).name == Path(cache["with"]["path"]).name
