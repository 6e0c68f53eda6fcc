"""Slow and endless clients: the body timeout in the app, the header limits in the protocol.

A client that trickles its body, its headers, or nothing at all must not hold a worker's
connection forever, nor may endless headers grow a worker's memory. In process, the app
answers a stalled body with 408; through a real `python -m service` the same holds for
bodies, and the request line and headers are cut off by time (408) and by size (431).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from harness.servers import start_service
from service.app import IrisApp, create_app
from service.dataplane import load_model
from service.protocol import MAX_HEADER_BYTES
from service.settings import Settings

SETOSA = b'{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'


def _scope(path: str, body_length: int) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(body_length).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
        "state": {},
    }


async def _call(
    app: Any, path: str, chunks: list[tuple[float, bytes]], complete: bool
) -> list[dict[str, Any]]:
    """Drive the app as a server would: body chunks arrive after the given delays, and
    then, unless the body is `complete`, nothing more."""
    sent: list[dict[str, Any]] = []
    pending = list(chunks)
    stalled = asyncio.Event()  # never set: a client that stops sending

    async def receive() -> dict[str, Any]:
        if not pending:
            await stalled.wait()
        delay, chunk = pending.pop(0)
        await asyncio.sleep(delay)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending) or not complete}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    total = sum(len(chunk) for _, chunk in chunks)
    await app(_scope(path, total if complete else total + 100), receive, send)
    return sent


def _run(
    app: Any, path: str, chunks: list[tuple[float, bytes]], complete: bool = False
) -> tuple[float, list[Any]]:
    async def timed() -> tuple[float, list[Any]]:
        started = time.monotonic()
        # Without a body timeout the call never returns: fail instead of hanging.
        sent = await asyncio.wait_for(_call(app, path, chunks, complete), timeout=5)
        return time.monotonic() - started, sent

    return asyncio.run(timed())


@pytest.fixture(scope="module")
def quick_app(trained_artifact_dir: Path) -> IrisApp:
    app = create_app(Settings(model_dir=trained_artifact_dir, body_timeout=0.4))
    app.serve(load_model(trained_artifact_dir))
    return app


def test_a_stalled_body_gets_408_json_and_the_connection_closed(quick_app: IrisApp) -> None:
    elapsed, sent = _run(quick_app, "/predict", [(0.0, SETOSA[:10])])

    start, body = sent
    assert start["status"] == 408
    headers = dict(start["headers"])
    assert headers[b"connection"] == b"close"
    assert headers[b"content-type"] == b"application/json"
    detail = json.loads(body["body"])["detail"]
    assert "IRIS_BODY_TIMEOUT" in detail
    assert "0.4 s" in detail
    assert 0.4 <= elapsed < 1.5  # the timeout plus at most one sweep interval


def test_a_body_that_never_starts_gets_408_too(quick_app: IrisApp) -> None:
    elapsed, sent = _run(quick_app, "/predict/batch", [])

    assert sent[0]["status"] == 408
    assert elapsed < 1.5


def test_the_v2_protocol_gets_its_own_error_shape_on_timeout(quick_app: IrisApp) -> None:
    _, sent = _run(quick_app, "/v2/models/iris/infer", [(0.0, b"{")])

    assert sent[0]["status"] == 408
    assert set(json.loads(sent[1]["body"])) == {"error"}


def test_a_body_in_pieces_within_the_timeout_is_served(quick_app: IrisApp) -> None:
    pieces = [(0.0, SETOSA[:20]), (0.1, SETOSA[20:50]), (0.1, SETOSA[50:])]
    _, sent = _run(quick_app, "/predict", pieces, complete=True)

    assert sent[0]["status"] == 200
    assert b"connection" not in dict(sent[0]["headers"])  # kept alive
    assert json.loads(sent[1]["body"])["species"] == "setosa"


def test_the_timeout_is_a_documented_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().body_timeout == 10.0
    monkeypatch.setenv("IRIS_BODY_TIMEOUT", "2.5")
    assert Settings().body_timeout == 2.5
    assert Settings.model_fields["body_timeout"].description


# --- through the real server ---------------------------------------------------------------


def _open(port: int, data: bytes) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    connection.sendall(data)
    return connection


def _answer(connection: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when it closed."""
    received = b""
    while True:
        try:
            chunk = connection.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    closed = time.monotonic()
    connection.close()
    return received, closed


@pytest.mark.integration
@pytest.mark.xdist_group("service-server")
def test_slow_bodies_slow_headers_silence_and_endless_headers_are_cut_off(
    tmp_path: Path, trained_artifact_dir: Path
) -> None:
    server = start_service(trained_artifact_dir, tmp_path, workers=1, body_timeout=1)
    try:
        started = time.monotonic()
        slow_body = _open(
            server.port,
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{",
        )
        slow_headers = _open(server.port, b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        silent = _open(server.port, b"")
        endless = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        endless.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n")
        line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
        sent, refused = 0, False
        try:
            while sent < 32 * 2**20:  # a bound for this test only; the server needs none
                endless.sendall(line)
                sent += len(line)
        except OSError:
            refused = True  # the server closed the connection

        # Meanwhile other clients are served.
        assert server.post("/predict", SETOSA)[0] == 200

        for connection in (slow_body, slow_headers):
            connection.sendall(b" ")  # trickling, as slowloris does
        body_answer, body_closed = _answer(slow_body)
        header_answer, header_closed = _answer(slow_headers)
        silent_answer, silent_closed = _answer(silent)
        endless_answer, _ = _answer(endless)
    finally:
        server.stop()

    assert body_answer.startswith(b"HTTP/1.1 408 "), body_answer
    assert b'"detail":"the request body did not arrive within 1 s' in body_answer
    assert header_answer.startswith(b"HTTP/1.1 408 "), header_answer
    assert b"request line and headers did not arrive within 1 s" in header_answer
    assert silent_answer.startswith(b"HTTP/1.1 408 "), silent_answer
    for answer in (body_answer, header_answer, silent_answer):
        assert b"connection: close" in answer.lower()
    for closed in (body_closed, header_closed, silent_closed):
        assert closed - started < 4  # 1 s plus a sweep, with room for a busy machine
    assert endless_answer.startswith(b"HTTP/1.1 431 "), endless_answer
    assert f"larger than {MAX_HEADER_BYTES} bytes".encode() in endless_answer
    assert refused, f"the server took {sent:,} bytes of headers"

    lines = [json.loads(line) for line in server.log_lines()]
    messages = [line["message"] for line in lines if line.get("level") == "info"]
    assert "request body timed out" in messages
    assert "request headers timed out" in messages
    assert "request headers too large" in messages
    assert not any(line.get("level") == "error" for line in lines)
