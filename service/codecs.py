"""Request bodies to float rows, and predictions to response bodies: one codec per protocol.

- The native JSON codec serves `/predict` and `/predict/batch`. Single rows are parsed and
  validated by pydantic-core (Rust) on the raw bytes. A batch is parsed by orjson and
  checked in one pass straight into a float array (`batch_rows`); only a batch that fails
  that check goes through the pydantic model, whose error is the answer.
- The Open Inference Protocol codec serves `/v2/models/{name}/infer`: a JSON request with
  one FP32/FP64 tensor [N, 4], answered with labels and probabilities.

Codecs know nothing about the estimator: they turn bytes into validated rows and
(class indices, probabilities) into bytes. Responses are built as dicts and serialised
by orjson.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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


@dataclass(frozen=True)
class InferenceRequest:
    """A decoded v2 request: validated rows, the outputs asked for, the request id."""

    rows: Rows
    outputs: tuple[str, ...]
    id: str | None


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


def decode_inference(body: bytes, max_rows: int) -> InferenceRequest:
    """A JSON v2 request; 400 in the protocol's terms for anything malformed, 413 over
    `max_rows` rows (checked on the declared shape, before the data is converted)."""
    try:
        request = V2InferenceRequest.model_validate_json(body)
    except ValidationError as exc:
        raise BadRequestError(validation_detail(exc.errors(include_url=False))) from None
    tensor = request.inputs[0]
    dtype = check_tensor_header(tensor.name, tensor.datatype, tensor.shape)
    check_row_count(tensor.shape[0], max_rows)
    values = _json_tensor_rows(tensor.name, tensor.shape, tensor.data, dtype)
    rows = check_tensor_rows(tensor.name, values)
    outputs = wanted_outputs([o.name for o in request.outputs] if request.outputs else None)
    return InferenceRequest(rows, outputs, request.id)


def check_row_count(rows: int, max_rows: int) -> None:
    """413 when a request holds more rows than IRIS_MAX_BATCH_ROWS."""
    if rows > max_rows:
        raise PayloadTooLargeError(
            f"{rows} rows in one request; the limit is {max_rows} "
            "(IRIS_MAX_BATCH_ROWS): split the batch"
        )


def encode_inference(
    request: InferenceRequest,
    indices: Indices,
    probabilities: Probabilities,
    model_name: str,
    version: str,
) -> bytes:
    """The JSON v2 response: the outputs asked for, in the order asked."""
    count = len(indices)
    outputs: list[dict[str, Any]] = []
    for name in request.outputs:
        if name == "label":
            labels = [CLASS_NAMES[index] for index in indices.tolist()]
            outputs.append({"name": "label", "shape": [count], "datatype": "BYTES", "data": labels})
        else:
            outputs.append(
                {
                    "name": "probabilities",
                    "shape": [count, len(CLASS_NAMES)],
                    "datatype": "FP32",
                    "data": probabilities.astype(np.float32).ravel().tolist(),
                }
            )
    response: dict[str, Any] = {"model_name": model_name, "model_version": version}
    if request.id is not None:
        response["id"] = request.id
    response["outputs"] = outputs
    return orjson.dumps(response)
