"""One HTTP/1.1 request on a fresh loopback connection, whatever the answer's status."""

from __future__ import annotations

import http.client
import re
import socket
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


def read_response(
    connection: socket.socket, buffered: bytes = b"", *, has_body: bool = True
) -> tuple[bytes, bytes, bytes]:
    """One whole response read off a raw `connection`: its head, its body (Content-Length
    bytes; none for an answer to HEAD) and whatever came after it, which the next call
    takes as `buffered` (pipelined answers). Raises ConnectionError when the connection
    closes first, ValueError for an answer without Content-Length."""
    data = buffered
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed mid-head: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    if has_body:
        declared = re.search(rb"content-length: (\d+)", head.lower())
        if declared is None:
            raise ValueError(f"no Content-Length in {head!r}")
        length = int(declared.group(1))
    while len(rest) < length:
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed mid-body")
        rest += chunk
    return head, rest[:length], rest[length:]
