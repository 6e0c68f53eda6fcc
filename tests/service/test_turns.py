"""EndOfTurn runs its flush once at the end of a turn of the event loop (service.turns)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time

from service.turns import EndOfTurn


def test_one_flush_per_turn_however_often_it_is_scheduled() -> None:
    flushes: list[int] = []
    turn = 0
    end_of_turn = EndOfTurn(lambda: flushes.append(turn))

    async def turns() -> None:
        nonlocal turn
        for turn in range(3):
            for _ in range(5):
                end_of_turn.schedule()
            assert flushes == list(range(turn))  # not yet: the turn has not ended
            await asyncio.sleep(0)

    asyncio.run(turns())

    assert flushes == [0, 1, 2]


def test_without_a_running_loop_it_flushes_at_once() -> None:
    flushes: list[str] = []
    end_of_turn = EndOfTurn(lambda: flushes.append("now"))

    end_of_turn.schedule()
    end_of_turn.schedule()

    assert flushes == ["now", "now"]


def test_a_loop_closed_before_its_run_does_not_stop_the_next_loop() -> None:
    flushes: list[str] = []
    end_of_turn = EndOfTurn(lambda: flushes.append("flushed"))
    first = asyncio.new_event_loop()

    async def schedule_then_abort() -> None:
        end_of_turn.schedule()
        raise SystemExit  # leaves the loop at once: the run stays queued on `first`

    with contextlib.suppress(SystemExit):
        first.run_until_complete(schedule_then_abort())
    first.close()
    assert flushes == []

    async def schedule_and_wait() -> None:
        end_of_turn.schedule()
        await asyncio.sleep(0)

    asyncio.run(schedule_and_wait())

    assert flushes == ["flushed"]


def test_a_thread_without_a_loop_flushes_at_once_while_another_thread_runs_one() -> None:
    flushes: list[str] = []
    end_of_turn = EndOfTurn(lambda: flushes.append(threading.current_thread().name))
    scheduled, release = threading.Event(), threading.Event()

    async def hold_a_turn() -> None:
        end_of_turn.schedule()  # due at the end of this turn, which waits for the other thread
        scheduled.set()
        release.wait(5)

    runner = threading.Thread(target=asyncio.run, args=(hold_a_turn(),), name="loop")
    runner.start()
    assert scheduled.wait(5)
    end_of_turn.schedule()  # this thread has no loop: flushed here, now
    release.set()
    runner.join(5)

    assert flushes[0] == threading.current_thread().name
    assert flushes[1:] == ["loop"]


def test_a_forked_child_schedules_its_own_run_while_its_parent_has_one_due() -> None:
    read_end, write_end = os.pipe()

    def flush() -> None:
        os.write(write_end, b"flushed\n")

    end_of_turn = EndOfTurn(flush)

    async def fork_while_a_run_is_due() -> None:
        end_of_turn.schedule()  # due at the end of this turn, on the parent's loop
        pid = os.fork()
        if pid == 0:  # the child: a loop of its own, which must get the run
            try:

                async def child() -> None:
                    end_of_turn.schedule()
                    await asyncio.sleep(0)

                asyncio.new_event_loop().run_until_complete(child())
            finally:
                os._exit(0)
        os.waitpid(pid, 0)

    asyncio.run(fork_while_a_run_is_due())
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        lines = reader.read().splitlines()

    assert lines == ["flushed", "flushed"]  # the child's, then the parent's at its turn's end


def test_runs_with_a_spacing_start_that_far_apart_and_take_every_turn_in_between() -> None:
    spacing = 0.2
    runs: list[tuple[float, list[int]]] = []
    pending: list[int] = []

    def flush() -> None:
        runs.append((time.monotonic(), pending.copy()))
        pending.clear()

    end_of_turn = EndOfTurn(flush, spacing)

    async def turns() -> None:
        for turn in range(4):
            pending.append(turn)
            end_of_turn.schedule()
            await asyncio.sleep(0)
        assert len(runs) == 1  # the first turn's, at its end; the next three wait
        await asyncio.sleep(spacing + 0.1)

    asyncio.run(turns())

    assert [taken for _, taken in runs] == [[0], [1, 2, 3]]
    assert runs[1][0] - runs[0][0] >= spacing
