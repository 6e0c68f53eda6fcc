"""The JSON header of an Open Inference Protocol request, parsed fast when it is plain.

`V2InferenceRequest` (service.schemas) defines what a request may hold, and its errors
are the answers clients get. Validating a small header with it costs ~2 us and a model
instance per tensor; a binary request is little more than that header. So `parse`
first tries `plain`, which accepts only what the schema plainly accepts, checked on what
orjson parsed; anything else (a missing or extra field, a wrong type, a value over a
length limit, JSON data values, which pydantic checks in Rust faster than Python could)
goes through the schema, whose error is then the answer. A header that passes is
remembered by the codec with everything it settles (service.codecs, `HEADERS_KEPT`).
tests/service/test_v2_header.py holds the two paths together.
"""

from __future__ import annotations

from typing import Any, NamedTuple, TypeGuard

import orjson
from pydantic import ValidationError

from service.errors import BadRequestError, validation_detail
from service.schemas import (
    V2_MAX_DATATYPE,
    V2_MAX_DIMENSIONS,
    V2_MAX_NAME,
    V2_MAX_OUTPUTS,
    V2InferenceRequest,
)

_REQUEST_KEYS = frozenset({"id", "parameters", "inputs", "outputs"})
_INPUT_KEYS = frozenset({"name", "shape", "datatype", "parameters"})
_OUTPUT_KEYS = frozenset({"name", "parameters"})
# Larger dimensions are left to the schema (its int has limits of its own); no real
# shape comes near them.
_MAX_DIMENSION = 2**31


class Tensor(NamedTuple):
    """The request's input tensor: `data` is None when it travels in binary."""

    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None
    data: list[float] | list[list[float]] | None


class Output(NamedTuple):
    """An output the client names, with its parameters (e.g. `binary_data`)."""

    name: str
    parameters: dict[str, Any] | None


class Header(NamedTuple):
    """A request's JSON header as the schema validated it."""

    id: str | None
    parameters: dict[str, Any] | None
    tensor: Tensor
    outputs: list[Output] | None


def parse(raw: bytes) -> Header:
    """The header of a request; 400 with the schema's error when it is not valid."""
    header = plain(raw)
    return header if header is not None else validated(raw)


def validated(raw: bytes) -> Header:
    """The header as V2InferenceRequest validates it; 400 naming what it refuses."""
    try:
        request = V2InferenceRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise BadRequestError(validation_detail(exc.errors(include_url=False))) from None
    tensor = request.inputs[0]
    outputs = request.outputs
    return Header(
        request.id,
        request.parameters,
        Tensor(tensor.name, tensor.datatype, tensor.shape, tensor.parameters, tensor.data),
        None if outputs is None else [Output(o.name, o.parameters) for o in outputs],
    )


def plain(raw: bytes) -> Header | None:
    """The header, if the schema plainly accepts it and its tensor travels in binary;
    else None ("let the schema decide")."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict or not _REQUEST_KEYS.issuperset(data):
        return None
    inputs = data.get("inputs")
    if type(inputs) is not list or len(inputs) != 1:
        return None
    tensor = _tensor(inputs[0])
    outputs = data.get("outputs")
    if outputs is not None:
        outputs = _outputs(outputs)
        if outputs is None:
            return None
    request_id = data.get("id")
    parameters = data.get("parameters")
    if tensor is None or not (_text(request_id, V2_MAX_NAME) or request_id is None):
        return None
    if parameters is not None and type(parameters) is not dict:
        return None
    return Header(request_id, parameters, tensor, outputs)


def _text(value: Any, limit: int) -> TypeGuard[str]:
    return type(value) is str and len(value) <= limit


def _tensor(item: Any) -> Tensor | None:
    if type(item) is not dict or not _INPUT_KEYS.issuperset(item):
        return None  # not an object, or it holds `data` (or a field the schema refuses)
    name, shape, datatype = item.get("name"), item.get("shape"), item.get("datatype")
    parameters = item.get("parameters")
    if not (_text(name, V2_MAX_NAME) and _text(datatype, V2_MAX_DATATYPE)):
        return None
    if type(shape) is not list or len(shape) > V2_MAX_DIMENSIONS:
        return None
    for size in shape:
        if type(size) is not int or not -_MAX_DIMENSION < size < _MAX_DIMENSION:
            return None
    if parameters is not None and type(parameters) is not dict:
        return None
    return Tensor(name, datatype, shape, parameters, None)


def _outputs(items: Any) -> list[Output] | None:
    if type(items) is not list or len(items) > V2_MAX_OUTPUTS:
        return None
    outputs = []
    for item in items:
        if type(item) is not dict or not _OUTPUT_KEYS.issuperset(item):
            return None
        name, parameters = item.get("name"), item.get("parameters")
        if not _text(name, V2_MAX_NAME):
            return None
        if parameters is not None and type(parameters) is not dict:
            return None
        outputs.append(Output(name, parameters))
    return outputs
