"""Request bodies to float rows, and predictions to response bodies, for one model.

A `Codec` is built per served model from its artifact's contract (feature names and
order, accepted range, classes), so another model's fields, shapes and messages follow
its metadata. It speaks two protocols:

- The native JSON codec serves `/predict` and `/predict/batch`. A row or a batch is parsed
  by orjson and checked by code written out for the contract (`measurement_row`,
  `batch_rows`); only a body that fails that check goes through the pydantic model,
  whose error is the answer.
- The Open Inference Protocol codec serves `/v2/models/{name}/infer`: a request with one
  FP32/FP64 tensor [N, features], answered with labels and probabilities; tensors travel as JSON
  or, with the binary tensor data extension (Triton's, which tritonclient uses by
  default), as raw little-endian bytes after a JSON header (parsed by service.v2_header,
  on the same plan: a plain header by hand, anything else by the schema).

Codecs know nothing about the estimator: they turn bytes into validated rows and
(class indices, probabilities) into bytes. Responses are built as dicts and serialised
by orjson.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import orjson
from pydantic import BaseModel, ValidationError

from model.artifact import DataContract
from model.codegen import generated
from service import v2_header
from service.errors import (
    BadRequestError,
    InvalidInputError,
    PayloadTooLargeError,
    validation_detail,
)
from service.inference import Indices, Probabilities, Rows
from service.schemas import BodySchemas, body_schemas

# JSON numbers as orjson returns them; bool is a subclass of int, and type() tells it apart.
_NUMBER_TYPES = frozenset({float, int})


def _values_function(features: Sequence[str]) -> Any:
    # values(instances): every instance's features in order, flat; KeyError for a missing
    # feature, TypeError for an instance that is not an object.
    keys = [f"k{i}" for i in range(len(features))]
    source = (
        f"def values(instances, {', '.join(f'{k}={k}' for k in keys)}):\n"
        f"    return [v for i in instances for v in ({', '.join(f'i[{k}]' for k in keys)},)]\n"
    )
    return generated(source, "values", dict(zip(keys, features, strict=True)))


def _row_function(features: Sequence[str], low: float, high: float) -> Any:
    # row(instance): one instance's features in order if each is a float in (low, high],
    # else None; KeyError for a missing feature. Integers go through numbers_in_range.
    keys = [f"k{i}" for i in range(len(features))]
    values = [f"v{i}" for i in range(len(features))]
    source = (
        f"def row(instance, {', '.join(f'{k}={k}' for k in keys)}):\n"
        + "".join(f"    {v} = instance[{k}]\n" for k, v in zip(keys, values, strict=True))
        + f"    if {' or '.join(f'type({v}) is not float' for v in values)}:\n"
        + f"        return numbers_in_range(({', '.join(values)},), low, high)\n"
        + f"    if {' and '.join(f'low < {v} <= high' for v in values)}:\n"
        + f"        return ({', '.join(values)},)\n"
        + "    return None\n"
    )
    constants: dict[str, Any] = {"low": low, "high": high, "numbers_in_range": numbers_in_range}
    return generated(source, "row", {**constants, **dict(zip(keys, features, strict=True))})


def numbers_in_range(values: tuple[Any, ...], low: float, high: float) -> tuple[float, ...] | None:
    """`values` as floats if each is a JSON number (int or float, not bool) in (low, high]."""
    if not _NUMBER_TYPES.issuperset(map(type, values)):
        return None
    # Compared before the conversion: an integer too large for a float is refused here.
    if all(low < value <= high for value in values):
        return tuple(map(float, values))
    return None


def _answer_row(classes: Sequence[str]) -> tuple[str, str, str, dict[str, Any]]:
    """What both answer encoders write for one row: the names p0, p1, ... of its
    probabilities, the literal dict entries of its answer (species, class_index,
    probabilities by class name) in terms of `index` and those names, the parameters
    that bind the literal's constants as locals, and those constants (model.codegen)."""
    keys = [f"c{i}" for i in range(len(classes))]
    values = [f"p{i}" for i in range(len(classes))]
    pairs = ", ".join(f"{k}: {v}" for k, v in zip(keys, values, strict=True))
    entries = f"'species': names[index], 'class_index': index, 'probabilities': {{{pairs}}}"
    constants: dict[str, Any] = {"names": tuple(classes), **dict(zip(keys, classes, strict=True))}
    bindings = ", ".join(f"{name}={name}" for name in constants)
    return ", ".join(values), entries, bindings, constants


def _prediction_function(classes: Sequence[str]) -> Any:
    # prediction(index, probabilities, version): the PredictResponse of one row, as a dict.
    values, entries, bindings, constants = _answer_row(classes)
    source = (
        f"def prediction(index, probabilities, version, {bindings}):\n"
        f"    {values}, = probabilities\n"
        f"    return {{{entries}, 'model_version': version}}\n"
    )
    return generated(source, "prediction", constants)


def _predictions_function(classes: Sequence[str]) -> Any:
    # predictions(indices, probabilities): one response dict per row.
    values, entries, bindings, constants = _answer_row(classes)
    source = (
        f"def predictions(indices, probabilities, {bindings}):\n"
        f"    return [\n"
        f"        {{{entries}}}\n"
        f"        for index, ({values},) in zip(indices, probabilities, strict=True)\n"
        f"    ]\n"
    )
    return generated(source, "predictions", constants)


def _invalid(exc: ValidationError) -> InvalidInputError:
    return InvalidInputError(validation_detail(exc.errors(include_url=False, include_input=False)))


# --- Open Inference Protocol ----------------------------------------------------------------

V2_OUTPUTS = ("label", "probabilities")
_ALL_OUTPUTS, _NO_OUTPUTS = frozenset(V2_OUTPUTS), frozenset[str]()
V2_DATATYPES: dict[str, type[np.floating[Any]]] = {"FP32": np.float32, "FP64": np.float64}


_lowest = np.minimum.reduce
_highest = np.maximum.reduce

BINARY_HEADER = "Inference-Header-Content-Length"
"""Request and response header of the binary extension: the length of the JSON header."""
_LITTLE_ENDIAN: dict[type[Any], np.dtype[Any]] = {
    np.float32: np.dtype("<f4"),
    np.float64: np.dtype("<f8"),
}
_FP32, _FLOAT64 = _LITTLE_ENDIAN[np.float32], np.dtype(np.float64)


class InferenceRequest(NamedTuple):
    """A decoded v2 request: validated rows, the outputs asked for (and which of them in
    binary), the request id."""

    rows: Rows
    outputs: tuple[str, ...]
    id: str | None
    binary_outputs: frozenset[str] = frozenset()


HEADERS_KEPT = 256
"""How many distinct binary v2 headers a codec remembers (with their `_BinaryPlan`). A
client sends the same header bytes with every batch of a given shape (the data follows
it); clients that vary it (a new id each time) fill the memory once and are then checked
every time."""
HEADER_BYTES_KEPT = 2048
"""Longer headers (large `parameters`) are never remembered: the memory a client can make
a codec hold stays under HEADERS_KEPT x HEADER_BYTES_KEPT (512 KiB)."""


class _BinaryPlan(NamedTuple):
    """What a valid JSON header with a binary input tensor settles for every request that
    sends the same header bytes: how to read the bytes that follow it, and the request's
    outputs and id. Only the data (its length, then its values) is left to check."""

    name: str
    row: np.dtype[Any]
    size: int
    outputs: tuple[str, ...]
    id: str | None
    binary_outputs: frozenset[str]


class Encoded(NamedTuple):
    """A response body, and the length of its JSON header when binary tensors follow it."""

    body: bytes
    header_length: int | None = None


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


def _binary_outputs(request: v2_header.Header, outputs: tuple[str, ...]) -> frozenset[str]:
    # binary_data_output asks for every output in binary; an output's own binary_data
    # overrides it either way.
    default = bool(_flag(request.parameters, "binary_data_output", "request"))
    if not request.outputs:  # none named: all of them, as binary_data_output says
        return _ALL_OUTPUTS if default and outputs == V2_OUTPUTS else _NO_OUTPUTS
    chosen = {name: default for name in outputs}
    for output in request.outputs:
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


def bytes_element(value: bytes) -> bytes:
    """One element of a BYTES tensor in the binary extension's layout: a 4-byte
    little-endian length, then the bytes."""
    return len(value).to_bytes(4, "little") + value


# --- the codec of one model -----------------------------------------------------------------


class Codec:
    """Bodies to rows and predictions to bodies, for one model's contract.

    Built once per served model from its artifact's metadata: the feature names and
    order, the accepted range and the classes all come from there.
    """

    def __init__(self, contract: DataContract, schemas: BodySchemas | None = None) -> None:
        self.contract = contract
        self.schemas = schemas if schemas is not None else body_schemas(contract)
        self.n_features = len(contract.feature_names)
        self._measurement = self.schemas.measurement
        self._batch = self.schemas.batch_request
        self._low, self._high = contract.greater_than, contract.at_most
        self._values = _values_function(contract.feature_names)
        self._row = _row_function(contract.feature_names, self._low, self._high)
        self._prediction = _prediction_function(contract.class_names)
        self._predictions = _predictions_function(contract.class_names)
        # Each class's label, as text and as an element of a binary BYTES tensor, in object
        # arrays: indexing one by the class indices picks a batch's labels in C.
        self._labels = np.array(contract.class_names, dtype=object)
        # A row of a binary tensor as one element (n_features little-endian values): the
        # bytes are read as rows at once, and the dtype is made here, not per request.
        self._binary_row = {
            kind: np.dtype((little_endian, (self.n_features,)))
            for kind, little_endian in _LITTLE_ENDIAN.items()
        }
        # Plans of the binary headers seen (decode_inference), by header bytes and row limit.
        self._binary_plans: dict[tuple[bytes, int], _BinaryPlan] = {}
        self._label_elements = np.array(
            [bytes_element(name.encode()) for name in contract.class_names], dtype=object
        )

    # --- native JSON ------------------------------------------------------------------------

    def decode_measurement(self, body: bytes) -> tuple[float, ...]:
        """The row of a /predict body (a Measurement); 422 naming each bad field."""
        row = self.measurement_row(body)
        if row is not None:
            return row
        try:
            # Fields are declared in the contract's order, and so are the instance's values.
            return tuple(self._measurement.model_validate_json(body).__dict__.values())
        except ValidationError as exc:
            raise _invalid(exc) from None

    def measurement_row(self, body: bytes) -> tuple[float, ...] | None:
        """The row of a /predict body that is plainly valid, else None.

        Plainly valid: a JSON object holding exactly the features, each a JSON number (not
        a boolean) in the accepted range: what the Measurement schema accepts, checked on
        what orjson parsed in a quarter of the time pydantic takes. None means "let the
        schema decide", so every refused body gets the schema's own error
        (tests/service/test_batch_parsing.py holds the two paths together).
        """
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if type(data) is not dict or len(data) != self.n_features:
            return None
        try:
            row: tuple[float, ...] | None = self._row(data)
        except KeyError:  # a feature is missing
            return None
        return row

    def batch_rows(self, body: bytes) -> Rows | None:
        """The rows of a /predict/batch body that is plainly valid, else None.

        Plainly valid: a JSON object holding only `instances`, a non-empty list of objects
        each holding exactly the features as JSON numbers (not booleans) in the accepted
        range. The checks are the ones the BatchRequest schema makes, done on what orjson
        parsed instead of on 100 model instances. None means "let BatchRequest decide":
        the caller then validates the body with it, so every refused body gets exactly the
        error the schema gives (tests/service/test_batch_parsing.py holds the two paths
        together).
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
        try:
            # Only a dict can be indexed by a str key here: a list, str, number or null
            # raises TypeError, a missing feature KeyError.
            values = self._values(instances)
        except (KeyError, TypeError):
            return None
        # Each object holds the features; equal totals mean none holds anything else.
        if sum(map(len, instances)) != len(values):
            return None
        if not _NUMBER_TYPES.issuperset(map(type, values)):
            return None
        rows = np.array(values, dtype=np.float64).reshape(-1, self.n_features)
        # orjson refuses NaN and Infinity, and NaN would fail these comparisons anyway.
        if not ((rows > self._low) & (rows <= self._high)).all():
            return None
        return rows

    def decode_batch(self, body: bytes) -> Rows:
        """The rows of a /predict/batch body; 422 with BatchRequest's own error otherwise."""
        rows = self.batch_rows(body)
        if rows is not None:
            return rows
        try:
            batch = self._batch.model_validate_json(body)
        except ValidationError as exc:
            raise _invalid(exc) from None
        # batch_rows refuses only what BatchRequest refuses (the parity test checks it), so
        # this is not reached with a valid body; if it were, the rows are still right.
        instances: list[BaseModel] = batch.instances  # type: ignore[attr-defined]
        return np.array([list(m.__dict__.values()) for m in instances], dtype=np.float64)

    def encode_prediction(self, index: int, probabilities: Sequence[float], version: str) -> bytes:
        """The PredictResponse of one row."""
        return orjson.dumps(self._prediction(index, probabilities, version))

    def encode_batch(self, indices: Indices, probabilities: Probabilities, version: str) -> bytes:
        """The BatchResponse of several rows, in order."""
        return orjson.dumps(
            {
                "predictions": self._predictions(indices.tolist(), probabilities.tolist()),
                "model_version": version,
            }
        )

    # --- Open Inference Protocol -----------------------------------------------------------

    def decode_inference(
        self, body: bytes, max_rows: int, header_length: bytes | None = None
    ) -> InferenceRequest:
        """A v2 request, its tensor in JSON or (with `header_length`, the value of the
        Inference-Header-Content-Length header) in binary after the JSON header; 400 in the
        protocol's terms for anything malformed, 413 over `max_rows` rows (checked on the
        declared shape, before the data is converted)."""
        raw, binary = (body, b"") if header_length is None else split_binary(body, header_length)
        plan = self._binary_plans.get((raw, max_rows)) if binary else None
        if plan is not None and len(binary) == plan.size:
            rows = self.check_tensor_rows(plan.name, np.frombuffer(binary, dtype=plan.row))
            return InferenceRequest(rows, plan.outputs, plan.id, plan.binary_outputs)
        header = v2_header.parse(raw)
        tensor = header.tensor
        where = f"input '{tensor.name}'"
        dtype = self.check_tensor_header(tensor.name, tensor.datatype, tensor.shape)
        size = _binary_size(tensor.parameters, where)
        if size is not None and header_length is None:
            raise BadRequestError(f"{where}: binary_data_size needs the {BINARY_HEADER} header")
        check_row_count(tensor.shape[0], max_rows)
        if size is not None:
            if tensor.data is not None:
                raise BadRequestError(f"{where}: send either data or binary_data_size, not both")
            values = self._binary_tensor_rows(where, tensor.shape, dtype, size, binary)
        elif tensor.data is None:
            raise BadRequestError(f"{where}: no data (send data, or binary_data_size and bytes)")
        elif binary:
            raise BadRequestError(
                f"{len(binary)} bytes follow the JSON header, but no input has binary_data_size"
            )
        else:
            values = self._json_tensor_rows(tensor.name, tensor.shape, tensor.data, dtype)
        rows = self.check_tensor_rows(tensor.name, values)
        outputs = wanted_outputs([o.name for o in header.outputs] if header.outputs else None)
        request = InferenceRequest(rows, outputs, header.id, _binary_outputs(header, outputs))
        if size is not None:
            plan = _BinaryPlan(
                tensor.name,
                self._binary_row[dtype],
                size,
                outputs,
                header.id,
                request.binary_outputs,
            )
            self._remember(raw, max_rows, plan)
        return request

    def _remember(self, raw: bytes, max_rows: int, plan: _BinaryPlan) -> None:
        # A header that passed every check, with its tensor in binary: the next request
        # with the same header bytes (a client's next batch of the same shape) is read
        # by its plan.
        plans = self._binary_plans
        if len(plans) < HEADERS_KEPT and len(raw) <= HEADER_BYTES_KEPT:
            plans[(raw, max_rows)] = plan

    def check_tensor_header(
        self, name: str, datatype: str, shape: Sequence[int]
    ) -> type[np.floating[Any]]:
        """The numpy type of a tensor of `datatype` and `shape`; 400 unless FP32/FP64
        [N, features]."""
        dtype = V2_DATATYPES.get(datatype)
        if dtype is None:
            raise BadRequestError(
                f"input '{name}': datatype must be FP32 or FP64, got '{datatype}'"
            )
        if len(shape) != 2 or shape[1] != self.n_features or shape[0] < 1:
            raise BadRequestError(
                f"input '{name}': shape must be [N, {self.n_features}] with N >= 1 "
                f"(one row per instance: {', '.join(self.contract.feature_names)}), "
                f"got {list(shape)}"
            )
        return dtype

    def check_tensor_rows(self, name: str, values: npt.NDArray[np.floating[Any]]) -> Rows:
        """`values` ([N, features], float32 or float64) as float64 rows if every one is
        finite and in range; 400 naming the first that is not."""
        # Two reductions settle the usual case; NaN fails both comparisons. The ufuncs'
        # own reduce, not ndarray.min/max, which add a Python wrapper each (and axis by
        # keyword: numpy parses a positional one more slowly). float() compares a float32
        # extreme with the bounds in double precision, exactly, as after conversion.
        low, high = self._low, self._high
        rows: Rows = values.astype(_FLOAT64, copy=False)  # the same array when float64
        if float(_lowest(values, axis=None)) > low and float(_highest(values, axis=None)) <= high:
            return rows
        bad = ~(np.isfinite(rows) & (rows > low) & (rows <= high))
        if bad.any():
            row, column = (int(i) for i in np.argwhere(bad)[0])
            value = float(rows[row, column])
            shown = repr(value) if math.isfinite(value) else str(value)
            raise BadRequestError(
                f"input '{name}': row {row} {self.contract.feature_names[column]} = {shown} is "
                f"outside the accepted range (greater than {self._low:g}, at most "
                f"{self._high:g} {self.contract.unit}, finite)"
            )
        return rows

    def _json_tensor_rows(
        self, name: str, shape: list[int], data: list[float] | list[list[float]], dtype: type[Any]
    ) -> npt.NDArray[np.floating[Any]]:
        expected = shape[0] * self.n_features
        if data and isinstance(data[0], list):
            nested: list[list[float]] = data
            if len(nested) != shape[0] or any(len(row) != self.n_features for row in nested):
                raise BadRequestError(f"input '{name}': nested data does not match shape {shape}")
        elif len(data) != expected:
            raise BadRequestError(
                f"input '{name}': shape {shape} needs {expected} values, data has {len(data)}"
            )
        values = np.asarray(data, dtype=np.float64).reshape(shape[0], self.n_features)
        if dtype is np.float32:
            # The client declared 32-bit floats: serve exactly the values it meant
            # (check_tensor_rows converts them back to float64).
            return values.astype(np.float32)
        return values

    def _binary_tensor_rows(
        self, where: str, shape: list[int], dtype: type[Any], size: int, data: bytes
    ) -> npt.NDArray[np.floating[Any]]:
        row = self._binary_row[dtype]
        expected = shape[0] * row.itemsize
        if size != len(data):
            raise BadRequestError(
                f"{where}: binary_data_size is {size}, but {len(data)} bytes follow the JSON header"
            )
        if size != expected:
            raise BadRequestError(
                f"{where}: shape {shape} of {np.dtype(dtype).name} needs {expected} bytes of "
                f"binary data, binary_data_size is {size}"
            )
        # Rows at once (no reshape); check_tensor_rows checks them as they are and converts them.
        return np.frombuffer(data, dtype=row)

    def encode_inference(
        self,
        request: InferenceRequest,
        indices: Indices,
        probabilities: Probabilities,
        model_name: str,
        version: str,
    ) -> Encoded:
        """The v2 response: the outputs asked for, in the order asked, each as JSON data or
        (asked for in binary) as bytes after the JSON header."""
        count = len(indices)
        classes = self.contract.class_names
        outputs: list[dict[str, Any]] = []
        binary: list[bytes | memoryview] = []
        for name in request.outputs:
            output: dict[str, Any]
            raw: bytes | memoryview
            if name == "label":
                output = {"name": "label", "shape": [count], "datatype": "BYTES"}
                if name in request.binary_outputs:
                    raw = b"".join(self._label_elements[indices].tolist())
                else:
                    output["data"] = self._labels[indices].tolist()
            else:
                shape = [count, len(classes)]
                output = {"name": "probabilities", "shape": shape, "datatype": "FP32"}
                single = probabilities.astype(_FP32, order="C")
                if name in request.binary_outputs:
                    raw = single.data.cast("B")  # C-ordered bytes, joined into the body as they are
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
