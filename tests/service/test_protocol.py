"""How the workers' HTTP protocol (service.protocol) puts answers on the wire.

An answer's status line and headers go out with its body in one write: one system call
and one TCP segment per response, not two. Through a real `python -m service`, counted
by the kernel (/proc/<pid>/io), and with the cases where holding the head back could go
wrong: an interim `100 Continue`, HEAD, pipelined requests.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.http import read_response, request
from harness.servers import ServiceServer, start_service

pytestmark = [pytest.mark.integration]

SETOSA = json.dumps(
    {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
).encode()


@pytest.fixture(scope="module")
def quiet_server(
    tmp_path_factory: pytest.TempPathFactory, trained_artifact_dir: Path
) -> Iterator[ServiceServer]:
    """One worker that logs only warnings: a request's only writes are its answer's."""
    server = start_service(
        trained_artifact_dir, tmp_path_factory.mktemp("protocol"), workers=1, log_level="warning"
    )
    try:
        yield server
    finally:
        server.stop()


def _writes(pid: int) -> int:
    """The write system calls `pid` has made (write, writev: what a socket send is here)."""
    found = re.search(r"^syscw: (\d+)$", Path(f"/proc/{pid}/io").read_text(), re.MULTILINE)
    assert found
    return int(found.group(1))


def _post(path: str, body: bytes, extra: bytes = b"") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n".encode()
        + extra
        + b"\r\n"
        + body
    )


@pytest.mark.skipif(
    not Path("/proc/self/io").exists(),
    reason="the kernel keeps no per-process I/O counts (/proc/<pid>/io)",
)
def test_each_answer_is_one_write(quiet_server: ServiceServer) -> None:
    (worker,) = quiet_server.workers()
    answers = [
        ("POST", "/predict", SETOSA, 200),
        ("POST", "/predict", b"{}", 422),  # an error answer
        ("GET", "/readyz", None, 200),
        ("GET", "/nowhere", None, 404),
    ]
    before = _writes(worker)
    for method, path, body, status in answers * 5:
        assert request(quiet_server.port, method, path, body)[0] == status

    assert _writes(worker) - before == len(answers) * 5


def test_an_interim_100_continue_goes_out_before_the_body_is_sent(
    quiet_server: ServiceServer,
) -> None:
    with socket.create_connection(("127.0.0.1", quiet_server.port), timeout=5) as connection:
        head_only = _post("/predict", b"", b"Expect: 100-continue\r\n")
        connection.sendall(
            head_only.replace(b"Content-Length: 0", b"Content-Length: %d" % len(SETOSA))
        )
        interim = connection.recv(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        connection.sendall(SETOSA)
        head, body, _ = read_response(connection)

    assert head.startswith(b"HTTP/1.1 200 ")
    assert json.loads(body)["species"] == "setosa"


def test_a_head_request_gets_its_head_without_a_body(quiet_server: ServiceServer) -> None:
    with socket.create_connection(("127.0.0.1", quiet_server.port), timeout=5) as connection:
        connection.sendall(b"HEAD /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, rest = read_response(connection, has_body=False)
        assert rest == b""
        # The connection stays usable: the next answer is whole and in order.
        connection.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        after, body, _ = read_response(connection)

    assert head.startswith(b"HTTP/1.1 ")
    assert b"x-request-id:" in head.lower()
    assert after.startswith(b"HTTP/1.1 200 ")
    assert body


def test_pipelined_requests_get_whole_answers_in_order(quiet_server: ServiceServer) -> None:
    virginica = json.dumps(
        {"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5}
    ).encode()
    sent = [SETOSA, b"{}", virginica]
    with socket.create_connection(("127.0.0.1", quiet_server.port), timeout=5) as connection:
        connection.sendall(b"".join(_post("/predict", body) for body in sent))
        answers = []
        rest = b""
        for _ in sent:
            head, body, rest = read_response(connection, rest)
            answers.append((head.split(b" ", 2)[1], body))

    assert [status for status, _ in answers] == [b"200", b"422", b"200"]
    assert json.loads(answers[0][1])["species"] == "setosa"
    assert json.loads(answers[2][1])["species"] == "virginica"
