"""How the benchmark runs its client, and what it reads about the server's scheduling."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.config import Config
from bench.wrk import scheduling_prefix
from harness import procs

needs_linux_scheduler = pytest.mark.skipif(
    not hasattr(os, "SCHED_BATCH") or not hasattr(os, "sched_setaffinity"),
    reason="SCHED_BATCH and CPU affinity are Linux scheduler features",
)


@needs_linux_scheduler
def test_a_batch_client_really_runs_as_sched_batch_and_a_normal_one_as_other() -> None:
    probe = [sys.executable, "-c", "import os; print(os.sched_getscheduler(0))"]
    for policy, expected in (("batch", os.SCHED_BATCH), ("normal", os.SCHED_OTHER)):
        shown = subprocess.run(
            [*scheduling_prefix(policy), *probe],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert int(shown) == expected, policy


def test_an_unknown_client_scheduling_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BENCH_CLIENT_SCHED", "fifo")
    with pytest.raises(ValueError, match="BENCH_CLIENT_SCHED must be one of batch, normal"):
        Config()
    monkeypatch.setenv("BENCH_CLIENT_SCHED", "")
    assert Config().client_sched == "batch"
    with pytest.raises(ValueError, match="unknown client scheduling"):
        scheduling_prefix("fifo")


@needs_linux_scheduler
def test_preemptions_count_the_switches_of_a_process_that_shares_its_core() -> None:
    # Two busy processes on one core: the scheduler must switch between them while both
    # could run, which is what preemptions() counts; a sleeping process is never preempted.
    started = "import sys, time\nprint('started', flush=True)\n"
    spin = started + "while True: pass\n"
    sleep = started + "time.sleep(600)\n"
    core = {min(os.sched_getaffinity(0))}
    children = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for code in (spin, spin, sleep)
    ]
    *busy, sleeper = children
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline() == "started\n"
        for child in busy:
            os.sched_setaffinity(child.pid, core)
        time.sleep(0.05)
        before = {c.pid: procs.preemptions(c.pid) for c in children}
        time.sleep(0.3)
        after = {c.pid: procs.preemptions(c.pid) for c in children}
    finally:
        for child in children:
            child.kill()
            child.communicate(timeout=30)
    assert all(after[c.pid] > before[c.pid] for c in busy), (before, after)
    assert after[sleeper.pid] == before[sleeper.pid]
