"""scripts/install-kustomize.sh and install-promtool.sh refuse a download whose checksum is
not the pinned one.

No network here, so `curl` is a stand-in that records the URL and writes bytes that are not
the release. This checks our script's logic (verify before unpacking, install nothing on a
mismatch), not the release itself; the pinned sums are checked in tests/workflows.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import pytest

from tests.scripts.support import REPO_ROOT

# script -> the platforms it pins a checksum for, and the start of its download URL.
INSTALLERS = {
    "install-kustomize.sh": (
        {("Linux", "x86_64"), ("Linux", "aarch64"), ("Darwin", "x86_64"), ("Darwin", "arm64")},
        "https://github.com/kubernetes-sigs/kustomize/releases/download/kustomize/v5.8.1/"
        "kustomize_v5.8.1_",
    ),
    "install-promtool.sh": (
        {("Linux", "x86_64")},
        "https://github.com/prometheus/prometheus/releases/download/v2.53.4/"
        "prometheus-2.53.4.linux-amd64",
    ),
}

FAKE_CURL = """#!/usr/bin/env bash
printf '%s\\n' "$*" >>"$FAKE_LOG"
while (($#)); do
  if [[ "$1" == --output ]]; then printf 'not a kustomize release' >"$2"; fi
  shift
done
"""


@pytest.mark.parametrize("script", sorted(INSTALLERS))
def test_a_download_with_the_wrong_checksum_installs_nothing(tmp_path: Path, script: str) -> None:
    platforms, url_prefix = INSTALLERS[script]
    if (platform.system(), platform.machine()) not in platforms:
        pytest.skip(f"{script} pins no checksum for {platform.system()}/{platform.machine()}")
    fakes = tmp_path / "bin"
    fakes.mkdir()
    (fakes / "curl").write_text(FAKE_CURL, encoding="utf-8")
    (fakes / "curl").chmod(0o755)
    log = tmp_path / "curl.log"
    dest = tmp_path / "install"
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / script), str(dest)],
        capture_output=True,
        text=True,
        timeout=30,
        env={
            **os.environ,
            "PATH": f"{fakes}{os.pathsep}{os.environ['PATH']}",
            "FAKE_LOG": str(log),
        },
        check=False,
    )
    assert result.returncode != 0
    assert "checksum mismatch" in result.stderr
    assert not dest.exists()
    url = log.read_text(encoding="utf-8").split()[-1]
    assert url.startswith(url_prefix)
    assert url.endswith(".tar.gz")
