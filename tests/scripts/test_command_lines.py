"""Every gcloud and kubectl command line the GKE scripts run exists, with those flags.

A misspelt flag breaks a user's bootstrap halfway. The command lines come from real-mode
runs against the recording stand-ins (which checks our script, not Google Cloud), and are
then looked up in the installed tools themselves: gcloud's own command tree (the static
completion data the SDK ships) and `kubectl <command> --help`. Skipped, with the reason,
where the tool is not installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

from tests.scripts.support import (
    ARGS,
    BOOTSTRAP,
    TEARDOWN,
    gcloud_tree,
    make_world,
    require_upstream_install_manifest,
    throwaway_private_key,
    unknown_gcloud_flags,
)

# Module-scoped fixtures run once, so every test here shares one xdist worker.
pytestmark = pytest.mark.xdist_group("gke-command-lines")

# In two stand-in projects: everything created, found, torn down, restored from soft
# deletion, updated after drift, and kept apart from the registry; then the Standard variant.
RUNS = [
    ("autopilot", BOOTSTRAP, ARGS),
    ("autopilot", BOOTSTRAP, ARGS),
    ("autopilot", TEARDOWN, [*ARGS, "--yes"]),
    ("autopilot", BOOTSTRAP, ARGS),
    ("autopilot", TEARDOWN, [*ARGS, "--yes", "--keep-registry"]),
    ("standard", BOOTSTRAP, [*ARGS, "--standard"]),
]


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory) -> list[list[str]]:
    require_upstream_install_manifest()
    base = tmp_path_factory.mktemp("command-lines")
    worlds = {name: make_world(base / name) for name in ("autopilot", "standard")}
    seen: list[list[str]] = []
    for name, script, args in RUNS:
        run = worlds[name].run(script, args)
        assert run.returncode == 0, f"{script.name} {args} ({name}): {run.stderr}"
        seen.extend(run.calls)
    # Drift: a provider with another condition and a repository without immutable tags.
    drift = worlds["standard"].state
    (drift / "iam_workload-identity-pools_providers" / "github-actions" / "condition").write_text(
        "true"
    )
    (drift / "artifacts_repositories" / "iris" / "immutable").unlink()
    run = worlds["standard"].run(BOOTSTRAP, [*ARGS, "--standard"])
    assert run.returncode == 0, run.stderr
    assert {"update-oidc", "update"} <= {word for call in run.calls for word in call}
    seen.extend(run.calls)
    # With the GitHub App for Argo CD Notifications: the Secret's kubectl lines.
    key = base / "app.pem"
    key.write_text(throwaway_private_key())
    app = ["--github-app-id", "1", "--github-app-installation-id", "2"]
    app += ["--github-app-key", str(key)]
    run = worlds["standard"].run(BOOTSTRAP, [*ARGS, "--standard", *app])
    assert run.returncode == 0, run.stderr
    seen.extend(run.calls)
    return seen


def test_every_gcloud_command_and_flag_exists(calls: list[list[str]]) -> None:
    tree = gcloud_tree()
    if tree is None:
        pytest.skip(
            "gcloud is not installed; its command tree is what the lines are checked against"
        )
    gcloud_calls = [call[1:] for call in calls if call[0] == "gcloud"]
    assert len(gcloud_calls) > 20
    problems = sorted(
        {problem for argv in gcloud_calls for problem in unknown_gcloud_flags(tree, argv)}
    )
    assert problems == []


def test_the_gcloud_check_catches_a_misspelt_flag() -> None:
    tree = gcloud_tree()
    if tree is None:
        pytest.skip("gcloud is not installed")
    argv = ["artifacts", "repositories", "create", "iris", "--immutable-tag", "--location=x"]
    assert unknown_gcloud_flags(tree, argv) == [
        "gcloud artifacts repositories create: unknown flag --immutable-tag"
    ]


@cache
def kubectl_flags(*command: str) -> frozenset[str]:
    """The flags `kubectl <command> --help` documents, plus the global ones."""
    text = subprocess.run(
        ["kubectl", *command, "--help"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    global_text = subprocess.run(
        ["kubectl", "options"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    return frozenset(re.findall(r"--[a-z0-9-]+", text + global_text))


def test_every_kubectl_flag_exists(calls: list[list[str]]) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    kubectl_calls = [call[1:] for call in calls if call[0] == "kubectl"]
    assert kubectl_calls
    problems = set()
    for argv in kubectl_calls:
        words = [arg for arg in argv if not arg.startswith("-")]
        # Subcommands that take a second word: rollout status.
        command = tuple(words[:2]) if words[:1] in (["rollout"], ["create"]) else tuple(words[:1])
        if words[:2] == ["create", "secret"]:
            command = tuple(words[:3])  # create secret generic
        known = kubectl_flags(*command)
        for arg in argv:
            if arg.startswith("--") and arg.split("=", 1)[0] not in known:
                problems.add(f"kubectl {' '.join(command)}: unknown flag {arg.split('=', 1)[0]}")
    assert sorted(problems) == []


def test_every_script_command_is_recorded_by_these_runs(calls: list[list[str]]) -> None:
    """The stand-ins saw both tools, so the checks above had something to check."""
    tools = {call[0] for call in calls}
    assert {"gcloud", "kubectl"} <= tools
    assert Path(BOOTSTRAP).exists()
