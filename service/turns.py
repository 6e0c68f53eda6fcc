"""Work done once per turn of the event loop instead of once per request.

Under load a worker finishes many requests in one turn of its event loop. What each of
them would otherwise write on its own (a log line, metric updates) is collected during
the turn and written once when it ends: one system call or one locked write per turn
instead of one per request, and nothing waits longer than the turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class EndOfTurn:
    """Runs `flush` once at the end of the current turn of the event loop, however often
    `schedule` is called during it; at once when no event loop is running.

    A scheduled run belongs to a loop: an app may run on one loop after another (the
    tests do), and a loop closed before its run came does not stop the next one.
    """

    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush
        self._loop: asyncio.AbstractEventLoop | None = None

    def schedule(self) -> None:
        """Make sure `flush` runs at the end of this turn."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._flush()
            return
        if self._loop is not loop:
            self._loop = loop
            loop.call_soon(self._run)

    def _run(self) -> None:
        self._loop = None
        self._flush()
