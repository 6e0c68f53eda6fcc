"""What the workflows must always do, read from their YAML.

The linters check that the files are valid; these tests check the delivery design: what
triggers a release, who may write what, how actions are pinned, that no key exists
anywhere, and that the image reference reaches git only through the bump script.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.workflows.support import (
    PINNED_ACTIONS,
    REPO_ROOT,
    REPOSITORY_VARIABLES,
    USES_LINE,
    WORKFLOW_DIR,
    WORKFLOW_NAMES,
    all_workflows,
    github_glob_matches,
    workflow,
)

# The exact permissions of every job. A job that needs more must change this table, in
# review, with the reason beside it in the workflow.
JOB_PERMISSIONS = {
    ("ci", "lint"): {"contents": "read"},
    ("ci", "test"): {"contents": "read"},
    ("ci", "manifests"): {"contents": "read"},
    ("ci", "image"): {"contents": "read"},
    ("release", "ci"): {"contents": "read"},
    ("release", "image"): {"contents": "read", "id-token": "write", "attestations": "write"},
    # Pushes with the GitHub App's token, never with GITHUB_TOKEN.
    ("release", "bump"): {"contents": "read"},
    # The checkout only: the branch, the pull request and the statuses use the App's token.
    ("promote", "promote"): {"contents": "read"},
    ("e2e", "kind"): {"contents": "read"},
    # The one rendered-diff comment per pull request.
    ("diff", "diff"): {"contents": "read", "pull-requests": "write"},
}

# Files that change the image (release must run) and files that must never start a release.
IMAGE_INPUTS = [
    "Dockerfile",
    "requirements/train.lock",
    "requirements/serve.lock",
    "model/train.py",
    "model/artifact.py",
    "service/app.py",
    "data/v2/data.csv",
]
GITOPS_STATE = [
    "deploy/release/kustomization.yaml",
    "deploy/release/release.yaml",
    "deploy/overlays/staging/kustomization.yaml",
    "deploy/overlays/production/kustomization.yaml",
    "deploy/base/deployment.yaml",
    "argocd/root.yaml",
    "argocd/apps/staging.yaml",
]

WORKFLOWS = pytest.mark.parametrize("name", WORKFLOW_NAMES)


def test_the_workflow_directory_holds_exactly_these_workflows() -> None:
    found = sorted(path.stem for path in WORKFLOW_DIR.glob("*.y*ml"))
    assert found == sorted(WORKFLOW_NAMES)


# --- permissions ---------------------------------------------------------------------------------


@WORKFLOWS
def test_top_level_permissions_are_empty(name: str) -> None:
    assert workflow(name).data.get("permissions") == {}


def test_every_job_has_exactly_its_listed_permissions() -> None:
    actual = {
        (wf.name, job_id): job.get("permissions")
        for wf in all_workflows()
        for job_id, job in wf.jobs.items()
    }
    assert actual == JOB_PERMISSIONS


def test_only_the_release_image_job_may_request_an_oidc_token() -> None:
    holders = [key for key, permissions in JOB_PERMISSIONS.items() if "id-token" in permissions]
    assert holders == [("release", "image")]


# --- action pins ---------------------------------------------------------------------------------


def uses_lines() -> list[tuple[str, str, str]]:
    """(workflow, reference, rest of the line) for every `uses:`."""
    found = []
    for wf in all_workflows():
        for line in wf.text.splitlines():
            match = USES_LINE.match(line)
            # ./.github/workflows/*.yml runs the file of the same commit: nothing to pin.
            if match and not match.group("ref").startswith("./"):
                found.append((wf.name, match.group("ref"), match.group("rest")))
    return found


def test_every_action_is_pinned_to_a_full_commit_sha_with_its_version() -> None:
    assert uses_lines()
    for name, ref, rest in uses_lines():
        action, _, sha = ref.partition("@")
        assert re.fullmatch(r"[0-9a-f]{40}", sha), f"{name}: {ref} is not pinned to a commit SHA"
        assert action in PINNED_ACTIONS, f"{name}: {action} is not in the verified list"
        version, verified_sha = PINNED_ACTIONS[action]
        assert sha == verified_sha, f"{name}: {action}@{sha} is not the verified {version} commit"
        assert re.fullmatch(rf"\s*#\s*{re.escape(version)}\s*", rest), (
            f"{name}: {ref} must carry the comment '# {version}'"
        )


def test_every_action_step_is_one_the_text_scan_saw() -> None:
    """The line scan above and the parsed YAML agree on how many actions are used."""
    parsed = [step["uses"] for wf in all_workflows() for _, step in wf.steps() if "uses" in step]
    parsed = [ref for ref in parsed if not ref.startswith("./")]
    assert len(parsed) == len(uses_lines())


def test_no_docker_or_third_party_action_builds_or_pushes() -> None:
    # docker build/push run as plain commands; fewer third-party actions, less to trust.
    actions = {ref.partition("@")[0] for _, ref, _ in uses_lines()}
    assert not {a for a in actions if a.startswith("docker/")}


# --- triggers ------------------------------------------------------------------------------------


def release_paths() -> list[str]:
    push = workflow("release").triggers["push"]
    assert push["branches"] == ["main"]
    assert "paths-ignore" not in push, "use paths (an allow-list), so deploy/** can never match"
    paths = push["paths"]
    assert isinstance(paths, list)
    return paths


def test_release_paths_never_match_the_gitops_state() -> None:
    for path in GITOPS_STATE:
        matching = [p for p in release_paths() if github_glob_matches(p, path)]
        assert matching == [], f"{path} would start a release via {matching}"
    assert not [p for p in release_paths() if p.startswith("!")]


def test_release_paths_match_everything_that_goes_into_the_image() -> None:
    for path in IMAGE_INPUTS:
        assert any(github_glob_matches(p, path) for p in release_paths()), path


def test_release_runs_only_for_main_and_by_hand() -> None:
    assert set(workflow("release").triggers) == {"push", "workflow_dispatch"}


def test_e2e_runs_on_pull_requests_touching_deploy_argocd_or_the_service() -> None:
    triggers = workflow("e2e").triggers
    assert "workflow_dispatch" in triggers
    paths = triggers["pull_request"]["paths"]
    for path in (
        "deploy/overlays/staging/kustomization.yaml",
        "argocd/root.yaml",
        "service/app.py",
    ):
        assert any(github_glob_matches(p, path) for p in paths), path


def test_promote_is_dispatched_with_staging_to_production_by_default() -> None:
    inputs = workflow("promote").triggers["workflow_dispatch"]["inputs"]
    assert inputs["from"]["default"] == "staging"
    assert inputs["to"]["default"] == "production"
    assert set(workflow("promote").triggers) == {"workflow_dispatch"}


# --- concurrency ---------------------------------------------------------------------------------


def test_release_runs_one_at_a_time_and_never_cancels() -> None:
    concurrency = workflow("release").data["concurrency"]
    assert concurrency["cancel-in-progress"] is False
    # A fixed group: every release waits for the one before it.
    assert "${{" not in concurrency["group"]


def test_promote_never_cancels_a_running_promotion() -> None:
    assert workflow("promote").data["concurrency"]["cancel-in-progress"] is False


@WORKFLOWS
def test_every_workflow_sets_concurrency_and_every_job_a_timeout(name: str) -> None:
    wf = workflow(name)
    assert "group" in wf.data["concurrency"]
    for job_id, job in wf.jobs.items():
        if "uses" in job:
            continue  # a call of another workflow; its jobs carry their own timeouts
        assert isinstance(job.get("timeout-minutes"), int), f"{name}.{job_id} has no timeout"


# --- credentials ---------------------------------------------------------------------------------


def test_no_workflow_holds_a_key_or_a_credentials_file() -> None:
    for wf in all_workflows():
        for needle in (
            "credentials_json",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "keys create",
            "_KEY_JSON",
        ):
            assert needle not in wf.text, f"{wf.name} mentions {needle}"


def test_the_only_secret_is_the_github_app_key() -> None:
    secrets = {
        (wf.name, match)
        for wf in all_workflows()
        for match in re.findall(r"secrets\.([A-Za-z0-9_]+)", wf.text)
    }
    assert secrets == {
        ("promote", "GITOPS_APP_PRIVATE_KEY"),
        ("release", "GITOPS_APP_PRIVATE_KEY"),
    }


def test_release_authenticates_with_workload_identity_from_repository_variables() -> None:
    auth = [
        step
        for _, step in workflow("release").steps()
        if step.get("uses", "").startswith("google-github-actions/auth@")
    ]
    assert len(auth) == 1
    assert auth[0]["with"] == {
        "workload_identity_provider": "${{ vars.WIF_PROVIDER }}",
        "service_account": "${{ vars.WIF_SERVICE_ACCOUNT }}",
        "token_format": "access_token",
        "create_credentials_file": False,
    }
    used = set(re.findall(r"vars\.([A-Z_]+)", workflow("release").text))
    assert used == {*REPOSITORY_VARIABLES, "GITOPS_APP_CLIENT_ID"}


def test_no_checkout_keeps_a_token() -> None:
    # The jobs that push hand the App's token to the push alone (gitops.writeback).
    for wf in all_workflows():
        for job_id, step in wf.steps():
            if not step.get("uses", "").startswith("actions/checkout@"):
                continue
            persist = step.get("with", {}).get("persist-credentials")
            assert persist is False, f"{wf.name}.{job_id}: {persist}"


# --- release: image, digest, bump ----------------------------------------------------------------


def test_release_tags_the_image_with_the_commit_and_reads_the_pushed_digest() -> None:
    text = "\n".join(workflow("release").runs())
    assert "IMAGE_TAG=sha-${GITHUB_SHA::12}" in text
    assert 'docker push "${IMAGE_NAME}:${IMAGE_TAG}"' in text
    assert "RepoDigests" in text
    assert 'echo "digest=${digest}" >> "$GITHUB_OUTPUT"' in text


def test_the_bump_calls_the_bump_script_and_never_edits_files_itself() -> None:
    bump_runs = [step["run"] for _, step in workflow("release").steps() if "run" in step]
    assert any(run.strip() == 'scripts/release/bump-staging.sh "$IMAGE_REF"' for run in bump_runs)
    for wf in all_workflows():
        for run in wf.runs():
            for editor in ("sed ", "yq ", "kustomize edit", "perl -", "awk "):
                assert editor not in run, f"{wf.name} edits files with {editor.strip()}: {run}"


def test_the_bump_job_gets_the_reference_from_the_image_job() -> None:
    bump = workflow("release").jobs["bump"]
    assert bump["needs"] == "image"
    step = next(s for s in bump["steps"] if "bump-staging.sh" in s.get("run", ""))
    assert step["env"]["IMAGE_REF"] == "${{ needs.image.outputs.ref }}"


def test_release_attests_the_pushed_digest() -> None:
    attest = [
        s for _, s in workflow("release").steps() if s.get("uses", "").startswith("actions/attest@")
    ]
    assert len(attest) == 1
    assert attest[0]["with"]["subject-digest"] == "${{ steps.push.outputs.digest }}"


def test_ci_builds_and_smoke_tests_the_image_but_never_pushes() -> None:
    text = "\n".join(workflow("ci").runs())
    image_runs = [step.get("run", "") for step in workflow("ci").jobs["image"]["steps"]]
    assert [run for run in image_runs if run.startswith("make image-test ")], image_runs
    # With the Dockerfile's own base: nothing in CI swaps in the substitute.
    assert "PYTHON_IMAGE" not in text
    # The target builds and then runs the smoke test on what it built.
    dry_run = subprocess.run(
        ["make", "--no-print-directory", "-n", "image-test", "IMAGE=iris-api:ci"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "docker build " in dry_run
    assert "--tag iris-api:ci ." in dry_run
    assert dry_run.index("docker build ") < dry_run.index("scripts/smoke-container.sh iris-api:ci")
    assert "docker push" not in text + dry_run
    for command in (
        "make lint",
        "make test",
        "kubernetes-validate --strict --kubernetes-version 1.34.0",
    ):
        assert command in text


def test_ci_runs_the_argocd_schema_tests_instead_of_skipping_them() -> None:
    # tests/argocd skips without the CRDs; CI fetches the pinned ones before `make test`.
    steps = workflow("ci").jobs["test"]["steps"]
    runs = [step.get("run", "") for step in steps]
    (fetch,) = [i for i, run in enumerate(runs) if "scripts/fetch-argocd-crds.sh" in run]
    (test,) = [i for i, run in enumerate(runs) if run.strip() == "make test"]
    assert fetch < test
    assert 'echo "ARGOCD_CRDS_DIR=' in runs[fetch]
    assert '>> "$GITHUB_ENV"' in runs[fetch]


def test_ci_installs_the_pinned_promtool_before_the_tests_so_rule_tests_run() -> None:
    steps = workflow("ci").jobs["test"]["steps"]
    runs = [step.get("run", "") for step in steps]
    (install,) = [i for i, run in enumerate(runs) if "scripts/install-promtool.sh" in run]
    (test,) = [i for i, run in enumerate(runs) if run.strip() == "make test"]
    assert install < test
    assert '>> "$GITHUB_PATH"' in runs[install]
    text = (REPO_ROOT / "scripts" / "install-promtool.sh").read_text(encoding="utf-8")
    assert 'readonly PROMETHEUS_VERSION="2.53.4"' in text
    # sha256 of prometheus-2.53.4.linux-amd64.tar.gz as published with the release.
    assert "sha256=b8b497c4610d1b93208252b60c8f20f6b2e78596ae8df43397a2e805aa53d475" in text


def test_promote_is_one_gitops_command_with_the_workflow_inputs() -> None:
    steps = workflow("promote").jobs["promote"]["steps"]
    last = steps[-1]
    assert shlex.split(last["run"]) == [
        "python",
        "-m",
        "gitops",
        "promote",
        "$FROM_ENV",
        "$TO_ENV",
        "--pull-request",
        "--soak",
        "$SOAK",
        "${FORCE:+--force}",
    ]
    assert last["env"]["FORCE"] == "${{ inputs.force && 'yes' || '' }}"
    assert last["env"]["SOAK"] == "${{ inputs.soak }}"
    assert last["env"]["GITOPS_KUSTOMIZE"] == "kustomize build"
    assert last["env"]["GITOPS_BRANCH"] == "${{ github.event.repository.default_branch }}"
    # No gh, no git, no curl: the tool pushes and talks to GitHub itself.
    text = "\n".join(workflow("promote").runs())
    for tool in ("gh ", "git ", "curl ", "jq "):
        assert tool not in text, tool
    inputs = workflow("promote").triggers["workflow_dispatch"]["inputs"]
    assert inputs["force"] == {
        "description": inputs["force"]["description"],
        "type": "boolean",
        "default": False,
    }
    assert inputs["soak"]["default"] == "10m"


def test_diff_runs_on_pull_requests_touching_deploy_argocd_or_the_image_inputs() -> None:
    paths = workflow("diff").triggers["pull_request"]["paths"]
    for path in (*GITOPS_STATE, *IMAGE_INPUTS, "gitops/diff.py"):
        assert any(github_glob_matches(p, path) for p in paths), path
    assert set(workflow("diff").triggers) == {"pull_request"}


def test_diff_renders_with_the_tool_and_keeps_one_comment_per_pull_request() -> None:
    wf = workflow("diff")
    text = "\n".join(wf.runs())
    assert "-m gitops diff --base HEAD^1 --head HEAD --markdown" in text
    assert '>> "$GITHUB_STEP_SUMMARY"' in text
    # Sticky: find the comment by the marker the tool writes first, edit it, else create one.
    assert "startswith" in text
    assert "--method PATCH" in text
    assert "--method POST" in text
    (comment,) = [s for _, s in wf.steps() if "--method PATCH" in s.get("run", "")]
    # Forks get a read-only token: summary only.
    assert comment["if"] == "${{ env.FROM_FORK == 'false' }}"
    assert (
        wf.jobs["diff"]["env"]["FROM_FORK"]
        == "${{ github.event.pull_request.head.repo.full_name != github.repository }}"
    )
    checkout = [s for _, s in wf.steps() if s.get("uses", "").startswith("actions/checkout@")]
    assert checkout[0]["with"]["fetch-depth"] == 0


# --- kustomize and the kind loop -----------------------------------------------------------------


def test_every_job_that_renders_with_kustomize_installs_5_8_1_first() -> None:
    for wf in all_workflows():
        for job_id, job in wf.jobs.items():
            installed = False
            for step in job.get("steps", []):
                text = step.get("run", "") + " ".join(str(v) for v in step.get("env", {}).values())
                if "scripts/install-kustomize.sh" in text:
                    installed = True
                elif "kustomize build" in text or "make test" in text:
                    assert installed, (
                        f"{wf.name}.{job_id} renders before installing kustomize 5.8.1"
                    )


def test_install_kustomize_pins_5_8_1_with_a_checksum_per_platform() -> None:
    text = (REPO_ROOT / "scripts" / "install-kustomize.sh").read_text(encoding="utf-8")
    assert 'readonly KUSTOMIZE_VERSION="5.8.1"' in text
    sums = dict(re.findall(r"platform=(\w+) sha256=([0-9a-f]{64})", text))
    assert set(sums) == {"linux_amd64", "linux_arm64", "darwin_amd64", "darwin_arm64"}
    # As published in the release's checksums.txt (and pinned by Argo CD v3.5.1).
    assert sums["linux_amd64"] == "029a7f0f4e1932c52a0476cf02a0fd855c0bb85694b82c338fc648dcb53a819d"


def test_argocd_is_installed_from_the_v3_5_1_manifest_everywhere() -> None:
    # The kind loop names the commit of the v3.5.1 tag, with the manifest's sha256.
    text = (REPO_ROOT / "scripts/kind/lib.sh").read_text(encoding="utf-8")
    assert 'readonly ARGOCD_VERSION="v3.5.1"' in text
    assert 'readonly ARGOCD_COMMIT="109ca7ca71139e514114499d294a492e7910a965"' in text
    assert "/argo-cd/${ARGOCD_COMMIT}/manifests/install.yaml" in text
    # GKE: argocd/install/ over the same manifest, named by the v3.5.1 tag's commit and
    # checked against its sha256 by scripts/argocd-install.sh before it is applied.
    bootstrap = (REPO_ROOT / "scripts" / "gke-bootstrap.sh").read_text(encoding="utf-8")
    assert 'readonly ARGOCD_VERSION="v3.5.1"' in bootstrap
    assert "scripts/argocd-install.sh --output" in bootstrap
    kustomization = (REPO_ROOT / "argocd" / "install" / "kustomization.yaml").read_text(
        encoding="utf-8"
    )
    commit = "109ca7ca71139e514114499d294a492e7910a965"  # argoproj/argo-cd v3.5.1
    assert f"argoproj/argo-cd/{commit}/manifests/install.yaml" in kustomization


def makefile_recipes() -> dict[str, str]:
    text = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    return {
        match.group(1): match.group(2).strip()
        for match in re.finditer(r"^([a-z][a-z-]*):[^\n]*\n\t([^\n]*)", text, re.M)
    }


def test_e2e_runs_the_same_make_targets_a_person_runs() -> None:
    runs = [run.strip() for run in workflow("e2e").runs()]
    assert "make kind-up" in runs
    assert "make kind-loop" in runs
    recipes = makefile_recipes()
    assert recipes["kind-up"] == "scripts/kind/up.sh"
    assert recipes["kind-loop"] == "scripts/kind/loop.sh"
    assert recipes["kind-down"] == "scripts/kind/down.sh"
    assert recipes["gke-bootstrap"] == "scripts/gke-bootstrap.sh $(ARGS)"
    assert recipes["gke-teardown"] == "scripts/gke-teardown.sh $(ARGS)"


def test_every_script_a_workflow_runs_exists() -> None:
    for wf in all_workflows():
        for run in wf.runs():
            for script in re.findall(r"(scripts/[\w./-]+\.sh)", run):
                assert (REPO_ROOT / script).is_file(), f"{wf.name} runs missing {script}"


@WORKFLOWS
def test_workflow_name_matches_its_file(name: str) -> None:
    assert workflow(name).data["name"] == name


# --- release: the first step, run for real --------------------------------------------------------

RELEASE_VARIABLES = {
    "GCP_PROJECT_ID": "iris-demo-123",
    "GCP_REGION": "europe-west1",
    "GAR_REPOSITORY": "iris",
    "WIF_PROVIDER": "projects/1/locations/global/workloadIdentityPools/github/providers/gh",
    "WIF_SERVICE_ACCOUNT": "iris-release@iris-demo-123.iam.gserviceaccount.com",
}


def run_release_check(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """The release image job's first `run:` step in bash, as the runner starts it."""
    (first, *_) = workflow("release").jobs["image"]["steps"]
    github_env = tmp_path / "github_env"
    github_env.touch()
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", first["run"]],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={
            "PATH": os.environ["PATH"],
            "GITHUB_ENV": str(github_env),
            "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
            **env,
        },
    )
    return result, github_env.read_text(encoding="utf-8")


def test_release_refuses_to_run_from_another_branch(tmp_path: Path) -> None:
    result, written = run_release_check(
        tmp_path, GITHUB_REF="refs/heads/feature", **RELEASE_VARIABLES
    )
    assert result.returncode == 1
    assert "release runs on main only" in result.stdout
    assert written == ""


def test_release_names_every_missing_repository_variable(tmp_path: Path) -> None:
    present = {
        k: v for k, v in RELEASE_VARIABLES.items() if k not in {"GCP_REGION", "WIF_PROVIDER"}
    }
    result, written = run_release_check(tmp_path, GITHUB_REF="refs/heads/main", **present)
    assert result.returncode == 1
    assert "Set the repository variables GCP_REGION WIF_PROVIDER" in result.stdout
    assert written == ""


def test_release_on_main_derives_the_image_name_and_commit_tag(tmp_path: Path) -> None:
    result, written = run_release_check(tmp_path, GITHUB_REF="refs/heads/main", **RELEASE_VARIABLES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert written.splitlines() == [
        "IMAGE_NAME=europe-west1-docker.pkg.dev/iris-demo-123/iris/iris-api",
        "IMAGE_TAG=sha-0123456789ab",
    ]
