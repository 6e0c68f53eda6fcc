"""Request bodies to float rows, and predictions to response bodies: one codec per protocol.

- The native JSON codec serves `/predict` and `/predict/batch`. Single rows are parsed and
  validated by pydantic-core (Rust) on the raw bytes. A batch is parsed by orjson and
  checked in one pass straight into a float array (`batch_rows`); only a batch that fails
  that check goes through the pydantic model, whose error is the answer.
- The Open Inference Protocol codec serves `/v2/models/{name}/infer`: a request with one
  FP32/FP64 tensor [N, 4], answered with labels and probabilities; tensors travel as JSON
  or, with the binary tensor data extension (Triton's, which tritonclient uses by
  default), as raw little-endian bytes after a JSON header.

Codecs know nothing about the estimator: they turn bytes into validated rows and
(class indices, probabilities) into bytes. Responses are built as dicts and serialised
by orjson.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from pydantic import ValidationError

from model.artifact import CLASS_NAMES, FEATURE_NAMES
from model.data import MAX_CM, MIN_CM
from service.errors import (
    BadRequestError,
    InvalidInputError,
    PayloadTooLargeError,
    validation_detail,
)
from service.inference import Indices, Probabilities, Rows
from service.schemas import BatchRequest, Measurement, V2InferenceRequest

N_FEATURES = len(FEATURE_NAMES)
# Unpacked once: the response of a batch names the three classes in literal dicts, which
# is twice as fast as dict(zip(...)) per row. Fails at import if the contract changes.
_SETOSA, _VERSICOLOR, _VIRGINICA = CLASS_NAMES
# JSON numbers as orjson returns them; bool is a subclass of int, and type() tells it apart.
_NUMBER_TYPES = frozenset({float, int})


# --- native JSON ----------------------------------------------------------------------------


def _invalid(exc: ValidationError) -> InvalidInputError:
    return InvalidInputError(validation_detail(exc.errors(include_url=False, include_input=False)))


def decode_measurement(body: bytes) -> tuple[float, float, float, float]:
    """The row of a /predict body (a Measurement); 422 naming each bad field."""
    try:
        return Measurement.model_validate_json(body).row()
    except ValidationError as exc:
        raise _invalid(exc) from None


def batch_rows(body: bytes) -> Rows | None:
    """The rows of a /predict/batch body that is plainly valid, else None.

    Plainly valid: a JSON object holding only `instances`, a non-empty list of objects
    each holding exactly the four features as JSON numbers (not booleans) in the
    accepted range. The checks are the ones `BatchRequest` makes, done on what orjson
    parsed instead of on 100 model instances. None means "let BatchRequest decide": the
    caller then validates the body with it, so every refused body gets exactly the error
    the model gives (tests/service/test_batch_parsing.py holds the two paths together).
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict or len(data) != 1:
        return None
    instances = data.get("instances")
    if type(instances) is not list or not instances:
        return None
    first, second, third, fourth = FEATURE_NAMES
    try:
        # Only a dict can be indexed by a str key here: a list, str, number or null
        # raises TypeError, a missing feature KeyError.
        values = [
            value
            for instance in instances
            for value in (instance[first], instance[second], instance[third], instance[fourth])
        ]
    except (KeyError, TypeError):
        return None
    # Each object holds the four features; equal totals mean none holds anything else.
    if sum(map(len, instances)) != len(values):
        return None
    if not _NUMBER_TYPES.issuperset(map(type, values)):
        return None
    rows = np.array(values, dtype=np.float64).reshape(-1, N_FEATURES)
    # orjson refuses NaN and Infinity, and NaN would fail these comparisons anyway.
    if not ((rows > MIN_CM) & (rows <= MAX_CM)).all():
        return None
    return rows


def decode_batch(body: bytes) -> Rows:
    """The rows of a /predict/batch body; 422 with BatchRequest's own error otherwise."""
    rows = batch_rows(body)
    if rows is not None:
        return rows
    try:
        batch = BatchRequest.model_validate_json(body)
    except ValidationError as exc:
        raise _invalid(exc) from None
    # batch_rows refuses only what BatchRequest refuses (the parity test checks it), so
    # this is not reached with a valid body; if it were, the rows are still right.
    return np.array([m.row() for m in batch.instances], dtype=np.float64)


def encode_prediction(index: int, probabilities: Sequence[float], version: str) -> bytes:
    """The PredictResponse of one row."""
    return orjson.dumps(
        {
            "species": CLASS_NAMES[index],
            "class_index": index,
            "probabilities": dict(zip(CLASS_NAMES, probabilities, strict=True)),
            "model_version": version,
        }
    )


def encode_batch(indices: Indices, probabilities: Probabilities, version: str) -> bytes:
    """The BatchResponse of several rows, in order."""
    names = CLASS_NAMES
    return orjson.dumps(
        {
            "predictions": [
                {
                    "species": names[index],
                    "class_index": index,
                    "probabilities": {_SETOSA: p0, _VERSICOLOR: p1, _VIRGINICA: p2},
                }
                for index, (p0, p1, p2) in zip(
                    indices.tolist(), probabilities.tolist(), strict=True
                )
            ],
            "model_version": version,
        }
    )


# --- Open Inference Protocol ----------------------------------------------------------------

V2_OUTPUTS = ("label", "probabilities")
V2_DATATYPES: dict[str, type[np.floating[Any]]] = {"FP32": np.float32, "FP64": np.float64}


BINARY_HEADER = "Inference-Header-Content-Length"
"""Request and response header of the binary extension: the length of the JSON header."""
_LITTLE_ENDIAN: dict[type[Any], np.dtype[Any]] = {
    np.float32: np.dtype("<f4"),
    np.float64: np.dtype("<f8"),
}
_LABEL_BYTES = [name.encode() for name in CLASS_NAMES]


@dataclass(frozen=True)
class InferenceRequest:
    """A decoded v2 request: validated rows, the outputs asked for (and which of them in
    binary), the request id."""

    rows: Rows
    outputs: tuple[str, ...]
    id: str | None
    binary_outputs: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Encoded:
    """A response body, and the length of its JSON header when binary tensors follow it."""

    body: bytes
    header_length: int | None = None


def check_tensor_rows(name: str, values: npt.NDArray[np.float64]) -> Rows:
    """`values` ([N, 4] float64) if every one is finite and in range; 400 naming the first
    that is not."""
    bad = ~(np.isfinite(values) & (values > MIN_CM) & (values <= MAX_CM))
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        value = float(values[row, column])
        shown = repr(value) if math.isfinite(value) else str(value)
        raise BadRequestError(
            f"input '{name}': row {row} {FEATURE_NAMES[column]} = {shown} is outside the "
            f"accepted range (greater than {MIN_CM:g}, at most {MAX_CM:g} cm, finite)"
        )
    return values


def check_tensor_header(name: str, datatype: str, shape: Sequence[int]) -> type[np.floating[Any]]:
    """The numpy type of a tensor of `datatype` and `shape`; 400 unless FP32/FP64 [N, 4]."""
    dtype = V2_DATATYPES.get(datatype)
    if dtype is None:
        raise BadRequestError(f"input '{name}': datatype must be FP32 or FP64, got '{datatype}'")
    if len(shape) != 2 or shape[1] != N_FEATURES or shape[0] < 1:
        raise BadRequestError(
            f"input '{name}': shape must be [N, {N_FEATURES}] with N >= 1 "
            f"(one row per flower: {', '.join(FEATURE_NAMES)}), got {list(shape)}"
        )
    return dtype


def _json_tensor_rows(
    name: str, shape: list[int], data: list[float] | list[list[float]], dtype: type[Any]
) -> Rows:
    expected = shape[0] * N_FEATURES
    if data and isinstance(data[0], list):
        nested: list[list[float]] = data
        if len(nested) != shape[0] or any(len(row) != N_FEATURES for row in nested):
            raise BadRequestError(f"input '{name}': nested data does not match shape {shape}")
    elif len(data) != expected:
        raise BadRequestError(
            f"input '{name}': shape {shape} needs {expected} values, data has {len(data)}"
        )
    values = np.asarray(data, dtype=np.float64).reshape(shape[0], N_FEATURES)
    if dtype is np.float32:
        # The client declared 32-bit floats: serve exactly the values it meant.
        values = values.astype(np.float32).astype(np.float64)
    return values


def split_binary(body: bytes, header_length: bytes) -> tuple[bytes, bytes]:
    """The JSON header and the binary data of a body sent with the binary extension."""
    text = header_length.decode("latin-1").strip()
    if not text.isdigit():
        raise BadRequestError(
            f"{BINARY_HEADER} must be the length of the JSON header in bytes, got {text[:40]!r}"
        )
    length = int(text)
    if length > len(body):
        raise BadRequestError(
            f"{BINARY_HEADER} is {length}, but the body holds only {len(body)} bytes"
        )
    return body[:length], body[length:]


def _flag(parameters: Mapping[str, Any] | None, name: str, where: str) -> bool | None:
    value = (parameters or {}).get(name)
    if value is not None and not isinstance(value, bool):
        raise BadRequestError(f"{where}: parameter '{name}' must be true or false")
    return value


def _binary_size(parameters: Mapping[str, Any] | None, where: str) -> int | None:
    value = (parameters or {}).get("binary_data_size")
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise BadRequestError(f"{where}: binary_data_size must be a non-negative integer")
    return value


def _binary_tensor_rows(
    where: str, shape: list[int], dtype: type[Any], size: int, data: bytes
) -> Rows:
    itemsize = np.dtype(dtype).itemsize
    expected = shape[0] * N_FEATURES * itemsize
    if size != len(data):
        raise BadRequestError(
            f"{where}: binary_data_size is {size}, but {len(data)} bytes follow the JSON header"
        )
    if size != expected:
        raise BadRequestError(
            f"{where}: shape {shape} of {np.dtype(dtype).name} needs {expected} bytes of "
            f"binary data, binary_data_size is {size}"
        )
    values = np.frombuffer(data, dtype=_LITTLE_ENDIAN[dtype]).reshape(shape[0], N_FEATURES)
    return np.asarray(values, dtype=np.float64)


def wanted_outputs(names: Sequence[str] | None) -> tuple[str, ...]:
    """The outputs asked for (all of them when none are named); 400 for an unknown one."""
    if not names:
        return V2_OUTPUTS
    unknown = sorted(set(names) - set(V2_OUTPUTS))
    if unknown:
        raise BadRequestError(
            f"unknown output(s) {', '.join(map(repr, unknown))}; "
            f"this model has {', '.join(map(repr, V2_OUTPUTS))}"
        )
    return tuple(names)


def decode_inference(
    body: bytes, max_rows: int, header_length: bytes | None = None
) -> InferenceRequest:
    """A v2 request, its tensor in JSON or (with `header_length`, the value of the
    Inference-Header-Content-Length header) in binary after the JSON header; 400 in the
    protocol's terms for anything malformed, 413 over `max_rows` rows (checked on the
    declared shape, before the data is converted)."""
    header, binary = (body, b"") if header_length is None else split_binary(body, header_length)
    try:
        request = V2InferenceRequest.model_validate_json(header)
    except ValidationError as exc:
        raise BadRequestError(validation_detail(exc.errors(include_url=False))) from None
    tensor = request.inputs[0]
    where = f"input '{tensor.name}'"
    dtype = check_tensor_header(tensor.name, tensor.datatype, tensor.shape)
    size = _binary_size(tensor.parameters, where)
    if size is not None and header_length is None:
        raise BadRequestError(f"{where}: binary_data_size needs the {BINARY_HEADER} header")
    check_row_count(tensor.shape[0], max_rows)
    if size is not None:
        if tensor.data is not None:
            raise BadRequestError(f"{where}: send either data or binary_data_size, not both")
        values = _binary_tensor_rows(where, tensor.shape, dtype, size, binary)
    elif tensor.data is None:
        raise BadRequestError(f"{where}: no data (send data, or binary_data_size and bytes)")
    elif binary:
        raise BadRequestError(
            f"{len(binary)} bytes follow the JSON header, but no input has binary_data_size"
        )
    else:
        values = _json_tensor_rows(tensor.name, tensor.shape, tensor.data, dtype)
    rows = check_tensor_rows(tensor.name, values)
    outputs = wanted_outputs([o.name for o in request.outputs] if request.outputs else None)
    return InferenceRequest(rows, outputs, request.id, _binary_outputs(request, outputs))


def _binary_outputs(request: V2InferenceRequest, outputs: tuple[str, ...]) -> frozenset[str]:
    # binary_data_output asks for every output in binary; an output's own binary_data
    # overrides it either way.
    default = bool(_flag(request.parameters, "binary_data_output", "request"))
    chosen = {name: default for name in outputs}
    for output in request.outputs or ():
        flag = _flag(output.parameters, "binary_data", f"output '{output.name}'")
        if flag is not None:
            chosen[output.name] = flag
    return frozenset(name for name, binary in chosen.items() if binary)


def check_row_count(rows: int, max_rows: int) -> None:
    """413 when a request holds more rows than IRIS_MAX_BATCH_ROWS."""
    if rows > max_rows:
        raise PayloadTooLargeError(
            f"{rows} rows in one request; the limit is {max_rows} "
            "(IRIS_MAX_BATCH_ROWS): split the batch"
        )


def _bytes_tensor(values: list[bytes]) -> bytes:
    # The extension's BYTES layout: each element as a 4-byte little-endian length, then
    # its bytes.
    return b"".join(len(value).to_bytes(4, "little") + value for value in values)


def encode_inference(
    request: InferenceRequest,
    indices: Indices,
    probabilities: Probabilities,
    model_name: str,
    version: str,
) -> Encoded:
    """The v2 response: the outputs asked for, in the order asked, each as JSON data or
    (asked for in binary) as bytes after the JSON header."""
    count = len(indices)
    outputs: list[dict[str, Any]] = []
    binary: list[bytes] = []
    for name in request.outputs:
        output: dict[str, Any]
        raw: bytes
        if name == "label":
            output = {"name": "label", "shape": [count], "datatype": "BYTES"}
            if name in request.binary_outputs:
                raw = _bytes_tensor([_LABEL_BYTES[i] for i in indices.tolist()])
            else:
                output["data"] = [CLASS_NAMES[i] for i in indices.tolist()]
        else:
            shape = [count, len(CLASS_NAMES)]
            output = {"name": "probabilities", "shape": shape, "datatype": "FP32"}
            single = probabilities.astype(np.dtype("<f4"))
            if name in request.binary_outputs:
                raw = single.tobytes()
            else:
                output["data"] = single.ravel().tolist()
        if name in request.binary_outputs:
            output["parameters"] = {"binary_data_size": len(raw)}
            binary.append(raw)
        outputs.append(output)
    response: dict[str, Any] = {"model_name": model_name, "model_version": version}
    if request.id is not None:
        response["id"] = request.id
    response["outputs"] = outputs
    header = orjson.dumps(response)
    if not binary:
        return Encoded(header)
    return Encoded(b"".join([header, *binary]), len(header))
