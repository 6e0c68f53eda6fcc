"""scripts/gke-bootstrap.sh: the dry-run plan, and the real-mode call sequence.

These tests check our script's logic, not Google Cloud. The dry run must print the plan
without calling anything. The real-mode runs put recording stand-ins for gcloud and kubectl
first on PATH (tests/scripts/support.py): they record each call and answer "not found" or
"exists", which is enough to check the order of the steps, that a second run creates
nothing, that no service-account key is ever made, and that the provider only trusts this
repository. Whether Google Cloud accepts the calls is outside what a test here can know;
the command lines are at least checked against the installed gcloud's own command tree.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.scripts.support import (
    ARGS,
    BOOTSTRAP,
    EXTERNAL_IP,
    MUTATING_GCLOUD,
    OWNER,
    PROJECT,
    PROJECT_NUMBER,
    REPO,
    Run,
    run_script,
)
from tests.workflows.support import REPOSITORY_VARIABLES

# Module-scoped fixtures run once, so every test here shares one xdist worker.
pytestmark = pytest.mark.xdist_group("gke-bootstrap")


@pytest.fixture(scope="module")
def plan(fakes: Path) -> Run:
    run = run_script(BOOTSTRAP, [*ARGS, "--dry-run"], fakes)
    assert run.returncode == 0, run.stderr
    return run


@pytest.fixture(scope="module")
def first_run(fakes: Path) -> Run:
    run = run_script(BOOTSTRAP, ARGS, fakes, state="fresh")
    assert run.returncode == 0, run.stderr
    return run


@pytest.fixture(scope="module")
def second_run(fakes: Path) -> Run:
    run = run_script(BOOTSTRAP, ARGS, fakes, state="exists")
    assert run.returncode == 0, run.stderr
    return run


def plan_lines(plan: Run) -> list[str]:
    return [
        line
        for line in plan.stdout.splitlines()
        if line.startswith(("gcloud ", "kubectl ", "test "))
    ]


def first_line_with(lines: list[str], *needles: str) -> int:
    for position, line in enumerate(lines):
        if all(needle in line for needle in needles):
            return position
    raise AssertionError(f"no plan line with {needles}:\n" + "\n".join(lines))


# --- dry run ----------------------------------------------------------------------------------


def test_dry_run_calls_nothing(plan: Run) -> None:
    assert plan.calls == []


def test_dry_run_plan_is_valid_shell(plan: Run) -> None:
    syntax = subprocess.run(
        ["bash", "-n"], input=plan.stdout, capture_output=True, text=True, timeout=10, check=False
    )
    assert syntax.returncode == 0, syntax.stderr


def test_dry_run_plan_runs_the_steps_in_dependency_order(plan: Run) -> None:
    lines = plan_lines(plan)
    order = [
        first_line_with(lines, "gcloud services enable", "iamcredentials.googleapis.com"),
        first_line_with(lines, "gcloud projects describe"),
        first_line_with(lines, "gcloud artifacts repositories create"),
        first_line_with(lines, "gcloud container clusters create-auto"),
        first_line_with(lines, "gcloud iam workload-identity-pools create"),
        first_line_with(lines, "providers create-oidc"),
        first_line_with(lines, "gcloud iam service-accounts create"),
        first_line_with(lines, "artifacts repositories add-iam-policy-binding"),
        first_line_with(lines, "iam service-accounts add-iam-policy-binding"),
        first_line_with(lines, "clusters get-credentials"),
        first_line_with(lines, "create namespace argocd"),
        first_line_with(lines, "apply", "install.yaml"),
        first_line_with(lines, "rollout status"),
        first_line_with(lines, "apply", "argocd/root.yaml"),
    ]
    assert order == sorted(order), "\n".join(lines)


def test_dry_run_plan_describes_before_every_create(plan: Run) -> None:
    for line in plan_lines(plan):
        if re.search(r" (create|create-auto|create-oidc) ", line):
            describe, sep, _ = line.partition(" >/dev/null 2>&1 || ")
            assert sep, f"create without a describe guard: {line}"
            assert re.search(r" (describe|get) ", describe), line
        if "add-iam-policy-binding" in line:
            assert line.startswith('test -n "$('), line
            assert "get-iam-policy" in line, line


def test_dry_run_plan_installs_argocd_v3_5_1_with_server_side_apply(plan: Run) -> None:
    line = plan_lines(plan)[first_line_with(plan_lines(plan), "install.yaml")]
    assert (
        "https://raw.githubusercontent.com/argoproj/argo-cd/v3.5.1/manifests/install.yaml" in line
    )
    assert "--server-side" in line.split()
    assert "--force-conflicts" in line.split()


def test_dry_run_plan_pins_the_provider_to_this_repository(plan: Run) -> None:
    line = plan_lines(plan)[first_line_with(plan_lines(plan), "create-oidc")]
    assert "--issuer-uri=https://token.actions.githubusercontent.com" in line
    condition = re.search(r"--attribute-condition=(.*?)' --", line)
    assert condition, line
    assert f"assertion.repository=='\\''{OWNER}/{REPO}'\\''" in condition.group(1)


def test_dry_run_plan_grants_only_repository_writer_and_workload_identity_user(plan: Run) -> None:
    text = plan.stdout
    assert "keys create" not in text
    roles = set(re.findall(r"--role=(roles/[A-Za-z.]+)", text))
    assert roles == {"roles/artifactregistry.writer", "roles/iam.workloadIdentityUser"}
    assert "projects add-iam-policy-binding" not in text
    assert f"attribute.repository/{OWNER}/{REPO}" in text


def test_dry_run_plan_creates_a_docker_repository_with_immutable_tags(plan: Run) -> None:
    line = plan_lines(plan)[first_line_with(plan_lines(plan), "artifacts repositories create")]
    assert "--repository-format=docker" in line
    assert "--immutable-tags" in line


def test_standard_flag_creates_a_standard_cluster_instead_of_autopilot(fakes: Path) -> None:
    run = run_script(BOOTSTRAP, [*ARGS, "--dry-run", "--standard"], fakes)
    assert run.returncode == 0, run.stderr
    assert "gcloud container clusters create iris " in run.stdout
    assert "create-auto" not in run.stdout


def test_dry_run_prints_the_repository_variables_and_how_to_open_argocd(plan: Run) -> None:
    for name in REPOSITORY_VARIABLES:
        assert f"{name}=" in plan.stdout
    assert "port-forward service/argocd-server" in plan.stdout
    assert "argocd-initial-admin-secret" in plan.stdout


def test_unknown_option_is_refused_before_anything_runs(fakes: Path) -> None:
    run_script(BOOTSTRAP, [*ARGS, "--zone", "x"], fakes).assert_refused("unknown option: --zone")


def test_missing_project_is_refused_with_the_fix(fakes: Path) -> None:
    run_script(BOOTSTRAP, ["--github-owner", OWNER], fakes).assert_refused("--project")


# --- real mode against the stand-ins ------------------------------------------------------------


def test_first_run_creates_everything_in_order(first_run: Run) -> None:
    first_run.assert_in_order(
        ("services", "enable"),
        ("repositories", "create"),
        ("clusters", "create-auto"),
        ("workload-identity-pools", "create"),
        ("providers", "create-oidc"),
        ("service-accounts", "create"),
        ("repositories", "add-iam-policy-binding"),
        ("service-accounts", "add-iam-policy-binding"),
        ("get-credentials",),
        ("create", "namespace"),
        ("apply", "--server-side"),
        ("apply", "argocd/root.yaml"),
    )


def test_every_create_follows_its_describe(first_run: Run) -> None:
    gcloud = first_run.gcloud()
    for position, call in enumerate(gcloud):
        verb = next(
            (word for word in call if word in {"create", "create-auto", "create-oidc"}), None
        )
        if verb is None:
            continue
        group = call[: call.index(verb)]
        name = call[call.index(verb) + 1]
        describes = [
            earlier
            for earlier in gcloud[:position]
            if earlier[: len(group)] == group
            and "describe" in earlier
            # A service account is described by its email, <name>@<project>...
            and any(arg == name or arg.startswith(f"{name}@") for arg in earlier)
        ]
        assert describes, f"'{' '.join(call)}' without a describe of {name} first"


def test_no_service_account_key_is_ever_created(first_run: Run, second_run: Run) -> None:
    for run in (first_run, second_run):
        for call in run.gcloud():
            assert "keys" not in call, " ".join(call)


def test_workload_identity_binding_names_the_project_number_and_repository(first_run: Run) -> None:
    binding = first_run.gcloud()[
        first_run.gcloud().index(
            next(
                c
                for c in first_run.gcloud()
                if "service-accounts" in c and "add-iam-policy-binding" in c
            )
        )
    ]
    member = next(arg for arg in binding if arg.startswith("--member="))
    assert member == (
        "--member=principalSet://iam.googleapis.com/projects/"
        f"{PROJECT_NUMBER}/locations/global/workloadIdentityPools/github/"
        f"attribute.repository/{OWNER}/{REPO}"
    )
    assert "--role=roles/iam.workloadIdentityUser" in binding


def test_provider_condition_accepts_only_this_repository_on_main(first_run: Run) -> None:
    create = next(call for call in first_run.gcloud() if "create-oidc" in call)
    condition = next(arg for arg in create if arg.startswith("--attribute-condition="))
    assert condition == (
        f"--attribute-condition=assertion.repository=='{OWNER}/{REPO}' "
        "&& assertion.ref=='refs/heads/main'"
    )


def test_second_run_changes_nothing_that_exists(second_run: Run) -> None:
    mutating = [call for call in second_run.gcloud() if MUTATING_GCLOUD.intersection(call)]
    assert mutating == [], "\n".join(" ".join(call) for call in mutating)
    assert not [call for call in second_run.kubectl() if "create" in call]


def test_soft_deleted_pool_and_provider_are_undeleted_not_recreated(fakes: Path) -> None:
    run = run_script(BOOTSTRAP, ARGS, fakes, state="soft-deleted")
    assert run.returncode == 0, run.stderr
    undeletes = [call for call in run.gcloud() if "undelete" in call]
    assert len(undeletes) == 2, run.render_calls()
    assert any("providers" in call for call in undeletes)
    assert not [call for call in run.gcloud() if {"create", "create-oidc"}.intersection(call)]


def test_every_kubectl_call_names_the_cluster_context(first_run: Run) -> None:
    context = f"--context=gke_{PROJECT}_europe-west1_iris"
    assert first_run.kubectl()
    for call in first_run.kubectl():
        assert call[0] == context, " ".join(call)


def test_run_ends_with_the_production_address_and_a_curl(first_run: Run) -> None:
    assert f"curl -s http://{EXTERNAL_IP}/predict" in first_run.stdout


def test_real_run_refuses_when_argocd_deploys_another_repository(fakes: Path) -> None:
    run = run_script(BOOTSTRAP, ["--project", PROJECT, "--github-owner", "someone-else"], fakes)
    run.assert_refused("python -m gitops set-repo https://github.com/someone-else/")


def test_a_binding_refused_for_a_just_created_service_account_is_retried(fakes: Path) -> None:
    run = run_script(
        BOOTSTRAP,
        ARGS,
        fakes,
        state="fresh",
        extra_env={
            "FAKE_FAIL_FIRST": "service-accounts add-iam-policy-binding",
            "BIND_RETRY_SECONDS": "0",
        },
    )
    assert run.returncode == 0, run.stderr
    bindings = [
        call
        for call in run.gcloud()
        if "service-accounts" in call and "add-iam-policy-binding" in call
    ]
    assert len(bindings) == 2, run.render_calls()
    assert "attempt 1 of 8 failed" in run.stderr
    # The run went on to Argo CD after the retry.
    assert run.index("apply", "argocd/root.yaml") > run.calls.index(["gcloud", *bindings[-1]])
