"""Promotion evidence from the cluster: staging's Argo CD Application, read with kubectl.

Where Argo CD cannot reach GitHub (the kind loop), `promote --evidence argocd` judges the
source environment by its Application's status. Every Application here is the repository's
own argocd/apps/staging.yaml with a `status` of the shape Argo CD v3.5.1 writes, and each is
validated against that version's Application CRD schema (closed to unknown fields) before
it is used. kubectl is a recording stand-in that prints such an object: the decision is ours,
what a cluster would answer is not simulated beyond that.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from gitops.errors import GitOpsError
from gitops.statuses import ArgoCDApplication, application_status
from harness.git import clone, git, init_origin
from tests.argocd.support import CRD_FILES, CRDS_ENV, crds_dir, load_schema
from tests.gitops.support import (
    NOW,
    REPO_ROOT,
    SHA,
    application,
    bump,
    gitops,
    kubectl_stand_in,
    pin_of,
    ref,
    serve_application,
)


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    directory = crds_dir(REPO_ROOT)
    if directory is None:
        pytest.skip(
            f"Argo CD v3.5.1 CRDs not found: set {CRDS_ENV} to a directory holding "
            f"{', '.join(CRD_FILES.values())}"
        )
    return Draft202012Validator(load_schema(directory, "Application"))


def judged(validator: Draft202012Validator, app: dict[str, Any]) -> tuple[str, Any] | None:
    """application_status of an object the v3.5.1 CRD schema accepts."""
    errors = sorted(validator.iter_errors(app), key=lambda e: list(e.absolute_path))
    assert not errors, "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    return application_status(app, label="test")


def test_synced_healthy_and_a_succeeded_sync_is_success_since_the_later_time(
    validator: Draft202012Validator,
) -> None:
    found = judged(validator, application())
    assert found is not None
    revision, status = found
    assert revision == SHA
    assert (status.context, status.state) == ("argocd/iris-staging", "success")
    # Healthy since 30 minutes, the sync (with its PostSync smoke test) finished 29 ago.
    assert status.created_at == NOW - timedelta(minutes=29)

    # Health that returned after the sync (a pod restarted, then recovered) counts from then.
    late = judged(validator, application(healthy_since=NOW - timedelta(minutes=4)))
    assert late is not None
    assert late[1].created_at == NOW - timedelta(minutes=4)


def test_a_commit_reached_without_a_sync_counts_from_when_health_last_changed(
    validator: Draft202012Validator,
) -> None:
    # A commit that renders staging exactly as the running one: Argo CD moves sync.revision
    # without an operation; the live state is the one healthy since lastTransitionTime.
    found = judged(validator, application(phase=None))
    assert found is not None
    assert (found[1].state, found[1].created_at) == ("success", NOW - timedelta(minutes=30))
    unknown = judged(validator, application(phase=None, healthy_since=None))
    assert unknown is not None
    assert unknown[1].state == "pending"
    assert "since when" in unknown[1].description


@pytest.mark.parametrize(
    ("kwargs", "state", "words"),
    [
        # The PostSync smoke test is still running: not verified yet.
        ({"phase": "Running", "finished": None, "hook_phase": "Running"}, "pending", "running"),
        # The smoke test failed, so the sync did: the broken image never counts as healthy.
        (
            {
                "phase": "Failed",
                "hook_phase": "Failed",
                "message": "one or more synchronization tasks completed unsuccessfully",
            },
            "failure",
            "the last sync failed: one or more synchronization tasks",
        ),
        ({"phase": "Error", "message": "ComparisonError"}, "failure", "ended in an error"),
        ({"sync": "OutOfSync"}, "pending", "OutOfSync"),
        ({"health": "Progressing"}, "pending", "Progressing"),
        ({"health": "Degraded"}, "failure", "Degraded"),
        ({"health": "Missing"}, "pending", "Missing"),
    ],
)
def test_anything_short_of_synced_healthy_and_verified_is_not_success(
    validator: Draft202012Validator, kwargs: dict[str, Any], state: str, words: str
) -> None:
    found = judged(validator, application(**kwargs))
    assert found is not None
    assert found[0] == SHA
    assert found[1].state == state
    assert words in found[1].description


def test_an_application_that_compared_no_commit_gives_no_evidence(
    validator: Draft202012Validator,
) -> None:
    assert judged(validator, application(None)) is None
    source = ArgoCDApplication("iris-staging")
    source.load(application(None))
    assert source.statuses(SHA) == []
    assert "compared no commit yet" in source.where


def test_only_the_synced_commit_has_a_status(validator: Draft202012Validator) -> None:
    app = application()
    judged(validator, app)
    source = ArgoCDApplication("iris-staging")
    source.load(app)
    assert [s.state for s in source.statuses(SHA)] == ["success"]
    assert source.statuses("f" * 40) == []
    assert source.where == f"Argo CD Application iris-staging, which is at {SHA[:12]} (success)"


@pytest.mark.parametrize(
    ("app", "words"),
    [
        (
            {"kind": "AppProject", "metadata": {"name": "iris-staging"}},
            "not an Argo CD Application",
        ),
        ({"kind": "Application", "metadata": {"name": "iris-production"}}, "not that Application"),
    ],
)
def test_an_object_that_is_not_the_application_asked_for_is_refused(
    app: dict[str, Any], words: str
) -> None:
    with pytest.raises(GitOpsError, match=words):
        ArgoCDApplication("iris-staging").load(app)


def test_a_malformed_timestamp_is_one_clear_error() -> None:
    app = application()
    app["status"]["health"]["lastTransitionTime"] = "yesterday"
    with pytest.raises(GitOpsError, match=r"lastTransitionTime 'yesterday' is not a timestamp"):
        application_status(app, label="Application argocd/iris-staging")


# --- the gate on real git, with kubectl as a recording stand-in -------------------------------


@pytest.fixture
def kubectl(tmp_path: Path) -> dict[str, str]:
    return kubectl_stand_in(tmp_path / "bin")


def promote(repo: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    done = gitops(repo, "promote", "staging", "production", "--evidence", "argocd", *args, **env)
    return done.returncode, done.stdout, done.stderr


def released(origin: Path, tmp_path: Path, n: int) -> str:
    release = clone(origin, tmp_path / f"release-{n}")
    result = bump(release, ref(n))
    assert result.returncode == 0, result.stderr
    return git(release, "rev-parse", "HEAD")


def healthy(revision: str, since: timedelta) -> dict[str, Any]:
    """Synced and Healthy at `revision` for `since`, measured from the real clock."""
    now = datetime.now(UTC)
    return application(
        revision,
        healthy_since=now - since - timedelta(minutes=1),
        started=now - since - timedelta(minutes=2),
        finished=now - since,
    )


def test_the_gate_refuses_without_evidence_during_the_soak_and_passes_after(
    tmp_path: Path, kubectl: dict[str, str], validator: Draft202012Validator
) -> None:
    origin = init_origin(tmp_path)
    first = released(origin, tmp_path, 1)
    second = released(origin, tmp_path, 2)
    dev = clone(origin, tmp_path / "dev")
    before = pin_of(dev, "production")

    # staging still runs the first release: the second has no evidence yet.
    serve_application(kubectl, judged_app(validator, healthy(first, timedelta(hours=1))))
    code, _, err = promote(dev, kubectl)
    assert code == 2
    assert f"staging has not deployed {second[:12]} yet" in err
    assert f"--revision {first[:12]}" in err
    log = Path(kubectl["FAKE_KUBECTL_LOG"]).read_text(encoding="utf-8").splitlines()
    assert log == [
        "--context kind-iris get application iris-staging --namespace argocd --output json"
    ]

    # Synced and healthy at the second for 3 minutes: inside the default 10-minute soak.
    serve_application(kubectl, judged_app(validator, healthy(second, timedelta(minutes=3))))
    code, _, err = promote(dev, kubectl)
    assert code == 2
    assert "staging has run" in err
    assert "the soak time is 10m 0s" in err
    assert (pin_of(dev, "production"), git(dev, "status", "--porcelain")) == (before, "")

    # The smoke test failed on that commit: refused whatever the soak.
    failed = application(second, phase="Failed", hook_phase="Failed", message="Job failed")
    serve_application(kubectl, judged_app(validator, failed))
    code, _, err = promote(dev, kubectl, "--soak", "0s")
    assert code == 2
    assert f"argocd/iris-staging is failure on {second[:12]}" in err
    assert "the last sync failed: Job failed" in err

    serve_application(kubectl, judged_app(validator, healthy(second, timedelta(minutes=3))))
    code, out, err = promote(dev, kubectl, "--soak", "2m", "--json")
    assert (code, err) == (0, "")
    result = json.loads(out)
    assert result["evidence"]["state"] == "success"
    assert result["evidence"]["commit"] == second
    assert not result["forced"]
    assert pin_of(dev, "production") == second


def test_the_gate_on_a_staging_application_that_synced_nothing_names_it(
    tmp_path: Path, kubectl: dict[str, str]
) -> None:
    origin = init_origin(tmp_path)
    released(origin, tmp_path, 1)
    dev = clone(origin, tmp_path / "dev")
    serve_application(kubectl, application(None))
    code, _, err = promote(dev, kubectl)
    assert code == 2
    assert "in Argo CD Application iris-staging, which has compared no commit yet" in err
    assert git(dev, "status", "--porcelain") == ""


def test_kubectl_that_cannot_read_the_application_is_one_clear_line(
    tmp_path: Path, kubectl: dict[str, str]
) -> None:
    origin = init_origin(tmp_path)
    released(origin, tmp_path, 1)
    dev = clone(origin, tmp_path / "dev")
    code, _, err = promote(dev, kubectl)  # no Application file: kubectl says NotFound
    assert code == 2
    assert err.count("\n") == 1
    assert "cannot read the Argo CD Application iris-staging: Error from server (NotFound)" in err
    assert "Traceback" not in err

    missing = {**kubectl, "GITOPS_KUBECTL": str(tmp_path / "no-such-kubectl")}
    code, _, err = promote(dev, missing)
    assert code == 2
    assert "no-such-kubectl not found" in err
    assert "GITOPS_KUBECTL" in err
    assert git(dev, "status", "--porcelain") == ""


def test_evidence_argocd_and_a_statuses_file_exclude_each_other(tmp_path: Path) -> None:
    origin = init_origin(tmp_path)
    dev = clone(origin, tmp_path / "dev")
    code, _, err = promote(dev, {}, "--statuses-file", str(tmp_path / "statuses.json"))
    assert code == 2
    assert "--statuses-file is GitHub's evidence" in err


def judged_app(validator: Draft202012Validator, app: dict[str, Any]) -> dict[str, Any]:
    """`app`, after checking the v3.5.1 schema accepts it."""
    judged(validator, app)
    return app
