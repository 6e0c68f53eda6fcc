"""scripts/github-protect.sh against a recording stand-in for gh.

The stand-in writes down each call and its JSON body, and answers the two lookups (is there
a ruleset of that name, is there a branch policy). It checks the script's own logic: what it
sends, that it replaces instead of duplicating, that a dry run or a refusal calls nothing.
Whether GitHub accepts the body is a question for GitHub; the body is the checked-in JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.scripts.support import REPO_ROOT, write_stand_in

SCRIPT = Path("scripts") / "github-protect.sh"
REPOSITORY = "someone/iris-gitops"
APP_ID = "424242"

_GH = r"""#!/usr/bin/env bash
# Recording stand-in for gh (tests only): one line per call, then the body it was given.
body=""
if [[ " $* " == *" --input - "* ]]; then body="$(cat)"; fi
printf '%s\n' "$*" >>"$FAKE_LOG"
[[ -z "$body" ]] || printf 'BODY %s\n' "$(jq -c . <<<"$body")" >>"$FAKE_LOG"
case "$*" in
  *"/rulesets --paginate"*) [[ -n "${FAKE_RULESET_ID:-}" ]] && echo "$FAKE_RULESET_ID" ;;
  *"/deployment-branch-policies --jq"*) [[ -n "${FAKE_POLICY_ID:-}" ]] && echo "$FAKE_POLICY_ID" ;;
esac
exit 0
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The script and the .github it reads, with CODEOWNERS naming a real owner."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy2(REPO_ROOT / SCRIPT, root / SCRIPT)
    shutil.copytree(REPO_ROOT / ".github", root / ".github")
    owners = root / ".github" / "CODEOWNERS"
    owners.write_text(owners.read_text().replace(" @your-org", " @someone"))
    return root


def run(
    root: Path, tmp_path: Path, *args: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    write_stand_in(bin_dir, "gh", _GH)
    log = tmp_path / "gh.log"
    log.unlink(missing_ok=True)
    log.touch()
    result = subprocess.run(
        ["bash", str(root / SCRIPT), *args],
        capture_output=True,
        text=True,
        env={
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "FAKE_LOG": str(log),
            "HOME": str(tmp_path),
            **env,
        },
        timeout=60,
        check=False,
    )
    return result, log.read_text().splitlines()


ARGS = ("--repo", REPOSITORY, "--app-id", APP_ID)


def bodies(calls: list[str]) -> list[dict[str, object]]:
    return [json.loads(line[5:]) for line in calls if line.startswith("BODY ")]


def test_first_run_creates_the_ruleset_with_the_app_as_the_only_bypass(
    checkout: Path, tmp_path: Path
) -> None:
    result, calls = run(checkout, tmp_path, *ARGS)
    assert result.returncode == 0, result.stderr
    requests = [line for line in calls if not line.startswith("BODY ")]
    assert requests == [
        f"api repos/{REPOSITORY}/rulesets --paginate --jq " + '.[] | select(.name == "main") | .id',
        f"api --method POST repos/{REPOSITORY}/rulesets --input -",
        f"api --method PUT repos/{REPOSITORY}/environments/gitops --input -",
        f"api repos/{REPOSITORY}/environments/gitops/deployment-branch-policies --jq "
        '.branch_policies[] | select(.name == "main" and .type == "branch") | .id',
        f"api --method POST repos/{REPOSITORY}/environments/gitops/deployment-branch-policies "
        "--input -",
    ]
    ruleset, environment, policy = bodies(calls)
    expected = json.loads((REPO_ROOT / ".github/rulesets/main.json").read_text())
    expected["bypass_actors"][0]["actor_id"] = int(APP_ID)
    assert ruleset == expected
    assert environment == {
        "deployment_branch_policy": {"protected_branches": False, "custom_branch_policies": True}
    }
    assert policy == {"name": "main", "type": "branch"}
    assert "GITOPS_APP_PRIVATE_KEY --repo someone/iris-gitops --env gitops" in result.stderr


def test_a_second_run_replaces_the_ruleset_instead_of_adding_another(
    checkout: Path, tmp_path: Path
) -> None:
    result, calls = run(checkout, tmp_path, *ARGS, FAKE_RULESET_ID="77", FAKE_POLICY_ID="9")
    assert result.returncode == 0, result.stderr
    requests = [line for line in calls if not line.startswith("BODY ")]
    assert f"api --method PUT repos/{REPOSITORY}/rulesets/77 --input -" in requests
    assert not [r for r in requests if "--method POST" in r]


def test_two_rulesets_of_the_same_name_are_refused(checkout: Path, tmp_path: Path) -> None:
    result, calls = run(checkout, tmp_path, *ARGS, FAKE_RULESET_ID="77\n78")
    assert result.returncode == 1
    assert "more than one ruleset is named 'main'" in result.stderr
    assert not [line for line in calls if "--method" in line]


def test_dry_run_calls_nothing_and_prints_a_runnable_plan(checkout: Path, tmp_path: Path) -> None:
    result, calls = run(checkout, tmp_path, *ARGS, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert calls == []
    plan = result.stdout
    assert plan.startswith("#!/usr/bin/env bash\n")
    assert f'gh api --method PUT "repos/{REPOSITORY}/rulesets/$id" --input -' in plan
    assert f'"actor_id": {APP_ID}' in plan
    syntax = subprocess.run(["bash", "-n"], input=plan, text=True, capture_output=True, check=False)
    assert syntax.returncode == 0, syntax.stderr
    # The plan runs: with the stand-in on PATH it makes the same calls as the real run.
    bin_dir = tmp_path / "bin"
    log = tmp_path / "plan.log"
    log.touch()
    executed = subprocess.run(
        ["bash"],
        input=plan,
        text=True,
        capture_output=True,
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_LOG": str(log)},
        check=False,
    )
    assert executed.returncode == 0, executed.stderr
    _, real = run(checkout, tmp_path, *ARGS)
    assert log.read_text().splitlines() == real


def test_dry_run_with_the_placeholder_owner_warns_and_a_real_run_refuses(tmp_path: Path) -> None:
    result, calls = run(REPO_ROOT, tmp_path, *ARGS, "--dry-run")
    assert result.returncode == 0
    assert "# WARNING: .github/CODEOWNERS still names @your-org" in result.stdout
    result, calls = run(REPO_ROOT, tmp_path, *ARGS)
    assert result.returncode == 1
    assert "CODEOWNERS still names @your-org" in result.stderr
    assert calls == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--app-id", APP_ID), "set --repo"),
        (("--repo", REPOSITORY), "set --app-id"),
        (("--repo", "not a repo", "--app-id", APP_ID), "is not <owner>/<repo>"),
        (("--repo", REPOSITORY, "--app-id", "Iv23liABC"), "is not a number"),
        (("--bogus",), "unknown option: --bogus"),
    ],
)
def test_bad_options_are_refused_before_any_call(
    checkout: Path, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result, calls = run(checkout, tmp_path, *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert calls == []
