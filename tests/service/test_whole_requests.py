"""Requests that arrive whole skip ASGI (service.protocol, service.front.Front.complete).

A uvicorn server runs the workers' protocol in this process, in front of an app that
records which way each request reached it: `complete_request` (the whole request at
once, no ASGI task) or the ASGI call. Through a real `python -m service`, every answer
is the same whichever way its request went.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from harness.http import read_response
from harness.ports import free_port
from harness.servers import ServiceServer, start_service
from service.front import Completed
from service.protocol import GuardedHttpToolsProtocol

pytestmark = [pytest.mark.integration]


BIG = 256 * 1024
"""The size of an answer to /big: a few fill the socket's and the transport's buffers."""


class Recorder:
    """An app with both entry points, recording which one each request took."""

    def __init__(self) -> None:
        self.ways: list[tuple[str, str, bytes]] = []

    def complete_request(
        self, method: str, path: str, headers: Iterable[tuple[bytes, bytes]], body: bytes
    ) -> Completed | None:
        if path == "/asgi-only":
            return None
        if path == "/fault":
            raise RuntimeError("a fault in the app's whole-request path")
        self.ways.append(("whole", path, body))
        if path == "/big":
            return Completed(200, [(b"content-length", b"%d" % BIG)], b"w" * BIG)
        close = path == "/close"
        return Completed(200, [(b"content-length", b"5")], b"whole", close)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.ways.append(("asgi", scope["path"], body))
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]}
        )
        await send({"type": "http.response.body", "body": b"asgi"})


@contextlib.contextmanager
def _serving(app: Recorder, **options: Any) -> Iterator[int]:
    """uvicorn with the workers' protocol serving `app` from a thread; yields its port."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=GuardedHttpToolsProtocol,
        lifespan="off",
        log_level="warning",
        **options,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[Recorder, int]]:
    app = Recorder()
    with _serving(app) as port:
        yield app, port


def _post(path: str, body: bytes, extra: bytes = b"", method: str = "POST") -> tuple[bytes, bytes]:
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n".encode()
    return head + extra + b"\r\n", body


def _exchange(port: int, *parts: bytes, pause: float = 0.0) -> tuple[bytes, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        for part in parts:
            try:
                connection.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break  # answered and closed before the body (413, 415): the answer is there
            time.sleep(pause)
        head, body, _ = read_response(connection)
    return head, body


def test_a_request_sent_whole_is_answered_without_asgi(recorded: tuple[Recorder, int]) -> None:
    app, port = recorded
    head, body = _exchange(port, b"".join(_post("/whole", b"12345")))
    assert body == b"whole"
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    lines = head.lower().split(b"\r\n")
    assert any(line.startswith(b"date: ") for line in lines)
    assert b"server: uvicorn" in lines
    assert app.ways[-1] == ("whole", "/whole", b"12345")


def test_a_body_still_on_its_way_goes_through_asgi(recorded: tuple[Recorder, int]) -> None:
    app, port = recorded
    _, body = _exchange(port, *_post("/late", b"12345"), pause=0.2)
    assert body == b"asgi"
    assert app.ways[-1] == ("asgi", "/late", b"12345")


def test_expect_continue_head_and_a_declined_request_go_through_asgi(
    recorded: tuple[Recorder, int],
) -> None:
    app, port = recorded
    head, body = _post("/continue", b"abc", b"Expect: 100-continue\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(head)
        interim = connection.recv(1024)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        connection.sendall(body)
        _, answer, _ = read_response(connection)
    assert answer == b"asgi"
    assert app.ways[-1] == ("asgi", "/continue", b"abc")
    _, answer = _exchange(port, b"".join(_post("/asgi-only", b"xyz")))
    assert answer == b"asgi"
    assert app.ways[-1] == ("asgi", "/asgi-only", b"xyz")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"HEAD /head HTTP/1.1\r\nHost: x\r\n\r\n")
        read_response(connection, has_body=False)
    assert app.ways[-1][:2] == ("asgi", "/head")


def test_a_fault_in_the_whole_request_path_hands_the_request_to_asgi(
    recorded: tuple[Recorder, int], caplog: pytest.LogCaptureFixture
) -> None:
    app, port = recorded
    _, body = _exchange(port, b"".join(_post("/fault", b"abc")))
    assert body == b"asgi"
    assert app.ways[-1] == ("asgi", "/fault", b"abc")
    assert "answering a whole request failed" in caplog.text


def test_pipelined_whole_requests_are_answered_in_order(recorded: tuple[Recorder, int]) -> None:
    app, port = recorded
    before = len(app.ways)
    requests = b"".join(b"".join(_post(f"/p{i}", str(i).encode())) for i in range(3))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(requests)
        rest = b""
        for _ in range(3):
            _, body, rest = read_response(connection, rest)
            assert body == b"whole"
    assert app.ways[before:] == [("whole", f"/p{i}", str(i).encode()) for i in range(3)]


def test_a_client_that_does_not_read_its_answers_is_not_answered_without_bound(
    recorded: tuple[Recorder, int],
) -> None:
    # Pipelined requests whose answers the client does not read: once the transport's
    # buffer is over its high-water mark the rest go through ASGI, which waits for it to
    # drain (and stops reading), instead of piling answers up in the worker's memory.
    app, port = recorded
    before = len(app.ways)
    count = 64
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(b"".join(b"".join(_post("/big", b"")) for _ in range(count)))
        time.sleep(1.0)
        whole = [way for way in app.ways[before:] if way[0] == "whole"]
        rest, bodies = b"", []
        for _ in range(count):
            _, body, rest = read_response(connection, rest)
            bodies.append(body)
    assert len(whole) < count, "every answer was made while the client read none"
    assert bodies[: len(whole)] == [b"w" * BIG] * len(whole)
    assert b"asgi" in bodies


def test_an_answer_that_must_close_says_so_and_closes(recorded: tuple[Recorder, int]) -> None:
    _, port = recorded
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"".join(_post("/close", b"")))
        head, body, _ = read_response(connection)
        assert body == b"whole"
        assert b"connection: close" in head.lower().split(b"\r\n")
        assert connection.recv(1024) == b""


# --- the service: the same answers whichever way a request went ------------------------------

SETOSA = json.dumps(
    {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
).encode()
CASES = {
    "predict": ("/predict", SETOSA, b"Content-Type: application/json\r\n"),
    "missing field": ("/predict", b'{"sepal_length": 5.1}', b"Content-Type: application/json\r\n"),
    "bad json": ("/predict", b"{", b"Content-Type: application/json\r\n"),
    "content type": ("/predict", SETOSA, b"Content-Type: text/plain\r\n"),
    "too large": ("/predict", b" " * 4096, b"Content-Type: application/json\r\n"),
    "a body to a GET route": ("/version", b"{}", b"X-Method: GET\r\n"),
    "batch": ("/predict/batch", b'{"instances": [' + SETOSA + b"]}", b""),
    "binary on /predict": ("/predict", SETOSA, b"Inference-Header-Content-Length: 5\r\n"),
    "v2 json": (
        "/v2/models/iris/infer",
        b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",'
        b' "data": [5.1, 3.5, 1.4, 0.2]}]}',
        b"",
    ),
    "v2 unknown model": ("/v2/models/nope/infer", b"{}", b""),
    "v2 bad binary": ("/v2/models/iris/infer", b"{}", b"Inference-Header-Content-Length: x\r\n"),
}


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, trained_artifact_dir: Path
) -> Iterator[ServiceServer]:
    # A small body limit, so that a body over it still arrives in one read.
    server = start_service(
        trained_artifact_dir, tmp_path_factory.mktemp("whole"), max_body_bytes=2048
    )
    try:
        yield server
    finally:
        server.stop()


def _comparable(head: bytes) -> list[bytes]:
    # Status line and headers; of the two whose values differ between answers, the names.
    lines = head.lower().split(b"\r\n")
    return sorted(
        line.split(b":", 1)[0] if line.startswith((b"date:", b"x-request-id:")) else line
        for line in lines
    )


@pytest.mark.parametrize("case", CASES)
def test_the_service_answers_alike_whether_a_request_came_whole_or_in_pieces(
    service: ServiceServer, case: str
) -> None:
    path, body, extra = CASES[case]
    method = "GET" if b"X-Method: GET" in extra else "POST"
    head, payload = _post(path, body, extra, method)
    whole = _exchange(service.port, head + payload)
    pieces = _exchange(service.port, head, payload, pause=0.2)
    assert _comparable(whole[0]) == _comparable(pieces[0]), case
    assert whole[1] == pieces[1], case


KEEP_ALIVE = 1.0
"""uvicorn's keep-alive timeout in the tests of idle connections, in seconds."""


def _closed_after(connection: socket.socket, limit: float) -> float:
    """Seconds until the server closes `connection` (reading nothing else), at most `limit`."""
    started = time.monotonic()
    connection.settimeout(limit)
    assert connection.recv(1) == b"", "the server sent bytes instead of closing"
    return time.monotonic() - started


def test_a_connection_idle_for_the_keep_alive_timeout_is_closed() -> None:
    with _serving(Recorder(), timeout_keep_alive=KEEP_ALIVE) as port:
        for path in ("/whole", "/asgi-only"):  # the answer written whole, or by ASGI
            with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
                connection.sendall(b"".join(_post(path, b"x")))
                read_response(connection)
                waited = _closed_after(connection, KEEP_ALIVE + 2)
            assert KEEP_ALIVE - 0.1 <= waited <= KEEP_ALIVE + 1, (path, waited)


def test_a_connection_busier_than_the_keep_alive_timeout_stays_open() -> None:
    app = Recorder()
    with (
        _serving(app, timeout_keep_alive=KEEP_ALIVE) as port,
        socket.create_connection(("127.0.0.1", port), timeout=10) as connection,
    ):
        # Requests 0.4 s apart for three timeouts: never idle for a whole one.
        for n in range(8):
            connection.sendall(b"".join(_post("/whole" if n % 2 else "/asgi-only", b"x")))
            _, body, _ = read_response(connection)
            assert body == (b"whole" if n % 2 else b"asgi")
            time.sleep(0.4)
        waited = _closed_after(connection, KEEP_ALIVE + 2)
    # Closed a keep-alive timeout after the last answer (0.4 s of it already slept).
    assert KEEP_ALIVE - 0.5 <= waited <= KEEP_ALIVE + 1
    assert [way for way, _, _ in app.ways] == ["asgi", "whole"] * 4


def test_a_request_pipelined_behind_a_closing_answer_gets_no_answer_of_its_own(
    recorded: tuple[Recorder, int],
) -> None:
    app, port = recorded
    before = len(app.ways)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"".join(_post("/close", b"")) + b"".join(_post("/whole", b"late")))
        head, body, rest = read_response(connection)
        assert body == b"whole"
        assert b"connection: close" in head.lower().split(b"\r\n")
        tail = rest
        while chunk := connection.recv(65536):
            tail += chunk
    assert tail == b""  # the connection closed after the first answer
    # The second request was not answered whole on a transport already closing.
    assert ("whole", "/whole", b"late") not in app.ways[before:]
