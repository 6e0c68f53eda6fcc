"""Fixtures for the image and manifest tests: real renders, real scanners, run once.

Every overlay is rendered with `kubectl kustomize` before anything else looks at
it, and a render error fails the tests that need it. checkov scans that rendered
output, not the overlays: its own kustomize framework renders each overlay again and
ignores the renderer's exit status, so an overlay whose render failed under load was
silently missing from the report (a flaky "checked no Deployment"). checkov is slow
to start, so each of its two scans runs once per test run (side by side) and the
tests read the JSON reports.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.support import OVERLAYS, Render, render
from tests.tools import venv_tool


@pytest.fixture(scope="session")
def deploy_dir(repo_root: Path) -> Path:
    return repo_root / "deploy"


@pytest.fixture(scope="session")
def rendered_dir(tmp_path_factory: pytest.TempPathFactory, deploy_dir: Path) -> Path:
    """A directory holding <overlay>.yaml for every overlay, as `make manifests` writes it."""
    out = tmp_path_factory.mktemp("rendered")
    for overlay in OVERLAYS:
        (out / f"{overlay}.yaml").write_text(render(deploy_dir / "overlays" / overlay))
    return out


@pytest.fixture(scope="session")
def renders(rendered_dir: Path) -> dict[str, Render]:
    result = {}
    for overlay in OVERLAYS:
        path = rendered_dir / f"{overlay}.yaml"
        documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        result[overlay] = Render(overlay, path, documents)
    return result


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def rendered(renders: dict[str, Render], overlay: str) -> Render:
    """The render of one overlay; tests using it run once per overlay."""
    return renders[overlay]


@pytest.fixture(scope="session")
def tool_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for the scanners: offline, with their caches in a temporary home."""
    home = tmp_path_factory.mktemp("tool-home")
    env = dict(os.environ, HOME=str(home), BC_SKIP_MAPPING="TRUE", NO_COLOR="1")
    # checkov would otherwise try to reach its platform for policy metadata.
    env.pop("BC_API_KEY", None)
    return env


@pytest.fixture(scope="session")
def checkov_reports(
    repo_root: Path, rendered_dir: Path, tool_env: dict[str, str], renders: dict[str, Render]
) -> dict[str, dict[str, Any]]:
    """The checkov scans (kubernetes on the rendered overlays, dockerfile), each run once.

    Keyed by framework; each value is checkov's JSON report for that framework.
    `renders` is a dependency on purpose: every overlay must render before checkov runs.
    """
    del renders
    binary = venv_tool("checkov")
    common = ["--config-file", str(repo_root / ".checkov.yaml"), "--output", "json"]
    scans = {
        "kubernetes": ["-d", str(rendered_dir), "--framework", "kubernetes"],
        "dockerfile": ["-f", "Dockerfile", "--framework", "dockerfile"],
    }
    processes = {
        framework: subprocess.Popen(
            [str(binary), *args, *common],
            cwd=repo_root,
            env=tool_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for framework, args in scans.items()
    }
    reports = {}
    try:
        for framework, process in processes.items():
            stdout, stderr = process.communicate(timeout=240)
            # checkov exits 1 when a check fails; the report says which. Anything
            # else, or output that is not JSON, is checkov itself failing.
            if process.returncode not in (0, 1):
                pytest.fail(f"checkov ({framework}) exited {process.returncode}:\n{stderr}")
            try:
                parsed = json.loads(stdout)
            except json.JSONDecodeError:
                pytest.fail(f"checkov ({framework}) printed no JSON report:\n{stdout}\n{stderr}")
            listed = parsed if isinstance(parsed, list) else [parsed]
            matching = [r for r in listed if r.get("check_type") == framework]
            assert len(matching) == 1, f"checkov ({framework}) reported no {framework} results"
            reports[framework] = matching[0]
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.communicate()
    return reports
