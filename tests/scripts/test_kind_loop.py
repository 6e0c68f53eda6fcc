"""The kind loop's plan: which steps scripts/kind/loop.sh runs, in which order, doing what.

No cluster runs here (e2e.yml runs the loop on GitHub's runners). What can be checked is the
script itself, read through bash's own parser: loop.sh is sourced (its guard keeps main from
running) and `declare -f` prints each function as bash parsed it, one command per line. The
steps main() calls, and the commands inside each step, are then compared with the order
the loop must prove: a release and a base change reach staging only, the promotion gate
refuses without evidence and during the soak, then passes, production runs what staging ran,
the PostSync smoke tests passed, a hold stops a release, and reverting the promotion
restores production.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest

from harness.git import clone, git, init_origin
from tests.gitops.support import application, bump, kubectl_stand_in, ref, serve_application
from tests.scripts.support import REPO_ROOT

LOOP = REPO_ROOT / "scripts" / "kind" / "loop.sh"

STEPS = [
    "release_reaches_staging_only",
    "config_change_reaches_staging_only",
    "promotion_gate_refuses_during_soak_then_passes",
    "production_runs_the_promotion",
    "smoke_tests_ran",
    "staging_rolls_back_by_git_revert",
    "hold_refuses_a_release_until_lifted",
    "promotion_revert_restores_production",
]


@cache
def parsed() -> dict[str, list[list[str]]]:
    """Every function loop.sh defines: its simple commands, as bash parsed them, in order."""
    script = (
        'before="$(declare -F)"; source "$1" || exit 1; '
        'comm -13 <(sort <<<"$before") <(declare -F | sort) | while read -r _ _ name; do '
        'printf "@@ %s\\n" "$name"; declare -f "$name" | tail -n +3 | head -n -1; done'
    )
    result = subprocess.run(
        ["bash", "-c", script, "test", str(LOOP)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "HOME": "/nonexistent"},
    )
    assert result.returncode == 0, result.stderr
    functions: dict[str, list[list[str]]] = {}
    name = ""
    for line in result.stdout.splitlines():
        if line.startswith("@@ "):
            name = line[3:]
            functions[name] = []
            continue
        words = _words(line)
        if words:
            functions[name].append(words)
    return functions


def _words(line: str) -> list[str]:
    """A line of `declare -f` output as words, without the trailing `;` bash adds."""
    try:
        words = shlex.split(line.strip().removesuffix(";"), comments=False)
    except ValueError:  # a line inside a multi-line string (a heredoc, a python -c body)
        return []
    return words


def calls(function: str) -> list[str]:
    """The first word of each command in `function` that names another loop.sh function."""
    known = parsed()
    return [words[0] for words in known[function] if words[0] in known]


def commands(function: str) -> list[str]:
    """Each command line of `function`, rejoined, to find a command with its arguments."""
    return [" ".join(words) for words in parsed()[function]]


def position(function: str, *prefix: str, after: int = -1) -> int:
    """Where the first command of `function` after index `after` that starts with `prefix`
    is; fails if there is none."""
    for index, words in enumerate(parsed()[function]):
        if index > after and words[: len(prefix)] == list(prefix):
            return index
    pytest.fail(f"{function} runs no command starting with {' '.join(prefix)!r} there")


def test_main_runs_the_steps_in_the_order_the_loop_must_prove() -> None:
    steps = [name for name in calls("main") if name in STEPS or name.endswith(("_only", "_ran"))]
    assert steps == STEPS


def test_sourcing_the_loop_runs_nothing() -> None:
    # The guard at the end: tests (and people) can read the steps without a cluster.
    assert "main" in parsed()
    assert LOOP.read_text(encoding="utf-8").rstrip().endswith("fi")


def test_a_base_change_is_refused_by_the_gate_before_staging_ran_it() -> None:
    step = "config_change_reaches_staging_only"
    pushed = position(step, "push_main")
    refused = position(step, "promote_refused")
    synced = position(step, "wait_app", "iris-staging")
    assert pushed < refused < synced
    (pattern,) = parsed()[step][refused][1:]
    assert "staging has not deployed" in pattern
    # Staging gets the change; production keeps its Deployment and its pods.
    assert position(step, "wait_batch_answer", "iris-staging", "413", after=synced) > synced
    assert position(step, "wait_batch_answer", "iris-production", "200", after=synced) > synced
    assert any("TEMPLATE" in line and "die" in line for line in commands(step))
    assert any("HASHES" in line and "die" in line for line in commands(step))


def test_the_gate_refuses_during_the_soak_then_passes_and_the_pin_is_pushed() -> None:
    step = "promotion_gate_refuses_during_soak_then_passes"
    smoke = position(step, "wait_smoke_test", "iris-staging")
    soak = position(step, "promote_refused")
    assert smoke < soak
    (pattern,) = parsed()[step][soak][1:]
    assert "the soak time is 10m 0s" in pattern
    passing = [i for i, line in enumerate(commands(step)) if "--soak" in line]
    assert passing
    assert passing[0] > soak
    assert "--evidence argocd" in commands(step)[passing[0]]
    assert passing[0] < position(step, "commit_all") < position(step, "push_main")


def test_every_promotion_in_the_loop_reads_staging_from_the_cluster() -> None:
    for function in ("promote_refused", "promotion_gate_refuses_during_soak_then_passes"):
        promotions = [line for line in commands(function) if "gitops promote" in line]
        assert promotions, function
        for line in promotions:
            assert "gitops promote staging production --evidence argocd" in line
    main = commands("main")
    assert any(line.startswith("export") and "GITOPS_KUBECTL=" in line for line in main)


def test_production_runs_the_new_image_and_the_base_change_after_the_promotion() -> None:
    step = "production_runs_the_promotion"
    assert position(step, "wait_app", "iris-production", "${CONFIG_SHA}") < position(
        step, "wait_image", "iris-production", "${DIGEST_B}"
    )
    assert position(step, "wait_batch_answer", "iris-production", "413") >= 0


def test_the_smoke_tests_are_checked_after_production_synced() -> None:
    assert calls("smoke_tests_ran") == ["wait_smoke_test"]
    assert position("smoke_tests_ran", "wait_smoke_test", "iris-production") >= 0


def test_the_hold_refuses_a_release_and_release_lifts_it() -> None:
    step = "hold_refuses_a_release_until_lifted"
    held = position(step, "gitops", "hold", "staging")
    refused = [i for i, line in enumerate(commands(step)) if "bump_status=$?" in line]
    lifted = position(step, "gitops", "release", "staging")
    assert refused
    assert held < refused[0] < lifted
    assert any("bump_status == 3" in line for line in commands(step))


def test_reverting_the_promotion_restores_the_first_image_and_config() -> None:
    step = "promotion_revert_restores_production"
    history = [i for i, line in enumerate(commands(step)) if "history production" in line]
    revert = [i for i, line in enumerate(commands(step)) if " revert " in f" {line} "]
    assert history
    assert revert
    assert history[0] < revert[0]
    assert revert[0] < position(step, "wait_image", "iris-production", "${DIGEST_A}")
    assert position(step, "wait_batch_answer", "iris-production", "200") >= 0


def test_the_header_lists_the_steps_main_runs() -> None:
    header = LOOP.read_text(encoding="utf-8").split("set -Eeuo pipefail")[0]
    listed = re.findall(r"^#\s+\d\. (\w+):", header, flags=re.MULTILINE)
    assert listed == STEPS


# --- the loop's own gate lines against the real tool on real git --------------------------------


def run_loop_line(function: str, command: str, work: Path, env: dict[str, str]) -> str:
    """Source loop.sh and run, with `eval`, the first line of `function` that starts with
    `command`, exactly as bash parsed it, on the work clone `work` (which lib.sh finds at
    $KIND_STATE_DIR/repo); returns its stderr."""
    script = (
        'source "$1"; line="$(declare -f "$2" | grep -m1 -E "^ +$3( |$)")"; '
        '[[ -n "$line" ]] || exit 99; eval "${line%;}"'
    )
    result = subprocess.run(
        ["bash", "-c", script, "test", str(LOOP), function, command],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={
            **os.environ,
            **env,
            "HOME": "/nonexistent",
            "KIND_STATE_DIR": str(work.parent),
            "PYTHON": sys.executable,
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        cwd=work,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_the_loops_gate_lines_match_what_the_real_gate_says(tmp_path: Path) -> None:
    origin = init_origin(tmp_path)
    work = clone(origin, tmp_path / "state" / "repo")
    # The kind work clone is a clone of this repository: the tool is in it.
    shutil.copytree(
        REPO_ROOT / "gitops", work / "gitops", ignore=shutil.ignore_patterns("__pycache__")
    )
    (work / ".gitignore").write_text("__pycache__/\n", encoding="utf-8")
    git(work, "add", "--all")
    git(work, "commit", "-q", "-m", "the GitOps tool")
    git(work, "push", "-q", "origin", "main")
    released = clone(origin, tmp_path / "release")
    assert bump(released, ref(1)).returncode == 0
    bump_sha = git(released, "rev-parse", "HEAD")
    git(work, "pull", "-q", "--ff-only")
    deployment = work / "deploy" / "base" / "deployment.yaml"
    deployment.write_text(
        deployment.read_text(encoding="utf-8").replace(
            "            - name: IRIS_METRICS_DIR\n",
            '            - name: IRIS_MAX_BATCH_ROWS\n              value: "2"\n'
            "            - name: IRIS_METRICS_DIR\n",
        ),
        encoding="utf-8",
    )
    git(work, "commit", "-q", "-am", "deploy(base): at most 2 rows per batch")
    git(work, "push", "-q", "origin", "main")
    config_sha = git(work, "rev-parse", "HEAD")
    kubectl = kubectl_stand_in(tmp_path / "bin")
    env = {**kubectl, "GITOPS_REMOTE": "origin", "CONFIG_SHA": config_sha}

    # Step 2, right after the push: staging still runs the release before it.
    serve_application(kubectl, application(bump_sha))
    said = run_loop_line("config_change_reaches_staging_only", "promote_refused", work, env)
    assert f"staging has not deployed {config_sha[:12]} yet" in said

    # Step 3: staging has run it healthy for a minute only.
    now = datetime.now(UTC)
    serve_application(
        kubectl,
        application(
            config_sha,
            healthy_since=now - timedelta(minutes=2),
            started=now - timedelta(minutes=2),
            finished=now - timedelta(minutes=1),
        ),
    )
    said = run_loop_line(
        "promotion_gate_refuses_during_soak_then_passes", "promote_refused", work, env
    )
    assert "the soak time is 10m 0s" in said
    assert git(work, "status", "--porcelain") == ""
