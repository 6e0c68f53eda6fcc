"""The ASGI application: create_app(settings) builds it; gunicorn serves the module-level `app`.

A request goes through three layers, each its own module:
- `service.front.Front`: request id, body policy, error answers, the log line, metrics;
- `Dispatcher` (here): the route the front matched in the table (service.routes) is
  answered by its handler on the data plane (service.dataplane), with no framework in
  between; any other request goes to
- FastAPI, which serves /docs and /openapi.json (generated from the same table) and
  answers unknown paths and methods (404, 405).

This module also owns the worker's life: under gunicorn the master loads and verifies
the model once, before it forks (`IrisApp.preload`, called by service.server), and every
worker starts serving that copy in its lifespan; without a preloaded model (an app built
by `create_app` alone, as the tests do) the lifespan loads it. On SIGTERM the worker
drains (see `_install_drain_handler`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model.artifact import CONTRACT, ArtifactError
from service import metrics
from service.dataplane import DataPlane, ServedModel, ServiceState, load_model
from service.docs import add_docs
from service.errors import ServiceError, handle_error
from service.front import BINARY_KEY, BODY_KEY, ROUTE_KEY, Front, respond
from service.logs import SERVICE_LOGGER, RequestLog
from service.routes import ROUTES, Call, Match, Reply, Router, document
from service.settings import Settings

log = logging.getLogger(SERVICE_LOGGER)


class Dispatcher:
    """Answers the route the front matched with its handler; everything else goes to `app`."""

    def __init__(self, app: ASGIApp, plane: DataPlane) -> None:
        self.app = app
        self.plane = plane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point (behind the front, which sets ROUTE_KEY and BODY_KEY)."""
        match: Match | None = scope.get(ROUTE_KEY)
        if match is None:
            await self.app(scope, receive, send)
            return
        reply = self.reply(
            match, Call(scope.get(BODY_KEY, b""), match.params, scope.get(BINARY_KEY))
        )
        await respond(send, reply.status, reply.body, reply.media_type.encode(), reply.headers)

    def reply(self, match: Match, call: Call) -> Reply:
        """The matched route's handler on the data plane (also the front's, for requests the
        server hands over whole: Front.complete)."""
        return match.route.handler(self.plane, call)


class IrisApp:
    """The service as one ASGI app: front, dispatcher and FastAPI, and the worker's life."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = ServiceState()
        # Loaded before the server forks, served by each worker once its lifespan starts.
        self.preloaded: ServedModel | None = None
        self.plane = DataPlane(self.state, settings.max_batch_rows, settings.git_revision)
        self.api = _fastapi(self, settings)
        dispatcher = Dispatcher(self.api, self.plane)
        self.front = Front(
            dispatcher,
            Router(ROUTES),
            max_body_bytes=settings.max_body_bytes,
            body_timeout=settings.body_timeout,
            request_log=RequestLog(settings.log_format),
            model_version=self._model_version,
            reply=dispatcher.reply,
        )
        # The server's way around ASGI for a request that arrived whole (service.protocol).
        self.complete_request = self.front.complete

    def _model_version(self) -> str:
        model = self.state.model
        return model.version if model is not None else "none"

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
        metrics.MODEL_INFO.labels(
            model.version, self.settings.git_revision, model.predictor.name
        ).set(1)

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI document of every route in the table."""
        return self.api.openapi()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point: HTTP goes through the front, the lifespan to FastAPI."""
        kind = scope["type"]
        if kind == "http":
            await self.front.http(scope, receive, send)  # one coroutine fewer than front()
        elif kind == "lifespan":
            await self.api(scope, receive, self._concise_lifespan(send))
        else:
            await self.front(scope, receive, send)

    def _concise_lifespan(self, send: Send) -> Send:
        # Starlette reports a failed startup with the whole traceback; the server logs
        # that text. A rejected artifact is an operator's problem with a known fix, so
        # the log gets the artifact's own one-line message instead.
        async def send_message(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed" and self.state.boot_error:
                message = {**message, "message": self.state.boot_error}
            await send(message)

        return send_message


def _install_drain_handler(state: ServiceState, delay: float) -> Callable[[], None]:
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
        if state.draining or delay <= 0:
            state.draining = True
            server_handler(signum, frame)
            return
        state.draining = True
        log.info("draining", extra={"fields": {"drain_seconds": delay, "pid": os.getpid()}})
        loop.call_soon_threadsafe(loop.call_later, delay, server_handler, signum, None)

    signal.signal(signal.SIGTERM, on_sigterm)

    def restore() -> None:
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, server_handler)

    return restore


def _load(settings: Settings) -> ServedModel:
    """Load and verify the artifact and pick its predictor, with one log line."""
    model = load_model(settings.model_dir)
    log.info(
        "model loaded",
        extra={
            "fields": {
                "model_version": model.version,
                "inference": model.predictor.name,
                "model_dir": str(settings.model_dir),
                # Which data the served model learnt from: `make train DATA=...` changes it.
                "data_path": model.metadata.data_path,
                "trained_at": model.metadata.trained_at,
                "load_ms": round(model.load_seconds * 1000, 1),
                "pid": os.getpid(),
            }
        },
    )
    return model


def _lifespan(app: IrisApp) -> Callable[[FastAPI], Any]:
    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        """Serve the preloaded model, or load it here; a rejected artifact fails the startup."""
        model = app.preloaded
        if model is None:
            try:
                model = _load(app.settings)
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
        restore = _install_drain_handler(app.state, app.settings.drain_seconds)
        try:
            yield
        finally:
            restore()

    return lifespan


def _fastapi(app: IrisApp, settings: Settings) -> FastAPI:
    """FastAPI for the docs, the OpenAPI document, the lifespan and unknown paths."""
    api = FastAPI(
        title="Iris species API",
        version="1.0.0",
        summary="Predicts the species of an Iris flower from four measurements.",
        description=(
            # The served model's own range replaces this one (service.docs.live_examples).
            f"Every feature is a number, {CONTRACT.feature_range}. "
            f"Bodies are JSON (Content-Type application/json), at most {settings.max_body_bytes} "
            f"bytes; a batch holds at most {settings.max_batch_rows} rows."
        ),
        lifespan=_lifespan(app),
        # Served by service.docs from the pinned package, not from a CDN.
        docs_url=None,
        redoc_url=None,
        # Neither /predict nor /predict/ may answer with a redirect.
        redirect_slashes=False,
        # The service exports its own Prometheus metrics and logs.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    for exc_class in (ServiceError, RequestValidationError, HTTPException):
        api.add_exception_handler(exc_class, handle_error)

    document(api, ROUTES, app.plane)
    if settings.docs_enabled:
        add_docs(api, api.title)
    return api


def create_app(settings: Settings | None = None) -> IrisApp:
    """Build the application; the model is loaded when the ASGI lifespan starts.

    Settings default to the IRIS_* environment. Building the app never touches the
    model, so importing this module works without one; a missing or broken artifact
    fails the worker's startup instead, with the artifact's message.
    """
    return IrisApp(settings if settings is not None else Settings())


app = create_app()
