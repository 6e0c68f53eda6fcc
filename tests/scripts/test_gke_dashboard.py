"""scripts/gke-bootstrap.sh applies monitoring/dashboard.json: created when no dashboard has
its display name, updated with the listed etag when the file changed, left alone otherwise;
scripts/gke-teardown.sh deletes it.

Against the recording gcloud stand-in (tests/scripts/stand-in.sh), which keeps dashboards and
their etags as the API does; whether Cloud Monitoring accepts the dashboard is what
tests/monitoring/test_dashboard.py checks against the documented format.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.scripts.support import (
    ARGS,
    BOOTSTRAP,
    PROJECT,
    REPO_ROOT,
    TEARDOWN,
    Run,
    World,
    make_world,
    require_upstream_install_manifest,
)

pytestmark = pytest.mark.xdist_group("gke-dashboard")

DASHBOARD = REPO_ROOT / "monitoring" / "dashboard.json"
SOURCE_SHA256 = hashlib.sha256(DASHBOARD.read_bytes()).hexdigest()[:32]
DISPLAY_NAME = json.loads(DASHBOARD.read_text())["displayName"]


def dashboard_calls(run: Run, verb: str) -> list[list[str]]:
    return [call for call in run.gcloud() if call[:3] == ["monitoring", "dashboards", verb]]


def config_of(call: list[str]) -> dict[str, Any]:
    (config,) = [arg.split("=", 1)[1] for arg in call if arg.startswith("--config=")]
    parsed: dict[str, Any] = json.loads(config)
    return parsed


def stored(world: World) -> dict[str, dict[str, Any]]:
    """The dashboards in the stand-in project, by id."""
    directory = world.state / "monitoring_dashboards"
    return {
        d.name: json.loads((d / "config.json").read_text()) for d in sorted(directory.iterdir())
    }


def seed_dashboard(world: World, ident: str, config: dict[str, Any], etag: str) -> None:
    directory = world.state / "monitoring_dashboards" / ident
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "etag").write_text(etag)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_upstream_install_manifest()
    return tmp_path_factory.mktemp("gke-dashboard")


def test_first_run_creates_the_dashboard_from_the_file_labelled_with_its_sha256(base: Path) -> None:
    world = make_world(base / "first")
    run = world.run(BOOTSTRAP, ARGS)
    assert run.returncode == 0, run.stderr
    (create,) = dashboard_calls(run, "create")
    assert f"--project={PROJECT}" in create
    wanted = {"labels": {"source_sha256": SOURCE_SHA256}, **json.loads(DASHBOARD.read_text())}
    assert config_of(create) == wanted
    assert list(stored(world).values()) == [wanted]
    # Listed first, by display name, in the same project; the Monitoring API enabled before.
    run.assert_in_order(
        ("services", "enable", "monitoring.googleapis.com"),
        ("monitoring", "dashboards", "list", f'--filter=displayName="{DISPLAY_NAME}"'),
        ("monitoring", "dashboards", "create"),
    )

    again = world.run(BOOTSTRAP, ARGS)
    assert again.returncode == 0, again.stderr
    assert dashboard_calls(again, "create") == dashboard_calls(again, "update") == []
    assert f"up to date: dashboard '{DISPLAY_NAME}'" in again.stderr


def test_a_dashboard_from_an_older_file_is_updated_with_the_etag_it_was_listed_with(
    base: Path,
) -> None:
    world = make_world(base / "older")
    old = {"displayName": DISPLAY_NAME, "labels": {"source_sha256": "0" * 32}, "mosaicLayout": {}}
    seed_dashboard(world, "d7", old, "etag1234")
    # Another team's dashboard whose name merely contains the same words stays untouched.
    seed_dashboard(world, "d8", {"displayName": f"{DISPLAY_NAME} (old copy)"}, "etag5678")
    run = world.run(BOOTSTRAP, ARGS)
    assert run.returncode == 0, run.stderr
    assert dashboard_calls(run, "create") == []
    (update,) = dashboard_calls(run, "update")
    assert update[3] == f"projects/{PROJECT}/dashboards/d7"
    config = config_of(update)
    assert config.pop("etag") == "etag1234"
    assert config == {
        "labels": {"source_sha256": SOURCE_SHA256},
        **json.loads(DASHBOARD.read_text()),
    }
    assert stored(world)["d8"] == {"displayName": f"{DISPLAY_NAME} (old copy)"}
    assert world.run(BOOTSTRAP, ARGS).mutating() == []


def test_two_dashboards_with_the_display_name_are_refused_with_the_way_out(base: Path) -> None:
    world = make_world(base / "two")
    assert world.run(BOOTSTRAP, ARGS).returncode == 0
    seed_dashboard(world, "d9", {"displayName": DISPLAY_NAME}, "etag9")
    run = world.run(BOOTSTRAP, ARGS)
    run.assert_refused(f"2 dashboards are named '{DISPLAY_NAME}' in {PROJECT}; delete all but one")
    assert "gcloud monitoring dashboards list" in run.stderr


def test_dry_run_lists_the_dashboard_and_says_what_it_would_do(base: Path) -> None:
    world = make_world(base / "dry")
    plan = world.run(BOOTSTRAP, [*ARGS, "--dry-run"])
    assert plan.returncode == 0, plan.stderr
    assert plan.calls == []
    lines = plan.stdout.splitlines()
    listing = next(i for i, line in enumerate(lines) if "monitoring dashboards list" in line)
    assert f"'--filter=displayName=\"{DISPLAY_NAME}\"'" in lines[listing]
    assert lines[listing + 1].startswith("# none listed: gcloud monitoring dashboards create")
    assert f"labels.source_sha256={SOURCE_SHA256}" in lines[listing + 1]
    assert lines[listing + 2].startswith(
        "# one with another source_sha256: gcloud monitoring dashboards update"
    )


def test_teardown_deletes_the_dashboard_and_no_other(base: Path) -> None:
    world = make_world(base / "teardown")
    assert world.run(BOOTSTRAP, ARGS).returncode == 0
    seed_dashboard(world, "d9", {"displayName": f"{DISPLAY_NAME} (old copy)"}, "etag9")
    run = world.run(TEARDOWN, [*ARGS, "--yes"])
    assert run.returncode == 0, run.stderr
    (delete,) = dashboard_calls(run, "delete")
    assert delete[3] == f"projects/{PROJECT}/dashboards/d1"
    assert "--quiet" in delete
    assert list(stored(world)) == ["d9"]
    again = world.run(TEARDOWN, [*ARGS, "--yes"])
    assert dashboard_calls(again, "delete") == []
    assert f"already gone: dashboard '{DISPLAY_NAME}'" in again.stderr
