"""The prediction endpoints as plain functions from a request body to a response body.

They are the hot path: the app calls them straight from its ASGI entry point (see
service.app), skipping routing and dependency injection, and the FastAPI routes that
document them call the very same functions. Single rows are parsed and validated by
pydantic-core (Rust) on the raw bytes. A batch is parsed by orjson and checked in one
pass straight into a float array (`batch_rows`); only a batch that fails that check goes
through the pydantic model, whose error is the answer. Responses are built as dicts and
serialised by orjson.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from pydantic import ValidationError

from model.artifact import CLASS_NAMES, FEATURE_NAMES, Artifact, load
from model.data import MAX_CM, MIN_CM
from service import metrics
from service.errors import (
    BadRequestError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    validation_detail,
)
from service.inference import Predictor, make_predictor
from service.schemas import (
    V2_INPUT_NAME,
    V2_MODEL_NAME,
    BatchRequest,
    Measurement,
    V2InferenceRequest,
)

V2_OUTPUTS = ("label", "probabilities")
V2_DATATYPES = {"FP32": np.float32, "FP64": np.float64}
_N_FEATURES = len(FEATURE_NAMES)
# Unpacked once: the response of a batch names the three classes in literal dicts, which
# is twice as fast as dict(zip(...)) per row. Fails at import if the contract changes.
_SETOSA, _VERSICOLOR, _VIRGINICA = CLASS_NAMES
# JSON numbers as orjson returns them; bool is a subclass of int, and type() tells it apart.
_NUMBER_TYPES = frozenset({float, int})


def batch_rows(body: bytes) -> npt.NDArray[np.float64] | None:
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
    rows = np.array(values, dtype=np.float64).reshape(-1, _N_FEATURES)
    # orjson refuses NaN and Infinity, and NaN would fail these comparisons anyway.
    if not ((rows > MIN_CM) & (rows <= MAX_CM)).all():
        return None
    return rows


def _invalid(exc: ValidationError) -> InvalidInputError:
    return InvalidInputError(validation_detail(exc.errors(include_url=False, include_input=False)))


class ServedModel:
    """A loaded artifact with its predictor: everything a request needs, built once per worker."""

    def __init__(self, artifact: Artifact, predictor: Predictor, max_batch_rows: int) -> None:
        self.artifact = artifact
        self.predictor = predictor
        self.max_batch_rows = max_batch_rows
        self.version = artifact.metadata.model_version
        self._per_class = [metrics.PREDICTIONS.labels(name) for name in CLASS_NAMES]

    # --- /predict and /predict/batch ---------------------------------------------------------

    def predict(self, body: bytes) -> bytes:
        """POST /predict: one Measurement in, a PredictResponse out."""
        try:
            measurement = Measurement.model_validate_json(body)
        except ValidationError as exc:
            raise _invalid(exc) from None
        index, probabilities = self.predictor.predict_one(measurement.row())
        self._per_class[index].inc()
        return orjson.dumps(
            {
                "species": CLASS_NAMES[index],
                "class_index": index,
                "probabilities": dict(zip(CLASS_NAMES, probabilities, strict=True)),
                "model_version": self.version,
            }
        )

    def predict_batch(self, body: bytes) -> bytes:
        """POST /predict/batch: a BatchRequest in, a BatchResponse out."""
        rows = batch_rows(body)
        if rows is None:
            rows = _rows_through_the_model(body)
        self._check_rows(len(rows))
        indices, probabilities = self.predictor.predict(rows)
        self._count(indices)
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
                "model_version": self.version,
            }
        )

    # --- Open Inference Protocol --------------------------------------------------------------

    def infer_v2(self, body: bytes, model_name: str = V2_MODEL_NAME) -> bytes:
        """POST /v2/models/iris/infer: an FP32/FP64 tensor [N, 4] in, labels and probabilities."""
        if model_name != V2_MODEL_NAME:
            raise NotFoundError(
                f"unknown model '{model_name}'; this server serves '{V2_MODEL_NAME}'"
            )
        try:
            request = V2InferenceRequest.model_validate_json(body)
        except ValidationError as exc:
            raise BadRequestError(validation_detail(exc.errors(include_url=False))) from None
        tensor = request.inputs[0]
        rows = self._tensor_rows(tensor.name, tensor.datatype, tensor.shape, tensor.data)
        wanted = [output.name for output in request.outputs] if request.outputs else V2_OUTPUTS
        unknown = sorted(set(wanted) - set(V2_OUTPUTS))
        if unknown:
            raise BadRequestError(
                f"unknown output(s) {', '.join(map(repr, unknown))}; "
                f"this model has {', '.join(map(repr, V2_OUTPUTS))}"
            )
        indices, probabilities = self.predictor.predict(rows)
        self._count(indices)
        count = len(rows)
        outputs: list[dict[str, Any]] = []
        for name in wanted:
            if name == "label":
                labels = [CLASS_NAMES[index] for index in indices.tolist()]
                outputs.append(
                    {"name": "label", "shape": [count], "datatype": "BYTES", "data": labels}
                )
            else:
                data = probabilities.astype(np.float32).ravel().tolist()
                outputs.append(
                    {
                        "name": "probabilities",
                        "shape": [count, len(CLASS_NAMES)],
                        "datatype": "FP32",
                        "data": data,
                    }
                )
        response: dict[str, Any] = {"model_name": V2_MODEL_NAME, "model_version": self.version}
        if request.id is not None:
            response["id"] = request.id
        response["outputs"] = outputs
        return orjson.dumps(response)

    def _tensor_rows(
        self, name: str, datatype: str, shape: list[int], data: list[float] | list[list[float]]
    ) -> npt.NDArray[np.float64]:
        where = f"input '{name}'"
        dtype = V2_DATATYPES.get(datatype)
        if dtype is None:
            raise BadRequestError(f"{where}: datatype must be FP32 or FP64, got '{datatype}'")
        if len(shape) != 2 or shape[1] != _N_FEATURES or shape[0] < 1:
            raise BadRequestError(
                f"{where}: shape must be [N, {_N_FEATURES}] with N >= 1 "
                f"(one row per flower: {', '.join(FEATURE_NAMES)}), got {shape}"
            )
        self._check_rows(shape[0])
        expected = shape[0] * _N_FEATURES
        nested = bool(data) and isinstance(data[0], list)
        if nested:
            rows_given = len(data)
            if rows_given != shape[0] or any(len(row) != _N_FEATURES for row in data):  # type: ignore[arg-type]
                raise BadRequestError(f"{where}: nested data does not match shape {shape}")
        elif len(data) != expected:
            raise BadRequestError(
                f"{where}: shape {shape} needs {expected} values, data has {len(data)}"
            )
        values = np.asarray(data, dtype=np.float64).reshape(shape[0], _N_FEATURES)
        if dtype is np.float32:
            # The client declared 32-bit floats: serve exactly the values it meant.
            values = values.astype(np.float32).astype(np.float64)
        bad = ~(np.isfinite(values) & (values > MIN_CM) & (values <= MAX_CM))
        if bad.any():
            row, column = (int(i) for i in np.argwhere(bad)[0])
            value = float(values[row, column])
            shown = repr(value) if math.isfinite(value) else str(value)
            raise BadRequestError(
                f"{where}: row {row} {FEATURE_NAMES[column]} = {shown} is outside the accepted "
                f"range (greater than {MIN_CM:g}, at most {MAX_CM:g} cm, finite)"
            )
        return values

    # --- shared ---------------------------------------------------------------------------------

    def _check_rows(self, rows: int) -> None:
        if rows > self.max_batch_rows:
            raise PayloadTooLargeError(
                f"{rows} rows in one request; the limit is {self.max_batch_rows} "
                "(IRIS_MAX_BATCH_ROWS): split the batch"
            )

    def _count(self, indices: npt.NDArray[np.intp]) -> None:
        for index, count in enumerate(np.bincount(indices, minlength=len(CLASS_NAMES)).tolist()):
            if count:
                self._per_class[index].inc(count)

    def v2_metadata(self) -> dict[str, Any]:
        """GET /v2/models/iris: the model's name, version, input and outputs."""
        return {
            "name": V2_MODEL_NAME,
            "versions": [self.version],
            "platform": "scikit-learn",
            "inputs": [{"name": V2_INPUT_NAME, "datatype": "FP32", "shape": [-1, _N_FEATURES]}],
            "outputs": [
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(CLASS_NAMES)]},
            ],
        }


def _rows_through_the_model(body: bytes) -> npt.NDArray[np.float64]:
    """Validate a batch with BatchRequest: its error (422) is the answer to a bad body."""
    try:
        batch = BatchRequest.model_validate_json(body)
    except ValidationError as exc:
        raise _invalid(exc) from None
    # batch_rows refuses only what BatchRequest refuses (the parity test checks it), so
    # this is not reached with a valid body; if it were, the rows are still right.
    return np.array([m.row() for m in batch.instances], dtype=np.float64)


def load_model(model_dir: Path, max_batch_rows: int) -> ServedModel:
    """Load and verify the artifact (model.artifact.load) and pick its predictor.

    Raises model.artifact.ArtifactError when the artifact cannot be served.
    """
    artifact = load(model_dir)
    reference = [ref["features"] for ref in artifact.metadata.reference_predictions]
    predictor = make_predictor(artifact.estimator, reference)
    return ServedModel(artifact, predictor, max_batch_rows)
