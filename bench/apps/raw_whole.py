"""The ceiling of a request that arrives whole: constant JSON without ASGI.

The same answer as the raw-ASGI app (bench/apps/raw_asgi.py), but through the entry point
the workers' protocol calls for a request whose body has fully arrived
(`complete_request`, service.protocol), as the service's own routes are answered. The
raw-ASGI app is the ceiling of an ASGI request; this one is the ceiling of the path the
service takes, so the two together show how much of the service's lead over the first
is the path rather than the service.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from bench.apps.raw_asgi import BODY, HEADERS, Message, Scope
from bench.apps.raw_asgi import app as asgi_app
from service.front import Completed


def complete_request(
    method: str, path: str, headers: Iterable[tuple[bytes, bytes]], body: bytes
) -> Completed:
    """BODY for every request that arrived whole."""
    return Completed(200, HEADERS, BODY)


class RawWhole:
    """The raw-ASGI app, plus `complete_request`."""

    complete_request = staticmethod(complete_request)

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        """Any other request (one whose body came in pieces, the lifespan) as raw-asgi."""
        await asgi_app(scope, receive, send)


app = RawWhole()
