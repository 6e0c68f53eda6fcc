"""One HTTP/1.1 request on a fresh loopback connection, whatever the answer's status."""

from __future__ import annotations

import http.client
from collections.abc import Mapping


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    """Status and body of one request to 127.0.0.1:`port`; a body is sent as JSON unless
    `headers` say otherwise. Raises OSError when nothing answers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        sent = dict(headers or {})
        if body is not None:
            sent.setdefault("Content-Type", "application/json")
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def try_request(
    port: int, method: str, path: str, body: bytes | None = None, timeout: float = 2.0
) -> int | None:
    """The status of `request`, or None when nothing answers."""
    try:
        return request(port, method, path, body, timeout=timeout)[0]
    except (OSError, http.client.HTTPException):
        return None
