"""The HTTP API as data: one `Route` per method and path, in `ROUTES`.

Everything that depends on which routes exist is derived from this table:
- the dispatch (`Router.match`), which the front (service.front) uses to answer a route
  without FastAPI's routing and dependency injection (~135 us a request, ten times a
  prediction);
- the body policy: every POST route declares its `Body` (schema, media types), and the
  front applies the size limit, the body timeout and the content-type check to exactly
  those routes (a route cannot be POST without one: `Route` refuses it);
- the FastAPI routes (`document`), so /docs and /openapi.json describe every route, with
  the request schemas of the bodies the codecs parse.

Adding an endpoint is one entry here and a `DataPlane` method (service.dataplane).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Annotated, Any, Literal, NamedTuple

import orjson
from fastapi import FastAPI, Path, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from service.codecs import BINARY_HEADER
from service.dataplane import DataPlane
from service.docs import live_examples
from service.errors import JSON
from service.schemas import (
    V2_MODEL_NAME,
    BatchRequest,
    BatchResponse,
    ErrorDetail,
    Health,
    Measurement,
    PredictResponse,
    V2Error,
    V2InferenceRequest,
    V2InferenceResponse,
    V2Live,
    V2ModelMetadata,
    V2Ready,
    V2ServerMetadata,
    VersionInfo,
)


class Reply(NamedTuple):
    """What a handler answers: a body, its status and media type, any further headers."""

    body: bytes
    status: int = 200
    media_type: str = JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()


class Call(NamedTuple):
    """One request as a handler sees it: the body (read by the front), path parameters,
    and the Inference-Header-Content-Length header if the route takes binary tensors."""

    body: bytes
    params: Mapping[str, str]
    binary_header: bytes | None = None


Handler = Callable[[DataPlane, Call], Reply]


OCTET_STREAM = "application/octet-stream"


@dataclass(frozen=True)
class Body:
    """A route's request body: the schema it is documented by, the media types accepted,
    and whether it may carry binary tensors (Triton's binary tensor data extension: a JSON
    header of Inference-Header-Content-Length bytes, then the tensors' bytes).

    The size limit (IRIS_MAX_BODY_BYTES) and the time limit (IRIS_BODY_TIMEOUT) apply to
    every body alike. A request without Content-Type is accepted: inference clients
    (tritonclient among them) send none.
    """

    schema: type[BaseModel]
    media_types: frozenset[bytes] = frozenset({b"application/json"})
    binary_tensors: bool = False


@dataclass(frozen=True)
class Route:
    """One method and path: its handler, its body policy and its documentation."""

    method: Literal["GET", "POST"]
    path: str
    handler: Handler
    summary: str
    tags: tuple[str, ...]
    response_model: type[BaseModel] | None = None
    responses: Mapping[int | str, dict[str, Any]] = field(default_factory=dict)
    body: Body | None = None
    documented: bool = True
    media_type: str = JSON

    def __post_init__(self) -> None:
        if (self.method == "POST") != (self.body is not None):
            raise ValueError(f"{self.method} {self.path}: a POST route, and only one, has a Body")

    @property
    def params(self) -> tuple[str, ...]:
        """Names of the path parameters, in order."""
        return tuple(re.findall(r"{(\w+)}", self.path))


# --- handlers: HTTP in terms of the data plane ------------------------------------------------


def _json(body: bytes) -> Reply:
    return Reply(body)


def _livez(plane: DataPlane, call: Call) -> Reply:
    return Reply(b'{"status":"ok"}')


def _readyz(plane: DataPlane, call: Call) -> Reply:
    if plane.state.draining:
        return Reply(b'{"status":"draining"}', 503)
    if plane.state.model is None:
        return Reply(b'{"status":"loading"}', 503)
    return Reply(b'{"status":"ok"}')


def _version(plane: DataPlane, call: Call) -> Reply:
    return _json(plane.version_info())


def _predict(plane: DataPlane, call: Call) -> Reply:
    return _json(plane.predict(call.body))


def _predict_batch(plane: DataPlane, call: Call) -> Reply:
    return _json(plane.predict_batch(call.body))


def _server_metadata(plane: DataPlane, call: Call) -> Reply:
    return _json(plane.server_metadata())


def _server_live(plane: DataPlane, call: Call) -> Reply:
    return Reply(b'{"live":true}')


def _ready(plane: DataPlane) -> Reply:
    return Reply(b'{"ready":true}') if plane.state.ready else Reply(b'{"ready":false}', 503)


def _server_ready(plane: DataPlane, call: Call) -> Reply:
    return _ready(plane)


def _model_metadata(plane: DataPlane, call: Call) -> Reply:
    return _json(plane.model_metadata(call.params["model_name"], call.params.get("model_version")))


def _model_ready(plane: DataPlane, call: Call) -> Reply:
    plane.model_for(call.params["model_name"])
    return _ready(plane)


def _infer(plane: DataPlane, call: Call) -> Reply:
    params = call.params
    encoded = plane.infer(
        params["model_name"], params.get("model_version"), call.body, call.binary_header
    )
    if encoded.header_length is None:
        return Reply(encoded.body)
    length = (b"inference-header-content-length", str(encoded.header_length).encode())
    return Reply(encoded.body, media_type=OCTET_STREAM, headers=(length,))


# --- the table ----------------------------------------------------------------------------------

_HEALTH = ("health",)
_PREDICT = ("predict",)
_V2 = ("Open Inference Protocol v2",)

_PREDICT_ERRORS: dict[int | str, dict[str, Any]] = {
    408: {"model": ErrorDetail, "description": "Body not received within IRIS_BODY_TIMEOUT."},
    413: {"model": ErrorDetail, "description": "Body or batch over the documented limit."},
    415: {"model": ErrorDetail, "description": "Content-Type is not application/json."},
    422: {"model": ErrorDetail, "description": "A field is missing, unknown or out of range."},
}
_V2_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": V2Error, "description": "Malformed request: wrong shape, datatype or value."},
    404: {"model": V2Error, "description": "Unknown model or version."},
    408: {"model": V2Error, "description": "Body not received within IRIS_BODY_TIMEOUT."},
    413: {"model": V2Error, "description": "Body or batch over the documented limit."},
    415: {"model": V2Error, "description": "Content-Type is not JSON (or octet-stream)."},
}
_V2_INFER_ERRORS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "With binary outputs asked for: the JSON header, then the tensors.",
        "content": {OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}},
    },
    **_V2_ERRORS,
}
_V2_INFER_BODY = Body(
    V2InferenceRequest,
    frozenset({b"application/json", OCTET_STREAM.encode()}),
    binary_tensors=True,
)
_V2_UNKNOWN: dict[int | str, dict[str, Any]] = {404: _V2_ERRORS[404]}

ROUTES: tuple[Route, ...] = (
    Route("GET", "/livez", _livez, "The process is up", _HEALTH, Health),
    Route(
        "GET",
        "/readyz",
        _readyz,
        "The model is loaded and verified, and the worker is not draining",
        _HEALTH,
        Health,
        {503: {"model": Health, "description": "Loading or draining."}},
    ),
    Route("GET", "/version", _version, "What is running", _HEALTH, VersionInfo),
    Route(
        "POST",
        "/predict",
        _predict,
        "Predict the species of one flower",
        _PREDICT,
        PredictResponse,
        _PREDICT_ERRORS,
        Body(Measurement),
    ),
    Route(
        "POST",
        "/predict/",
        _predict,
        "Same as /predict",
        _PREDICT,
        PredictResponse,
        _PREDICT_ERRORS,
        Body(Measurement),
        documented=False,
    ),
    Route(
        "POST",
        "/predict/batch",
        _predict_batch,
        "Predict the species of several flowers",
        _PREDICT,
        BatchResponse,
        _PREDICT_ERRORS,
        Body(BatchRequest),
    ),
    Route("GET", "/v2", _server_metadata, "Server metadata", _V2, V2ServerMetadata),
    Route("GET", "/v2/health/live", _server_live, "Server live", _V2, V2Live),
    Route(
        "GET",
        "/v2/health/ready",
        _server_ready,
        "Server ready",
        _V2,
        V2Ready,
        {503: {"model": V2Ready}},
    ),
    Route(
        "GET",
        "/v2/models/{model_name}",
        _model_metadata,
        "Model metadata",
        _V2,
        V2ModelMetadata,
        _V2_UNKNOWN,
    ),
    Route(
        "GET",
        "/v2/models/{model_name}/versions/{model_version}",
        _model_metadata,
        "Model metadata of one version",
        _V2,
        V2ModelMetadata,
        _V2_UNKNOWN,
    ),
    Route(
        "GET",
        "/v2/models/{model_name}/ready",
        _model_ready,
        "Model ready",
        _V2,
        V2Ready,
        {**_V2_UNKNOWN, 503: {"model": V2Ready}},
    ),
    Route(
        "POST",
        "/v2/models/{model_name}/infer",
        _infer,
        "Inference",
        _V2,
        V2InferenceResponse,
        _V2_INFER_ERRORS,
        _V2_INFER_BODY,
    ),
    Route(
        "POST",
        "/v2/models/{model_name}/versions/{model_version}/infer",
        _infer,
        "Inference with one version",
        _V2,
        V2InferenceResponse,
        _V2_INFER_ERRORS,
        _V2_INFER_BODY,
    ),
)


# --- dispatch -----------------------------------------------------------------------------------

_NO_PARAMS: Mapping[str, str] = MappingProxyType({})
MATCHES_KEPT = 256
"""How many templated paths a Router remembers; any path beyond them is matched anew
each time (clients choose paths: the memory they can make it use is bounded)."""
PATH_LENGTH_KEPT = 256
"""Longer paths are never remembered (at most MATCHES_KEPT x PATH_LENGTH_KEPT characters)."""


class Match(NamedTuple):
    """A route and the values of its path parameters."""

    route: Route
    params: Mapping[str, str]


class Router:
    """Finds the route of a method and path: a dict lookup for fixed paths, then the
    templates in table order (a parameter matches one path segment, as in Starlette)."""

    def __init__(self, routes: tuple[Route, ...]) -> None:
        self.routes = routes
        self._fixed: dict[tuple[str, str], Match] = {}
        self._templated: list[tuple[str, re.Pattern[str], Route]] = []
        # Templated paths seen before (/v2/models/iris/infer on every request), up to
        # MATCHES_KEPT of them: a dict lookup instead of a regex and a new Match.
        self._seen: dict[tuple[str, str], Match] = {}
        for route in routes:
            if route.params:
                pattern = re.sub(r"{(\w+)}", r"(?P<\1>[^/]+)", route.path)
                self._templated.append((route.method, re.compile(pattern + r"\Z"), route))
            else:
                self._fixed[(route.method, route.path)] = Match(route, _NO_PARAMS)

    def match(self, method: str, path: str) -> Match | None:
        """The route answering `method` `path`, or None (FastAPI then answers 404/405)."""
        key = (method, path)
        found = self._fixed.get(key) or self._seen.get(key)
        if found is not None:
            return found
        for route_method, pattern, route in self._templated:
            if route_method == method:
                matched = pattern.match(path)
                if matched:
                    found = Match(route, MappingProxyType(matched.groupdict()))
                    if len(self._seen) < MATCHES_KEPT and len(path) <= PATH_LENGTH_KEPT:
                        self._seen[key] = found
                    return found
        return None


# --- documentation: the same table as FastAPI routes ---------------------------------------------


def _request_body(body: Body) -> dict[str, Any]:
    # Bodies are parsed by the codecs, not by a FastAPI parameter; this tells the OpenAPI
    # document what they accept.
    reference = {"$ref": f"#/components/schemas/{body.schema.__name__}"}
    content: dict[str, Any] = {"application/json": {"schema": reference}}
    if body.binary_tensors:
        content[OCTET_STREAM] = {
            "schema": {
                "type": "string",
                "format": "binary",
                "description": "The JSON request (Inference-Header-Content-Length bytes), "
                "then the bytes of the tensor it declares with binary_data_size.",
            }
        }
    return {"requestBody": {"required": True, "content": content}}


# Swagger UI fills "Try it out" with these; the v2 routes take the model name in the path.
_PARAMETERS: dict[str, Any] = {
    "model_name": Annotated[
        str,
        Path(
            openapi_examples={
                V2_MODEL_NAME: {"summary": "the served model", "value": V2_MODEL_NAME}
            }
        ),
    ],
    "model_version": str,
}


def _endpoint(route: Route, plane: DataPlane) -> Callable[..., Any]:
    """A FastAPI endpoint calling the route's handler, with the path parameters in its
    signature so that the OpenAPI document lists them."""

    async def endpoint(request: Request, **params: str) -> Response:
        body = await request.body() if route.body is not None else b""
        header = request.headers.get(BINARY_HEADER)
        binary = header.encode("latin-1") if header is not None else None
        reply = route.handler(plane, Call(body, params, binary))
        headers = {name.decode(): value.decode() for name, value in reply.headers}
        return Response(
            reply.body, status_code=reply.status, media_type=reply.media_type, headers=headers
        )

    parameters = [
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)
    ]
    parameters += [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=_PARAMETERS[name])
        for name in route.params
    ]
    endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    endpoint.__name__ = route.handler.__name__.lstrip("_")
    return endpoint


def _definitions(
    models: Iterable[type[BaseModel]], mode: Literal["validation", "serialization"]
) -> dict[str, Any]:
    """The JSON schemas of `models` (and the models they nest) by name, as OpenAPI
    components."""
    from pydantic.json_schema import models_json_schema

    _, definitions = models_json_schema(
        [(model, mode) for model in models], ref_template="#/components/schemas/{model}"
    )
    found: dict[str, Any] = definitions.get("$defs", {})
    return found


def document(api: FastAPI, routes: tuple[Route, ...], plane: DataPlane) -> None:
    """Declare every route to FastAPI (for /docs and /openapi.json, and 404/405 for the
    rest), and add the schemas of the request bodies to its OpenAPI document. Once a
    model serves, the document shows its bodies (fields from its artifact's contract)
    and its version and answers in the examples (service.docs.live_examples)."""
    for route in routes:
        api.add_api_route(
            route.path,
            _endpoint(route, plane),
            methods=[route.method],
            summary=route.summary,
            tags=list(route.tags),
            response_model=route.response_model,
            responses=dict(route.responses),
            # JSON routes keep FastAPI's JSON response class, so the document names the
            # media type; the handler's Response is sent as it is either way.
            response_class=JSONResponse if route.media_type == JSON else Response,
            include_in_schema=route.documented,
            openapi_extra=_request_body(route.body) if route.body else None,
        )
    bodies = {route.body.schema for route in routes if route.body is not None}
    generate = api.openapi
    served: dict[str, Any] = {}  # the document with the served model's schemas, built once

    def openapi() -> dict[str, Any]:
        if served:
            return served
        document = generate()  # FastAPI keeps it in api.openapi_schema; extended once
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        requests = sorted(bodies, key=lambda m: m.__name__)
        for name, schema in _definitions(requests, "validation").items():
            schemas.setdefault(name, schema)
        model = plane.state.model
        if model is None:
            return document  # the repository's contract, stand-in examples
        # The served model's contract decides the fields, their range and the classes:
        # its schemas replace the default ones of the same name.
        live = orjson.loads(orjson.dumps(document))
        own = model.codec.schemas
        live["components"]["schemas"].update(
            {
                **_definitions(own.responses, "serialization"),
                **_definitions(own.requests, "validation"),
            }
        )
        served.update(live_examples(live, model))
        return served

    api.openapi = openapi  # type: ignore[method-assign]
