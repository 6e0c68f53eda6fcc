"""scripts/gke-teardown.sh: reverse order, confirmation, and skipping what is gone.

Like the bootstrap tests, these check our script's logic, not Google Cloud: the recording
stand-ins (tests/scripts/stand-in.sh) hold what a bootstrap run created, and the teardown
runs against that.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scripts.support import (
    ARGS,
    BOOTSTRAP,
    TEARDOWN,
    Run,
    World,
    make_world,
    require_upstream_install_manifest,
)

pytestmark = pytest.mark.xdist_group("gke-teardown")


@pytest.fixture(scope="module")
def bootstrapped(tmp_path_factory: pytest.TempPathFactory) -> World:
    require_upstream_install_manifest()
    world = make_world(tmp_path_factory.mktemp("teardown") / "world")
    run = world.run(BOOTSTRAP, ARGS)
    assert run.returncode == 0, run.stderr
    return world


@pytest.fixture(scope="module")
def teardown(bootstrapped: World) -> Run:
    run = bootstrapped.run(TEARDOWN, [*ARGS, "--yes"])
    assert run.returncode == 0, run.stderr
    return run


def test_dry_run_calls_nothing_and_prints_every_delete(tmp_path: Path) -> None:
    run = make_world(tmp_path).run(TEARDOWN, [*ARGS, "--dry-run"])
    assert run.returncode == 0, run.stderr
    assert run.calls == []
    for needle in (
        "delete --namespace=argocd -f argocd/root.yaml",
        "gcloud container clusters delete iris",
        "gcloud compute addresses delete iris-production",
        "gcloud iam workload-identity-pools providers delete",
        "gcloud iam workload-identity-pools delete",
        "gcloud iam service-accounts delete iris-release@",
        "gcloud projects remove-iam-policy-binding",
        "gcloud iam service-accounts delete iris-nodes@",
        "gcloud artifacts repositories delete iris",
        "gcloud monitoring dashboards list",
        "gcloud monitoring dashboards delete <its name>",
    ):
        assert needle in run.stdout


def test_without_yes_and_without_a_terminal_nothing_is_deleted(bootstrapped: World) -> None:
    bootstrapped.run(TEARDOWN, ARGS).assert_refused("--yes")


def test_applications_go_before_the_cluster_and_the_cluster_before_identity(teardown: Run) -> None:
    teardown.assert_in_order(
        ("delete", "argocd/root.yaml"),
        ("wait", "service/iris-api"),
        ("clusters", "delete"),
        # The address is released only once the load balancer using it is gone.
        ("addresses", "delete"),
        ("providers", "delete"),
        ("workload-identity-pools", "delete", "github"),
        ("service-accounts", "delete"),
        ("projects", "remove-iam-policy-binding"),
        ("repositories", "delete"),
        ("monitoring", "dashboards", "delete"),
    )


def test_everything_the_bootstrap_made_is_deleted_quietly(teardown: Run) -> None:
    deletes = [call for call in teardown.gcloud() if "delete" in call]
    # cluster, address, provider, pool, two service accounts, repository, dashboard
    assert len(deletes) == 8, teardown.render_calls()
    for call in deletes:
        assert "--quiet" in call, " ".join(call)


def test_a_second_teardown_finds_everything_gone(bootstrapped: World, teardown: Run) -> None:
    run = bootstrapped.run(TEARDOWN, [*ARGS, "--yes"])
    assert run.returncode == 0, run.stderr
    assert run.mutating() == [], run.render_calls()
    assert run.kubectl() == []


def test_keep_registry_keeps_the_images_and_drops_both_bindings(tmp_path: Path) -> None:
    require_upstream_install_manifest()
    world = make_world(tmp_path)
    assert world.run(BOOTSTRAP, ARGS).returncode == 0
    run = world.run(TEARDOWN, [*ARGS, "--yes", "--keep-registry"])
    assert run.returncode == 0, run.stderr
    assert not [call for call in run.gcloud() if "repositories" in call and "delete" in call]
    removed = [
        call
        for call in run.gcloud()
        if "repositories" in call and "remove-iam-policy-binding" in call
    ]
    assert len(removed) == 2, run.render_calls()
    assert run.index("repositories", "remove-iam-policy-binding") < run.index(
        "service-accounts", "delete"
    )
