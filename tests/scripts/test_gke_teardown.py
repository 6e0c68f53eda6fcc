"""scripts/gke-teardown.sh: reverse order, confirmation, and skipping what is gone.

Like the bootstrap tests, these check our script's logic, not Google Cloud: recording
stand-ins for gcloud and kubectl (tests/scripts/support.py) answer "exists" or "not found".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scripts.support import ARGS, MUTATING_GCLOUD, TEARDOWN, Run, run_script


@pytest.fixture(scope="module")
def teardown(fakes: Path) -> Run:
    run = run_script(TEARDOWN, [*ARGS, "--yes"], fakes, state="exists")
    assert run.returncode == 0, run.stderr
    return run


def test_dry_run_calls_nothing_and_prints_every_delete(fakes: Path) -> None:
    run = run_script(TEARDOWN, [*ARGS, "--dry-run"], fakes)
    assert run.returncode == 0, run.stderr
    assert run.calls == []
    for needle in (
        "delete --namespace=argocd -f argocd/root.yaml",
        "gcloud container clusters delete iris",
        "gcloud iam workload-identity-pools providers delete",
        "gcloud iam workload-identity-pools delete",
        "gcloud iam service-accounts delete",
        "gcloud artifacts repositories delete iris",
    ):
        assert needle in run.stdout


def test_without_yes_and_without_a_terminal_nothing_is_deleted(fakes: Path) -> None:
    run_script(TEARDOWN, ARGS, fakes, state="exists").assert_refused("--yes")


def test_applications_go_before_the_cluster_and_the_cluster_before_identity(teardown: Run) -> None:
    teardown.assert_in_order(
        ("delete", "argocd/root.yaml"),
        ("wait", "service/iris-api"),
        ("clusters", "delete"),
        ("providers", "delete"),
        ("workload-identity-pools", "delete", "github"),
        ("service-accounts", "delete"),
        ("repositories", "delete"),
    )


def test_every_delete_is_quiet_so_it_never_waits_for_a_prompt(teardown: Run) -> None:
    deletes = [call for call in teardown.gcloud() if "delete" in call]
    assert len(deletes) == 5
    for call in deletes:
        assert "--quiet" in call, " ".join(call)


def test_nothing_is_deleted_when_everything_is_already_gone(fakes: Path) -> None:
    run = run_script(TEARDOWN, [*ARGS, "--yes"], fakes, state="fresh")
    assert run.returncode == 0, run.stderr
    assert not [call for call in run.gcloud() if MUTATING_GCLOUD.intersection(call)]
    assert run.kubectl() == []


def test_keep_registry_keeps_the_images_and_drops_the_binding(fakes: Path) -> None:
    run = run_script(TEARDOWN, [*ARGS, "--yes", "--keep-registry"], fakes, state="exists")
    assert run.returncode == 0, run.stderr
    assert not [call for call in run.gcloud() if "repositories" in call and "delete" in call]
    assert run.index("repositories", "remove-iam-policy-binding") < run.index(
        "service-accounts", "delete"
    )
