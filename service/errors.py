"""Errors a request can end in, and the one place that turns them into responses.

Every client mistake is a `ServiceError` with a 4xx status and a message naming what was
wrong. Bodies keep FastAPI's `{"detail": ...}` shape, so validation errors and domain
errors look alike; under /v2 they take the Open Inference Protocol's `{"error": "..."}`.
Validation errors never echo the client's input back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

JSON = "application/json"

Detail = str | list[dict[str, Any]]


class ServiceError(Exception):
    """A request the service refuses; `status_code` is what the client gets."""

    status_code = 400

    def __init__(self, detail: Detail, status_code: int | None = None) -> None:
        super().__init__(detail_text(detail))
        self.detail = detail
        if status_code is not None:
            self.status_code = status_code


class BadRequestError(ServiceError):
    """Malformed request, e.g. a tensor of the wrong shape (400)."""

    status_code = 400


class NotFoundError(ServiceError):
    """Unknown model or version (404)."""

    status_code = 404


class ModelNotFoundError(NotFoundError):
    """A model name, or a version of it, that this server does not serve (404)."""

    def __init__(self, name: str, version: str | None, served: str, served_version: str) -> None:
        if name != served:
            detail = f"unknown model '{name}'; this server serves '{served}'"
        else:
            detail = (
                f"unknown version '{version}' of model '{name}'; "
                f"this server serves version '{served_version}'"
            )
        super().__init__(detail)
        self.name = name
        self.version = version


class RequestTimeoutError(ServiceError):
    """The client did not send its whole body within IRIS_BODY_TIMEOUT (408)."""

    status_code = 408


class PayloadTooLargeError(ServiceError):
    """Body or batch over the documented limit (413)."""

    status_code = 413


class UnsupportedMediaTypeError(ServiceError):
    """Body that is not declared as JSON (415)."""

    status_code = 415


class InvalidInputError(ServiceError):
    """Body that is not valid JSON or does not match the schema (422)."""

    status_code = 422


class NotReadyError(ServiceError):
    """The model is not loaded, or the worker is draining (503)."""

    status_code = 503


def is_protocol_path(path: str) -> bool:
    """True for Open Inference Protocol routes, which use `{"error": ...}` bodies."""
    return path == "/v2" or path.startswith("/v2/")


def detail_text(detail: Detail) -> str:
    """One line for a detail: validation errors become `field: reason; ...`."""
    if isinstance(detail, str):
        return detail
    parts = []
    for error in detail:
        loc = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        parts.append(f"{loc}: {error.get('msg', '')}" if loc else str(error.get("msg", "")))
    return "; ".join(parts)


def validation_detail(
    errors: Iterable[Mapping[str, Any]], prefix: Sequence[str | int] = ("body",)
) -> list[dict[str, Any]]:
    """Pydantic errors as FastAPI shows them (type, loc, msg), without the input values."""
    detail = []
    for error in errors:
        message = str(error.get("msg", "invalid value"))
        # FastAPI's own JSON decoding reports only "JSON decode error"; say where and why.
        context = error.get("ctx") or {}
        if error.get("type") == "json_invalid" and "Invalid JSON" not in message:
            message = f"Invalid JSON: {context.get('error', message)}"
        loc = [part for part in error.get("loc", ()) if isinstance(part, str | int)]
        if loc[: len(prefix)] != list(prefix):
            loc = [*prefix, *loc]
        detail.append({"type": str(error.get("type", "value_error")), "loc": loc, "msg": message})
    return detail


def error_body(path: str, detail: Detail) -> bytes:
    """The JSON body of an error answer for `path`."""
    if is_protocol_path(path):
        return orjson.dumps({"error": detail_text(detail)})
    return orjson.dumps({"detail": detail})


async def handle_error(request: Request, exc: Exception) -> Response:
    """The one exception handler: service errors, validation errors and HTTP errors."""
    path = request.url.path
    headers: dict[str, str] | None = None
    if isinstance(exc, ServiceError):
        status, detail = exc.status_code, exc.detail
    elif isinstance(exc, RequestValidationError):
        detail = validation_detail(exc.errors(), prefix=())
        # The protocol answers a malformed request with 400, everything else with 422.
        status = 400 if is_protocol_path(path) else 422
    elif isinstance(exc, HTTPException):
        status, detail = exc.status_code, str(exc.detail)
        headers = dict(exc.headers) if exc.headers else None
    else:  # registered only for the classes above
        raise exc
    return Response(error_body(path, detail), status_code=status, media_type=JSON, headers=headers)
