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
import weakref
from collections.abc import Callable


class EndOfTurn:
    """Runs `flush` once at the end of the current turn of the event loop, however often
    `schedule` is called during it; at once when no event loop is running.

    A scheduled run belongs to a loop: an app may run on one loop after another (the
    tests do), and a loop closed before its run came does not stop the next one.

    Once a run is scheduled, further calls in the turn return without asking asyncio
    for the running loop: on Python 3.11 `asyncio.get_running_loop()` makes a getpid
    system call each time (to notice a fork), several per request otherwise.
    """

    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop a run is due on
        self._thread = 0  # the thread that scheduled it
        _instances.add(self)

    def schedule(self) -> None:
        """Make sure `flush` runs at the end of this turn."""
        scheduled = self._loop
        if (
            scheduled is not None
            and self._thread == threading.get_ident()
            and scheduled.is_running()
        ):
            return  # this thread's running loop: the run is due at the end of this turn
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._flush()
            return
        if scheduled is not loop:
            self._loop, self._thread = loop, threading.get_ident()
            loop.call_soon(self._run)

    def _run(self) -> None:
        self._loop = None
        self._flush()


# A forked child holds copies of its parent's loops that will never run its callbacks: a run
# due on one of them is forgotten, so the child's first schedule() asks for its own loop.
_instances: weakref.WeakSet[EndOfTurn] = weakref.WeakSet()


def _forget_runs_due_in_the_parent() -> None:
    for end_of_turn in list(_instances):
        end_of_turn._loop = None


os.register_at_fork(after_in_child=_forget_runs_due_in_the_parent)
