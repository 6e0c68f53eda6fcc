"""The front: what every HTTP request needs, as a pure ASGI wrapper around the app.

`Front` holds the app it wraps, as Starlette's middleware do, and for every request:
- takes the client's X-Request-ID (if sane) or makes one, and returns it;
- applies the body policy of the route (service.routes): content type, size limit
  (IRIS_MAX_BODY_BYTES), time limit (IRIS_BODY_TIMEOUT, service.deadlines), and reads the
  body for the app; a body nobody reads is answered with `Connection: close`;
- turns a ServiceError into its JSON answer, and anything else into a logged 500;
- writes the request's log line and its metrics.

The app it wraps finds the route and the body in the scope (`ROUTE_KEY`, `BODY_KEY`).

`Front.complete` is the same for a request the server hands over whole (service.protocol
does, for one whose body arrived with its headers): no ASGI task, scope or messages, the
same answer, log line and metrics, made by the dispatcher's `reply`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import metrics
from service.deadlines import BodyDeadlines
from service.errors import (
    BadRequestError,
    PayloadTooLargeError,
    RequestTimeoutError,
    ServiceError,
    UnsupportedMediaTypeError,
    error_body,
)
from service.logs import SERVICE_LOGGER, RequestLog
from service.routes import Body, Call, Match, Reply, Router
from service.turns import running_loop

log = logging.getLogger(SERVICE_LOGGER)

ROUTE_KEY = "iris.route"
"""Scope key of the request's `Match` (None when no route of the table matches)."""
BODY_KEY = "iris.body"
"""Scope key of the request body the front has read (routes with a Body only)."""
BINARY_KEY = "iris.binary_header"
"""Scope key of the Inference-Header-Content-Length value (routes taking binary tensors)."""

REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
"""A client's X-Request-ID the front accepts (else it makes one): safe in a header, a log
line and JSON as it is."""
_CLIENT_CLOSED = 499  # nginx's code for a client that went away before the answer


class _RequestIds:
    """Ids for requests that bring none: a random prefix per process and a counter, 16 hex
    digits as before, without a system call per request. A forked worker draws its own
    prefix, so gunicorn's workers never hand out the same id."""

    def __init__(self) -> None:
        self._start()
        os.register_at_fork(after_in_child=self._start)

    def _start(self) -> None:
        self._prefix = os.urandom(4).hex().encode()
        self._count = itertools.count()

    def next(self) -> bytes:
        """A new id."""
        return b"%s%08x" % (self._prefix, next(self._count) & 0xFFFFFFFF)


new_request_id = _RequestIds().next


class Completed(NamedTuple):
    """A whole answer made by `Front.complete`: status, headers (content type and length,
    the route's own, X-Request-ID), body, and whether the connection must close after it."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    close: bool = False


class ClientDisconnectedError(Exception):
    """The client closed the connection before sending its whole body."""


class _Headers(NamedTuple):
    """What the front reads from a request's headers, in one pass over them."""

    content_type: bytes | None
    content_length: bytes | None
    request_id: bytes | None
    binary_header: bytes | None
    chunked: bool

    @classmethod
    def of(cls, scope: Scope) -> _Headers:
        return cls.read(scope["headers"])

    @classmethod
    def read(cls, headers: Iterable[tuple[bytes, bytes]]) -> _Headers:
        content_type = content_length = request_id = binary_header = None
        chunked = False
        for name, value in headers:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                content_length = value
            elif name == b"x-request-id":
                request_id = value if REQUEST_ID.fullmatch(value) else None
            elif name == b"inference-header-content-length":
                binary_header = value
            elif name == b"transfer-encoding":
                chunked = True
        return cls(content_type, content_length, request_id, binary_header, chunked)

    @property
    def declares_body(self) -> bool:
        """The request says a body follows."""
        return self.chunked or (self.content_length is not None and self.content_length != b"0")


class Front:
    """Request id, body policy, error answers, the log line and metrics, around `app`."""

    def __init__(
        self,
        app: ASGIApp,
        router: Router,
        *,
        max_body_bytes: int,
        body_timeout: float,
        request_log: RequestLog,
        model_version: Callable[[], str],
        reply: Callable[[Match, Call], Reply] | None = None,
    ) -> None:
        self.app = app
        self.reply = reply
        self.router = router
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.request_log = request_log
        self.model_version = model_version
        self.deadlines = BodyDeadlines(body_timeout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point: HTTP requests go through the front, the rest straight to `app`."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One HTTP request through the front."""
        start = time.perf_counter()
        method: str = scope["method"]
        path: str = scope["path"]
        headers = _Headers.of(scope)
        request_id = headers.request_id or new_request_id()
        # A body nobody reads is left to the server, which waits for it with no time
        # limit; answering with `Connection: close` ends the connection instead.
        unread_body = headers.declares_body

        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                extra = [*message.get("headers", ()), (b"x-request-id", request_id)]
                if unread_body:
                    extra.append((b"connection", b"close"))
                message["headers"] = extra
            await send(message)

        match = self.router.match(method, path)
        scope[ROUTE_KEY] = match
        try:
            body_policy = match.route.body if match is not None else None
            if body_policy is not None:
                binary = _admit(body_policy, path, headers)
                if binary is not None:
                    scope[BINARY_KEY] = binary
                scope[BODY_KEY] = await self._read_body(receive, headers.content_length)
                unread_body = False
            await self.app(scope, receive, send_with_id)
        except ClientDisconnectedError:
            status = _CLIENT_CLOSED
        except Exception as exc:  # noqa: BLE001 - every failure gets its answer and log line
            answer = self._failure(exc, path, request_id)
            if not started:
                await respond(send_with_id, answer.status_code, error_body(path, answer.detail))
        finally:
            elapsed = time.perf_counter() - start
            if match is not None:
                route = match.route.path
            else:
                matched = scope.get("route")  # set by FastAPI's router for its own routes
                route = getattr(matched, "path", None) or "unmatched"
            self._record(route, method, path, status, elapsed, request_id)

    def complete(
        self, method: str, path: str, headers: Iterable[tuple[bytes, bytes]], body: bytes
    ) -> Completed | None:
        """A request to a route of the table whose body has fully arrived, answered at once
        without ASGI: what `http` does for it, by the `reply` function (the dispatcher's),
        with the same status, headers, body, log line and metrics. None when there is no
        `reply` or the route is not in the table (the server then hands the request to the
        ASGI app as usual). service.protocol calls it; everything else goes through `http`.
        """
        reply = self.reply
        match = self.router.match(method, path)
        if reply is None or match is None:
            return None
        start = time.perf_counter()
        seen = _Headers.read(headers)
        request_id = seen.request_id or new_request_id()
        policy = match.route.body
        # As in `http`: a body not taken (no policy, or refused by it) ends the connection.
        unread_body = seen.declares_body
        try:
            binary = None
            if policy is not None:
                binary = _admit(policy, path, seen)
                if len(body) > self.max_body_bytes:
                    raise _too_large(self.max_body_bytes)
                unread_body = False
            answer = reply(match, Call(body if policy is not None else b"", match.params, binary))
            status, media_type, content = answer.status, answer.media_type.encode(), answer.body
            extra = answer.headers
        except Exception as exc:  # noqa: BLE001 - every failure gets its answer and log line
            failure = self._failure(exc, path, request_id)
            status, media_type, extra = failure.status_code, b"application/json", ()
            content = error_body(path, failure.detail)
        answered = answer_headers(content, media_type, (*extra, (b"x-request-id", request_id)))
        self._record(
            match.route.path, method, path, status, time.perf_counter() - start, request_id
        )
        return Completed(status, answered, content, unread_body)

    def _failure(self, exc: Exception, path: str, request_id: bytes) -> ServiceError:
        """The error to answer for `exc`, logged where the client's answer alone says too little."""
        if isinstance(exc, RequestTimeoutError):
            log.info(
                "request body timed out",
                extra={
                    "fields": {
                        "request_id": request_id.decode(),
                        "path": path,
                        "body_timeout_s": self.body_timeout,
                    }
                },
            )
            return exc
        if isinstance(exc, ServiceError):
            return exc
        # FastAPI's ServerErrorMiddleware has already answered 500 for its routes and
        # re-raised; log once here, with the request id, instead of letting the server
        # log a second traceback without it.
        log.error(
            "unhandled error",
            exc_info=exc,
            extra={"fields": {"request_id": request_id.decode(), "path": path}},
        )
        return ServiceError("Internal Server Error", 500)

    def _record(
        self,
        route: str,
        method: str,
        path: str,
        status: int,
        elapsed: float,
        request_id: bytes,
    ) -> None:
        """The request's metrics (by route template) and log line."""
        metrics.observe_request(route, method, status, elapsed)
        # 4xx are the client's business: INFO, never a traceback.
        level = logging.ERROR if status >= 500 and status != _CLIENT_CLOSED else logging.INFO
        self.request_log.write(
            level, method, path, status, elapsed, request_id.decode(), self.model_version()
        )

    async def _read_body(self, receive: Receive, content_length: bytes | None) -> bytes:
        """The whole request body, within the size limit and the body timeout."""
        limit = self.max_body_bytes
        if content_length is not None and content_length.isdigit() and int(content_length) > limit:
            raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        # The loop by service.turns: asyncio.current_task() alone is a system call.
        task = asyncio.current_task(running_loop())
        if task is None:  # ASGI servers run every request in a task
            raise RuntimeError("request bodies are read inside a task")
        deadlines = self.deadlines
        deadlines.watch(task)
        try:
            while True:
                # The only await between watch() and forget(): a deadline that passes
                # cancels the task here.
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnectedError
                chunk: bytes = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except asyncio.CancelledError:
            if not deadlines.expired(task):
                raise  # shutdown or disconnect: not ours to answer
            task.uncancel()
            raise RequestTimeoutError(
                f"the request body did not arrive within {self.body_timeout:g} s "
                "(IRIS_BODY_TIMEOUT)"
            ) from None
        finally:
            deadlines.forget(task)


def _admit(policy: Body, path: str, headers: _Headers) -> bytes | None:
    """Apply a route's body policy to the headers (the body is read next); the
    Inference-Header-Content-Length value when the route takes binary tensors."""
    _check_content_type(policy, headers.content_type)
    if headers.binary_header is not None and not policy.binary_tensors:
        raise BadRequestError(f"{path} takes no binary tensors (Inference-Header-Content-Length)")
    return headers.binary_header


def _check_content_type(policy: Body, content_type: bytes | None) -> None:
    # Inference clients (tritonclient among them) send no Content-Type; a declared one
    # must be one the route takes.
    if content_type is None or content_type in policy.media_types:
        return
    media_type = content_type.split(b";", 1)[0].strip().lower()
    if media_type not in policy.media_types:
        shown = content_type.decode("latin-1")[:100]
        wanted = " or ".join(sorted(m.decode() for m in policy.media_types))
        raise UnsupportedMediaTypeError(f"Content-Type must be {wanted}, got '{shown}'")


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"request body is larger than {limit} bytes (IRIS_MAX_BODY_BYTES); "
        "send fewer rows per request"
    )


def answer_headers(
    body: bytes, media_type: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
) -> list[tuple[bytes, bytes]]:
    """The headers of a whole answer: content type and length, then any others."""
    return [(b"content-type", media_type), (b"content-length", str(len(body)).encode()), *headers]


async def respond(
    send: Send,
    status: int,
    body: bytes,
    media_type: bytes = b"application/json",
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """Send a whole response: status, content type and length, any other headers, body."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": answer_headers(body, media_type, headers),
        }
    )
    await send({"type": "http.response.body", "body": body})
