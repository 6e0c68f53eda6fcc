"""Who can change main: the ruleset and CODEOWNERS as code, and the release gated on CI."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

from tests.workflows.support import REPO_ROOT, github_glob_matches, workflow

RULESET = REPO_ROOT / ".github" / "rulesets" / "main.json"
CODEOWNERS = REPO_ROOT / ".github" / "CODEOWNERS"
GITHUB_ACTIONS_APP_ID = 15368  # the GitHub Actions integration: only its jobs satisfy a check
# Paths whose changes need a code owner's approval.
OWNED = ["argocd/**", "deploy/base/**", "deploy/overlays/production/**", ".github/**"]


def test_release_runs_ci_on_its_commit_before_building_anything() -> None:
    release = workflow("release")
    assert release.jobs["ci"]["uses"] == "./.github/workflows/ci.yml"
    assert release.jobs["ci"]["permissions"] == {"contents": "read"}
    assert "workflow_call" in workflow("ci").triggers
    assert release.jobs["image"]["needs"] == "ci"
    for job_id, job in release.jobs.items():
        if job_id != "ci":
            assert job.get("needs"), job_id


def test_ci_concurrency_keeps_the_release_call_apart_from_the_push_run() -> None:
    group = workflow("ci").data["concurrency"]["group"]
    assert group.startswith("${{ github.workflow }}-")


@cache
def ruleset() -> dict[str, Any]:
    data = json.loads(RULESET.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def rule(kind: str) -> dict[str, Any]:
    (found,) = [r for r in ruleset()["rules"] if r["type"] == kind]
    return dict(found.get("parameters", {}))


def test_the_ruleset_protects_the_default_branch_with_one_app_as_the_only_bypass() -> None:
    data = ruleset()
    assert data["target"] == "branch"
    assert data["enforcement"] == "active"
    assert data["conditions"]["ref_name"] == {"include": ["~DEFAULT_BRANCH"], "exclude": []}
    # The App's numeric ID is filled in by scripts/github-protect.sh.
    assert data["bypass_actors"] == [
        {"actor_id": None, "actor_type": "Integration", "bypass_mode": "always"}
    ]
    assert {r["type"] for r in data["rules"]} == {
        "deletion",
        "non_fast_forward",
        "pull_request",
        "required_status_checks",
    }
    pull_request = rule("pull_request")
    assert pull_request["require_code_owner_review"] is True
    assert pull_request["dismiss_stale_reviews_on_push"] is True


def test_the_required_checks_are_the_real_ci_job_names_from_github_actions() -> None:
    checks = rule("required_status_checks")["required_status_checks"]
    assert {c["integration_id"] for c in checks} == {GITHUB_ACTIONS_APP_ID}
    ci_names = sorted(job["name"] for job in workflow("ci").jobs.values())
    assert sorted(c["context"] for c in checks) == ci_names


def codeowners() -> list[tuple[str, list[str]]]:
    entries = []
    for line in CODEOWNERS.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            pattern, *owners = line.split()
            entries.append((pattern, owners))
    return entries


def owner_of(path: str) -> list[str]:
    """CODEOWNERS semantics for the patterns used here: the last match wins."""
    owners: list[str] = []
    for pattern, found in codeowners():
        anchored = pattern.lstrip("/")
        if (anchored.endswith("/") and path.startswith(anchored)) or path == anchored:
            owners = found
    return owners


def test_every_protected_path_has_an_owner_and_every_pattern_names_a_real_directory() -> None:
    tracked = [p.relative_to(REPO_ROOT).as_posix() for p in REPO_ROOT.rglob("*") if p.is_file()]
    for glob in OWNED:
        matching = [p for p in tracked if github_glob_matches(glob, p) and ".venv" not in p]
        assert matching, glob
        for path in matching:
            assert owner_of(path), f"{path} ({glob}) has no code owner"
    for pattern, owners in codeowners():
        assert pattern.startswith("/"), pattern
        assert pattern.endswith("/"), pattern
        assert (REPO_ROOT / pattern.strip("/")).is_dir(), pattern
        assert owners, pattern
        assert all(o.startswith("@") for o in owners), pattern


def test_the_staging_overlay_is_not_owned_so_a_bump_needs_no_review() -> None:
    assert owner_of("deploy/overlays/staging/kustomization.yaml") == []
    assert owner_of("deploy/overlays/production/kustomization.yaml") != []
    assert owner_of("deploy/overlays/production/HOLD") != []


def test_the_release_bump_installs_only_the_hashed_gitops_lock_before_minting_its_token() -> None:
    steps = workflow("release").jobs["bump"]["steps"]
    app = "actions/create-github-app-token@"
    (mint,) = [i for i, s in enumerate(steps) if s.get("uses", "").startswith(app)]
    installs = []
    for step in steps[:mint]:
        if step.get("uses", "").startswith("actions/setup-python@"):
            # A pip cache restored from another run is code this job did not verify.
            assert "cache" not in step.get("with", {})
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False
        for line in step.get("run", "").replace("\\\n", " ").splitlines():
            line = " ".join(line.split())
            if re.search(r"\b(pip|uv|npm|apt-get|apt|make|curl|wget|install)\b", line):
                installs.append(line)
    assert installs == [
        "python -m pip install --disable-pip-version-check --require-hashes "
        "--only-binary=:all: --no-deps -r requirements/gitops.lock",
        "python -m pip check",
        'scripts/install-kustomize.sh "$RUNNER_TEMP/bin"',
    ]
    # After the token exists: one step, one command, and it alone receives the token.
    after = steps[mint + 1 :]
    assert len(after) == 1
    assert after[0]["run"].strip() == 'scripts/release/bump-staging.sh "$IMAGE_REF"'
    holders = [s for s in steps if "steps.app.outputs.token" in json.dumps(s.get("env", {}))]
    assert holders == after
    assert workflow("release").jobs["bump"]["environment"] == "gitops"
