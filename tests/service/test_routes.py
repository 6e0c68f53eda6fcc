"""The route table: every POST route gets the body policy, and the table is the API.

Each POST route of `service.routes.ROUTES` is driven with its own schema's example body
through the whole app: the size limit, the content-type check and the body timeout
apply to every one of them, and a body that was read is not answered with
`Connection: close`. A route added to the table is covered here without a new test.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import IrisApp
from service.dataplane import DataPlane, ServiceState
from service.routes import (
    MATCHES_KEPT,
    PATH_LENGTH_KEPT,
    ROUTES,
    Body,
    Call,
    Reply,
    Route,
    Router,
)
from service.schemas import Measurement
from service.settings import Settings
from tests.service.support import make_client

POST_ROUTES = [route for route in ROUTES if route.method == "POST"]


def _path(route: Route, version: str) -> str:
    return route.path.format(model_name="iris", model_version=version)


def _example(route: Route) -> bytes:
    assert route.body is not None
    examples = route.body.schema.model_json_schema()["examples"]
    assert examples, f"{route.body.schema.__name__} has no example"
    return json.dumps(examples[0]).encode()


@pytest.fixture(scope="module")
def small(service_settings: Settings) -> Any:
    settings = service_settings.model_copy(update={"max_body_bytes": 2048, "body_timeout": 0.3})
    with make_client(settings) as client:
        yield client


def _version(client: TestClient) -> str:
    version: str = client.get("/version").json()["model_version"]
    return version


def test_the_table_has_post_routes_for_every_body_taking_endpoint() -> None:
    assert {route.path for route in POST_ROUTES} == {
        "/predict",
        "/predict/",
        "/predict/batch",
        "/v2/models/{model_name}/infer",
        "/v2/models/{model_name}/versions/{model_version}/infer",
    }


def test_a_route_cannot_take_a_body_without_a_policy_or_a_policy_without_a_body() -> None:
    def handler(plane: DataPlane, call: Call) -> Reply:
        return Reply(b"{}")

    with pytest.raises(ValueError, match="POST /explain"):
        Route("POST", "/explain", handler, "Explain", ("predict",))
    with pytest.raises(ValueError, match="GET /explain"):
        Route("GET", "/explain", handler, "Explain", ("predict",), body=Body(Measurement))


@pytest.mark.parametrize("route", POST_ROUTES, ids=lambda route: route.path)
def test_every_post_route_answers_its_example_and_applies_the_body_policy(
    small: TestClient, route: Route
) -> None:
    path = _path(route, _version(small))
    example = _example(route)
    error_key = "error" if path.startswith("/v2/") else "detail"

    answered = small.post(path, content=example, headers={"Content-Type": "application/json"})
    too_large = small.post(
        path, content=example + b" " * 4096, headers={"Content-Type": "application/json"}
    )
    wrong_type = small.post(path, content=example, headers={"Content-Type": "text/plain"})

    assert answered.status_code == 200, answered.text
    assert "connection" not in answered.headers  # the body was read: keep-alive is safe
    assert too_large.status_code == 413
    assert "IRIS_MAX_BODY_BYTES" in too_large.json()[error_key]
    assert wrong_type.status_code == 415
    assert wrong_type.headers["connection"] == "close"  # its body was never read
    assert "Content-Type must be application/json" in wrong_type.json()[error_key]


@pytest.mark.parametrize("route", POST_ROUTES, ids=lambda route: route.path)
def test_every_post_route_cuts_off_a_stalled_body_with_408(small: TestClient, route: Route) -> None:
    app = small.app
    assert isinstance(app, IrisApp)
    path = _path(route, _version(small))
    sent: list[dict[str, Any]] = []
    pending = [{"type": "http.request", "body": b"{", "more_body": True}]

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        await asyncio.Event().wait()  # a client that stops sending
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
        "query_string": b"",
    }
    asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=5))

    assert sent[0]["status"] == 408
    assert b"IRIS_BODY_TIMEOUT" in sent[1]["body"]


def test_router_finds_fixed_paths_templates_and_nothing_else() -> None:
    router = Router(ROUTES)

    fixed = router.match("POST", "/predict")
    templated = router.match("POST", "/v2/models/iris/versions/abc/infer")

    assert fixed is not None
    assert fixed.route.path == "/predict"
    assert fixed.params == {}
    assert templated is not None
    assert templated.route.path == "/v2/models/{model_name}/versions/{model_version}/infer"
    assert templated.params == {"model_name": "iris", "model_version": "abc"}
    assert router.match("GET", "/predict") is None  # FastAPI answers 405
    assert router.match("POST", "/v2/models/a/b/infer") is None  # one segment per parameter
    assert router.match("GET", "/nowhere") is None


def test_a_wrong_method_on_a_route_is_405_and_an_unknown_path_404(client: TestClient) -> None:
    assert client.get("/predict").status_code == 405
    assert client.post("/livez").status_code == 405
    assert client.get("/nowhere").status_code == 404


def test_openapi_documents_exactly_the_documented_routes_with_their_bodies(
    client: TestClient,
) -> None:
    document = client.get("/openapi.json").json()
    operations = {
        (path, method.upper()) for path, ops in document["paths"].items() for method in ops
    }

    table = {(route.path, route.method) for route in ROUTES if route.documented}
    assert operations == table
    for route in POST_ROUTES:
        if not route.documented:
            continue
        assert route.body is not None
        body = document["paths"][route.path]["post"]["requestBody"]["content"]
        schema = body["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        assert schema == route.body.schema.__name__
        assert schema in document["components"]["schemas"]
    for route in ROUTES:
        parameters = document["paths"].get(route.path, {}).get(route.method.lower(), {})
        names = [p["name"] for p in parameters.get("parameters", [])]
        assert names == list(route.params) or not route.documented


def test_the_data_plane_says_not_ready_until_a_model_is_served() -> None:
    plane = DataPlane(ServiceState(), max_batch_rows=10, git_revision="test")

    with pytest.raises(Exception, match="not loaded yet") as refused:
        plane.predict(b"{}")
    assert getattr(refused.value, "status_code", None) == 503


def test_router_remembers_a_bounded_number_of_templated_paths_and_still_matches_the_rest() -> None:
    router = Router(ROUTES)
    first = router.match("POST", "/v2/models/iris/infer")

    assert router.match("POST", "/v2/models/iris/infer") is first  # remembered
    # Clients choose paths: past MATCHES_KEPT new ones, each is matched afresh.
    for n in range(MATCHES_KEPT + 10):
        found = router.match("POST", f"/v2/models/m{n}/infer")
        assert found is not None
        assert found.params == {"model_name": f"m{n}"}
    late = router.match("POST", f"/v2/models/m{MATCHES_KEPT + 5}/infer")
    assert late is not None
    assert late.params == {"model_name": f"m{MATCHES_KEPT + 5}"}
    assert late is not router.match("POST", f"/v2/models/m{MATCHES_KEPT + 5}/infer")
    kept = "/v2/models/m0/infer"
    assert router.match("POST", kept) is router.match("POST", kept)


def test_router_matches_a_long_path_without_remembering_it() -> None:
    router = Router(ROUTES)
    name = "m" * PATH_LENGTH_KEPT
    path = f"/v2/models/{name}/infer"

    first = router.match("POST", path)

    assert first is not None
    assert first.params == {"model_name": name}
    assert router.match("POST", path) is not first
