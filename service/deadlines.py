"""A deadline for receiving a request body, so a slow client cannot hold a worker's connection.

uvicorn bounds how long an idle keep-alive connection stays open, but not how long a
client may take to send a body it has announced: one byte a second keeps a connection
(and the request's task and buffers) forever. The app therefore watches every body it
reads: a request still reading when its deadline passes is cancelled at its `receive()`
and answered 408.

One sweep per event loop, every `interval` seconds while some body is being read, does
the watching. A timer per request (`asyncio.timeout`) would cost ~6 us a request, some 8%
of a single-row prediction; registering in a dict costs well under one.
"""

from __future__ import annotations

import asyncio
from typing import Any

Task = asyncio.Task[Any]


class BodyDeadlines:
    """The requests of one app that are reading their body, and when each must be done."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        # A request is cut between `timeout` and `timeout + interval` seconds.
        self.interval = min(1.0, timeout / 4)
        self._reading: dict[Task, float] = {}
        self._expired: set[Task] = set()
        # The loop a sweep is scheduled on, None when none is; the tests run the app
        # on one loop after another, so a sweep belongs to a loop.
        self._sweeping: asyncio.AbstractEventLoop | None = None

    def watch(self, task: Task) -> None:
        """Start the clock for `task`, which is about to read its request body."""
        loop = task.get_loop()
        self._reading[task] = loop.time() + self.timeout
        if self._sweeping is not loop:
            self._sweeping = loop
            loop.call_later(self.interval, self._sweep, loop)

    def forget(self, task: Task) -> None:
        """`task` has stopped reading (whole body, error or timeout)."""
        self._reading.pop(task, None)
        self._expired.discard(task)

    def expired(self, task: Task) -> bool:
        """True if `task` was cancelled because its deadline passed."""
        return task in self._expired

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._sweeping is not loop:
            return  # a sweep of a loop that is no longer this app's
        now = loop.time()
        for task, deadline in list(self._reading.items()):
            if task.done():  # left behind by a loop that was closed mid-read
                del self._reading[task]
            elif deadline <= now and task.get_loop() is loop:
                del self._reading[task]
                self._expired.add(task)
                # The task is waiting in receive(): the cancellation lands there, and
                # the reader turns it into a 408.
                task.cancel()
        if self._reading:
            loop.call_later(self.interval, self._sweep, loop)
        else:
            self._sweeping = None
