"""Work done once per turn of the event loop instead of once per request.

Under load a worker finishes many requests in one turn of its event loop. What each of
them would otherwise write on its own (a log line, metric updates) is collected during
the turn and written once when it ends: one system call or one locked write per turn
instead of one per request, and nothing waits longer than the turn.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable

_last: tuple[asyncio.AbstractEventLoop | None, int] = (None, 0)  # a loop and its thread


def running_loop() -> asyncio.AbstractEventLoop:
    """The event loop running in this thread, as `asyncio.get_running_loop()` returns it;
    RuntimeError when there is none.

    On Python 3.11 `asyncio.get_running_loop()` (and `asyncio.current_task()`, which asks
    it) makes a getpid system call each time, to notice a fork: several per request. The
    loop found last is kept with its thread, and answered again while it is running and
    this is that thread (a thread runs one loop at a time). A forked child forgets it.
    """
    global _last  # a one-entry cache, replaced whole (no lock needed)
    loop, thread = _last
    ident = threading.get_ident()
    if loop is not None and thread == ident and loop.is_running():
        return loop
    loop = asyncio.get_running_loop()
    _last = (loop, ident)
    return loop


def _forget_the_parents_loop() -> None:
    global _last
    _last = (None, 0)


os.register_at_fork(after_in_child=_forget_the_parents_loop)


class EndOfTurn:
    """Runs `flush` once at the end of the current turn of the event loop, however often
    `schedule` is called during it; at once when no event loop is running.

    With `spacing` (seconds), runs on a loop start at least that far apart: a run due
    sooner waits, and what later turns add goes out with it. Under load that is one run
    per `spacing` instead of one per turn; when the loop is quiet the wait has passed and
    the run comes at the end of the turn, as without it.

    A scheduled run belongs to a loop: an app may run on one loop after another (the
    tests do), and a loop closed before its run came does not stop the next one; nor
    does a run due on the parent's loop in a forked child.
    """

    def __init__(self, flush: Callable[[], None], spacing: float = 0.0) -> None:
        self._flush = flush
        self._spacing = spacing
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop a run is due on
        self._not_before = 0.0  # the loop time (monotonic) before which no run starts

    def schedule(self) -> None:
        """Make sure `flush` runs at the end of this turn (or once `spacing` has passed)."""
        try:
            loop = running_loop()
        except RuntimeError:
            self._flush()
            return
        if self._loop is not loop:
            self._loop = loop
            wait = self._not_before - loop.time() if self._spacing else 0.0
            if wait > 0:
                loop.call_later(wait, self._run)
            else:
                loop.call_soon(self._run)

    def _run(self) -> None:
        loop, self._loop = self._loop, None
        if self._spacing and loop is not None:
            self._not_before = loop.time() + self._spacing
        self._flush()
