"""scripts/find-kustomize.sh picks the overlay renderer, and installs kustomize when there is none.

Stand-ins for kustomize, kubectl and curl check the script's choices; no network here, so
the install path is exercised up to the download, whose failure must say what to install.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.scripts.support import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "find-kustomize.sh"
FAILING_CURL = """#!/usr/bin/env bash
echo "curl: (6) Could not resolve host: github.com" >&2
exit 6
"""


def _find(tmp_path: Path, **tools: str) -> subprocess.CompletedProcess[str]:
    """Run the script with only `tools` (name -> script) and the basics on PATH."""
    fakes = tmp_path / "bin"
    fakes.mkdir(exist_ok=True)
    for name, script in tools.items():
        (fakes / name).write_text(script, encoding="utf-8")
        (fakes / name).chmod(0o755)
    basics = tmp_path / "basics"
    basics.mkdir(exist_ok=True)
    for name in ("bash", "dirname", "mktemp", "rm", "tail", "uname", "mkdir", "tar", "install"):
        for directory in ("/usr/bin", "/bin"):
            if (Path(directory) / name).exists() and not (basics / name).exists():
                (basics / name).symlink_to(Path(directory) / name)
    return subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "venv-bin")],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": f"{fakes}{os.pathsep}{basics}", "HOME": str(tmp_path)},
        check=False,
    )


def test_kustomize_of_the_argocd_version_comes_first(tmp_path: Path) -> None:
    found = _find(
        tmp_path,
        kustomize="#!/usr/bin/env bash\necho v5.8.1\n",
        kubectl="#!/usr/bin/env bash\nexit 0\n",
    )
    assert (found.returncode, found.stdout, found.stderr) == (0, "kustomize build\n", "")


def test_kubectl_is_used_when_kustomize_is_another_version(tmp_path: Path) -> None:
    found = _find(
        tmp_path,
        kustomize="#!/usr/bin/env bash\necho v5.4.2\n",
        kubectl="#!/usr/bin/env bash\nexit 0\n",
    )
    assert (found.returncode, found.stdout) == (0, "kubectl kustomize\n")


def test_a_kustomize_installed_into_the_venv_before_is_used(tmp_path: Path) -> None:
    installed = tmp_path / "venv-bin" / "kustomize"
    installed.parent.mkdir()
    installed.write_text("#!/usr/bin/env bash\necho v5.8.1\n", encoding="utf-8")
    installed.chmod(0o755)
    found = _find(tmp_path, kubectl="#!/usr/bin/env bash\nexit 0\n")
    assert (found.returncode, found.stdout) == (0, f"{installed} build\n")


def test_with_neither_it_installs_and_a_failed_download_says_what_to_install(
    tmp_path: Path,
) -> None:
    found = _find(tmp_path, curl=FAILING_CURL)

    assert found.returncode == 1
    assert found.stdout == ""
    lines = found.stderr.splitlines()
    assert lines[0].startswith("find-kustomize: neither kustomize 5.8.1 nor kubectl is on PATH")
    assert "installing kustomize 5.8.1 into" in lines[0]
    assert len(lines) == 2, found.stderr
    assert lines[1].startswith("find-kustomize: cannot install kustomize 5.8.1 (curl: (6)")
    assert "install kubectl, or kustomize 5.8.1 from" in lines[1]
    assert not (tmp_path / "venv-bin" / "kustomize").exists()
