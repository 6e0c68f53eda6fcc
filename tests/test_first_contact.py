"""What a new user does first, on a copy of this tree with no .venv and no artifacts.

The README's order is `make serve`, then `make test`. The suite itself runs inside a .venv
that `make test` built from dev.lock, which holds more than the service needs, so a package
missing from train.lock or serve.lock would never show here. These tests build the user's
environments from scratch in a temporary copy: `make serve` (the train lock alone, training,
gunicorn) answering a prediction, and the serve lock alone (what the image ships) serving the
model it trained.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.ports import free_port

SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
# First install of a lock from an empty pip cache can take minutes on a slow mirror.
INSTALL_TIMEOUT = 900

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.xdist_group("first-contact"),
    pytest.mark.timeout(2 * INSTALL_TIMEOUT + 300),
]


def user_environment() -> dict[str, str]:
    """The caller's environment without the test venv leaking into the user's commands."""
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    env.pop("IRIS_MODEL_DIR", None)
    bin_dir = str(Path(os.environ.get("VIRTUAL_ENV", "/nonexistent")) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != bin_dir)
    return env


@pytest.fixture(scope="module")
def fresh_tree(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files git would give a new user (tracked and not ignored), and nothing else."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo_root,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    tree = tmp_path_factory.mktemp("fresh") / "iris-gitops"
    for raw in filter(None, listed):
        source = repo_root / raw.decode()
        if source.is_file():
            target = tree / raw.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    assert not (tree / ".venv").exists()
    return tree


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"not ready on port {port} after {timeout:.0f} s")


def predict(port: int) -> dict[str, object]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict",
        data=json.dumps(SETOSA).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        result: dict[str, object] = json.loads(answer.read())
        return result


class Server:
    """A process group started for one test or fixture; stop() ends every process in it."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def answer(self, port: int, timeout: float) -> dict[str, object]:
        """Wait for readiness, then one /predict; on failure, fail with the log's tail."""
        try:
            wait_ready(port, self.process, timeout)
            return predict(port)
        except (OSError, pytest.fail.Exception) as error:
            tail = self.log.read_text(errors="replace")[-3000:]
            pytest.fail(f"{error}\n--- {self.log.name} ---\n{tail}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture(scope="module")
def make_serve_answer(
    fresh_tree: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, object]]:
    """`make serve` on the fresh tree, as the README's first command, and one prediction."""
    port = free_port()
    log = tmp_path_factory.mktemp("make-serve") / "make-serve.log"
    # A metrics port of its own too: the default 9090 may be another server's on this host.
    env = {**user_environment(), "IRIS_PORT": str(port), "IRIS_METRICS_PORT": str(free_port())}
    server = Server(["make", "serve"], fresh_tree, env, log)
    try:
        yield server.answer(port, INSTALL_TIMEOUT)
    finally:
        server.stop()


def test_make_serve_on_a_fresh_tree_installs_trains_and_answers(
    fresh_tree: Path, make_serve_answer: dict[str, object]
) -> None:
    assert make_serve_answer["species"] == "setosa"
    assert (fresh_tree / ".venv" / ".runtime").is_file()
    assert (fresh_tree / "artifacts" / "model" / "metadata.json").is_file()


def test_the_serve_lock_alone_serves_the_model_make_serve_trained(
    fresh_tree: Path, make_serve_answer: dict[str, object], tmp_path: Path
) -> None:
    venv = tmp_path / "serve-venv"
    env = user_environment()
    subprocess.run(
        ["make", "venv-serve", f"VENV={venv}"],
        cwd=fresh_tree,
        env=env,
        check=True,
        timeout=INSTALL_TIMEOUT,
        capture_output=True,
    )
    python = str(venv / "bin" / "python")
    # Training's libraries are not there: the serving set really is smaller.
    missing = subprocess.run(
        [python, "-c", "import pandas"], cwd=tmp_path, capture_output=True, check=False
    )
    assert missing.returncode != 0
    port = free_port()
    artifact = fresh_tree / "artifacts" / "model"
    serve_env = {
        **env,
        "IRIS_PORT": str(port),
        "IRIS_METRICS_PORT": str(free_port()),
        "IRIS_MODEL_DIR": str(artifact),
    }
    server = Server([python, "-m", "service"], fresh_tree, serve_env, tmp_path / "serve.log")
    try:
        assert server.answer(port, 120)["species"] == "setosa"
    finally:
        server.stop()
