"""Promotion on real git: the gate on staging's commit status, the direction, and the pin.

A bare repository plays GitHub, clones play the release job, a developer and Argo CD. The
commit statuses Argo CD Notifications would set are a JSON file in the shape GitHub's API
returns them; nothing here pretends to be a cluster.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from harness.git import clone, git, init_origin
from tests.gitops.support import (
    bump,
    deployed_image,
    gitops,
    pin_of,
    record_file,
    ref,
    release_file,
    rendered,
)

pytestmark = pytest.mark.integration  # real git, real kustomize

CONTEXT = "argocd/iris-staging"


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return init_origin(tmp_path)


def status(state: str, age: timedelta, context: str = CONTEXT) -> dict[str, object]:
    """One status object as GitHub's API returns it, set `age` ago."""
    created = (datetime.now(UTC) - age).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "context": context,
        "state": state,
        "created_at": created,
        "updated_at": created,
        "description": f"iris-staging is {state}",
        "target_url": "https://argocd.example.com/applications/argocd/iris-staging",
        "id": 1,
    }


def record(path: Path, statuses: dict[str, list[dict[str, object]]]) -> Path:
    path.write_text(json.dumps(statuses), encoding="utf-8")
    return path


def released(origin: Path, tmp_path: Path, n: int) -> str:
    """Release image n the way release.yml does; returns the bump commit."""
    release = clone(origin, tmp_path / f"release-{n}")
    result = bump(release, ref(n))
    assert result.returncode == 0, result.stderr
    return git(release, "rev-parse", "HEAD")


def dev_clone(origin: Path, tmp_path: Path, name: str = "dev") -> Path:
    return clone(origin, tmp_path / name)


def promote(repo: Path, statuses: Path, *args: str) -> tuple[int, str, str]:
    done = gitops(repo, "promote", "staging", "production", "--statuses-file", str(statuses), *args)
    return done.returncode, done.stdout, done.stderr


def merge_promotion(dev: Path, message: str = "deploy(production): promote") -> None:
    git(dev, "commit", "-q", "-am", message)
    git(dev, "push", "-q", "origin", "HEAD:main")


def test_promotion_is_refused_without_a_staging_status(origin: Path, tmp_path: Path) -> None:
    released(origin, tmp_path, 1)
    dev = dev_clone(origin, tmp_path)
    before = pin_of(dev, "production")
    code, _, err = promote(dev, record(tmp_path / "s.json", {}))
    assert code == 2
    assert "no argocd/iris-staging status on" in err
    assert "--force" in err
    assert pin_of(dev, "production") == before
    assert git(dev, "status", "--porcelain") == ""


def test_promotion_is_refused_while_staging_soaks_and_allowed_after(
    origin: Path, tmp_path: Path
) -> None:
    bump_sha = released(origin, tmp_path, 1)
    dev = dev_clone(origin, tmp_path)
    young = record(tmp_path / "young.json", {bump_sha: [status("success", timedelta(minutes=3))]})
    code, _, err = promote(dev, young)
    assert code == 2
    assert "healthy for 3m" in err
    assert "the soak time is 10m 0s" in err
    assert git(dev, "status", "--porcelain") == ""

    # The soak time is configurable: five minutes is not over either; two is.
    assert promote(dev, young, "--soak", "5m")[0] == 2
    code, out, err = promote(dev, young, "--soak", "2m")
    assert (code, err) == (0, ""), err
    assert pin_of(dev, "production") == bump_sha
    assert f"production: pinned to {bump_sha}" in out

    old = record(tmp_path / "old.json", {bump_sha: [status("success", timedelta(minutes=11))]})
    git(dev, "checkout", "-q", "--", ".")
    code, _, err = promote(dev, old)
    assert (code, err) == (0, "")
    assert deployed_image(dev, "production") == ref(1)


def test_the_newest_status_counts_and_a_failure_is_refused(origin: Path, tmp_path: Path) -> None:
    bump_sha = released(origin, tmp_path, 1)
    dev = dev_clone(origin, tmp_path)
    statuses = record(
        tmp_path / "s.json",
        {
            bump_sha: [
                status("success", timedelta(hours=2)),
                status("failure", timedelta(minutes=30)),
                status("success", timedelta(hours=1), context="argocd/iris-production"),
            ]
        },
    )
    code, _, err = promote(dev, statuses)
    assert code == 2
    assert f"argocd/iris-staging is failure on {bump_sha[:12]}" in err


def test_a_commit_that_changes_nothing_in_staging_is_promoted_on_the_evidence_before_it(
    origin: Path, tmp_path: Path
) -> None:
    bump_sha = released(origin, tmp_path, 1)
    dev = dev_clone(origin, tmp_path)
    # A production-only setting lands after staging's last deployment: Argo CD syncs nothing
    # in staging for it, so it carries no status of its own.
    hpa = dev / "deploy/overlays/production/horizontalpodautoscaler.patch.yaml"
    hpa.write_text(hpa.read_text().replace("maxReplicas: 10", "maxReplicas: 12"))
    git(dev, "commit", "-q", "-am", "production: allow 12 replicas")
    git(dev, "push", "-q", "origin", "main")
    head = git(dev, "rev-parse", "HEAD")
    assert "maxReplicas: 12" not in rendered(dev, "production")  # not before promotion

    statuses = record(tmp_path / "s.json", {bump_sha: [status("success", timedelta(hours=1))]})
    code, _, err = promote(dev, statuses, "--pr-body", str(tmp_path / "body.md"))
    assert (code, err) == (0, "")
    assert pin_of(dev, "production") == head
    assert "maxReplicas: 12" in rendered(dev, "production")
    body = (tmp_path / "body.md").read_text()
    assert f"renders staging exactly as `{bump_sha[:12]}` does" in body
    assert "+  maxReplicas: 12" in body


def test_a_staging_change_without_its_own_status_is_not_promoted(
    origin: Path, tmp_path: Path
) -> None:
    first = released(origin, tmp_path, 1)
    released(origin, tmp_path, 2)  # staging has not reported on this one yet
    dev = dev_clone(origin, tmp_path)
    statuses = record(tmp_path / "s.json", {first: [status("success", timedelta(hours=1))]})
    code, _, err = promote(dev, statuses)
    assert code == 2
    assert "staging has not deployed" in err
    assert f"--revision {first[:12]}" in err
    # The older commit staging did verify can be promoted explicitly.
    code, _, err = promote(dev, statuses, "--revision", first[:12])
    assert (code, err) == (0, "")
    assert pin_of(dev, "production") == first
    assert deployed_image(dev, "production") == ref(1)


def test_base_change_reaches_staging_only_until_promoted_and_a_revert_restores_all(
    origin: Path, tmp_path: Path
) -> None:
    first = released(origin, tmp_path, 1)
    dev = dev_clone(origin, tmp_path)
    statuses = {first: [status("success", timedelta(hours=1))]}
    assert promote(dev, record(tmp_path / "1.json", statuses))[0] == 0
    merge_promotion(dev)

    # A pull request changes a probe path in the base together with the code: a new image.
    deployment = dev / "deploy/base/deployment.yaml"
    deployment.write_text(deployment.read_text().replace("path: /livez", "path: /healthz"))
    git(dev, "commit", "-q", "-am", "probe on /healthz")
    git(dev, "push", "-q", "origin", "main")
    second = released(origin, tmp_path, 2)
    git(dev, "pull", "-q", "--ff-only")

    assert "/healthz" in rendered(dev, "staging")
    assert deployed_image(dev, "staging") == ref(2)
    # Production still runs the old pod template with the old image: never a mix.
    assert "/healthz" not in rendered(dev, "production")
    assert deployed_image(dev, "production") == ref(1)
    before_promotion = rendered(dev, "production")

    statuses[second] = [status("success", timedelta(minutes=20))]
    code, _, err = promote(dev, record(tmp_path / "2.json", statuses))
    assert (code, err) == (0, "")
    merge_promotion(dev, "deploy(production): promote sha-2")
    assert "/healthz" in rendered(dev, "production")
    assert deployed_image(dev, "production") == ref(2)

    history = json.loads(gitops(dev, "history", "production", "--json").stdout)
    assert history["changes"][0]["pinned_after"] == second
    assert history["changes"][0]["after"]["reference"] == ref(2)
    revert = history["revert"].split()
    assert revert[:2] == ["git", "revert"]
    git(dev, *revert[1:], "--no-edit")
    assert rendered(dev, "production") == before_promotion
    assert deployed_image(dev, "staging") == ref(2)  # staging keeps what main has


def test_promotion_never_goes_backwards(origin: Path, tmp_path: Path) -> None:
    first = released(origin, tmp_path, 1)
    second = released(origin, tmp_path, 2)
    dev = dev_clone(origin, tmp_path)
    statuses = record(
        tmp_path / "s.json",
        {sha: [status("success", timedelta(hours=1))] for sha in (first, second)},
    )
    swapped = gitops(dev, "promote", "production", "staging", "--statuses-file", str(statuses))
    assert swapped.returncode == 2
    assert "production comes after staging (promotion order: staging -> production)" in (
        swapped.stderr
    )
    assert "git revert" in swapped.stderr
    assert (
        release_file(dev).read_text()
        == git(dev, "show", "HEAD:deploy/release/kustomization.yaml") + "\n"
    )

    assert promote(dev, statuses)[0] == 0
    merge_promotion(dev)
    code, _, err = promote(dev, statuses, "--revision", first)
    assert code == 2
    assert f"production already runs {second[:12]}, which is newer than {first[:12]}" in err
    assert "python -m gitops history production" in err
    assert pin_of(dev, "production") == second


def test_an_uncommitted_or_unpushed_staging_release_is_not_promoted(
    origin: Path, tmp_path: Path
) -> None:
    bump_sha = released(origin, tmp_path, 1)
    dev = dev_clone(origin, tmp_path)
    statuses = record(tmp_path / "s.json", {bump_sha: [status("success", timedelta(hours=1))]})
    path = release_file(dev)
    path.write_text(path.read_text().replace(ref(1).split("@")[1], ref(2).split("@")[1]))
    code, _, err = promote(dev, statuses)
    assert code == 2
    assert "uncommitted changes under deploy/" in err
    assert "deploy/release/kustomization.yaml" in err

    git(dev, "commit", "-q", "-am", "an image staging never ran")
    code, _, err = promote(dev, statuses, "--force")
    assert code == 2  # --force does not override this: staging cannot have run it
    assert "is not on origin/main" in err
    assert pin_of(dev, "production") != git(dev, "rev-parse", "HEAD")


def test_force_is_loud_and_recorded_in_the_pull_request_body(origin: Path, tmp_path: Path) -> None:
    bump_sha = released(origin, tmp_path, 1)
    dev = dev_clone(origin, tmp_path)
    body = tmp_path / "body.md"
    code, _, err = promote(dev, record(tmp_path / "s.json", {}), "--force", "--pr-body", str(body))
    assert code == 0, err
    assert err.startswith("gitops: WARNING: --force: promoting")
    assert pin_of(dev, "production") == bump_sha
    text = body.read_text()
    assert "**Promoted with `--force`.**" in text
    assert "no argocd/iris-staging status" in text
    merge_promotion(dev)
    result = json.loads(
        gitops(
            dev,
            "promote",
            "staging",
            "production",
            "--force",
            "--json",
            "--statuses-file",
            str(tmp_path / "s.json"),
        ).stdout
    )
    # Merged: HEAD now renders production exactly as its pin does, so nothing to gate or do.
    assert (result["forced"], result["changed"]) == (False, False)
    assert result["evidence"]["refusal"] is None


def test_set_image_on_a_pinned_environment_points_to_promotion(repo: Path) -> None:
    done = gitops(repo, "set-image", "production", ref(1))
    assert done.returncode == 2
    assert "production runs the commit argocd/apps/production.yaml pins" in done.stderr
    assert "python -m gitops promote staging production" in done.stderr


def metadata(tmp_path: Path, accuracy: float, data: str) -> Path:
    """An artifact's metadata.json with the fields the release record takes."""
    path = tmp_path / f"metadata-{accuracy}.json"
    path.write_text(
        json.dumps(
            {
                "model_version": f"model-{accuracy}",
                "estimator": "LogisticRegression",
                "trained_at": "2026-12-01T10:00:00+00:00",
                "data_path": f"data/{data}/data.csv",
                "data_sha256": "ab" * 32,
                "class_names": ["setosa", "versicolor", "virginica"],
                "metrics": {
                    "holdout_accuracy": accuracy,
                    "holdout_macro_f1": accuracy - 0.01,
                    "cv_accuracy_mean": 0.95,
                    "cv_accuracy_std": 0.02,
                },
            }
        )
    )
    return path


def test_release_record_travels_from_the_bump_to_status_and_the_promotion_body(
    origin: Path, tmp_path: Path
) -> None:
    release = clone(origin, tmp_path / "release")
    meta = metadata(tmp_path, 0.9, "v1")
    assert bump(release, ref(1), GITOPS_MODEL_METADATA=str(meta)).returncode == 0
    first = git(release, "rev-parse", "HEAD")
    saved = yaml.safe_load(record_file(release).read_text())
    assert saved["image"] == ref(1)
    assert saved["model"]["version"] == "model-0.9"
    assert saved["model"]["metrics"]["holdoutAccuracy"] == 0.9
    assert saved["model"]["data"]["path"] == "data/v1/data.csv"

    dev = dev_clone(origin, tmp_path)
    statuses = {first: [status("success", timedelta(hours=1))]}
    assert promote(dev, record(tmp_path / "1.json", statuses))[0] == 0
    merge_promotion(dev)

    meta = metadata(tmp_path, 0.966667, "v2")
    assert bump(release, ref(2), GITOPS_MODEL_METADATA=str(meta)).returncode == 0
    second = git(release, "rev-parse", "HEAD")
    git(dev, "pull", "-q", "--ff-only")
    envs = {e["env"]: e for e in json.loads(gitops(dev, "status", "--json").stdout)["environments"]}
    assert envs["staging"]["release"]["model"]["version"] == "model-0.966667"
    assert envs["production"]["release"]["model"]["version"] == "model-0.9"
    assert envs["production"]["revision"] == first
    table = gitops(dev, "status").stdout
    assert "0.9000" in table
    assert "0.9667" in table

    statuses[second] = [status("success", timedelta(minutes=15))]
    body = tmp_path / "body.md"
    code, _, err = promote(dev, record(tmp_path / "2.json", statuses), "--pr-body", str(body))
    assert (code, err) == (0, "")
    text = body.read_text()
    assert f"- **Image:** `{ref(2)}`" in text
    assert f"`{first[:12]}..{second[:12]}`" in text
    assert f"`argocd/iris-staging` = **success** on `{second[:12]}`" in text
    assert "| holdout accuracy | 0.9000 | 0.9667 | +0.0667 |" in text
    assert "| data version | v1 (`abababababab`) | v2 (`abababababab`) | changed |" in text
    assert "### Rendered diff of production" in text
    assert f"+        image: {ref(2)}" in text


def test_a_release_without_metadata_drops_the_previous_model_record(
    repo: Path, tmp_path: Path
) -> None:
    meta = metadata(tmp_path, 0.9, "v1")
    assert gitops(repo, "set-image", "staging", ref(1), "--metadata", str(meta)).returncode == 0
    assert yaml.safe_load(record_file(repo).read_text())["model"]["version"] == "model-0.9"
    assert gitops(repo, "set-image", "staging", ref(2)).returncode == 0
    saved = yaml.safe_load(record_file(repo).read_text())
    assert saved["image"] == ref(2)
    assert saved["model"] is None  # never the previous image's model next to a new image


def test_a_bad_metadata_file_changes_no_file(repo: Path, tmp_path: Path) -> None:
    bad = tmp_path / "metadata.json"
    bad.write_text(json.dumps({"model_version": "x", "metrics": {}}))
    before = (release_file(repo).read_bytes(), record_file(repo).exists())
    done = gitops(repo, "set-image", "staging", ref(1), "--metadata", str(bad))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "metrics.holdout_accuracy is missing" in done.stderr
    assert (release_file(repo).read_bytes(), record_file(repo).exists()) == before
