"""uvicorn's HTTP/1.1 protocol with the two limits on request headers that it lacks, and
answers written in one piece.

The app only sees a request once its headers are complete, so it cannot protect itself
from a client that is slow or endless in sending them. uvicorn (0.54, httptools parser)
bounds neither: a connection that sends nothing, or one header byte a second, is held
forever, and a client streaming header lines grew a worker by 110 MiB for 100 MB sent.
This subclass adds a deadline for the request line and headers (the body timeout,
IRIS_BODY_TIMEOUT, counted from the connection or from the request's first byte) and a
cap on their size (MAX_HEADER_BYTES); either ends the connection with a JSON 408 or 431.
service.server installs it in every worker (gunicorn's post_fork hook).

uvicorn writes an answer's status line and headers, then its body: two system calls and
two TCP segments (the socket has TCP_NODELAY) for every response, and a client woken
twice. Here the head waits for the body's first bytes and both go out in one write.

uvicorn starts an ASGI task for a request as soon as its headers are parsed. Most
requests arrive in one read, body included; for those this protocol waits until the read
is parsed and, when the body is complete by then, calls the app's `complete_request`
(service.front.Front.complete) and writes the whole answer it returns, with no task. A
body still arriving, `Expect: 100-continue`, HEAD, a request the app declines (None) and
an app without `complete_request` go through ASGI as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import orjson
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from service.logs import SERVICE_LOGGER

MAX_HEADER_BYTES = 64 * 1024
"""Request line plus headers; common servers allow 8-32 KiB, this API's clients send < 1 KiB."""

log = logging.getLogger(SERVICE_LOGGER)

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class _PendingHeaders:
    """The connections of this process still waiting for a request's headers.

    One sweep per event loop, while any connection is waiting, instead of a timer per
    request (scheduling and cancelling one costs ~2.5 us a request).
    """

    def __init__(self) -> None:
        self.waiting: set[GuardedHttpToolsProtocol] = set()
        self._sweeping: asyncio.AbstractEventLoop | None = None

    def add(self, protocol: GuardedHttpToolsProtocol, loop: asyncio.AbstractEventLoop) -> None:
        self.waiting.add(protocol)
        if self._sweeping is not loop:
            self._sweeping = loop
            loop.call_later(GuardedHttpToolsProtocol.sweep_interval(), self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._sweeping is not loop:
            return
        now = loop.time()
        late = [p for p in self.waiting if p.header_deadline is None or p.header_deadline <= now]
        for protocol in late:
            self.waiting.discard(protocol)
            if protocol.header_deadline is not None:
                protocol.headers_timed_out()
        if self.waiting:
            loop.call_later(GuardedHttpToolsProtocol.sweep_interval(), self._sweep, loop)
        else:
            self._sweeping = None


_pending = _PendingHeaders()


class _HeadWithBody:
    """The transport as a response cycle sees it: the status line and headers it writes
    are held and go out with the body's first bytes (or before a close), so a response
    is one write instead of two (one system call, and one TCP segment when it fits).

    An interim `100 Continue` goes out at once. A HEAD response, which has no body to
    wait for, is never given one of these.
    """

    __slots__ = ("_head", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None  # None: nothing written yet; b"": head sent

    def write(self, data: bytes) -> None:
        head = self._head
        if head is None and not data.startswith(b"HTTP/1.1 1"):
            self._head = data  # the status line and headers: wait for the body
        elif head:
            self._head = b""
            self._transport.writelines((head, data))
        else:
            self._transport.write(data)

    def close(self) -> None:
        if self._head:
            self._transport.write(self._head)
            self._head = b""
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


Complete = Callable[[str, str, Iterable[tuple[bytes, bytes]], bytes], Any]
"""`complete_request(method, path, headers, body)` of an app: a whole answer with `status`,
`headers`, `body` and `close` (service.front.Completed), or None to be called through ASGI."""


def _complete_request(app: Any) -> Complete | None:
    # The app's own entry point for whole requests, under the middleware uvicorn wraps it
    # in (each holds the next as `app`, as ASGI middleware do).
    for _ in range(8):
        found = getattr(app, "complete_request", None)
        if found is not None:
            return found  # type: ignore[no-any-return]
        app = getattr(app, "app", None)
        if app is None:
            break
    return None


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that cuts off slow or oversized request headers, and answers a
    request that arrived whole through the app's `complete_request` when it has one."""

    header_timeout: ClassVar[float] = 10.0
    """Seconds a client gets for a request line and headers (set from IRIS_BODY_TIMEOUT)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # When the current request's headers must be complete; None once they are.
        self.header_deadline: float | None = None
        self._header_bytes = 0
        self._complete = _complete_request(self.app)
        # A request whose headers are in but whose ASGI task is not started: it is
        # answered by `_complete` once its body is in, if that happens in the same read.
        self._holding = False
        self._held: tuple[RequestResponseCycle, Any] | None = None

    @classmethod
    def sweep_interval(cls) -> float:
        """How often waiting connections are checked: late by at most this much."""
        return min(1.0, cls.header_timeout / 4)

    def _start_header_clock(self) -> None:
        if self.header_deadline is None:
            self.header_deadline = self.loop.time() + self.header_timeout
            self._header_bytes = 0
            _pending.add(self, self.loop)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """A new connection owes its first request line from now on."""
        super().connection_made(transport)
        self._start_header_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop watching a connection that is gone."""
        self.header_deadline = None
        _pending.waiting.discard(self)
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        """The first byte of a request (on a kept-alive connection) starts the clock."""
        super().on_message_begin()
        self._start_header_clock()

    def on_headers_complete(self) -> None:
        """Headers in time and in size: the request goes to the app as usual, its answer
        written in one piece."""
        self.header_deadline = None
        _pending.waiting.discard(self)
        previous = self.cycle
        self._holding = (
            self._complete is not None
            and not self.expect_100_continue
            and self.parser.get_method() in (b"GET", b"POST")
        )
        try:
            super().on_headers_complete()
        finally:
            self._holding = False
        cycle = self.cycle
        if cycle is not previous and cycle is not None and self.scope["method"] != "HEAD":
            cycle.transport = _HeadWithBody(self.transport)  # type: ignore[assignment]

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        # Called by on_headers_complete for a request that may start now. Hold it if the
        # body may still arrive in this read; app is the app itself unless uvicorn put
        # its over-the-limit answer in its place.
        if self._holding and app is self.app:
            self._held = (cycle, app)
            return
        super()._start_asgi_task(cycle, app)

    def on_message_complete(self) -> None:
        """The whole request is in: answer a held one at once, without an ASGI task."""
        super().on_message_complete()
        held = self._held
        if held is not None and held[0] is self.cycle:
            self._held = None
            self._answer_whole(*held)

    def _answer_whole(self, cycle: RequestResponseCycle, app: Any) -> None:
        scope = cycle.scope
        answer = None
        # While the client is not reading its answers (the transport's buffer is over its
        # high-water mark), requests wait in ASGI, which waits for the buffer to drain
        # and stops reading pipelined ones: answered here, they would pile up unbounded.
        if (
            self._complete is not None
            and not self.transport.is_closing()
            and not self.flow.write_paused
        ):
            try:
                answer = self._complete(
                    scope["method"], scope["path"], scope["headers"], bytes(cycle.body)
                )
            except Exception:  # a fault of the app's, not the client's: ASGI answers it
                log.exception("answering a whole request failed; handing it to ASGI")
        if answer is None:
            super()._start_asgi_task(cycle, app)
            return
        keep_alive = cycle.keep_alive and not answer.close
        content = [STATUS_LINE[answer.status]]
        for name, value in (*self.server_state.default_headers, *answer.headers):
            content += (name, b": ", value, b"\r\n")
        if not keep_alive:
            content.append(b"connection: close\r\n")
        content.append(b"\r\n")
        # One write of two buffers (writev), as _HeadWithBody does: the body is not copied.
        self.transport.writelines((b"".join(content), answer.body))
        cycle.response_started = cycle.response_complete = True
        if not keep_alive:
            self.transport.close()
        self.on_response_complete()

    def data_received(self, data: bytes) -> None:
        """Parse as uvicorn does, then count the bytes of headers still incomplete; a held
        request whose body is still on its way goes to the app through ASGI as usual."""
        super().data_received(data)
        held = self._held
        if held is not None:
            self._held = None
            if not self.transport.is_closing():
                super()._start_asgi_task(*held)
        # Still waiting for headers after this chunk: all of it was request line and
        # headers (or a pipelined request's start: counted too, erring on the safe side).
        if self.header_deadline is not None and not self.transport.is_closing():
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                log.info(
                    "request headers too large",
                    extra={"fields": {"limit_bytes": MAX_HEADER_BYTES}},
                )
                self._refuse(
                    431, f"request line and headers are larger than {MAX_HEADER_BYTES} bytes"
                )

    def headers_timed_out(self) -> None:
        """Called by the sweep when the deadline passed before the headers were complete."""
        self.header_deadline = None
        if self.transport.is_closing():
            return
        log.info(
            "request headers timed out",
            extra={"fields": {"received_bytes": self._header_bytes}},
        )
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request dawdles while the previous response is being written:
            # no room for an answer of our own.
            self.transport.close()
            return
        self._refuse(
            408,
            f"the request line and headers did not arrive within {self.header_timeout:g} s "
            "(IRIS_BODY_TIMEOUT)",
        )

    def _refuse(self, status: int, detail: str) -> None:
        self.header_deadline = None
        _pending.waiting.discard(self)
        body = orjson.dumps({"detail": detail})
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), body)
        )
        self.transport.close()
