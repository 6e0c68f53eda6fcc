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
requests arrive in one read, body included; for those this protocol keeps the method,
path and body (no scope's path, response cycle or task) until the read is parsed and,
when the body is complete by then, calls the app's `complete_request`
(service.front.Front.complete) and writes the whole answer it returns. A body still
arriving, `Expect: 100-continue`, HEAD, a request the app declines (None) and an app
without `complete_request` go through ASGI as before, handed over with what has arrived.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import httptools
import orjson
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

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


_WHOLE_METHODS = {b"GET": "GET", b"POST": "POST"}
"""Methods of requests answered whole (HEAD's answer has no body and goes through ASGI)."""


class _Whole:
    """A request kept for a whole answer: what `complete_request` needs, and the body so far."""

    __slots__ = ("body", "keep_alive", "method", "path")

    def __init__(self, method: str, path: str, keep_alive: bool) -> None:
        self.method = method
        self.path = path
        self.keep_alive = keep_alive
        self.body = b""


def _path(root_path: str, url: bytes) -> str:
    # The scope's path as uvicorn makes it: the URL's path, percent-decoded, under root_path.
    path: str = httptools.parse_url(url).path.decode("ascii")
    if "%" in path:
        path = urllib.parse.unquote(path)
    return root_path + path


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
        # A request whose headers are in, kept without a response cycle: answered by
        # `_complete` once its body is in, if that happens in the same read.
        self._whole: _Whole | None = None
        # When the connection fell idle after an answer (loop time); None while busy.
        self._idle_since: float | None = None

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
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None

    # uvicorn arms a timer for the keep-alive timeout after every answer and cancels it when
    # the next request's bytes arrive: ~1.2 us a request. Here the connection notes when it
    # fell idle, and one timer, armed when none is, checks that when it fires: it closes a
    # connection idle for the whole timeout, and otherwise waits for the rest of it.

    def on_response_complete(self) -> None:
        """An answer is out: start the next pipelined request, or fall idle."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._idle_since = None
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self._keep_alive_expired
            )

    def _unset_keepalive_if_required(self) -> None:
        # uvicorn calls this when bytes arrive: the connection is busy, not idle.
        self._idle_since = None

    def _keep_alive_expired(self) -> None:
        self.timeout_keep_alive_task = None
        idle_since = self._idle_since
        if idle_since is None:
            return  # busy: the answer it is waiting for arms the timer again
        left = idle_since + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self.timeout_keep_alive_task = self.loop.call_later(left, self._keep_alive_expired)
        else:
            self.timeout_keep_alive_handler()

    def on_message_begin(self) -> None:
        """The first byte of a request (on a kept-alive connection) starts the clock."""
        self._whole = None
        super().on_message_begin()
        self._start_header_clock()

    def on_headers_complete(self) -> None:
        """Headers in time and in size. A request that may be answered whole waits for its
        body without a response cycle (`_Whole`); any other goes to the app as usual, its
        answer written in one piece."""
        self.header_deadline = None
        _pending.waiting.discard(self)
        parser = self.parser
        previous = self.cycle
        if (
            self._complete is not None
            and not self.expect_100_continue
            and (previous is None or previous.response_complete)
            and self.limit_concurrency is None
            and not parser.should_upgrade()
        ):
            method = _WHOLE_METHODS.get(parser.get_method())
            if method is not None:
                keep_alive = parser.should_keep_alive() and parser.get_http_version() != "1.0"
                self._whole = _Whole(method, _path(self.root_path, self.url), keep_alive)
                return
        self._asgi_headers_complete()

    def _asgi_headers_complete(self) -> None:
        # uvicorn's own: the scope's method and path, a response cycle and its ASGI task.
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not previous and cycle is not None and self.scope["method"] != "HEAD":
            cycle.transport = _HeadWithBody(self.transport)  # type: ignore[assignment]

    def on_body(self, body: bytes) -> None:
        """A chunk of the body: kept for a request that may be answered whole."""
        whole = self._whole
        if whole is None:
            super().on_body(body)
        else:
            whole.body += body

    def on_message_complete(self) -> None:
        """The whole request is in: answer it at once, without an ASGI task, if the app does."""
        whole = self._whole
        if whole is None:
            super().on_message_complete()
            return
        self._whole = None
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
                answer = self._complete(whole.method, whole.path, self.headers, whole.body)
            except Exception:  # a fault of the app's, not the client's: ASGI answers it
                log.exception("answering a whole request failed; handing it to ASGI")
        if answer is None:
            self._to_asgi(whole, more_body=False)
            return
        keep_alive = whole.keep_alive and not answer.close
        lines = [b": ".join(header) for header in self.server_state.default_headers]
        lines += [b": ".join(header) for header in answer.headers]
        if not keep_alive:
            lines.append(b"connection: close")
        lines.append(b"")  # the blank line that ends the head
        head = STATUS_LINE[answer.status] + b"\r\n".join(lines) + b"\r\n"
        # One write of two buffers (writev), as _HeadWithBody does: the body is not copied.
        self.transport.writelines((head, answer.body))
        if not keep_alive:
            self.transport.close()
        self.on_response_complete()

    def _to_asgi(self, whole: _Whole, more_body: bool) -> None:
        """Hand a request kept for a whole answer to the app through ASGI after all, with
        the body received so far, as uvicorn would have from its headers on (the callers
        have let go of it: `_whole` is None)."""
        self._asgi_headers_complete()
        cycle = self.cycle
        cycle.body += whole.body
        if len(cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.more_body = more_body
        cycle.message_event.set()

    def data_received(self, data: bytes) -> None:
        """Parse as uvicorn does, then count the bytes of headers still incomplete; a request
        kept for a whole answer whose body is still on its way goes to the app through ASGI."""
        super().data_received(data)
        whole = self._whole
        if whole is not None:
            self._whole = None
            if not self.transport.is_closing():
                self._to_asgi(whole, more_body=True)
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
