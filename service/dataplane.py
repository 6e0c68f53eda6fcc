"""What every route does, apart from HTTP: decode the body, predict, encode the answer.

The HTTP layer (service.front, service.routes) hands a route's body and path parameters
to a `DataPlane` method and sends back the bytes it returns; codecs (service.codecs) turn
bytes into rows and predictions into bytes; the `ServedModel` turns rows into class
indices and probabilities. Errors are `ServiceError`s that carry their status and message
(service.errors), whatever route they come from.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from model.artifact import Metadata, check, fast_predictor, load
from service import codecs, metrics
from service.errors import ModelNotFoundError, NotReadyError
from service.inference import Indices, Predictor, Probabilities, Rows, make_predictor
from service.schemas import V2_INPUT_NAME, V2_MODEL_NAME, VersionInfo, body_schemas, example_rows


class ServedModel:
    """A checked artifact with its predictor: everything a request needs, built once.

    `estimator` is the unpickled estimator, or None when the predictor works from the
    fitted arrays exported into the artifact (the model file is then never unpickled).
    """

    def __init__(
        self,
        metadata: Metadata,
        predictor: Predictor,
        estimator: Any = None,
        load_seconds: float = 0.0,
    ) -> None:
        self.metadata = metadata
        self.predictor = predictor
        self.estimator = estimator
        self.version = metadata.model_version
        self.load_seconds = load_seconds
        # The request and response bodies follow the artifact's contract: its features,
        # their order and range, its classes. Examples: its reference rows (docs).
        contract = metadata.contract
        reference = [ref["features"] for ref in metadata.reference_predictions]
        self.codec = codecs.Codec(
            contract, body_schemas(contract, example_rows(contract, reference))
        )
        self._per_class = tuple(metrics.PREDICTIONS.labels(n) for n in contract.class_names)

    def predict_one(self, row: Sequence[float]) -> tuple[int, list[float]]:
        """Class index and probabilities of one row, counted in iris_predictions_total."""
        index, probabilities = self.predictor.predict_one(row)
        metrics.count(self._per_class[index])
        return index, probabilities

    def predict(self, rows: Rows) -> tuple[Indices, Probabilities]:
        """Class indices and probabilities of several rows, each counted."""
        indices, probabilities = self.predictor.predict(rows)
        metrics.tally(self._per_class, indices)
        return indices, probabilities


def load_model(model_dir: Path) -> ServedModel:
    """Check the artifact and pick its predictor, unpickling only when it must.

    Every check that needs no unpickling comes first (model.artifact.check), without
    importing scikit-learn. An artifact with exported fitted arrays is then served from
    them (model.artifact.fast_predictor); any other is unpickled and verified
    (model.artifact.load) and served through service.inference.make_predictor.
    Raises model.artifact.ArtifactError when the artifact cannot be served.
    """
    started = time.perf_counter()
    metadata = check(model_dir)
    fast = fast_predictor(model_dir, metadata)
    if fast is not None:
        return ServedModel(metadata, fast, None, time.perf_counter() - started)
    artifact = load(model_dir)
    reference = [ref["features"] for ref in artifact.metadata.reference_predictions]
    predictor = make_predictor(artifact.estimator, reference)
    return ServedModel(
        artifact.metadata, predictor, artifact.estimator, time.perf_counter() - started
    )


@dataclass
class ServiceState:
    """What a worker serves and whether it should get traffic.

    `model` is None until the worker serves one (loading, or a failed boot: `boot_error`
    says why); `draining` turns true on SIGTERM.
    """

    model: ServedModel | None = None
    draining: bool = False
    boot_error: str | None = None

    @property
    def ready(self) -> bool:
        """The worker has a model and is not draining."""
        return self.model is not None and not self.draining


class DataPlane:
    """decode -> predict -> encode for every route, on the model the worker serves."""

    def __init__(self, state: ServiceState, max_batch_rows: int, git_revision: str) -> None:
        self.state = state
        self.max_batch_rows = max_batch_rows
        self.git_revision = git_revision

    @property
    def model(self) -> ServedModel:
        """The served model; 503 while there is none."""
        model = self.state.model
        if model is None:
            raise NotReadyError("the model is not loaded yet")
        return model

    # --- native JSON API --------------------------------------------------------------------

    def predict(self, body: bytes) -> bytes:
        """POST /predict: one Measurement in, a PredictResponse out."""
        model = self.model
        row = model.codec.decode_measurement(body)
        index, probabilities = model.predict_one(row)
        return model.codec.encode_prediction(index, probabilities, model.version)

    def predict_batch(self, body: bytes) -> bytes:
        """POST /predict/batch: a BatchRequest in, a BatchResponse out."""
        model = self.model
        rows = model.codec.decode_batch(body)
        codecs.check_row_count(len(rows), self.max_batch_rows)
        indices, probabilities = model.predict(rows)
        return model.codec.encode_batch(indices, probabilities, model.version)

    def version_info(self) -> bytes:
        """GET /version: the model's metadata and the image's git revision."""
        model = self.model
        info = VersionInfo(
            git_revision=self.git_revision,
            model_version=model.version,
            inference=model.predictor.name,
            model=model.metadata.to_dict(),
        )
        return info.model_dump_json().encode()

    # --- Open Inference Protocol ------------------------------------------------------------

    def model_for(self, name: str, version: str | None = None) -> ServedModel:
        """The served model if `name` (and `version`, when given) are its; else 404."""
        model = self.model
        if name != V2_MODEL_NAME or (version is not None and version != model.version):
            raise ModelNotFoundError(name, version, V2_MODEL_NAME, model.version)
        return model

    def infer(
        self, name: str, version: str | None, body: bytes, header_length: bytes | None = None
    ) -> codecs.Encoded:
        """POST /v2/models/{name}[/versions/{version}]/infer; `header_length` is the value of
        Inference-Header-Content-Length (the binary tensor data extension), if sent."""
        model = self.model_for(name, version)
        request = model.codec.decode_inference(body, self.max_batch_rows, header_length)
        indices, probabilities = model.predict(request.rows)
        return model.codec.encode_inference(
            request, indices, probabilities, V2_MODEL_NAME, model.version
        )

    def model_metadata(self, name: str, version: str | None = None) -> bytes:
        """GET /v2/models/{name}[/versions/{version}]: name, versions, input and outputs."""
        return model_metadata(self.model_for(name, version))

    def server_metadata(self) -> bytes:
        """GET /v2: the server's name, version and protocol extensions."""
        return orjson.dumps({"name": "iris-api", "version": self.git_revision, "extensions": []})


def model_metadata(model: ServedModel) -> bytes:
    """The Open Inference Protocol metadata of `model`: its input and output tensors."""
    classes = model.codec.contract.class_names
    metadata: dict[str, Any] = {
        "name": V2_MODEL_NAME,
        "versions": [model.version],
        "platform": "scikit-learn",
        "inputs": [
            {"name": V2_INPUT_NAME, "datatype": "FP32", "shape": [-1, model.codec.n_features]}
        ],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(classes)]},
        ],
    }
    return orjson.dumps(metadata)
