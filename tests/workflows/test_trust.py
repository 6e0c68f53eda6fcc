"""Who can change main: the ruleset and CODEOWNERS as code, and the release gated on CI."""

from __future__ import annotations

import json
import os
import re
import subprocess
from functools import cache
from typing import Any

import pytest

from tests.workflows.support import REPO_ROOT, all_workflows, github_glob_matches, workflow

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


def test_release_smoke_tests_the_pushed_digest_before_the_bump_can_have_it() -> None:
    release = workflow("release")
    image = release.jobs["image"]
    steps = image["steps"]
    position = {step.get("id"): i for i, step in enumerate(steps)}
    assert position["push"] < position["smoke"] < position["metadata"]
    smoke = steps[position["smoke"]]
    # The digest the push read back from the registry, and nothing else, is what runs.
    assert smoke["env"] == {"DIGEST": "${{ steps.push.outputs.digest }}"}
    run = [line.strip() for line in smoke["run"].splitlines()]
    assert run == [
        # The local copy goes first, so the image that runs is the registry's.
        'docker image rm "${IMAGE_NAME}:${IMAGE_TAG}" >/dev/null',
        'docker pull --quiet "${IMAGE_NAME}@${DIGEST}"',
        'scripts/smoke-container.sh "${IMAGE_NAME}@${DIGEST}" "$GITHUB_SHA"',
        'echo "ref=${IMAGE_NAME}:${IMAGE_TAG}@${DIGEST}" >> "$GITHUB_OUTPUT"',
    ]
    # Only the smoke step sets the reference; the bump gets it from there and nothing else.
    assert image["outputs"]["ref"] == "${{ steps.smoke.outputs.ref }}"
    setters = [s.get("id") for s in steps if "ref=" in s.get("run", "")]
    assert setters == ["smoke"]
    bump = release.jobs["bump"]
    assert bump["needs"] == "image"
    (bumping,) = [s for s in bump["steps"] if "IMAGE_REF" in s.get("env", {})]
    assert bumping["env"]["IMAGE_REF"] == "${{ needs.image.outputs.ref }}"
    # The release record is read out of the same digest.
    metadata = steps[position["metadata"]]
    assert metadata["env"] == {"DIGEST": "${{ steps.push.outputs.digest }}"}
    assert 'docker create "${IMAGE_NAME}@${DIGEST}"' in metadata["run"]


def test_the_smoke_test_is_the_one_ci_runs_on_its_own_build() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert "\tscripts/smoke-container.sh $(IMAGE) $(GIT_REVISION)" in makefile
    ci_runs = [s.get("run", "") for s in workflow("ci").jobs["image"]["steps"]]
    assert any(run.startswith("make image-test ") for run in ci_runs)


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


APP_TOKEN_ACTION = "actions/create-github-app-token@"  # noqa: S105 (an action name)
# The one install a job may run before it holds a write token: the GitOps tool's hashed lock.
HASHED_GITOPS_INSTALL = [
    "python -m pip install --disable-pip-version-check --require-hashes "
    "--only-binary=:all: --no-deps -r requirements/gitops.lock",
    "python -m pip check",
    'scripts/install-kustomize.sh "$RUNNER_TEMP/bin"',
]
WRITE_JOBS = [("release", "bump"), ("promote", "promote")]


def test_the_app_token_is_minted_in_exactly_the_two_write_jobs() -> None:
    minting = [
        (wf.name, job_id)
        for wf in all_workflows()
        for job_id, job in wf.jobs.items()
        if any(s.get("uses", "").startswith(APP_TOKEN_ACTION) for s in job.get("steps", []))
    ]
    assert sorted(minting) == sorted(WRITE_JOBS)
    for name, job_id in WRITE_JOBS:
        job = json.dumps(workflow(name).jobs[job_id])
        assert "github.token" not in job, (name, job_id)
        assert "secrets.GITHUB_TOKEN" not in job, (name, job_id)


@pytest.mark.parametrize(("name", "job_id"), WRITE_JOBS)
def test_a_write_job_installs_only_the_hashed_gitops_lock_before_minting_its_token(
    name: str, job_id: str
) -> None:
    job = workflow(name).jobs[job_id]
    steps = job["steps"]
    (mint,) = [i for i, s in enumerate(steps) if s.get("uses", "").startswith(APP_TOKEN_ACTION)]
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
    assert installs == HASHED_GITOPS_INSTALL
    # After the token exists: one step, one command, and it alone receives the token.
    after = steps[mint + 1 :]
    assert len(after) == 1
    assert "uses" not in after[0]
    assert len(after[0]["run"].strip().splitlines()) == 1
    holders = [s for s in steps if "steps.app.outputs.token" in json.dumps(s.get("env", {}))]
    assert holders == after
    assert after[0]["env"]["GITOPS_TOKEN"] == "${{ steps.app.outputs.token }}"  # noqa: S105
    # The key is a secret of the environment that only main may use.
    assert job["environment"] == "gitops"
    assert job["permissions"] == {"contents": "read"}


@pytest.mark.parametrize(
    ("name", "job_id", "asked"),
    [
        ("release", "bump", {"permission-contents": "write"}),
        (
            "promote",
            "promote",
            {
                "permission-contents": "write",
                "permission-pull-requests": "write",
                "permission-statuses": "read",
            },
        ),
    ],
)
def test_the_app_token_asks_for_exactly_what_the_job_does_and_never_falls_back(
    name: str, job_id: str, asked: dict[str, str]
) -> None:
    (mint,) = [
        s
        for s in workflow(name).jobs[job_id]["steps"]
        if s.get("uses", "").startswith(APP_TOKEN_ACTION)
    ]
    assert {k: v for k, v in mint["with"].items() if k.startswith("permission-")} == asked
    assert mint["with"]["client-id"] == "${{ vars.GITOPS_APP_CLIENT_ID }}"
    assert mint["with"]["private-key"] == "${{ secrets.GITOPS_APP_PRIVATE_KEY }}"
    assert "if" not in mint


def run_promote_check(**env: str) -> subprocess.CompletedProcess[str]:
    """promote.yml's first step in bash, as the runner starts it."""
    first = workflow("promote").jobs["promote"]["steps"][0]
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", first["run"]],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"PATH": os.environ["PATH"], "BASE_BRANCH": "main", **env},
    )


@pytest.mark.parametrize(
    ("client_id", "key_set", "missing"),
    [
        (
            "",
            "false",
            "the repository variable GITOPS_APP_CLIENT_ID and the secret "
            "GITOPS_APP_PRIVATE_KEY of the environment gitops",
        ),
        ("", "true", "the repository variable GITOPS_APP_CLIENT_ID ("),
        ("Iv23li0123", "false", "the secret GITOPS_APP_PRIVATE_KEY of the environment gitops ("),
    ],
)
def test_promote_stops_first_naming_what_the_app_lacks(
    client_id: str, key_set: str, missing: str
) -> None:
    first = workflow("promote").jobs["promote"]["steps"][0]
    assert first["env"] == {
        "APP_CLIENT_ID": "${{ vars.GITOPS_APP_CLIENT_ID }}",
        "APP_KEY_SET": "${{ secrets.GITOPS_APP_PRIVATE_KEY != '' }}",
    }
    result = run_promote_check(
        GITHUB_REF_NAME="main",
        FROM_ENV="staging",
        TO_ENV="production",
        APP_CLIENT_ID=client_id,
        APP_KEY_SET=key_set,
    )
    assert result.returncode == 1
    (line,) = result.stdout.splitlines()
    assert line.startswith("::error::the promotion is opened as the GitHub App; set ")
    assert missing in line


def test_promote_refuses_another_branch_and_a_promotion_to_itself() -> None:
    app = {"APP_CLIENT_ID": "Iv23li0123", "APP_KEY_SET": "true"}
    wrong_branch = run_promote_check(
        GITHUB_REF_NAME="feature", FROM_ENV="staging", TO_ENV="production", **app
    )
    assert wrong_branch.returncode == 1
    assert "run this workflow on main" in wrong_branch.stdout
    same = run_promote_check(GITHUB_REF_NAME="main", FROM_ENV="staging", TO_ENV="staging", **app)
    assert same.returncode == 1
    assert "from and to are both 'staging'" in same.stdout
    ready = run_promote_check(
        GITHUB_REF_NAME="main", FROM_ENV="staging", TO_ENV="production", **app
    )
    assert (ready.returncode, ready.stdout) == (0, "")
