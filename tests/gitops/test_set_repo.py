"""`set-repo` points every Argo CD manifest at a fork in one step, touching nothing else."""

from __future__ import annotations

import difflib
import io
import shutil
from pathlib import Path

import pytest
import yaml

from gitops.cli import main
from gitops.kustomization import argocd_yaml
from harness.git import git
from tests.gitops.support import REPO_ROOT

pytestmark = pytest.mark.integration  # runs real git

PLACEHOLDER = "https://github.com/your-org/iris-gitops.git"
FORK = "https://github.com/someone/iris-gitops.git"
MANIFESTS = sorted((REPO_ROOT / "argocd").rglob("*.yaml"))


@pytest.fixture
def argocd_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "fork"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    shutil.copytree(REPO_ROOT / "argocd", repo / "argocd")
    return repo


def snapshot(repo: Path) -> dict[str, bytes]:
    files = (repo / "argocd").rglob("*")
    return {p.relative_to(repo).as_posix(): p.read_bytes() for p in files if p.is_file()}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_argocd_manifests_round_trip_so_set_repo_only_touches_urls(path: Path) -> None:
    text = path.read_text()
    yaml_rt = argocd_yaml()
    yaml_rt.explicit_start = text.lstrip().startswith("---")
    out = io.StringIO()
    yaml_rt.dump_all(list(yaml_rt.load_all(text)), out)
    assert out.getvalue() == text


def test_set_repo_rewrites_every_source_and_nothing_else(
    argocd_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(argocd_repo)
    assert main(["-C", str(argocd_repo), "set-repo", FORK]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"repo URL set to {FORK} in: ")
    after = snapshot(argocd_repo)
    assert set(after) == set(before)
    changed = 0
    for name in before:
        diff = [
            line
            for line in difflib.ndiff(
                before[name].decode().splitlines(), after[name].decode().splitlines()
            )
            if line[:2] in {"- ", "+ "}
        ]
        removed = [line[2:] for line in diff if line.startswith("- ")]
        added = [line[2:] for line in diff if line.startswith("+ ")]
        assert [line.replace(PLACEHOLDER, FORK) for line in removed] == added, name
        changed += len(added)
    assert changed == 5  # both projects' sourceRepos and three Applications
    for path in (argocd_repo / "argocd").rglob("*.yaml"):
        assert PLACEHOLDER not in path.read_text()
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] == "Application":
                assert doc["spec"]["source"]["repoURL"] == FORK
            elif doc["kind"] == "AppProject" and doc["metadata"]["name"] == "default":
                # Argo CD's built-in project stays empty: it allows no repository at all.
                assert doc["spec"]["sourceRepos"] == []
            elif doc["kind"] == "AppProject":
                assert doc["spec"]["sourceRepos"] == [FORK]
    # Running it again is a no-op.
    assert main(["-C", str(argocd_repo), "set-repo", FORK]) == 0
    assert "nothing to do" in capsys.readouterr().out


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "file:///srv/git/iris.git",
        "ftp://example.com/iris.git",
        "https://github.com/me/iris.git extra",
        "",
    ],
)
def test_set_repo_refuses_what_is_not_a_git_url(
    argocd_repo: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(argocd_repo)
    assert main(["-C", str(argocd_repo), "set-repo", url]) == 2
    assert "is not a Git URL (https://, http://, ssh://, git:// or git@host:path)" in (
        capsys.readouterr().err
    )
    assert snapshot(argocd_repo) == before


@pytest.mark.parametrize(
    "url",
    [
        "git@github.com:someone/iris-gitops.git",
        "ssh://git@github.com/someone/iris-gitops.git",
        "git://git-server.iris-git.svc.cluster.local/iris-gitops.git",
        "http://127.0.0.1:9418/iris-gitops.git",
    ],
)
def test_set_repo_accepts_every_url_form_argo_cd_clones(
    argocd_repo: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-C", str(argocd_repo), "set-repo", url]) == 0
    capsys.readouterr()
    for path in (argocd_repo / "argocd").rglob("*.yaml"):
        assert PLACEHOLDER not in path.read_text()
    for path in [argocd_repo / "argocd" / "root.yaml", *(argocd_repo / "argocd/apps").glob("*")]:
        assert url in path.read_text(), path


def test_set_repo_refuses_manifests_that_disagree(
    argocd_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    staging = argocd_repo / "argocd" / "apps" / "staging.yaml"
    staging.write_text(staging.read_text().replace(PLACEHOLDER, FORK))
    before = snapshot(argocd_repo)
    assert main(["-C", str(argocd_repo), "set-repo", "git@github.com:me/iris.git"]) == 2
    assert "names several repo URLs" in capsys.readouterr().err
    assert snapshot(argocd_repo) == before
