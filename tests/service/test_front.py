"""The front on its own: a pure ASGI wrapper around any app, with a one-route table."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

import pytest

from service import front, metrics
from service.dataplane import DataPlane
from service.errors import NotFoundError
from service.front import BODY_KEY, ROUTE_KEY, Front
from service.logs import RequestLog
from service.routes import Body, Call, Reply, Route, Router
from service.schemas import Measurement


def _echo(plane: DataPlane, call: Call) -> Reply:
    return Reply(call.body)


TABLE = (Route("POST", "/echo", _echo, "Echo", ("test",), body=Body(Measurement)),)


class Inner:
    """An app that records what the front handed it and answers 200 (or raises)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.error = error

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        if self.error is not None:
            raise self.error
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def _front(inner: Inner) -> Front:
    return Front(
        inner,
        Router(TABLE),
        max_body_bytes=64,
        body_timeout=1.0,
        request_log=RequestLog("json"),
        model_version=lambda: "v-test",
    )


def _call(
    front: Front,
    method: str,
    path: str,
    body: bytes = b"",
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(b"content-length", str(len(body)).encode()), *headers],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(front(scope, receive, send))
    return sent


def _headers(start: dict[str, Any]) -> dict[bytes, bytes]:
    return dict(start["headers"])


def test_a_route_with_a_body_gets_it_read_and_the_match_in_the_scope() -> None:
    inner = Inner()
    sent = _call(_front(inner), "POST", "/echo", b'{"a": 1}', ((b"x-request-id", b"abc-1"),))

    (scope,) = inner.scopes
    assert scope[BODY_KEY] == b'{"a": 1}'
    assert scope[ROUTE_KEY].route.path == "/echo"
    assert sent[0]["status"] == 200
    assert _headers(sent[0])[b"x-request-id"] == b"abc-1"
    assert b"connection" not in _headers(sent[0])


def test_the_front_applies_size_and_content_type_before_the_app_sees_anything() -> None:
    inner = Inner()
    front = _front(inner)

    too_large = _call(front, "POST", "/echo", b"x" * 65)
    wrong_type = _call(front, "POST", "/echo", b"{}", ((b"content-type", b"text/csv"),))

    assert inner.scopes == []
    assert too_large[0]["status"] == 413
    assert wrong_type[0]["status"] == 415
    assert b"text/csv" in wrong_type[1]["body"]
    # Neither body was read: the connection must not wait for it.
    assert _headers(too_large[0])[b"connection"] == b"close"


def test_paths_outside_the_table_pass_through_unread_with_a_fresh_request_id() -> None:
    inner = Inner()
    sent = _call(_front(inner), "POST", "/elsewhere", b"{}", ((b"x-request-id", b"bad id!"),))

    (scope,) = inner.scopes
    assert scope[ROUTE_KEY] is None
    assert BODY_KEY not in scope
    request_id = _headers(sent[0])[b"x-request-id"]
    assert len(request_id) == 16
    assert request_id != b"bad id!"
    assert _headers(sent[0])[b"connection"] == b"close"


def test_service_errors_become_their_answer_and_others_a_logged_500(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="iris.access")  # the server's logging config does this
    not_found = _call(_front(Inner(NotFoundError("no such thing"))), "POST", "/echo", b"{}")
    broken = _call(_front(Inner(RuntimeError("bug"))), "POST", "/echo", b"{}")

    assert not_found[0]["status"] == 404
    assert json.loads(not_found[1]["body"]) == {"detail": "no such thing"}
    assert broken[0]["status"] == 500
    assert json.loads(broken[1]["body"]) == {"detail": "Internal Server Error"}
    out = capsys.readouterr().out
    statuses = [json.loads(line)["status"] for line in out.splitlines() if '"iris.access"' in line]
    assert statuses == [404, 500]


def test_every_request_is_counted_under_its_route_template() -> None:
    def count() -> float:
        text = metrics.render()[0].decode()
        prefix = 'iris_http_requests_total{method="POST",route="/echo",status="200"}'
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))

    before = count()
    _call(_front(Inner()), "POST", "/echo", b"{}")
    _call(_front(Inner()), "POST", "/echo", b"{}")

    assert count() - before == 2


def test_made_up_request_ids_are_unique_and_a_forked_worker_draws_its_own() -> None:
    ids = [front.new_request_id() for _ in range(1000)]
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # a gunicorn worker is forked from the master like this
        os.write(writer, front.new_request_id())
        os._exit(0)
    os.waitpid(child, 0)
    forked = os.read(reader, 64)
    os.close(reader)
    os.close(writer)

    assert len(set(ids)) == len(ids)
    assert all(len(i) == 16 and front.REQUEST_ID.fullmatch(i) for i in ids)
    assert forked not in ids
    assert forked[:8] != ids[0][:8]  # another prefix, not the parent's next number
