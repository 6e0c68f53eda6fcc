"""The Dockerfile runs the same install, train and start commands as the local run.

These tests need no Docker engine: they hold the Dockerfile to the commands the
rest of the suite executes. The build stage's RUN lines must be the Make targets
`make venv`, `make venv-serve` and `make train`, the train step is executed for
real in a copy of the build context, and the image's CMD is the
`python -m service` that `make serve` runs. tests/deploy/test_image.py builds
and runs the real image where a Docker engine is reachable; CI always does.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.ports import free_port
from model.artifact import load
from tests.deploy.support import (
    Instruction,
    Render,
    assignments,
    build_context,
    clean_env,
    parse_dockerfile,
    quantity,
)

BASE_IMAGE = re.compile(
    r"^python:3\.11(\.\d+)?-slim-(?P<debian>bookworm|trixie)@sha256:(?P<digest>[0-9a-f]{64})$"
)
VENV = "/opt/venv"

# One worker trains the build context once for every test here.
pytestmark = pytest.mark.xdist_group("deploy-image")


@pytest.fixture(scope="module")
def instructions(repo_root: Path) -> list[Instruction]:
    return parse_dockerfile((repo_root / "Dockerfile").read_text())


def stage(instructions: list[Instruction], name: str) -> list[Instruction]:
    found = [i for i in instructions if i.stage == name]
    assert found, f"the Dockerfile has no stage named {name!r}"
    return found


def runs(instructions: list[Instruction], name: str) -> list[list[str]]:
    """Each command the stage's RUN lines run, in order; `a && b` is two commands."""
    commands: list[list[str]] = []
    for instruction in stage(instructions, name):
        if instruction.keyword == "RUN":
            commands.append([])
            for word in shlex.split(instruction.arguments):
                if word == "&&":
                    commands.append([])
                else:
                    commands[-1].append(word)
    return commands


def env(instructions: list[Instruction], name: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for instruction in stage(instructions, name):
        if instruction.keyword == "ENV":
            result.update(assignments(instruction.arguments))
    return result


def make_dry_run(repo_root: Path, *args: str) -> list[str]:
    """The commands `make` would run for `args`, one per line, without running them."""
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", *args],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=clean_env(),
    )
    return result.stdout.splitlines()


def test_both_stages_start_from_one_base_argument_defaulting_to_the_pinned_official_image(
    instructions: list[Instruction],
) -> None:
    bases = [i.arguments.split()[0] for i in instructions if i.keyword == "FROM"]
    assert [i.stage for i in instructions if i.keyword == "FROM"] == ["build", "runtime"]
    # One argument for both, so build and runtime always share the interpreter the venv
    # points at, whichever base a builder passes.
    assert bases == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    # Declared before the first FROM, where FROM lines can read it.
    (declared,) = [
        assignments(i.arguments)
        for i in instructions
        if i.stage == "" and i.keyword == "ARG" and i.arguments.startswith("PYTHON_IMAGE=")
    ]
    default = declared["PYTHON_IMAGE"]
    match = BASE_IMAGE.match(default)
    assert match, f"{default} is not python:3.11-slim-<debian>@sha256:<digest>"
    assert match["digest"] != "0" * 64


def test_build_stage_installs_the_train_lock_through_make_venv(
    repo_root: Path, instructions: list[Instruction]
) -> None:
    # The developer's own `make venv`, into the build stage's .venv, which never leaves it.
    assert ["make", "venv"] in runs(instructions, "build")
    # What that target runs (-B: as if .venv did not exist yet): a venv and a hashed,
    # wheels-only install of the train lock, then pip check.
    commands = make_dry_run(repo_root, "-B", "venv")
    assert any(line.endswith("-m venv .venv") for line in commands), commands
    installs = [shlex.split(line) for line in commands if " pip " in line and " install " in line]
    assert len(installs) == 1, commands
    install = installs[0]
    assert install[0] == ".venv/bin/python"
    assert install[install.index("install") :][1:] == [
        "--require-hashes",
        "--only-binary=:all:",
        "--no-deps",
        "--progress-bar",
        "off",
        "-r",
        "requirements/train.lock",
    ]


def test_build_stage_puts_the_serve_lock_alone_in_the_venv_the_runtime_copies(
    repo_root: Path, instructions: list[Instruction]
) -> None:
    assert ["make", "venv-serve", f"VENV={VENV}"] in runs(instructions, "build")
    commands = make_dry_run(repo_root, "venv-serve", f"VENV={VENV}")
    assert any(line.endswith(f"-m venv {VENV}") for line in commands), commands
    installs = [shlex.split(line) for line in commands if " pip " in line and " install " in line]
    # One install, of the serve lock and nothing else, hashed and wheels-only.
    assert len(installs) == 1, commands
    (install,) = installs
    assert install[0] == f"{VENV}/bin/python"
    assert install[install.index("-r") + 1] == "requirements/serve.lock"
    assert install.count("-r") == 1
    for option in ("--require-hashes", "--only-binary=:all:", "--no-deps"):
        assert option in install
    assert any(line.endswith(" check") for line in commands), commands


def test_build_stage_trains_with_the_command_make_train_runs(
    repo_root: Path, instructions: list[Instruction]
) -> None:
    build_runs = runs(instructions, "build")
    assert ["make", "train"] in build_runs
    # Training comes after the install, in the train set's venv.
    assert build_runs.index(["make", "train"]) > build_runs.index(["make", "venv"])
    image = make_dry_run(repo_root, "-o", ".venv/.runtime", "train")
    assert image == [".venv/bin/python -m model.train --data data/v2/data.csv --out artifacts"]


def test_runtime_command_is_the_one_make_serve_runs(
    repo_root: Path, instructions: list[Instruction]
) -> None:
    runtime = stage(instructions, "runtime")
    (cmd,) = [i for i in runtime if i.keyword == "CMD"]
    assert not [i for i in runtime if i.keyword == "ENTRYPOINT"]
    assert cmd.exec_form() == ["python", "-m", "service"]
    # `make serve` ends by starting the same module with the local venv's python.
    serve = make_dry_run(repo_root, "-o", "artifacts/model/metadata.json", "serve")
    assert serve[-1].split()[-3:] == [".venv/bin/python", "-m", "service"]
    # `python` in the image is the venv's: its bin directory leads PATH.
    assert env(instructions, "runtime")["PATH"].startswith(f"{VENV}/bin:")


def test_runtime_stage_installs_nothing(instructions: list[Instruction]) -> None:
    for command in runs(instructions, "runtime"):
        text = " ".join(command)
        for tool in ("apt-get", "apt ", "pip ", "make", "gcc", "curl", "wget"):
            assert tool not in text + " ", f"runtime stage runs {text!r}"
    copies = [i.arguments for i in stage(instructions, "runtime") if i.keyword == "COPY"]
    # The serve set's venv and the model come from the build stage; the train set's venv
    # (/src/.venv, with pandas and matplotlib) stays there.
    assert f"--from=build {VENV} {VENV}" in copies
    assert "--from=build /src/artifacts/model artifacts/model" in copies
    assert not [copy for copy in copies if ".venv" in copy or copy.startswith("--from=build /src ")]


def test_runtime_stage_loads_the_model_with_the_serve_set_once_everything_is_copied(
    instructions: list[Instruction],
) -> None:
    """The runtime stage loads the artifact once, with the venv and code that will serve it."""
    runtime_runs = runs(instructions, "runtime")
    loads = [c for c in runtime_runs if c[:2] == ["python", "-c"] and "model.artifact.load" in c[2]]
    assert len(loads) == 1, runtime_runs
    copies = [i.line for i in stage(instructions, "runtime") if i.keyword == "COPY"]
    run_lines = [
        i.line
        for i in stage(instructions, "runtime")
        if i.keyword == "RUN" and "model.artifact.load" in i.arguments
    ]
    assert run_lines[0] > max(copies)


def test_runtime_runs_as_the_fixed_non_root_user_the_deployment_names(
    repo_root: Path, instructions: list[Instruction]
) -> None:
    runtime = stage(instructions, "runtime")
    user = [i.arguments for i in runtime if i.keyword == "USER"][-1]
    uid, _, gid = user.partition(":")
    # Numeric, so the kubelet can check runAsNonRoot without reading /etc/passwd.
    assert uid.isdigit()
    assert gid.isdigit()
    assert int(uid) >= 10000
    assert int(gid) >= 10000
    created = " ".join(" ".join(command) for command in runs(instructions, "runtime"))
    assert f"--uid {uid}" in created
    assert f"--gid {gid}" in created
    deployment = yaml.safe_load((repo_root / "deploy" / "base" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == int(uid)
    assert pod["securityContext"]["runAsGroup"] == int(gid)


def test_image_environment_matches_the_deployment(
    repo_root: Path, instructions: list[Instruction]
) -> None:
    image = env(instructions, "runtime")
    deployment = yaml.safe_load((repo_root / "deploy" / "base" / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    deployed = {item["name"]: item["value"] for item in container["env"]}
    for name in ("IRIS_HOST", "IRIS_PORT", "IRIS_METRICS_DIR"):
        assert image[name] == deployed[name], name
    # The metrics directory lies on a volume the Deployment mounts writable.
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    assert any(image["IRIS_METRICS_DIR"].startswith(m.rstrip("/") + "/") for m in mounts)
    exposed = [i.arguments for i in stage(instructions, "runtime") if i.keyword == "EXPOSE"]
    assert exposed == [image["IRIS_PORT"]]
    assert int(image["IRIS_PORT"]) == container["ports"][0]["containerPort"]
    assert container["ports"][0]["name"] == "http"


def test_git_revision_build_arg_reaches_the_service_and_the_labels(
    repo_root: Path, instructions: list[Instruction]
) -> None:
    runtime = stage(instructions, "runtime")
    args: dict[str, str] = {}
    labels: dict[str, str] = {}
    for instruction in runtime:
        if instruction.keyword == "ARG":
            args.update(assignments(instruction.arguments))
        if instruction.keyword == "LABEL":
            labels.update(assignments(instruction.arguments))
    assert "GIT_REVISION" in args
    assert env(instructions, "runtime")["IRIS_GIT_REVISION"] == "${GIT_REVISION}"
    assert labels["org.opencontainers.image.revision"] == "${GIT_REVISION}"
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert labels["org.opencontainers.image.source"] == "${SOURCE_URL}"
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    assert args["VERSION"] == project["version"]


def test_every_copied_source_is_in_the_build_context(
    repo_root: Path, instructions: list[Instruction]
) -> None:
    context = {path.as_posix() for path in build_context(repo_root)}
    copied = [
        (instruction.line, source.rstrip("/"))
        for instruction in instructions
        if instruction.keyword == "COPY" and not instruction.arguments.startswith("--from")
        for source in instruction.arguments.split()[:-1]
    ]
    # What the image is built from: the locks, the packages and the data the build trains on.
    assert {"requirements/serve.lock", "model", "service", "data"} <= {s for _, s in copied}
    for line, source in copied:
        assert source in context or any(p.startswith(source + "/") for p in context), (
            f"Dockerfile line {line}: {source} is not in the build context"
        )


def test_build_context_leaves_out_local_state(repo_root: Path) -> None:
    context = [path.as_posix() for path in build_context(repo_root)]
    for unwanted in (".venv/", ".git/", "artifacts/", "tests/", "build/", "__pycache__/"):
        assert not [p for p in context if p.startswith(unwanted) or f"/{unwanted}" in p]
    assert "requirements/train.lock" in context
    assert "requirements/serve.lock" in context
    assert "requirements/dev.lock" not in context


@pytest.fixture(scope="module")
def context_copy(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files `docker build` would receive, copied to a temporary directory."""
    root = tmp_path_factory.mktemp("build-context")
    for relative in build_context(repo_root):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo_root / relative, root / relative)
    return root


def run_build_step(
    instructions: list[Instruction], context: Path, target: str, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    """Run the build stage's `make <target>` in `context` with this test run's venv.

    The venv running the tests was installed from the same lock, so `-o` tells
    make not to reinstall it.
    """
    (command,) = [c for c in runs(instructions, "build") if c[:2] == ["make", target]]
    venv = Path(sys.prefix)
    args = [word for word in command if not word.startswith("VENV=")] + [f"VENV={venv}"]
    return subprocess.run(
        [args[0], "--no-print-directory", "-o", f"{venv}/.runtime", *args[1:]],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=clean_env(**extra_env),
    )


@pytest.fixture(scope="module")
def trained_context(instructions: list[Instruction], context_copy: Path) -> Path:
    """The build context after the Dockerfile's train step ran in it for real."""
    result = run_build_step(instructions, context_copy, "train", SOURCE_DATE_EPOCH="1767225600")
    assert result.returncode == 0, result.stdout + result.stderr
    return context_copy


@pytest.mark.integration
def test_train_step_writes_a_loadable_artifact_where_the_runtime_stage_copies_it(
    instructions: list[Instruction], trained_context: Path
) -> None:
    copies = [i.arguments.split() for i in stage(instructions, "runtime") if i.keyword == "COPY"]
    (model_copy,) = [c for c in copies if c[0] == "--from=build" and "artifacts" in c[1]]
    source = trained_context / Path(model_copy[1]).relative_to("/src")
    artifact = load(source)
    assert artifact.metadata.data_path == "data/v2/data.csv"
    assert artifact.metadata.trained_at == "2026-01-01T00:00:00Z"


@pytest.mark.integration
def test_train_step_fails_the_build_when_the_quality_gate_fails(
    instructions: list[Instruction], context_copy: Path, tmp_path: Path
) -> None:
    context = tmp_path / "context"
    shutil.copytree(context_copy, context, ignore=shutil.ignore_patterns("artifacts"))
    result = run_build_step(instructions, context, "train", IRIS_MIN_ACCURACY="1.01")
    assert result.returncode != 0
    assert "quality gate failed" in result.stderr
    assert not (context / "artifacts" / "model").exists()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()


def post(url: str, body: object) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
        return int(response.status)


def tree_rss_bytes(pid: int) -> tuple[int, list[int]]:
    """Resident memory of a process and its children (an upper bound: shared pages count
    in each), and the children's pids."""
    children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    total = 0
    for member in (pid, *children):
        for line in Path(f"/proc/{member}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total, children


def _pod_environment(
    instructions: list[Instruction],
    container: dict[str, Any],
    trained_context: Path,
    tmp_path: Path,
    revision: str,
) -> tuple[dict[str, str], dict[str, str]]:
    """The pod's environment (the image's ENV, the Deployment's env on top) and the same
    for a local process: image paths mapped into the build context, mounts into tmp_path."""
    runtime = stage(instructions, "runtime")
    workdir = [i.arguments for i in runtime if i.keyword == "WORKDIR"][-1].rstrip("/")
    mounts = [m["mountPath"].rstrip("/") for m in container["volumeMounts"]]

    def local(value: str) -> str:
        if value.startswith(workdir + "/"):
            return str(trained_context / value.removeprefix(workdir + "/"))
        for mount in mounts:
            if value.startswith(mount + "/"):
                return str(tmp_path / mount.strip("/") / value.removeprefix(mount + "/"))
        return value

    pod_env = env(instructions, "runtime")
    pod_env["IRIS_GIT_REVISION"] = revision  # what --build-arg GIT_REVISION=<sha> gives
    pod_env.update({item["name"]: str(item["value"]) for item in container["env"]})
    process_env = clean_env(**{name: local(value) for name, value in pod_env.items()})
    process_env["PATH"] = pod_env["PATH"].replace(f"{VENV}/bin", f"{sys.prefix}/bin")
    process_env["PATH"] = process_env["PATH"].replace("$PATH", os.environ["PATH"])
    return pod_env, process_env


def _wait_ready_within_the_startup_probe(
    server: subprocess.Popen[bytes], base: str, container: dict[str, Any], log: Path
) -> None:
    startup = container["startupProbe"]
    deadline = time.monotonic() + startup["periodSeconds"] * startup["failureThreshold"]
    while True:
        assert server.poll() is None, log.read_text()
        try:
            if get(base + container["readinessProbe"]["httpGet"]["path"])[0] == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, "not ready within the startup probe budget"
        time.sleep(0.1)


@pytest.mark.integration
def test_image_command_serves_the_trained_model_with_the_pod_environment(
    instructions: list[Instruction],
    trained_context: Path,
    renders: dict[str, Render],
    tmp_path: Path,
) -> None:
    """Run the image's CMD the way the pod does, minus the container.

    The environment is the image's ENV with the Deployment's env on top; image paths
    map into the trained build context and the emptyDir into a temporary directory.
    Only the address changes: tests listen on loopback, on a free port.
    """
    runtime = stage(instructions, "runtime")
    deployment = renders["production"].one("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    revision = "0123456789abcdef0123456789abcdef01234567"
    pod_env, process_env = _pod_environment(
        instructions, container, trained_context, tmp_path, revision
    )
    port = free_port()
    metrics_port = free_port()
    process_env.update(
        IRIS_HOST="127.0.0.1", IRIS_PORT=str(port), IRIS_METRICS_PORT=str(metrics_port)
    )
    (cmd,) = [i.exec_form() for i in runtime if i.keyword == "CMD"]
    log = tmp_path / "server.log"
    base = f"http://127.0.0.1:{port}"
    with log.open("w") as log_file:
        server = subprocess.Popen(
            cmd, cwd=trained_context, env=process_env, stdout=log_file, stderr=log_file
        )
        try:
            _wait_ready_within_the_startup_probe(server, base, container, log)

            assert get(base + container["livenessProbe"]["httpGet"]["path"])[0] == 200
            status, body = get(base + "/version")
            assert status == 200
            assert json.loads(body)["git_revision"] == revision
            annotations = deployment["spec"]["template"]["metadata"]["annotations"]
            scrape = f"http://127.0.0.1:{metrics_port}{annotations['prometheus.io/path']}"
            assert get(scrape)[0] == 200

            # The image's HEALTHCHECK command, run for real against the server.
            (healthcheck,) = [i.arguments for i in runtime if i.keyword == "HEALTHCHECK"]
            probe = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
            checked = subprocess.run(
                probe, env=process_env, capture_output=True, timeout=30, check=False
            )
            assert checked.returncode == 0, checked.stderr

            row = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
            for _ in range(200):
                assert post(base + "/predict", row) == 200
            for _ in range(5):
                assert post(base + "/predict/batch", {"instances": [row] * 500}) == 200

            rss, workers = tree_rss_bytes(server.pid)
            assert len(workers) == int(pod_env["IRIS_WORKERS"])
            # The memory limit holds the whole pod with room to spare.
            limit = quantity(container["resources"]["limits"]["memory"])
            assert rss < limit * Decimal("0.9"), f"{rss / 2**20:.0f} MiB of {limit / 2**20} MiB"
        finally:
            server.terminate()
            grace = int(pod_env["IRIS_GRACEFUL_TIMEOUT"]) + 10
            try:
                returncode = server.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
                raise
    # SIGTERM is a clean stop, within gunicorn's graceful timeout.
    assert returncode == 0, log.read_text()
