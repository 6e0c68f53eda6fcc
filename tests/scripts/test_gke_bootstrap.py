"""scripts/gke-bootstrap.sh: the dry-run plan, and real-mode runs against the stand-ins.

These tests check our script's logic, not Google Cloud. The dry run must print the plan
without calling anything. The real-mode runs put recording stand-ins for gcloud, kubectl,
gh and curl first on PATH (tests/scripts/stand-in.sh): gcloud keeps what was created, so a
second run sees the first one's work, which is enough to check the order of the steps, that
a re-run converges (creates nothing, updates what drifted), that no service-account key is
ever made, and that the provider only trusts this repository's release workflow. The fork
on GitHub is a local bare repository that git is pointed at. Whether Google Cloud accepts
the calls is outside what a test here can know; the command lines are at least checked
against the installed gcloud's own command tree (test_command_lines.py).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.scripts.support import (
    ARGS,
    BOOTSTRAP,
    EXTERNAL_IP,
    OWNER,
    OWNER_ID,
    PROJECT,
    PROJECT_NUMBER,
    REPO,
    REPO_ROOT,
    REPOSITORY_ID,
    TEARDOWN,
    Run,
    World,
    git,
    make_github_remote,
    make_world,
    require_upstream_install_manifest,
)
from tests.workflows.support import REPOSITORY_VARIABLES

# Module-scoped fixtures run once, so every test here shares one xdist worker.
pytestmark = pytest.mark.xdist_group("gke-bootstrap")

POOL_PREFIX = f"principalSet://iam.googleapis.com/projects/{PROJECT_NUMBER}/locations/global/workloadIdentityPools/github/"
WANTED_PRINCIPAL = f"{POOL_PREFIX}attribute.repository_id/{REPOSITORY_ID}"
WANTED_CONDITION = (
    f"assertion.repository_id=='{REPOSITORY_ID}' && assertion.repository_owner_id=='{OWNER_ID}'"
    " && assertion.ref=='refs/heads/main' && assertion.job_workflow_ref=="
    f"'{OWNER}/{REPO}/.github/workflows/release.yml@refs/heads/main'"
)


def dry_run(fakes: Path, *args: str) -> Run:
    world = make_world_in(fakes)
    return world.run(BOOTSTRAP, [*args, "--dry-run"])


_worlds: dict[Path, int] = {}


def make_world_in(base: Path) -> World:
    """A new, empty World under `base` (a module's temporary directory)."""
    _worlds[base] = _worlds.get(base, 0) + 1
    return make_world(base / f"world-{_worlds[base]}")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gke-bootstrap")


@pytest.fixture(scope="module")
def plan(base: Path) -> Run:
    run = dry_run(base, *ARGS)
    assert run.returncode == 0, run.stderr
    return run


@pytest.fixture(scope="module")
def world(base: Path) -> World:
    require_upstream_install_manifest()
    return make_world_in(base)


@pytest.fixture(scope="module")
def first_run(world: World) -> Run:
    run = world.run(BOOTSTRAP, ARGS)
    assert run.returncode == 0, run.stderr
    return run


@pytest.fixture(scope="module")
def second_run(world: World, first_run: Run) -> Run:
    run = world.run(BOOTSTRAP, ARGS)
    assert run.returncode == 0, run.stderr
    return run


def plan_lines(plan: Run) -> list[str]:
    return [
        line
        for line in plan.stdout.splitlines()
        if line.startswith(("gcloud ", "kubectl ", "test ", "scripts/"))
    ]


def first_line_with(lines: list[str], *needles: str) -> int:
    for position, line in enumerate(lines):
        if all(needle in line for needle in needles):
            return position
    raise AssertionError(f"no plan line with {needles}:\n" + "\n".join(lines))


def planned_commands(plan: Run) -> list[list[str]]:
    """The gcloud commands the plan would run to create or change something: the command
    after the last `||` of each line, or the whole line."""
    commands = []
    for line in plan_lines(plan):
        command = line.split(" || ")[-1]
        if command.startswith("gcloud "):
            commands.append(shlex.split(command)[1:])
    return commands


def flag(argv: list[str], name: str) -> str | None:
    return next((arg.split("=", 1)[1] for arg in argv if arg.startswith(f"--{name}=")), None)


def seed(world: World, group: str, name: str, **fields: str) -> None:
    """Put a resource into the stand-in project as if made by hand or an older version."""
    directory = world.state / group / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "state").write_text("ACTIVE\n")
    for field, value in fields.items():
        (directory / field).write_text(value)


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
        first_line_with(lines, "scripts/argocd-install.sh"),
        first_line_with(lines, "gcloud services enable", "compute.googleapis.com"),
        first_line_with(lines, "gcloud projects describe"),
        first_line_with(lines, "gcloud artifacts repositories create"),
        first_line_with(lines, "service-accounts create iris-nodes"),
        first_line_with(lines, "roles/container.defaultNodeServiceAccount"),
        first_line_with(lines, "roles/artifactregistry.reader"),
        first_line_with(lines, "gcloud container clusters create-auto"),
        first_line_with(lines, "gcloud compute addresses create"),
        first_line_with(lines, "gcloud iam workload-identity-pools create"),
        first_line_with(lines, "providers create-oidc"),
        first_line_with(lines, "providers update-oidc"),
        first_line_with(lines, "service-accounts create iris-release"),
        first_line_with(lines, "artifacts repositories add-iam-policy-binding", "writer"),
        first_line_with(lines, "iam service-accounts add-iam-policy-binding"),
        first_line_with(lines, "clusters get-credentials"),
        first_line_with(lines, "apply", "argocd-install.yaml"),
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
        if "update" in line.split():
            assert line.startswith('test "$('), line


def test_dry_run_needs_no_network_and_prints_what_it_would_read_as_placeholders(plan: Run) -> None:
    assert "'<project-number>'" not in plan.stdout  # placeholders appear in values, unquoted
    assert "projects/<project-number>/locations/global" in plan.stdout
    assert "assertion.repository_id=='\\''<repository-id>'\\''" in plan.stdout
    assert "assertion.repository_owner_id=='\\''<owner-id>'\\''" in plan.stdout
    assert f"gh api repos/{OWNER}/{REPO}" in plan.stdout


def test_dry_run_uses_ids_given_as_flags(base: Path) -> None:
    run = dry_run(base, *ARGS, "--github-repository-id", "42", "--github-owner-id", "7")
    assert run.returncode == 0, run.stderr
    assert "<repository-id>" not in run.stdout
    assert "attribute.repository_id/42" in run.stdout
    assert "assertion.repository_owner_id=='\\''7'\\''" in run.stdout


def test_dry_run_plan_installs_argocd_from_the_checked_render_with_server_side_apply(
    plan: Run,
) -> None:
    lines = plan_lines(plan)
    assert lines[0] == "scripts/argocd-install.sh --output argocd-install.yaml"
    apply = lines[first_line_with(lines, "apply", "argocd-install.yaml")].split()
    assert {"--server-side", "--force-conflicts", "-f"} <= set(apply)
    # Never straight from a URL: what is applied is what was checked.
    assert "raw.githubusercontent.com" not in plan.stdout


def test_dry_run_plan_grants_only_the_four_roles_and_one_project_role(plan: Run) -> None:
    text = plan.stdout
    assert "keys create" not in text
    roles = set(re.findall(r"--role=(roles/[A-Za-z.]+)", text))
    assert roles == {
        "roles/artifactregistry.writer",
        "roles/artifactregistry.reader",
        "roles/iam.workloadIdentityUser",
        "roles/container.defaultNodeServiceAccount",
    }
    project_roles = {
        flag(argv, "role")
        for argv in planned_commands(plan)
        if argv[:2] == ["projects", "add-iam-policy-binding"]
    }
    assert project_roles == {"roles/container.defaultNodeServiceAccount"}


def test_nodes_run_as_their_own_account_that_may_read_the_registry(plan: Run) -> None:
    """Blocker: new organisations give the Compute Engine default account no role, so nodes
    running as it get 403 on every image pull."""
    node_account = f"serviceAccount:iris-nodes@{PROJECT}.iam.gserviceaccount.com"
    commands = planned_commands(plan)
    create = next(argv for argv in commands if argv[:3] == ["container", "clusters", "create-auto"])
    assert flag(create, "service-account") == node_account.split(":", 1)[1]
    grants = {
        (argv[0], flag(argv, "role"))
        for argv in commands
        if "add-iam-policy-binding" in argv and flag(argv, "member") == node_account
    }
    assert grants == {
        ("projects", "roles/container.defaultNodeServiceAccount"),
        ("artifacts", "roles/artifactregistry.reader"),
    }


def test_standard_flag_creates_a_standard_cluster_with_dataplane_v2_and_the_node_account(
    base: Path,
) -> None:
    run = dry_run(base, *ARGS, "--standard")
    assert run.returncode == 0, run.stderr
    assert "create-auto" not in run.stdout
    create = next(a for a in planned_commands(run) if a[:3] == ["container", "clusters", "create"])
    assert "--enable-dataplane-v2" in create
    # The PodMonitoring and Rules in the overlays do nothing without managed collection.
    assert "--enable-managed-prometheus" in create
    assert flag(create, "service-account") == f"iris-nodes@{PROJECT}.iam.gserviceaccount.com"


def test_dry_run_prints_the_repository_variables_and_how_to_open_argocd(plan: Run) -> None:
    for name in REPOSITORY_VARIABLES:
        assert f"{name}=" in plan.stdout
    assert "port-forward service/argocd-server" in plan.stdout
    assert "argocd-initial-admin-secret" in plan.stdout


# --- every generated value within Google Cloud's documented limits ----------------------------

# gcloud's own --help (iam workload-identity-pools create, providers create-oidc, container
# clusters create) and the IAM API reference (CreateServiceAccountRequest.account_id,
# ServiceAccount.displayName / description).
ID_4_32 = re.compile(r"^(?!gcp-)[a-z0-9-]{4,32}$")
SA_ID = re.compile(r"^[a-z](?:[-a-z0-9]*[a-z0-9])?$")
RFC1035_63 = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
CLUSTER = re.compile(r"^[a-z](?:[-a-z0-9]{0,38}[a-z0-9])?$")
ATTRIBUTE_KEY = re.compile(r"^(?:google\.subject|attribute\.[a-z_0-9]{1,100})$")


def limit_problems(argv: list[str]) -> list[str]:
    """What in one planned gcloud command breaks a documented limit."""
    problems = []

    def check(ok: bool, what: str) -> None:
        if not ok:
            problems.append(f"{' '.join(argv[:4])}: {what}")

    display, description = flag(argv, "display-name"), flag(argv, "description")
    if argv[:3] == ["iam", "workload-identity-pools", "create"]:
        check(bool(ID_4_32.match(argv[3])), f"pool id {argv[3]!r}")
        check(display is None or len(display) <= 32, f"display name {display!r} over 32")
        check(description is None or len(description) <= 256, "description over 256")
    if argv[:3] == ["iam", "workload-identity-pools", "providers"] and argv[3].endswith("-oidc"):
        check(bool(ID_4_32.match(argv[4])), f"provider id {argv[4]!r}")
        check(display is None or len(display) <= 32, f"display name {display!r} over 32")
        check(description is None or len(description) <= 256, "description over 256")
        condition = flag(argv, "attribute-condition") or ""
        check(len(condition) <= 4096, "condition over 4096")
        for pair in (flag(argv, "attribute-mapping") or "").split(","):
            key, _, expression = pair.partition("=")
            check(bool(ATTRIBUTE_KEY.match(key)), f"mapping key {key!r}")
            check(len(expression) <= 2048, f"mapping of {key} over 2048")
    if argv[:3] == ["iam", "service-accounts", "create"]:
        check(bool(SA_ID.match(argv[3])) and 6 <= len(argv[3]) <= 30, f"account id {argv[3]!r}")
        check(display is None or len(display) <= 100, "display name over 100")
        check(description is None or len(description) <= 256, "description over 256")
    if argv[:2] == ["container", "clusters"] and argv[2] in {"create", "create-auto"}:
        check(bool(CLUSTER.match(argv[3])), f"cluster name {argv[3]!r}")
    if argv[:3] == ["compute", "addresses", "create"]:
        check(bool(RFC1035_63.match(argv[3])), f"address name {argv[3]!r}")
    if argv[:3] == ["artifacts", "repositories", "create"]:
        check(bool(RFC1035_63.match(argv[3])), f"repository name {argv[3]!r}")
    return problems


def subject_for(mapping: str, claims: dict[str, str]) -> str:
    """google.subject as the provider maps it: the mapping's CEL is `'text'+assertion.x+...`."""
    expression = next(p.split("=", 1)[1] for p in mapping.split(",") if p.startswith("google."))
    parts = []
    for term in expression.split("+"):
        if term.startswith("'") and term.endswith("'"):
            parts.append(term[1:-1])
        else:
            assert term.startswith("assertion."), expression
            parts.append(claims[term.removeprefix("assertion.")])
    return "".join(parts)


LONG_OWNER = "a" * 39  # GitHub's longest user or organisation name
LONG_REPO = "r" * 100  # and longest repository name

NAME_TABLE = [
    ("acme-platform-team", "iris-gitops"),
    (LONG_OWNER, LONG_REPO),
    (LONG_OWNER, "iris-gitops"),
    ("x", "y"),
    ("Acme-Co", "Iris.GitOps_v2"),
    ("0rg-with-digits-123", "a.b-c_d"),
]


@pytest.mark.parametrize(
    ("owner", "repo"), NAME_TABLE, ids=[f"{o[:12]}/{r[:12]}" for o, r in NAME_TABLE]
)
def test_every_generated_value_is_within_googles_documented_limits(
    base: Path, owner: str, repo: str
) -> None:
    run = dry_run(base, "--project", PROJECT, "--github-owner", owner, "--github-repo", repo)
    assert run.returncode == 0, run.stderr
    commands = planned_commands(run)
    assert len(commands) > 15
    problems = [problem for argv in commands for problem in limit_problems(argv)]
    assert problems == []
    # GitHub's own `sub` claim for such a repository would not fit google.subject (127 bytes).
    create = next(a for a in commands if "create-oidc" in a)
    claims = {"repository_id": "9" * 12, "ref": "refs/heads/main", "sub": f"repo:{owner}/{repo}"}
    assert len(subject_for(flag(create, "attribute-mapping") or "", claims).encode()) <= 127


def test_the_limit_check_catches_the_display_name_the_script_used_to_generate() -> None:
    argv = ["iam", "workload-identity-pools", "providers", "create-oidc", "github-actions"]
    old = "--display-name=GitHub acme-platform-team/iris-gitops"
    assert limit_problems([*argv, old]) != []


INVALID = [
    (["--github-owner", "a" * 40], "GitHub owner"),
    (["--github-owner", "-acme"], "GitHub owner"),
    (["--github-owner", "acme_co"], "GitHub owner"),
    (["--github-owner", OWNER, "--github-repo", "r" * 101], "GitHub repository"),
    (["--github-owner", OWNER, "--github-repo", ".."], "GitHub repository"),
    (["--github-owner", OWNER, "--github-repo", "iris gitops"], "GitHub repository"),
    (["--github-owner", OWNER, "--cluster", "Iris"], "Cluster name"),
    (["--github-owner", OWNER, "--cluster", "c" * 41], "Cluster name"),
    (["--github-owner", OWNER, "--registry", "iris_images"], "Artifact Registry repository"),
    (["--github-owner", OWNER, "--github-repository-id", "12"], "give both"),
    (
        ["--github-owner", OWNER, "--github-repository-id", "x", "--github-owner-id", "1"],
        "GitHub ids",
    ),
]


@pytest.mark.parametrize(
    ("args", "message"), INVALID, ids=[m + str(i) for i, (_, m) in enumerate(INVALID)]
)
def test_names_google_or_github_would_refuse_are_refused_before_anything_runs(
    base: Path, args: list[str], message: str
) -> None:
    dry_run(base, "--project", PROJECT, *args).assert_refused(message)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WIF_POOL", "gcp-github"),
        ("WIF_POOL", "gh"),
        ("WIF_PROVIDER_ID", "p" * 33),
        ("DEPLOY_SA_NAME", "short"),
        ("NODE_SA_NAME", "n" * 31),
        ("PRODUCTION_ADDRESS", "Iris-IP"),
    ],
)
def test_environment_names_outside_the_limits_are_refused(
    base: Path, variable: str, value: str
) -> None:
    world = make_world_in(base)
    run = world.run(BOOTSTRAP, [*ARGS, "--dry-run"], **{variable: value})
    run.assert_refused("is not valid")
    assert run.calls == []


def test_unknown_option_is_refused_before_anything_runs(base: Path) -> None:
    dry_run(base, *ARGS, "--zone", "x").assert_refused("unknown option: --zone")


def test_missing_project_is_refused_with_the_fix(base: Path) -> None:
    dry_run(base, "--github-owner", OWNER).assert_refused("--project")


# --- real mode against the stand-ins ------------------------------------------------------------


def test_first_run_creates_everything_in_order(first_run: Run) -> None:
    first_run.assert_in_order(
        ("curl",),
        ("services", "enable"),
        ("repositories", "create"),
        ("service-accounts", "create", "iris-nodes"),
        ("clusters", "create-auto"),
        ("addresses", "create"),
        ("workload-identity-pools", "create"),
        ("providers", "create-oidc"),
        ("service-accounts", "create", "iris-release"),
        ("repositories", "add-iam-policy-binding", "--role=roles/artifactregistry.writer"),
        ("service-accounts", "add-iam-policy-binding"),
        ("get-credentials",),
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
        if group == ["monitoring", "dashboards"]:
            # The API names a dashboard; it is found by display name (test_gke_dashboard.py).
            assert any(earlier[:3] == [*group, "list"] for earlier in gcloud[:position]), call
            continue
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


def test_second_run_changes_nothing_that_is_already_as_wanted(second_run: Run) -> None:
    assert second_run.mutating() == [], second_run.render_calls()
    assert not [call for call in second_run.kubectl() if "create" in call]


def test_no_service_account_key_is_ever_created(first_run: Run, second_run: Run) -> None:
    for run in (first_run, second_run):
        for call in run.gcloud():
            assert "keys" not in call, " ".join(call)


def test_provider_trusts_only_the_release_workflow_of_this_repository_by_id(
    first_run: Run,
) -> None:
    create = next(call for call in first_run.gcloud() if "create-oidc" in call)
    assert flag(create, "attribute-condition") == WANTED_CONDITION
    mapping = dict(
        pair.split("=", 1) for pair in (flag(create, "attribute-mapping") or "").split(",")
    )
    for claim in ("repository_id", "repository_owner_id", "job_workflow_ref"):
        assert mapping[f"attribute.{claim}"] == f"assertion.{claim}"
    assert "assertion.sub" not in mapping.values()


def test_release_account_is_usable_only_by_the_repository_id_principal(first_run: Run) -> None:
    binding = next(
        call
        for call in first_run.gcloud()
        if "service-accounts" in call and "add-iam-policy-binding" in call
    )
    assert flag(binding, "member") == WANTED_PRINCIPAL
    assert flag(binding, "role") == "roles/iam.workloadIdentityUser"


def test_the_pinned_workflow_is_the_one_that_authenticates_to_google_cloud() -> None:
    """job_workflow_ref names the file of the job that asks for the token."""
    text = (REPO_ROOT / "scripts" / "gke-bootstrap.sh").read_text(encoding="utf-8")
    workflow = re.search(r'RELEASE_WORKFLOW="\$\{RELEASE_WORKFLOW:-([^}]+)\}"', text)
    assert workflow, "the release workflow is not set from one variable"
    path = REPO_ROOT / ".github" / "workflows" / workflow.group(1)
    assert "google-github-actions/auth@" in path.read_text(encoding="utf-8")
    others = [
        p.name
        for p in (REPO_ROOT / ".github" / "workflows").glob("*.y*ml")
        if p != path and "workload_identity_provider" in p.read_text(encoding="utf-8")
    ]
    assert others == [], (
        f"these workflows ask for Google Cloud tokens the provider refuses: {others}"
    )


def test_every_kubectl_call_names_the_cluster_context(first_run: Run) -> None:
    context = f"--context=gke_{PROJECT}_europe-west1_iris"
    assert first_run.kubectl()
    for call in first_run.kubectl():
        assert call[0] == context, " ".join(call)


def test_run_ends_with_the_production_address_and_a_curl(first_run: Run) -> None:
    assert f"curl -s http://{EXTERNAL_IP}/predict" in first_run.stdout


def test_gh_is_asked_for_the_ids_and_flags_make_it_unnecessary(base: Path, first_run: Run) -> None:
    assert any(call[:3] == ["gh", "api", f"repos/{OWNER}/{REPO}"] for call in first_run.calls)
    world = make_world_in(base)
    run = world.run(
        BOOTSTRAP,
        [*ARGS, "--github-repository-id", REPOSITORY_ID, "--github-owner-id", OWNER_ID],
        FAKE_GH="fail",
    )
    assert run.returncode == 0, run.stderr
    assert not [call for call in run.calls if call[0] == "gh"]


def test_unreadable_repository_on_github_is_refused_with_the_flags_to_use(base: Path) -> None:
    world = make_world_in(base)
    world.run(BOOTSTRAP, ARGS, FAKE_GH="fail").assert_refused("--github-repository-id")


def test_a_renamed_repository_is_refused_with_its_new_name(base: Path) -> None:
    world = make_world_in(base)
    run = world.run(BOOTSTRAP, ARGS, FAKE_GH=f"{REPOSITORY_ID} {OWNER_ID} new-owner/{REPO}")
    run.assert_refused(f"--github-owner new-owner --github-repo {REPO}")


# --- blocker: drift is repaired, a re-run converges ------------------------------------------


def test_existing_provider_with_an_old_condition_is_updated_and_stale_access_removed(
    base: Path,
) -> None:
    require_upstream_install_manifest()
    world = make_world_in(base)
    old_condition = f"assertion.repository=='{OWNER}/{REPO}' && assertion.ref=='refs/heads/main'"
    old_mapping = "google.subject=assertion.sub,attribute.repository=assertion.repository"
    seed(world, "iam_workload-identity-pools", "github")
    seed(
        world,
        "iam_workload-identity-pools_providers",
        "github-actions",
        condition=old_condition,
        mapping=old_mapping,
    )
    # A repository made without immutable tags, and the name-based principal the script
    # used to bind.
    seed(world, "artifacts_repositories", "iris")
    seed(world, "iam_service-accounts", "iris-release")
    old_principal = f"{POOL_PREFIX}attribute.repository/{OWNER}/{REPO}"
    (world.state / "iam_service-accounts" / "iris-release.bindings").write_text(
        f"roles/iam.workloadIdentityUser {old_principal}\n"
        "roles/iam.workloadIdentityUser user:someone@example.com\n"
    )

    run = world.run(BOOTSTRAP, ARGS)
    assert run.returncode == 0, run.stderr
    updates = [call for call in run.gcloud() if "update-oidc" in call]
    assert len(updates) == 1, run.render_calls()
    assert flag(updates[0], "attribute-condition") == WANTED_CONDITION
    assert [c for c in run.gcloud() if c[:3] == ["artifacts", "repositories", "update"]]
    removed = [call for call in run.gcloud() if "remove-iam-policy-binding" in call]
    assert [flag(call, "member") for call in removed] == [old_principal]
    assert not [call for call in run.gcloud() if "create-oidc" in call]

    again = world.run(BOOTSTRAP, ARGS)
    assert again.returncode == 0, again.stderr
    assert again.mutating() == [], again.render_calls()


def test_a_run_with_changed_inputs_converges_to_them(base: Path) -> None:
    """The repository re-created on GitHub (new id): the provider and the binding follow."""
    require_upstream_install_manifest()
    world = make_world_in(base)
    assert world.run(BOOTSTRAP, ARGS).returncode == 0
    changed = world.run(BOOTSTRAP, ARGS, FAKE_GH=f"555 {OWNER_ID} {OWNER}/{REPO}")
    assert changed.returncode == 0, changed.stderr
    update = next(call for call in changed.gcloud() if "update-oidc" in call)
    assert "assertion.repository_id=='555'" in (flag(update, "attribute-condition") or "")
    added = next(
        c for c in changed.gcloud() if "service-accounts" in c and "add-iam-policy-binding" in c
    )
    assert flag(added, "member") == f"{POOL_PREFIX}attribute.repository_id/555"
    removed = next(c for c in changed.gcloud() if "remove-iam-policy-binding" in c)
    assert flag(removed, "member") == WANTED_PRINCIPAL
    settled = world.run(BOOTSTRAP, ARGS, FAKE_GH=f"555 {OWNER_ID} {OWNER}/{REPO}")
    assert settled.mutating() == [], settled.render_calls()


def test_after_a_teardown_the_soft_deleted_pool_and_provider_are_undeleted(base: Path) -> None:
    require_upstream_install_manifest()
    world = make_world_in(base)
    assert world.run(BOOTSTRAP, ARGS).returncode == 0
    assert world.run(TEARDOWN, [*ARGS, "--yes"]).returncode == 0
    run = world.run(BOOTSTRAP, ARGS)
    assert run.returncode == 0, run.stderr
    undeletes = [call for call in run.gcloud() if "undelete" in call]
    assert len(undeletes) == 2, run.render_calls()
    assert not [
        c
        for c in run.gcloud()
        if "create-oidc" in c or c[:3] == ["iam", "workload-identity-pools", "create"]
    ]


# --- refusals before anything is created ------------------------------------------------------


def tampered_copy(directory: Path) -> Path:
    original = require_upstream_install_manifest()
    tampered = directory / "install.yaml"
    text = original.read_text(encoding="utf-8")
    tampered.write_text(
        text.replace("quay.io/argoproj/argocd:v3.5.1", "quay.io/evil/argocd:v3.5.1", 1)
    )
    return tampered


def test_a_tampered_argocd_download_stops_the_bootstrap_before_anything_is_created(
    base: Path,
) -> None:
    world = make_world_in(base)
    run = world.run(BOOTSTRAP, ARGS, FAKE_CURL_FILE=str(tampered_copy(world.root)))
    run.assert_refused("checksum mismatch")
    assert run.gcloud() == []
    assert run.kubectl() == []


def test_a_tampered_local_argocd_manifest_is_refused_too(base: Path) -> None:
    world = make_world_in(base)
    run = world.run(BOOTSTRAP, [*ARGS, "--argocd-manifest", str(tampered_copy(world.root))])
    run.assert_refused("none of those pinned")
    assert run.gcloud() == []
    assert run.kubectl() == []


def test_a_good_local_argocd_manifest_needs_no_download(base: Path) -> None:
    world = make_world_in(base)
    manifest = require_upstream_install_manifest()
    run = world.run(BOOTSTRAP, [*ARGS, "--argocd-manifest", str(manifest)], FAKE_CURL_FILE="")
    assert run.returncode == 0, run.stderr
    assert not [call for call in run.calls if call[0] == "curl"]


def test_real_run_refuses_when_this_copy_points_argocd_at_another_repository(base: Path) -> None:
    world = make_world_in(base)
    run = world.run(BOOTSTRAP, ["--project", PROJECT, "--github-owner", "someone-else"])
    run.assert_refused("scripts/gitops.sh set-repo https://github.com/someone-else/")
    assert run.calls == []


def test_real_run_refuses_when_main_on_github_points_argocd_elsewhere(base: Path) -> None:
    """This copy names the fork, but GitHub's main does not (never pushed): Argo CD would
    read GitHub's main, so nothing is created."""
    remote = make_github_remote(
        base / "stale-fork", repo_url="https://github.com/elsewhere/iris-gitops.git"
    )
    world = make_world(base / "stale-world", remote=remote)
    run = world.run(BOOTSTRAP, ARGS)
    run.assert_refused("on GitHub, argocd/")
    assert f"scripts/gitops.sh set-repo https://github.com/{OWNER}/{REPO}.git" in run.stderr
    assert "git push origin main" in run.stderr
    assert run.gcloud() == []


def test_a_fork_that_is_not_on_github_yet_is_refused_with_the_push_command(base: Path) -> None:
    world = make_world_in(base)
    missing = world.root / "missing.git"
    run = world.run(BOOTSTRAP, ARGS, GIT_CONFIG_KEY_0=f"url.{missing.as_uri()}.insteadOf")
    run.assert_refused("could not fetch main")
    assert "git push origin main" in run.stderr


def test_a_fork_on_github_without_the_argocd_manifests_is_refused(base: Path) -> None:
    work = base / "empty-fork" / "work"
    work.mkdir(parents=True)
    (work / "README.md").write_text("a fork that never got this project\n")
    git("init", "--quiet", "--initial-branch=main", cwd=work)
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "empty", cwd=work)
    bare = base / "empty-fork" / "remote.git"
    git("clone", "--quiet", "--bare", work, bare, cwd=base)
    run = make_world(base / "empty-world", remote=bare).run(BOOTSTRAP, ARGS)
    run.assert_refused("has no argocd/ directory")
    assert run.gcloud() == []


def test_a_binding_refused_for_a_just_created_service_account_is_retried(base: Path) -> None:
    require_upstream_install_manifest()
    world = make_world_in(base)
    run = world.run(
        BOOTSTRAP,
        ARGS,
        FAKE_FAIL_FIRST="service-accounts add-iam-policy-binding",
        BIND_RETRY_SECONDS="0",
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


def test_an_existing_cluster_with_another_node_account_gets_a_warning_with_the_fix(
    base: Path,
) -> None:
    require_upstream_install_manifest()
    world = make_world_in(base)
    seed(
        world,
        "container_clusters",
        "iris",
        **{"service-account": "123-compute@developer.gserviceaccount.com"},
    )
    run = world.run(BOOTSTRAP, ARGS)
    assert run.returncode == 0, run.stderr
    assert "runs its nodes as '123-compute@developer.gserviceaccount.com" in run.stderr
    assert "ErrImagePull 403" in run.stderr


def test_the_production_service_asks_for_the_address_the_bootstrap_reserves(plan: Run) -> None:
    patch = yaml.safe_load(
        (REPO_ROOT / "deploy/overlays/production/service.patch.yaml").read_text(encoding="utf-8")
    )
    name = patch["metadata"]["annotations"]["networking.gke.io/load-balancer-ip-addresses"]
    create = next(a for a in planned_commands(plan) if a[:3] == ["compute", "addresses", "create"])
    assert create[3] == name
    assert flag(create, "region") == "europe-west1"
