"""The service without its front: what a request costs before the front's own work.

The same route table, data plane and model as the service (built by create_app and
loaded in the gunicorn master, as `python -m service` does), behind the same gunicorn
options, but none of what service.front does for every request: no request id, no body
policy (content type, size and time limits), no log line, no request metrics. Its CPU
per request, next to the service's, is what the front costs; next to the raw-ASGI app's,
what the dispatch and the prediction itself (decode, predict, encode) cost. Like the
service, it answers a request that arrived whole without ASGI (`complete_request`, which
the workers' protocol calls), so the difference is the front's own work.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from service.app import create_app
from service.front import Completed, answer_headers, respond
from service.routes import ROUTES, Call, Router

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

service = create_app()
service.preload()
router = Router(ROUTES)


async def app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """A table route answered by its handler on the service's data plane, nothing else."""
    if scope["type"] != "http":
        await service(scope, receive, send)  # the lifespan serves the preloaded model
        return
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    match = router.match(scope["method"], scope["path"])
    if match is None:
        await respond(send, 404, b'{"detail":"Not Found"}')
        return
    reply = match.route.handler(service.plane, Call(b"".join(chunks), match.params, None))
    await respond(send, reply.status, reply.body, reply.media_type.encode(), reply.headers)


def complete_request(
    method: str, path: str, headers: Iterable[tuple[bytes, bytes]], body: bytes
) -> Completed | None:
    """The same answer for a request that arrived whole, without ASGI (service.protocol)."""
    match = router.match(method, path)
    if match is None:
        return None
    reply = match.route.handler(service.plane, Call(body, match.params, None))
    answered = answer_headers(reply.body, reply.media_type.encode(), reply.headers)
    return Completed(reply.status, answered, reply.body)


app.complete_request = complete_request  # type: ignore[attr-defined]
