"""scripts/gke-bootstrap.sh puts the GitHub App's credentials where Argo CD Notifications reads.

Against the recording stand-ins of tests/scripts (they check our script's logic, not a
cluster): the Secret argocd-notifications-secret is built by kubectl from the key file the
user gives and applied server-side, idempotently, after Argo CD and before the root
application; the key never reaches the terminal, the plan or the recorded command lines;
bad credentials stop the run before anything is created. And the notifications ConfigMap in
argocd/install/ reads exactly the keys the bootstrap writes.
"""

from __future__ import annotations

import base64
import re
import shlex
from pathlib import Path

import pytest
import yaml

from tests.scripts.support import (
    ARGS,
    BOOTSTRAP,
    REPO_ROOT,
    Run,
    World,
    make_world,
    require_upstream_install_manifest,
    throwaway_private_key,
    upstream_install_manifest,
)

pytestmark = pytest.mark.xdist_group("gke-bootstrap")

APP_ID = "1234567"
INSTALLATION_ID = "87654321"
CONFIG_MAP = REPO_ROOT / "argocd" / "install" / "argocd-notifications-cm.patch.yaml"
SECRET = "argocd-notifications-secret"  # noqa: S105 (a Secret's name)


def key_body() -> list[str]:
    """The base64 lines of the throwaway key, each of which must never be printed."""
    return [line for line in throwaway_private_key().splitlines() if not line.startswith("-----")]


def key_file(directory: Path, text: str | None = None) -> Path:
    path = directory / "iris-gitops.private-key.pem"
    path.write_text(throwaway_private_key() if text is None else text, encoding="utf-8")
    return path


def app_args(key: Path) -> list[str]:
    return [
        "--github-app-id",
        APP_ID,
        "--github-app-installation-id",
        INSTALLATION_ID,
        "--github-app-key",
        str(key),
    ]


def assert_key_never_shown(run: Run) -> None:
    for text in (run.stdout, run.stderr, run.render_calls()):
        assert not [line for line in key_body() if line in text]
        assert base64.b64encode(throwaway_private_key().encode()).decode() not in text


def applied_secrets(world: World) -> list[dict[str, object]]:
    """Every Secret the runs applied through `kubectl apply -f -`, in order."""
    directory = world.state / "kubectl-applied"
    found = []
    for path in sorted(directory.glob("*.yaml"), key=lambda p: int(p.stem)):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        if doc and doc.get("kind") == "Secret":
            found.append(doc)
    return found


def config_map_secret_keys() -> set[str]:
    """The $keys of argocd-notifications-secret that the GitHub service reads."""
    doc = yaml.safe_load(CONFIG_MAP.read_text(encoding="utf-8"))
    service = yaml.safe_load(doc["data"]["service.github"])
    return {value[1:] for value in service.values() if str(value).startswith("$")}


def test_the_config_map_reads_the_app_credentials_from_exactly_three_secret_keys() -> None:
    assert config_map_secret_keys() == {
        "github-app-id",
        "github-installation-id",
        "github-privateKey",
    }


def test_argocd_v3_5_1_reads_that_secret_by_this_name() -> None:
    manifest = upstream_install_manifest()
    if manifest is None:
        pytest.skip("no local copy of Argo CD v3.5.1's install.yaml (tests/scripts/support.py)")
    docs = [d for d in yaml.safe_load_all(manifest.read_text(encoding="utf-8")) if d]
    secrets = [d["metadata"]["name"] for d in docs if d["kind"] == "Secret"]
    assert SECRET in secrets
    # The notifications controller's Role may read this one Secret by name.
    role = next(
        d
        for d in docs
        if d["kind"] == "Role" and d["metadata"]["name"] == "argocd-notifications-controller"
    )
    assert any(SECRET in rule.get("resourceNames", []) for rule in role["rules"])


def test_dry_run_plans_the_secret_from_the_file_without_reading_it_out(tmp_path: Path) -> None:
    key = key_file(tmp_path)
    world = make_world(tmp_path / "world")
    plan = world.run(BOOTSTRAP, [*ARGS, *app_args(key), "--dry-run"])
    assert plan.returncode == 0, plan.stderr
    assert plan.calls == []
    assert_key_never_shown(plan)
    lines = plan.stdout.splitlines()
    (line,) = [line for line in lines if "create secret generic" in line]
    create, apply = (shlex.split(part) for part in line.split(" | "))
    assert create[:2] == apply[:2] == ["kubectl", "--context=gke_iris-demo-123_europe-west1_iris"]
    assert create[2:] == [
        "create",
        "secret",
        "generic",
        SECRET,
        "--namespace=argocd",
        f"--from-literal=github-app-id={APP_ID}",
        f"--from-literal=github-installation-id={INSTALLATION_ID}",
        f"--from-file=github-privateKey={key}",
        "--dry-run=client",
        "--output=yaml",
    ]
    assert apply[2:] == [
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=iris-bootstrap",
        "--namespace=argocd",
        "-f",
        "-",
    ]
    # After Argo CD (whose install.yaml holds the empty Secret), before the applications.
    position = lines.index(line)
    install = next(
        i for i, text in enumerate(lines) if "apply --server-side --force-conflicts -f" in text
    )
    root = next(i for i, text in enumerate(lines) if "argocd/root.yaml" in text and "apply" in text)
    assert install < position < root


def test_the_secret_is_applied_with_the_keys_the_config_map_reads_and_again_unchanged(
    tmp_path: Path,
) -> None:
    require_upstream_install_manifest()
    key = key_file(tmp_path)
    world = make_world(tmp_path / "world")
    first = world.run(BOOTSTRAP, [*ARGS, *app_args(key)])
    assert first.returncode == 0, first.stderr
    second = world.run(BOOTSTRAP, [*ARGS, *app_args(key)])
    assert second.returncode == 0, second.stderr
    for run in (first, second):
        assert_key_never_shown(run)
        # The two ends of one pipeline start together: each on its own between Argo CD
        # and the root application.
        for secret_step in (
            ("kubectl", "create", "secret", "generic", SECRET),
            ("kubectl", "apply", "--field-manager=iris-bootstrap"),
        ):
            run.assert_in_order(
                ("kubectl", "apply", "--server-side", "--force-conflicts", "-f"),
                secret_step,
                ("kubectl", "apply", "--namespace=argocd", "argocd/root.yaml"),
            )
    once, twice = applied_secrets(world)
    assert once == twice  # a re-run applies the same object: nothing changes
    assert once["metadata"] == {"name": SECRET, "namespace": "argocd"}
    data = {k: base64.b64decode(v).decode() for k, v in once["data"].items()}  # type: ignore[attr-defined]
    assert data == {
        "github-app-id": APP_ID,
        "github-installation-id": INSTALLATION_ID,
        "github-privateKey": throwaway_private_key(),
    }
    assert set(data) == config_map_secret_keys()
    assert "set: Secret argocd/argocd-notifications-secret" in first.stderr


def test_without_the_app_no_secret_is_touched_and_the_run_says_so(tmp_path: Path) -> None:
    world = make_world(tmp_path / "world")
    plan = world.run(BOOTSTRAP, [*ARGS, "--dry-run"])
    assert plan.returncode == 0, plan.stderr
    assert "create secret" not in plan.stdout
    assert "# Argo CD Notifications: no GitHub App given" in plan.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--github-app-id", APP_ID], "give --github-app-id, --github-app-installation-id and"),
        (
            ["--github-app-id", "my-app", "--github-app-installation-id", "1", "--github-app-key"],
            "the GitHub App ID is a number",
        ),
        (
            ["--github-app-id", "1", "--github-app-installation-id", "x", "--github-app-key"],
            "the installation id is a number",
        ),
    ],
)
def test_incomplete_or_malformed_app_ids_are_refused_before_anything_runs(
    tmp_path: Path, args: list[str], message: str
) -> None:
    if args[-1] == "--github-app-key":
        args = [*args, str(key_file(tmp_path))]
    world = make_world(tmp_path / "world")
    run = world.run(BOOTSTRAP, [*ARGS, *args])
    run.assert_refused(message)
    assert run.calls == []


def test_a_missing_or_non_pem_key_file_is_refused_without_printing_it(tmp_path: Path) -> None:
    world = make_world(tmp_path / "world")
    missing = tmp_path / "nowhere.pem"
    run = world.run(BOOTSTRAP, [*ARGS, *app_args(missing)])
    run.assert_refused(f"cannot read the GitHub App key file {missing}")
    not_pem = key_file(tmp_path, "\n".join(key_body()) + "\n")
    run = world.run(BOOTSTRAP, [*ARGS, *app_args(not_pem)])
    run.assert_refused("is not a PEM private key")
    assert_key_never_shown(run)
    assert run.calls == []


def test_the_bootstrap_help_names_the_three_options_and_their_variables() -> None:
    text = BOOTSTRAP.read_text(encoding="utf-8")
    for option, variable in (
        ("--github-app-id", "GITOPS_APP_ID"),
        ("--github-app-installation-id", "GITOPS_APP_INSTALLATION_ID"),
        ("--github-app-key", "GITOPS_APP_PRIVATE_KEY_FILE"),
    ):
        assert re.search(rf"{re.escape(option)} .*\[{variable}\]", text), option
