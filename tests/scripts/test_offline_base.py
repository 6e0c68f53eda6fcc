"""scripts/offline-base.sh with recording stand-ins for id, debootstrap, chroot and docker.

The stand-ins check the script's own logic: which mirror it picks from the apt sources,
what it asks debootstrap for, what ends up in the tarball it imports (the builder's CA
bundle, none of the host's identity), that an existing base is kept and that a failed run
imports nothing. Whether Debian and Docker accept the calls is shown by running
`make offline-base` for real on a machine with both (README, "The image").
"""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.scripts.support import REPO_ROOT, run_with_stand_ins, write_stand_in

SCRIPT = REPO_ROOT / "scripts" / "offline-base.sh"
MIRROR = "http://mirror.example.org/debian"
SECURITY = "http://mirror.example.org/debian-security"
CA = "-----BEGIN CERTIFICATE-----\nthe builder's own bundle\n-----END CERTIFICATE-----\n"

FAKE_ID = """#!/usr/bin/env bash
echo "${FAKE_UID:-0}"
"""

# Builds the little a real bootstrap leaves that the script touches afterwards.
FAKE_DEBOOTSTRAP = """#!/usr/bin/env bash
printf 'debootstrap %s\\n' "$*" >>"$FAKE_LOG"
[[ -z "${FAKE_DEBOOTSTRAP_FAILS:-}" ]] || { echo "E: Couldn't download packages" >&2; exit 1; }
root="${@: -2:1}"
mkdir -p "$root/etc/ssl/certs" "$root/usr/bin" "$root/var/cache/apt/archives" "$root/tmp"
echo "debian's own bundle" >"$root/etc/ssl/certs/ca-certificates.crt"
echo "builder-host" >"$root/etc/hostname"
echo "nameserver 192.0.2.53" >"$root/etc/resolv.conf"
touch "$root/var/cache/apt/archives/python3.11_3.11.2-6_amd64.deb" "$root/usr/bin/python3.11"
"""

FAKE_CHROOT = """#!/usr/bin/env bash
printf 'chroot %s\\n' "$*" >>"$FAKE_LOG"
echo 3.11.2
"""

FAKE_DOCKER = """#!/usr/bin/env bash
printf 'docker %s\\n' "$*" >>"$FAKE_LOG"
case "$1 $2" in
  "info "*) exit 0 ;;
  "image inspect")
    [[ "$*" == *--format* ]] && { echo 123000000; exit 0; }
    [[ -n "${FAKE_TAG_EXISTS:-}" || -e "$FAKE_IMPORTED" ]] ;;
  "import "*) cat >"$FAKE_IMPORTED"; echo sha256:0123 ;;
  *) echo "fake docker: unexpected: $*" >&2; exit 2 ;;
esac
"""

DEB822 = f"""\
Types: deb
URIs: {SECURITY}
Suites: bookworm-security
Components: main

# a disabled one
Types: deb
URIs: http://disabled.example.org/debian
Suites: bookworm
Enabled: no

Types: deb-src deb
URIs: {MIRROR}
Suites: bookworm bookworm-updates
Components: main
"""


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    calls: list[str]
    imported: Path

    def called(self, tool: str) -> list[str]:
        return [call for call in self.calls if call.startswith(tool + " ")]


@pytest.fixture
def apt_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "apt"
    (directory / "sources.list.d").mkdir(parents=True)
    (directory / "sources.list.d" / "debian.sources").write_text(DEB822, encoding="utf-8")
    return directory


def offline_base(tmp_path: Path, apt_dir: Path, *args: str, **extra_env: str) -> Run:
    fakes = tmp_path / "bin"
    for tool, text in (
        ("id", FAKE_ID),
        ("debootstrap", FAKE_DEBOOTSTRAP),
        ("chroot", FAKE_CHROOT),
        ("docker", FAKE_DOCKER),
    ):
        write_stand_in(fakes, tool, text)
    ca = tmp_path / "ca.crt"
    ca.write_text(CA, encoding="utf-8")
    keyring = tmp_path / "debian-archive-keyring.gpg"
    keyring.write_bytes(b"key")
    work = tmp_path / "tmp"
    work.mkdir(exist_ok=True)
    imported = tmp_path / "imported.tar"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DEBIAN_MIRROR", "FAKE_TAG_EXISTS", "FAKE_UID")
    }
    env.update(
        APT_SOURCES_DIR=str(apt_dir),
        CA_BUNDLE=str(ca),
        DEBIAN_KEYRING=str(keyring),
        TMPDIR=str(work),
        FAKE_IMPORTED=str(imported),
        **extra_env,
    )
    result, calls = run_with_stand_ins(
        SCRIPT, list(args), fakes, tmp_path / "calls.log", env=env, timeout=60
    )
    return Run(result.returncode, result.stdout, result.stderr, calls, imported)


def test_bootstraps_bookworm_from_the_configured_debian_archive(
    tmp_path: Path, apt_dir: Path
) -> None:
    run = offline_base(tmp_path, apt_dir)
    assert run.returncode == 0, run.stderr
    (debootstrap,) = run.called("debootstrap")
    words = debootstrap.split()
    # The main archive, not the security one listed first nor the disabled one.
    assert words[-3] == "bookworm"
    assert words[-2].startswith(str(tmp_path / "tmp") + "/")
    assert words[-1] == MIRROR
    assert "--variant=minbase" in words
    assert "--include=python3.11,python3.11-venv,python3-distutils" in words
    assert f"--keyring={tmp_path / 'debian-archive-keyring.gpg'}" in words
    assert "built iris-offline-base:bookworm" in run.stdout
    assert "Python 3.11.2" in run.stdout


def test_the_imported_tree_carries_the_builders_ca_bundle_and_not_its_identity(
    tmp_path: Path, apt_dir: Path
) -> None:
    run = offline_base(tmp_path, apt_dir)
    assert run.returncode == 0, run.stderr
    (imported,) = run.called("docker import")
    assert imported.split()[-1] == "iris-offline-base:bookworm"
    with tarfile.open(run.imported) as tar:
        names = {name.removeprefix("./") for name in tar.getnames()}
        bundle = tar.extractfile("./etc/ssl/certs/ca-certificates.crt")
        assert bundle is not None
        assert bundle.read().decode() == CA
        resolv = tar.extractfile("./etc/resolv.conf")
        assert resolv is not None
        assert resolv.read() == b""
    assert "etc/hostname" not in names
    assert not [name for name in names if name.endswith(".deb")]
    # Nothing is left behind in the temporary directory.
    assert list((tmp_path / "tmp").iterdir()) == []


def test_an_existing_base_is_kept_unless_forced(tmp_path: Path, apt_dir: Path) -> None:
    kept = offline_base(tmp_path, apt_dir, FAKE_TAG_EXISTS="1")
    assert kept.returncode == 0, kept.stderr
    assert "iris-offline-base:bookworm exists; keeping it" in kept.stdout
    assert kept.called("debootstrap") == []
    assert kept.called("docker import") == []

    forced = offline_base(tmp_path, apt_dir, "--force", "base:mine", FAKE_TAG_EXISTS="1")
    assert forced.returncode == 0, forced.stderr
    assert len(forced.called("debootstrap")) == 1
    (imported,) = forced.called("docker import")
    assert imported.split()[-1] == "base:mine"


def test_a_one_line_sources_list_is_read_too(tmp_path: Path) -> None:
    apt_dir = tmp_path / "apt"
    apt_dir.mkdir()
    (apt_dir / "sources.list").write_text(
        f"# deb http://old.example.org/debian bookworm main\n"
        f"deb {SECURITY} bookworm-security main\n"
        f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {MIRROR} bookworm main\n",
        encoding="utf-8",
    )
    run = offline_base(tmp_path, apt_dir)
    assert run.returncode == 0, run.stderr
    (debootstrap,) = run.called("debootstrap")
    assert debootstrap.split()[-1] == MIRROR


def test_debian_mirror_overrides_the_apt_sources(tmp_path: Path, apt_dir: Path) -> None:
    run = offline_base(tmp_path, apt_dir, DEBIAN_MIRROR="http://internal.example.org/debian")
    assert run.returncode == 0, run.stderr
    (debootstrap,) = run.called("debootstrap")
    assert debootstrap.split()[-1] == "http://internal.example.org/debian"


def test_without_a_configured_archive_it_asks_for_one_and_bootstraps_nothing(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "apt"
    empty.mkdir()
    run = offline_base(tmp_path, empty)
    assert run.returncode == 1
    assert "set DEBIAN_MIRROR=<URI>" in run.stderr
    assert run.called("debootstrap") == []
    assert run.called("docker import") == []


def test_a_failed_bootstrap_imports_nothing_and_leaves_nothing(
    tmp_path: Path, apt_dir: Path
) -> None:
    run = offline_base(tmp_path, apt_dir, FAKE_DEBOOTSTRAP_FAILS="1")
    assert run.returncode == 1
    assert "offline-base: debootstrap failed" in run.stderr
    assert "Couldn't download packages" in run.stderr
    assert run.called("docker import") == []
    assert list((tmp_path / "tmp").iterdir()) == []


def test_it_refuses_to_run_without_root(tmp_path: Path, apt_dir: Path) -> None:
    run = offline_base(tmp_path, apt_dir, FAKE_UID="1000")
    assert run.returncode == 1
    assert "debootstrap needs root" in run.stderr
    assert run.calls == []


def test_the_tarball_is_a_tree_rooted_at_dot(tmp_path: Path, apt_dir: Path) -> None:
    """docker import takes the tarball's root as the image's /: no leading directory."""
    run = offline_base(tmp_path, apt_dir)
    assert run.returncode == 0, run.stderr
    data = run.imported.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert {name.split("/")[0] for name in tar.getnames()} == {"."}
