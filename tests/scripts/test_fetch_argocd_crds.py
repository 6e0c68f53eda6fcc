"""scripts/fetch-argocd-crds.sh: pinned schemas for CI, checked before they are kept.

No network here, so `curl` is a stand-in that writes given bytes where the script asked.
This checks our script's logic (every file verified before any is written, the tag in the
URL), and that its pinned sums are those of the CRDs the Argo CD tests read locally.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

from tests.argocd.support import ARGOCD_VERSION, CRD_FILES, crds_dir
from tests.scripts.support import REPO_ROOT, run_with_stand_ins, write_stand_in

SCRIPT = REPO_ROOT / "scripts" / "fetch-argocd-crds.sh"

# Writes $FAKE_SOURCE/<file name of the URL> to --output, or junk when there is none.
FAKE_CURL = """#!/usr/bin/env bash
printf '%s\\n' "$*" >>"$FAKE_LOG"
url="${*: -1}"
while (($#)); do
  if [[ "$1" == --output ]]; then
    source_file="$FAKE_SOURCE/${url##*/}"
    if [[ -f "$source_file" ]]; then cp "$source_file" "$2"; else printf 'junk' >"$2"; fi
  fi
  shift
done
"""


@pytest.fixture
def local_crds() -> Path:
    """The CRDs the Argo CD tests read, where this machine has them."""
    directory = crds_dir(REPO_ROOT)
    if directory is None:
        pytest.skip("the Argo CD CRDs are not available locally (ARGOCD_CRDS_DIR)")
    return directory


def pinned_sums() -> dict[str, str]:
    text = SCRIPT.read_text(encoding="utf-8")
    return dict(re.findall(r"^\s+([a-z-]+\.yaml)=([0-9a-f]{64})", text, re.M))


def run_fetch(tmp_path: Path, source: Path, dest: Path) -> tuple[int, str, list[str]]:
    fakes = tmp_path / "bin"
    write_stand_in(fakes, "curl", FAKE_CURL)
    result, calls = run_with_stand_ins(
        SCRIPT,
        [str(dest)],
        fakes,
        tmp_path / "curl.log",
        env={**os.environ, "FAKE_SOURCE": str(source)},
        timeout=30,
    )
    urls = [line.split()[-1] for line in calls]
    return result.returncode, result.stderr, urls


def test_the_script_pins_both_crds_of_the_version_the_tests_expect() -> None:
    assert set(pinned_sums()) == set(CRD_FILES.values())
    assert f'readonly ARGOCD_VERSION="{ARGOCD_VERSION}"' in SCRIPT.read_text(encoding="utf-8")


def test_pinned_sums_are_those_of_the_crds_the_argocd_tests_read(local_crds: Path) -> None:
    for name, digest in pinned_sums().items():
        assert hashlib.sha256((local_crds / name).read_bytes()).hexdigest() == digest, name


def test_a_download_with_the_wrong_checksum_writes_nothing(tmp_path: Path) -> None:
    source = tmp_path / "upstream"
    source.mkdir()
    dest = tmp_path / "crds"
    returncode, stderr, urls = run_fetch(tmp_path, source, dest)
    assert returncode != 0
    assert "checksum mismatch for application-crd.yaml" in stderr
    assert not dest.exists()
    assert urls == [
        "https://raw.githubusercontent.com/argoproj/argo-cd/"
        f"{ARGOCD_VERSION}/manifests/crds/application-crd.yaml"
    ]


def test_one_bad_file_keeps_the_good_one_out_too(local_crds: Path, tmp_path: Path) -> None:
    source = tmp_path / "upstream"
    source.mkdir()
    # The first file is the real one, the second is not.
    (source / "application-crd.yaml").write_bytes(
        (local_crds / "application-crd.yaml").read_bytes()
    )
    dest = tmp_path / "crds"
    returncode, stderr, _ = run_fetch(tmp_path, source, dest)
    assert returncode != 0
    assert "checksum mismatch for appproject-crd.yaml" in stderr
    assert not dest.exists()


def test_the_real_files_are_kept_where_the_argocd_tests_look(
    local_crds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "crds"
    returncode, stderr, urls = run_fetch(tmp_path, local_crds, dest)
    assert returncode == 0, stderr
    assert len(urls) == 2
    for name in CRD_FILES.values():
        assert (dest / name).read_bytes() == (local_crds / name).read_bytes()
    # What CI does next: point the Argo CD tests at the directory.
    monkeypatch.setenv("ARGOCD_CRDS_DIR", str(dest))
    assert crds_dir(REPO_ROOT) == dest
