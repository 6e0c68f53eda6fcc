"""The ASGI application: create_app(settings) builds it; gunicorn serves the module-level `app`.

Every HTTP request enters through `IrisApp.__call__`, a thin layer in front of FastAPI
that does what every request needs (request id, body limit, content type, one log line,
metrics) and answers the prediction routes itself, calling service.predict directly.
FastAPI's routing and dependency machinery costs ~135 us a request, ten times the
prediction itself, so the hot routes skip it; everything else (health,
metadata, /metrics, the docs, errors on unknown paths) is ordinary FastAPI. The
prediction routes are also declared as FastAPI routes calling the same functions, so
/docs and /openapi.json describe them.

Under gunicorn the master loads and verifies the model once, before it forks
(`IrisApp.preload`, called by service.server), and every worker starts serving that copy
in its lifespan; without a preloaded model (an app built by `create_app` alone, as the
tests do) the lifespan loads it. Either way it is kept on `app.state` once the worker
serves it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from enum import Enum
from types import FrameType
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.types import Message, Receive, Scope, Send

from model.artifact import ArtifactError
from model.data import FEATURE_RANGE
from service import metrics
from service.deadlines import BodyDeadlines
from service.docs import add_docs, live_examples
from service.errors import (
    JSON,
    BadRequestError,
    NotFoundError,
    NotReadyError,
    PayloadTooLargeError,
    RequestTimeoutError,
    ServiceError,
    UnsupportedMediaTypeError,
    error_body,
    handle_error,
)
from service.logs import SERVICE_LOGGER, RequestLog
from service.predict import ServedModel, load_model
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
from service.settings import Settings

log = logging.getLogger(SERVICE_LOGGER)

_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_HOT_V2_INFER = f"/v2/models/{V2_MODEL_NAME}/infer"
_V2_INFER_ROUTE = "/v2/models/{model_name}/infer"
# Every POST route lives under these; their bodies are size-checked and must be JSON.
_POST_PREFIXES = ("/predict", "/v2/models/")
_CLIENT_CLOSED = 499  # nginx's code for a client that went away before the answer


class _ClientDisconnectedError(Exception):
    """The client closed the connection before sending its whole body."""


HotHandler = Callable[[bytes], bytes]


class IrisApp(FastAPI):
    """FastAPI plus the per-request front described in the module docstring."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.state.model = None
        self.state.draining = False
        self.state.boot_error = None
        # Loaded before the server forks, served by each worker once its lifespan starts.
        self.preloaded: ServedModel | None = None
        # path -> (route label, handler); filled once the model is loaded.
        self._hot: dict[str, tuple[str, HotHandler]] = {}
        self._model_version = "none"
        self._request_log = RequestLog(settings.log_format)
        self._body_deadlines = BodyDeadlines(settings.body_timeout)

    def preload(self) -> None:
        """Load and verify the model now, for the workers this process will fork.

        service.server calls it in the gunicorn master: a bad artifact then stops the
        server before any worker starts, and the workers share the loaded model
        copy-on-write instead of each unpickling it. Raises model.artifact.ArtifactError.
        """
        self.preloaded = _load(self.settings)

    def serve(self, model: ServedModel) -> None:
        """Start answering with `model` (called by the lifespan once it is loaded)."""
        self.state.model = model
        self._model_version = model.version
        self._hot = {
            "/predict": ("/predict", model.predict),
            "/predict/": ("/predict/", model.predict),
            "/predict/batch": ("/predict/batch", model.predict_batch),
            _HOT_V2_INFER: (_V2_INFER_ROUTE, model.infer_v2),
        }
        metrics.MODEL_INFO.labels(
            model.version, self.settings.git_revision, model.predictor.name
        ).set(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point: HTTP goes through the front, the lifespan through FastAPI."""
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await super().__call__(scope, receive, self._concise_lifespan(send))
        else:
            await super().__call__(scope, receive, send)

    async def _read_body(self, receive: Receive, content_length: bytes | None) -> bytes:
        """The whole request body, within the size limit and the body timeout."""
        limit = self.settings.max_body_bytes
        if content_length is not None and content_length.isdigit() and int(content_length) > limit:
            raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        task = asyncio.current_task()
        if task is None:  # ASGI servers run every request in a task
            raise RuntimeError("request bodies are read inside a task")
        deadlines = self._body_deadlines
        deadlines.watch(task)
        try:
            while True:
                # The only await between watch() and forget(): a deadline that passes
                # cancels the task here.
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _ClientDisconnectedError
                chunk: bytes = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except asyncio.CancelledError:
            if not deadlines.expired(task):
                raise  # shutdown or disconnect: not ours to answer
            task.uncancel()
            raise RequestTimeoutError(
                f"the request body did not arrive within {self.settings.body_timeout:g} s "
                "(IRIS_BODY_TIMEOUT)"
            ) from None
        finally:
            deadlines.forget(task)

    def _concise_lifespan(self, send: Send) -> Send:
        # Starlette reports a failed startup with the whole traceback; the server logs
        # that text. A rejected artifact is an operator's problem with a known fix, so
        # the log gets the artifact's own one-line message instead.
        async def send_message(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed" and self.state.boot_error:
                message = {**message, "message": self.state.boot_error}
            await send(message)

        return send_message

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        method: str = scope["method"]
        path: str = scope["path"]
        content_type: bytes | None = None
        content_length: bytes | None = None
        request_id: bytes | None = None
        binary_tensors = False
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                content_length = value
            elif name == b"x-request-id":
                request_id = value if _REQUEST_ID.fullmatch(value) else None
            elif name == b"inference-header-content-length":
                binary_tensors = True
            elif name == b"transfer-encoding":
                chunked = True
        if request_id is None:
            request_id = os.urandom(8).hex().encode()
        # A body nobody reads is left to the server, which waits for it with no time
        # limit; answering with `Connection: close` ends the connection instead.
        unread_body = chunked or (content_length is not None and content_length != b"0")

        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                headers = [*message.get("headers", ()), (b"x-request-id", request_id)]
                if unread_body:
                    headers.append((b"connection", b"close"))
                message["headers"] = headers
            await send(message)

        hot = self._hot.get(path) if method == "POST" else None
        route: str | None = hot[0] if hot is not None else None
        try:
            if method == "POST" and path.startswith(_POST_PREFIXES):
                _check_content_type(content_type)
                if binary_tensors:
                    raise BadRequestError(
                        "the binary tensor data extension is not supported: send tensors "
                        "as JSON (tritonclient: binary_data=False)"
                    )
                body = await self._read_body(receive, content_length)
                unread_body = False
                if hot is not None:
                    await _respond(send_with_id, 200, hot[1](body))
                else:
                    await super().__call__(scope, _replay(body, receive), send_with_id)
            else:
                # No route takes a body here: FastAPI answers (404, 405, ...) unread.
                await super().__call__(scope, receive, send_with_id)
        except RequestTimeoutError as exc:
            log.info(
                "request body timed out",
                extra={
                    "fields": {
                        "request_id": request_id.decode(),
                        "path": path,
                        "body_timeout_s": self.settings.body_timeout,
                    }
                },
            )
            if not started:
                await _respond(send_with_id, exc.status_code, error_body(path, exc.detail))
        except ServiceError as exc:
            if not started:
                await _respond(send_with_id, exc.status_code, error_body(path, exc.detail))
        except _ClientDisconnectedError:
            status = _CLIENT_CLOSED
        except Exception:
            # FastAPI's ServerErrorMiddleware has already answered 500 for its routes and
            # re-raised; log once here, with the request id, instead of letting the server
            # log a second traceback without it.
            log.exception(
                "unhandled error",
                extra={"fields": {"request_id": request_id.decode(), "path": path}},
            )
            if not started:
                await _respond(send_with_id, 500, error_body(path, "Internal Server Error"))
        finally:
            elapsed = time.perf_counter() - start
            if route is None:
                matched = scope.get("route")
                route = getattr(matched, "path", None) or "unmatched"
            metrics.observe_request(route, method, status, elapsed)
            # 4xx are the client's business: INFO, never a traceback.
            level = logging.ERROR if status >= 500 and status != _CLIENT_CLOSED else logging.INFO
            self._request_log.write(
                level,
                {
                    "method": method,
                    "path": path,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "request_id": request_id.decode(),
                    "model_version": self._model_version,
                },
            )


def _check_content_type(content_type: bytes | None) -> None:
    # Inference clients (tritonclient among them) send no Content-Type; a declared one
    # must be JSON.
    if content_type is None:
        return
    media_type = content_type.split(b";", 1)[0].strip().lower()
    if media_type != b"application/json":
        shown = content_type.decode("latin-1")[:100]
        raise UnsupportedMediaTypeError(f"Content-Type must be application/json, got '{shown}'")


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"request body is larger than {limit} bytes (IRIS_MAX_BODY_BYTES); "
        "send fewer rows per request"
    )


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands FastAPI the body already read, then the real channel."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _install_drain_handler(app: IrisApp, delay: float) -> Callable[[], None]:
    """On SIGTERM: answer /readyz with 503 at once, keep serving `delay` seconds, then stop.

    The server (uvicorn, under gunicorn) has its own SIGTERM handler that stops
    accepting connections and lets in-flight requests finish; it is called after the
    delay. Returns a function that puts the server's handler back.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signals are a main-thread affair (e.g. not under TestClient)
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return lambda: None
    server_handler: Callable[[int, FrameType | None], Any] = previous
    loop = asyncio.get_running_loop()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if app.state.draining or delay <= 0:
            app.state.draining = True
            server_handler(signum, frame)
            return
        app.state.draining = True
        log.info("draining", extra={"fields": {"drain_seconds": delay, "pid": os.getpid()}})
        loop.call_soon_threadsafe(loop.call_later, delay, server_handler, signum, None)

    signal.signal(signal.SIGTERM, on_sigterm)

    def restore() -> None:
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, server_handler)

    return restore


def _load(settings: Settings) -> ServedModel:
    """Load and verify the artifact and pick its predictor, with one log line."""
    started = time.perf_counter()
    model = load_model(settings.model_dir, settings.max_batch_rows)
    log.info(
        "model loaded",
        extra={
            "fields": {
                "model_version": model.version,
                "inference": model.predictor.name,
                "model_dir": str(settings.model_dir),
                # Which data the served model learnt from: `make train DATA=...` changes it.
                "data_path": model.artifact.metadata.data_path,
                "trained_at": model.artifact.metadata.trained_at,
                "load_ms": round((time.perf_counter() - started) * 1000, 1),
                "pid": os.getpid(),
            }
        },
    )
    return model


@asynccontextmanager
async def _lifespan(app: IrisApp) -> AsyncIterator[None]:
    """Serve the preloaded model, or load it here; a rejected artifact fails the startup."""
    settings = app.settings
    model = app.preloaded
    if model is None:
        try:
            model = _load(settings)
        except ArtifactError as exc:
            app.state.boot_error = f"cannot serve the model: {exc}"
            raise
    app.serve(model)
    log.info(
        "worker serving",
        extra={
            "fields": {
                "model_version": model.version,
                "preloaded": model is app.preloaded,
                "pid": os.getpid(),
            }
        },
    )
    restore = _install_drain_handler(app, settings.drain_seconds)
    try:
        yield
    finally:
        restore()


def _model(request: Request) -> ServedModel:
    model: ServedModel | None = request.app.state.model
    if model is None:
        raise NotReadyError("the model is not loaded yet")
    return model


def _json(body: bytes) -> Response:
    return Response(body, media_type=JSON)


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
    415: {"model": V2Error, "description": "Content-Type is not application/json."},
}


def _openapi_body(schema: type[Any]) -> dict[str, Any]:
    # The body is parsed by service.predict, not by a FastAPI parameter; this tells the
    # OpenAPI document what that parser accepts.
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{schema.__name__}"}}
            },
        }
    }


def _add_routes(app: IrisApp) -> None:
    @app.get("/livez", tags=["health"], response_model=Health, summary="The process is up")
    async def livez() -> Response:
        return _json(b'{"status":"ok"}')

    @app.get(
        "/readyz",
        tags=["health"],
        response_model=Health,
        responses={503: {"model": Health, "description": "Loading or draining."}},
        summary="The model is loaded and verified, and the worker is not draining",
    )
    async def readyz(request: Request) -> Response:
        if request.app.state.draining:
            return Response(b'{"status":"draining"}', status_code=503, media_type=JSON)
        if request.app.state.model is None:
            return Response(b'{"status":"loading"}', status_code=503, media_type=JSON)
        return _json(b'{"status":"ok"}')

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics of all workers",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"example": "iris_http_requests_total 1.0"}}}},
    )
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/version", tags=["health"], response_model=VersionInfo, summary="What is running")
    async def version(request: Request) -> Response:
        model = _model(request)
        return _json(
            VersionInfo(
                git_revision=app.settings.git_revision,
                model_version=model.version,
                inference=model.predictor.name,
                model=model.artifact.metadata.to_dict(),
            )
            .model_dump_json()
            .encode()
        )

    predict_doc: dict[str, Any] = {
        "tags": ["predict"],
        "response_model": PredictResponse,
        "responses": _PREDICT_ERRORS,
        "openapi_extra": _openapi_body(Measurement),
    }

    @app.post("/predict", summary="Predict the species of one flower", **predict_doc)
    async def predict(request: Request) -> Response:
        return _json(_model(request).predict(await request.body()))

    @app.post("/predict/", summary="Same as /predict", include_in_schema=False)
    async def predict_slash(request: Request) -> Response:
        return _json(_model(request).predict(await request.body()))

    @app.post(
        "/predict/batch",
        summary="Predict the species of several flowers",
        tags=["predict"],
        response_model=BatchResponse,
        responses=_PREDICT_ERRORS,
        openapi_extra=_openapi_body(BatchRequest),
    )
    async def predict_batch(request: Request) -> Response:
        return _json(_model(request).predict_batch(await request.body()))

    _add_v2_routes(app)


# Swagger UI fills "Try it out" with this; the v2 routes take the name in the path.
ModelName = Annotated[
    str,
    Path(openapi_examples={V2_MODEL_NAME: {"summary": "the served model", "value": V2_MODEL_NAME}}),
]


def _add_v2_routes(app: IrisApp) -> None:
    tags: list[str | Enum] = ["Open Inference Protocol v2"]

    def model_for(request: Request, model_name: str, version: str | None = None) -> ServedModel:
        model = _model(request)
        if model_name != V2_MODEL_NAME:
            raise NotFoundError(
                f"unknown model '{model_name}'; this server serves '{V2_MODEL_NAME}'"
            )
        if version is not None and version != model.version:
            raise NotFoundError(
                f"unknown version '{version}' of model '{model_name}'; "
                f"this server serves version '{model.version}'"
            )
        return model

    def ready(request: Request) -> Response:
        state = request.app.state
        if state.draining or state.model is None:
            return Response(b'{"ready":false}', status_code=503, media_type=JSON)
        return _json(b'{"ready":true}')

    @app.get("/v2", tags=tags, response_model=V2ServerMetadata, summary="Server metadata")
    async def server_metadata() -> Response:
        return _json(
            V2ServerMetadata(name="iris-api", version=app.settings.git_revision, extensions=[])
            .model_dump_json()
            .encode()
        )

    @app.get("/v2/health/live", tags=tags, response_model=V2Live, summary="Server live")
    async def server_live() -> Response:
        return _json(b'{"live":true}')

    @app.get(
        "/v2/health/ready",
        tags=tags,
        response_model=V2Ready,
        responses={503: {"model": V2Ready}},
        summary="Server ready",
    )
    async def server_ready(request: Request) -> Response:
        return ready(request)

    @app.get(
        "/v2/models/{model_name}",
        tags=tags,
        response_model=V2ModelMetadata,
        responses={404: _V2_ERRORS[404]},
        summary="Model metadata",
    )
    async def model_metadata(request: Request, model_name: ModelName) -> Response:
        return Response(orjson.dumps(model_for(request, model_name).v2_metadata()), media_type=JSON)

    @app.get(
        "/v2/models/{model_name}/versions/{model_version}",
        tags=tags,
        response_model=V2ModelMetadata,
        responses={404: _V2_ERRORS[404]},
        summary="Model metadata of one version",
    )
    async def model_version_metadata(
        request: Request, model_name: ModelName, model_version: str
    ) -> Response:
        model = model_for(request, model_name, model_version)
        return Response(orjson.dumps(model.v2_metadata()), media_type=JSON)

    @app.get(
        "/v2/models/{model_name}/ready",
        tags=tags,
        response_model=V2Ready,
        responses={404: _V2_ERRORS[404], 503: {"model": V2Ready}},
        summary="Model ready",
    )
    async def model_ready(request: Request, model_name: ModelName) -> Response:
        model_for(request, model_name)
        return ready(request)

    infer_doc: dict[str, Any] = {
        "tags": tags,
        "response_model": V2InferenceResponse,
        "responses": _V2_ERRORS,
        "openapi_extra": _openapi_body(V2InferenceRequest),
    }

    @app.post(_V2_INFER_ROUTE, summary="Inference", **infer_doc)
    async def infer(request: Request, model_name: ModelName) -> Response:
        model = model_for(request, model_name)
        return _json(model.infer_v2(await request.body()))

    @app.post(
        "/v2/models/{model_name}/versions/{model_version}/infer",
        summary="Inference with one version",
        **infer_doc,
    )
    async def infer_version(
        request: Request, model_name: ModelName, model_version: str
    ) -> Response:
        model = model_for(request, model_name, model_version)
        return _json(model.infer_v2(await request.body()))


def _add_schemas(app: IrisApp) -> None:
    # The request bodies parsed by service.predict are not FastAPI parameters, so
    # FastAPI does not know their schemas; add them to the generated document.
    from pydantic.json_schema import models_json_schema

    generate = app.openapi
    served: dict[str, Any] = {}  # the document with the served model's examples, built once

    def openapi() -> dict[str, Any]:
        if served:
            return served
        document = generate()  # FastAPI keeps it in app.openapi_schema; extended once
        _, definitions = models_json_schema(
            [(model, "validation") for model in (Measurement, BatchRequest, V2InferenceRequest)],
            ref_template="#/components/schemas/{model}",
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in definitions.get("$defs", {}).items():
            schemas.setdefault(name, schema)
        model: ServedModel | None = app.state.model
        if model is None:
            return document  # examples with the stand-in version until a model serves
        served.update(live_examples(document, model))
        return served

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None) -> IrisApp:
    """Build the application; the model is loaded when the ASGI lifespan starts.

    Settings default to the IRIS_* environment. Building the app never touches the
    model, so importing this module works without one; a missing or broken artifact
    fails the worker's startup instead, with the artifact's message.
    """
    settings = settings if settings is not None else Settings()
    app = IrisApp(
        settings,
        title="Iris species API",
        version="1.0.0",
        summary="Predicts the species of an Iris flower from four measurements.",
        description=(
            f"Every measurement is a number of centimetres, {FEATURE_RANGE}. "
            f"Bodies are JSON (Content-Type application/json), at most {settings.max_body_bytes} "
            f"bytes; a batch holds at most {settings.max_batch_rows} rows."
        ),
        lifespan=_lifespan,
        # Served by service.docs from the pinned package, not from a CDN.
        docs_url=None,
        redoc_url=None,
        # Neither /predict nor /predict/ may answer with a redirect.
        redirect_slashes=False,
        # The service exports its own Prometheus metrics and logs.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    for exc_class in (ServiceError, RequestValidationError, HTTPException):
        app.add_exception_handler(exc_class, handle_error)
    _add_routes(app)
    _add_schemas(app)
    if settings.docs_enabled:
        add_docs(app, app.title)
    return app


app = create_app()
