"""Scenario 6: the GitOps state survives interrupted, concurrent and corrupt-input runs of the
real tool (`python -m gitops set-image`, scripts/release/bump-staging.sh) on real git clones."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from harness.git import clone, git, git_env, init_origin
from harness.servers import REPO_ROOT
from reliability.outcome import Outcome

ENV = "staging"
# The image entry a bump edits (staging runs it from main), and the record written with it.
OVERLAY = Path("deploy/release/kustomization.yaml")
RECORD = Path("deploy/release/release.yaml")
IMAGE = "europe-west1-docker.pkg.dev/example-project/iris/iris-api"


def image_ref(n: int) -> str:
    """A well-formed, non-placeholder image reference, different for every n."""
    tag = f"{n + 1:07x}"
    digest = f"{(n + 1) * 0x9E3779B97F4A7C15 % 16**64:064x}"
    return f"{IMAGE}:sha-{tag}@sha256:{digest}"


def _env() -> dict[str, str]:
    return {**git_env(), "PYTHONPATH": str(REPO_ROOT), "PYTHON": sys.executable}


def set_image_argv(repo: Path, ref: str) -> list[str]:
    return [sys.executable, "-m", "gitops", "-C", str(repo), "set-image", ENV, ref]


def run_set_image(repo: Path, ref: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        set_image_argv(repo, ref), capture_output=True, text=True, env=_env(), check=False
    )


def _kill_at_random(
    work: Path, expected: dict[str, bytes], kills: int, run_s: float, rng: random.Random
) -> dict[str, int]:
    """SIGKILL `kills` set-image runs at random moments; how often the overlay was left
    as it was (old), as the run would write it (new), or as neither (torn)."""
    outcomes = {"old": 0, "new": 0, "torn": 0}
    for i in range(kills):
        ref = image_ref(i % 2)
        before = (work / OVERLAY).read_bytes()
        proc = subprocess.Popen(
            set_image_argv(work, ref),
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.0, run_s * 1.1))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        after = (work / OVERLAY).read_bytes()
        if after == before:
            outcomes["old"] += 1
        elif after == expected[ref]:
            outcomes["new"] += 1
        else:
            outcomes["torn"] += 1
    return outcomes


def gitops_state_safety(
    workdir: Path, *, kills: int = 40, concurrent_rounds: int = 3, seed: int = 1
) -> Outcome:
    """Kill the tool at random points, run two bumps at once, feed it corrupt overlays."""
    out = Outcome("6 GitOps state safety", "")
    started = time.perf_counter()
    rng = random.Random(seed)
    origin = init_origin(workdir)

    # The two states a killed run may leave: the file before, or the file after.
    scratch = clone(origin, workdir / "scratch")
    original = (scratch / OVERLAY).read_bytes()
    expected: dict[str, bytes] = {}
    durations = []
    for n in range(2):
        t0 = time.perf_counter()
        done = run_set_image(scratch, image_ref(n))
        durations.append(time.perf_counter() - t0)
        if done.returncode != 0:
            out.check(f"set-image works on a clean clone ({done.stderr.strip()})", False)
            return out
        expected[image_ref(n)] = (scratch / OVERLAY).read_bytes()
    run_s = max(durations)

    # 1. SIGKILL at random points.
    work = clone(origin, workdir / "kills")
    outcomes = _kill_at_random(work, expected, kills, run_s, rng)
    leftovers = [
        line[3:]
        for line in git(work, "status", "--porcelain", "--untracked-files=all").splitlines()
        if line.startswith("??")
    ]
    final = run_set_image(work, image_ref(5))
    out.check(
        f"{kills} kills: kustomization.yaml always old or new ({outcomes})", outcomes["torn"] == 0
    )
    out.check("the tool works after the kills", final.returncode == 0)

    # 2. Two set-image runs at once on one clone; then two full bumps at once.
    concurrent = []
    for round_no in range(concurrent_rounds):
        refs = [image_ref(10 + 2 * round_no), image_ref(11 + 2 * round_no)]
        procs = [
            subprocess.Popen(
                set_image_argv(work, r),
                env=_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for r in refs
        ]
        results = [(p.wait(), p.communicate()[1].strip()) for p in procs]
        concurrent.append([code for code, _ in results])
        clean = all(
            code == 0 or (code != 0 and err.startswith("gitops: error:")) for code, err in results
        )
        out.check(
            f"concurrent set-image round {round_no + 1}: both succeed or one fails cleanly "
            f"({[code for code, _ in results]})",
            clean and any(code == 0 for code, _ in results),
        )
        out.check(
            f"concurrent set-image round {round_no + 1}: file holds one of the two refs",
            (work / OVERLAY).read_bytes() in expected_bytes(scratch, refs),
        )
    bump_codes = concurrent_bumps(origin, workdir, out)

    # 3. Corrupt overlays are refused and nothing changes.
    corrupt_overlays(origin, workdir, out, original)

    out.duration_s = time.perf_counter() - started
    out.requests = kills + 2 * concurrent_rounds + 2 + 4 * 2
    out.failures = sum(1 for _, passed in out.checks if not passed)
    out.load = (
        f"{kills} random SIGKILLs, {concurrent_rounds} concurrent pairs, 2 bumps, 4 corruptions"
    )
    out.figure = (
        f"kills left old {outcomes['old']} / new {outcomes['new']} / torn {outcomes['torn']}; "
        f"{len(leftovers)} stray temp file(s); concurrent exits {concurrent}, bumps {bump_codes}"
    )
    out.details = {
        "run_s": run_s,
        "kill_outcomes": outcomes,
        "leftover_files": leftovers,
        "concurrent_exit_codes": concurrent,
        "bump_exit_codes": bump_codes,
    }
    return out


_EXPECTED_CACHE: dict[str, bytes] = {}


def expected_bytes(scratch: Path, refs: list[str]) -> list[bytes]:
    """What the overlay holds after a completed set-image of each ref (computed once each)."""
    result = []
    for ref in refs:
        if ref not in _EXPECTED_CACHE:
            done = run_set_image(scratch, ref)
            if done.returncode != 0:
                raise RuntimeError(done.stderr)
            _EXPECTED_CACHE[ref] = (scratch / OVERLAY).read_bytes()
        result.append(_EXPECTED_CACHE[ref])
    return result


def _bump(repo: Path, ref: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["bash", str(REPO_ROOT / "scripts/release/bump-staging.sh"), ref],
        cwd=repo,
        env={**_env(), "GITOPS_RETRY_DELAY": "0", "GITOPS_PUSH_ATTEMPTS": "5"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def concurrent_bumps(origin: Path, workdir: Path, out: Outcome) -> list[int]:
    """Two release bumps at once on one clone: serialised, or one fails cleanly."""
    work = clone(origin, workdir / "bumps")
    head = git(origin, "rev-parse", "main")
    refs = [image_ref(30), image_ref(31)]
    procs = [_bump(work, ref) for ref in refs]
    codes = []
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        codes.append(proc.returncode)
        if proc.returncode != 0:
            out.details.setdefault("bump_errors", []).append(err.strip()[-500:])
    new_commits = git(origin, "rev-list", f"{head}..main").split()
    files = set()
    for commit in new_commits:
        files.update(git(origin, "show", "--name-only", "--format=", commit).split())
    pushed = git(origin, "show", f"main:{OVERLAY}")
    out.check(
        f"concurrent bumps: both pushed or one failed cleanly ({codes})",
        all(c in (0, 1, 2) for c in codes) and 0 in codes,
    )
    out.check(
        f"concurrent bumps: one commit per successful bump ({len(new_commits)})",
        len(new_commits) == codes.count(0),
    )
    out.check(
        "concurrent bumps: commits touch only the release entry and its record",
        files <= {str(OVERLAY), str(RECORD)},
    )
    out.check(
        "concurrent bumps: origin's overlay names one of the two images",
        any(ref.split("@")[1] in pushed for ref in refs),
    )
    out.check(
        "concurrent bumps: clone left clean",
        git(work, "status", "--porcelain", "--untracked-files=no") == "",
    )
    return codes


CORRUPTIONS: dict[str, Callable[[str], str]] = {
    "truncated mid-file": lambda text: text[: len(text) // 2],
    "not YAML": lambda text: text.replace("images:", "images: [\n  - {", 1),
    "images entry removed": lambda text: text[: text.index("images:")],
    "resource missing": lambda text: text.replace("job.yaml", "no-such-job.yaml", 1),
}


def corrupt_overlays(origin: Path, workdir: Path, out: Outcome, original: bytes) -> None:
    """set-image on a corrupt working copy changes nothing; a bump from a corrupt tip pushes
    nothing."""
    text = original.decode()
    for name, corrupt in CORRUPTIONS.items():
        slug = name.replace(" ", "-")
        work = clone(origin, workdir / f"corrupt-{slug}")
        bad = corrupt(text).encode()
        (work / OVERLAY).write_bytes(bad)
        done = run_set_image(work, image_ref(40))
        out.check(
            f"{name}: set-image refuses it (exit {done.returncode})",
            done.returncode != 0 and done.stderr.startswith("gitops: error:"),
        )
        out.check(f"{name}: file left byte-identical", (work / OVERLAY).read_bytes() == bad)
        # The same corruption committed upstream: the release bump must push nothing.
        git(work, "commit", "-q", "-am", f"corrupt overlay: {name}")
        git(work, "push", "-q", "origin", "HEAD:refs/heads/corrupt-" + slug)
        bumper = clone(origin, workdir / f"bump-{slug}")
        git(bumper, "checkout", "-q", f"corrupt-{slug}")
        tip = git(origin, "rev-parse", f"corrupt-{slug}")
        bump = subprocess.run(
            ["bash", str(REPO_ROOT / "scripts/release/bump-staging.sh"), image_ref(41)],
            cwd=bumper,
            env={**_env(), "GITOPS_BRANCH": f"corrupt-{slug}", "GITOPS_PUSH_ATTEMPTS": "1"},
            capture_output=True,
            text=True,
            check=False,
        )
        out.check(f"{name}: release bump fails (exit {bump.returncode})", bump.returncode != 0)
        out.check(f"{name}: nothing pushed", git(origin, "rev-parse", f"corrupt-{slug}") == tip)
