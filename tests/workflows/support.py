"""Shared by the workflow tests: the workflow files, parsed and as text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.tools import glob_regex

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_DIR = REPO_ROOT / ".github" / "workflows"
WORKFLOW_NAMES = ("ci", "release", "promote", "e2e", "diff")

# Every action the workflows use, at the one commit each is pinned to. Each SHA is the
# commit its tag points to in the action's own repository (`git rev-parse <tag>^{commit}`
# on a clone of it); docs/delivery.md says how they were checked and how to update them.
PINNED_ACTIONS = {
    "actions/checkout": ("v7.0.1", "3d3c42e5aac5ba805825da76410c181273ba90b1"),
    "actions/setup-python": ("v7.0.0", "5fda3b95a4ea91299a34e894583c3862153e4b97"),
    "google-github-actions/auth": ("v3.0.0", "7c6bc770dae815cd3e89ee6cdf493a5fab2cc093"),
    "actions/attest": ("v4.2.2", "1e69f48acb82d1966a394da916b4c1698aa569d6"),
    "actions/create-github-app-token": ("v3.1.1", "1b10c78c7865c340bc4f6099eb2f838309f1e8c3"),
    "helm/kind-action": ("v1.14.0", "ef37e7f390d99f746eb8b610417061a60e82a6cc"),
    "actions/cache": ("v5.0.5", "27d5ce7f107fe9357f9df03efb73ab90386fccae"),
    "actions/upload-artifact": ("v7.0.0", "bbbca2ddaa5d8feaa63e36b76fdaad77386f024f"),
}

# The repository variables release.yml reads; scripts/gke-bootstrap.sh tells the user to
# set exactly these.
REPOSITORY_VARIABLES = (
    "GCP_PROJECT_ID",
    "GCP_REGION",
    "GAR_REPOSITORY",
    "WIF_PROVIDER",
    "WIF_SERVICE_ACCOUNT",
)

USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<rest>.*)$")


@dataclass(frozen=True)
class Workflow:
    """One workflow file: its name, text and parsed content."""

    name: str
    path: Path
    text: str
    data: dict[str, Any]

    @property
    def triggers(self) -> dict[str, Any]:
        # YAML 1.1 reads the bare key `on` as the boolean true.
        value = self.data.get("on", self.data.get(True))
        assert isinstance(value, dict), f"{self.name}: `on:` must be a mapping"
        return value

    @property
    def jobs(self) -> dict[str, dict[str, Any]]:
        jobs = self.data["jobs"]
        assert isinstance(jobs, dict)
        return jobs

    def steps(self) -> list[tuple[str, dict[str, Any]]]:
        """(job id, step) for every step of every job, in file order."""
        return [
            (job_id, step) for job_id, job in self.jobs.items() for step in job.get("steps", [])
        ]

    def runs(self) -> list[str]:
        """The `run:` scripts of every step."""
        return [step["run"] for _, step in self.steps() if "run" in step]


@cache
def workflow(name: str) -> Workflow:
    path = WORKFLOW_DIR / f"{name}.yml"
    text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert isinstance(data, dict), f"{path} is not a mapping"
    return Workflow(name, path, text, data)


def all_workflows() -> list[Workflow]:
    return [workflow(name) for name in WORKFLOW_NAMES]


# GitHub's filter pattern cheat sheet: `*` any run of characters but `/`, `**` any run at all
# (so `docs/**/*.md` also matches `docs/a.md`: `**/` may be empty). `?`, `+`, `[...]` and `\`
# have meanings of their own there (`?` and `+` repeat the preceding character); no workflow
# uses them, and github_glob_matches refuses them rather than guess.
GITHUB_WILDCARDS = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*"}
_UNSUPPORTED = set("?+[]\\")


def github_glob_matches(pattern: str, path: str) -> bool:
    """Whether one GitHub Actions filter pattern (paths, branches) matches `path` in full.

    A leading `!` is the negation of `github_filter`, not part of the pattern.
    """
    if pattern.startswith("!"):
        raise ValueError(f"{pattern!r}: negation belongs to github_filter")
    special = _UNSUPPORTED & set(pattern)
    if special:
        raise ValueError(f"{pattern!r}: no matcher here for {''.join(sorted(special))}")
    return re.fullmatch(glob_regex(pattern, GITHUB_WILDCARDS), path) is not None


def github_filter(patterns: list[str], path: str) -> bool:
    """GitHub's evaluation of a filter list: in order, the last pattern that matches decides,
    and a `!pattern` takes back what earlier patterns matched."""
    included = False
    for pattern in patterns:
        if pattern.startswith("!"):
            if github_glob_matches(pattern[1:], path):
                included = False
        elif github_glob_matches(pattern, path):
            included = True
    return included


def push_starts(wf: Workflow, branch: str, changed: list[str]) -> bool:
    """Whether a push of `changed` files to `branch` starts `wf`, as GitHub decides it.

    The branch filter (`branches` or `branches-ignore`) must pass, then the path filter:
    `paths` needs one changed file to be included, `paths-ignore` one file not ignored.
    """
    if "push" not in wf.triggers:
        return False
    push = wf.triggers["push"] or {}
    if "branches" in push and not github_filter(push["branches"], branch):
        return False
    if "branches-ignore" in push and github_filter(push["branches-ignore"], branch):
        return False
    if "paths" in push:
        return any(github_filter(push["paths"], path) for path in changed)
    if "paths-ignore" in push:
        return any(not github_filter(push["paths-ignore"], path) for path in changed)
    return True
