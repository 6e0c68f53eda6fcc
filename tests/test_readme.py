"""The README stays true: what it names exists, and its runnable shell blocks run."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from harness.servers import start_service
from service.app import create_app
from service.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")

# Paths the README names that `make` creates rather than Git holds.
GENERATED = ("artifacts/", "build/")
# Settings that are not the service's: the training quality gate.
OTHER_SETTINGS = {"IRIS_MIN_ACCURACY"}
# Filesystem paths inside the container, not HTTP routes.
NOT_ROUTES = {
    "/tmp",
    "/opt/venv",
    "/usr/bin/python3.11",
    "/usr/local/bin",
    "/etc/ssl/certs/ca-certificates.crt",
    # Served on IRIS_METRICS_PORT by service.metrics, not by the app.
    "/metrics",
}

# Every bash block must run here (marked <!-- runnable -->) or say why it cannot; a block
# that is neither fails, so a new block forces the choice. Keyed by its first line.
NOT_RUN_HERE = {
    "make serve": "the quickstart itself: make test is what CI runs, make serve never ends",
    "make kind-up": "needs Docker, kind and cloud-provider-kind; e2e.yml runs these targets",
    "make image-test": "needs a Docker engine; tests/deploy/test_image.py runs the target",
    "sudo make offline-base": "needs root, debootstrap, Docker and minutes of downloads",
    "export GCP_PROJECT_ID": "pushes to a GitHub fork and creates Google Cloud resources",
}


def fenced_blocks(language: str) -> list[tuple[str, str]]:
    """(marker line before the fence, body) of every ```<language> block."""
    pattern = re.compile(rf"(?P<before>[^\n]*)\n```{language}\n(?P<body>.*?)\n```", re.DOTALL)
    return [(m["before"], m["body"]) for m in pattern.finditer(README)]


def code_spans() -> list[str]:
    prose = re.sub(r"```.*?```", "", README, flags=re.DOTALL)
    return re.findall(r"`([^`\n]+)`", prose)


def make_targets() -> set[str]:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([a-zA-Z][a-zA-Z0-9_-]*):", makefile, flags=re.MULTILINE))


def test_every_make_target_the_readme_names_exists() -> None:
    named = set(re.findall(r"`make ([a-z][a-z-]*)", README)) | set(
        re.findall(r"^make ([a-z][a-z-]*)", README, flags=re.MULTILINE)
    )
    assert {"serve", "test"} <= named
    assert named - make_targets() == set()


def test_quickstart_is_the_two_commands_and_ci_runs_the_second() -> None:
    quickstart = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    first_block = quickstart.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert commands == ["make serve", "make test"]
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_every_setting_the_readme_names_exists_and_every_setting_is_named() -> None:
    named = set(re.findall(r"\bIRIS_[A-Z_]+\b", README))
    fields = {f"IRIS_{name.upper()}" for name in Settings.model_fields}
    assert named - fields - OTHER_SETTINGS == set()
    assert fields - named == set()
    for name in OTHER_SETTINGS:
        assert name in (REPO_ROOT / "model" / "train.py").read_text(encoding="utf-8")


def route_pattern(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")


def test_every_endpoint_the_readme_names_is_a_route(trained_artifact_dir: Path) -> None:
    app = create_app(Settings(model_dir=trained_artifact_dir))
    routes = [route_pattern(getattr(route, "path", "")) for route in app.api.routes]
    named = set()
    for span in code_spans():
        if span.startswith(("http", "./")):
            continue
        for match in re.finditer(r"(?:^|(?<=\s))(/[a-z0-9_./{}-]*)", span):
            named.add(match[1].rstrip("."))
    named -= NOT_ROUTES
    assert {"/predict", "/predict/batch", "/v2/models/iris/infer", "/readyz", "/livez"} <= named
    missing = sorted(path for path in named if not any(r.match(path) for r in routes))
    assert missing == []


def repo_paths() -> set[str]:
    spans = [s for s in code_spans() if " " not in s and "<" not in s and "*" not in s]
    candidates = {
        s
        for s in spans
        if not s.startswith(("/", "http", "-", "$", "sha", "python:", "roles/"))
        and ("/" in s or s in {"Dockerfile", "Makefile", "README.md"})
        and re.fullmatch(r"[A-Za-z0-9_.\-/]+", s)
        and "docker.pkg.dev" not in s
    }
    links = set(re.findall(r"\]\((?!https?:|#)([^)#]+)", README))
    return candidates | links


def test_every_file_path_the_readme_names_exists() -> None:
    paths = repo_paths()
    assert {"data/README.md", "docs/gitops.md", "scripts/gke-bootstrap.sh"} <= paths
    missing = sorted(
        p for p in paths if not p.startswith(GENERATED) and not (REPO_ROOT / p).exists()
    )
    assert missing == []


def test_every_page_under_docs_is_linked_from_the_readme() -> None:
    # A newcomer starts at the README: a page it does not link is a page they never find.
    links = set(re.findall(r"\]\((?!https?:|#)([^)#]+)", README))
    pages = {f"docs/{page.name}" for page in (REPO_ROOT / "docs").glob("*.md")}
    assert "docs/fork.md" in pages
    assert sorted(pages - links) == []


def test_layout_tree_names_only_real_paths() -> None:
    tree = README.split("## Layout", 1)[1].split("```", 2)[1]
    parent = ""
    named = []
    for line in tree.splitlines():
        if not line.strip():
            continue
        name = line.split()[0]
        if line.startswith("  "):
            named.append(f"{parent}{name}")
        else:
            parent = name if name.endswith("/") else ""
            named.append(name)
    # The tree names the project's main parts, and nothing that is not there.
    main_parts = {"service/", "service/app.py", "model/", "deploy/base/", "argocd/", "Dockerfile"}
    assert main_parts <= set(named)
    assert [name for name in named if not (REPO_ROOT / name).exists()] == []


@pytest.mark.parametrize(("before", "body"), fenced_blocks("bash"), ids=lambda v: v[:30])
def test_every_shell_block_parses_and_is_run_or_says_why_not(before: str, body: str) -> None:
    parsed = subprocess.run(["bash", "-n"], input=body, text=True, capture_output=True, check=False)
    assert parsed.returncode == 0, parsed.stderr
    first_line = body.splitlines()[0]
    runnable = before.startswith("<!-- runnable")
    reasons = [why for start, why in NOT_RUN_HERE.items() if first_line.startswith(start)]
    assert runnable != bool(reasons), (
        f"block starting {first_line!r}: mark it runnable or say why not"
    )


@pytest.mark.integration
def test_runnable_blocks_succeed_against_a_real_server(
    tmp_path: Path, trained_artifact_dir: Path
) -> None:
    blocks = [body for before, body in fenced_blocks("bash") if before.startswith("<!-- runnable")]
    assert blocks
    server = start_service(trained_artifact_dir, tmp_path, workers=1)
    try:
        for body in blocks:
            script = body.replace("localhost:8000", f"127.0.0.1:{server.port}").replace(
                "localhost:9090", f"127.0.0.1:{server.metrics_port}"
            )
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", script],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert result.returncode == 0, result.stdout + result.stderr
            out = result.stdout
            assert '"species":"setosa"' in out
            assert '"species":"virginica"' in out
            assert '"datatype":"BYTES"' in out
            assert "iris_" in out
            assert '"detail"' not in out, out  # no request in the README is refused
    finally:
        server.stop()
