"""Request and response bodies of the HTTP API, with the examples /docs shows.

"Model" means the estimator in this project, so the pydantic classes here are called
schemas. The accepted range of a measurement is the training data's: model.data.FEATURE_RANGE.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from model.artifact import CLASS_NAMES, FEATURE_NAMES
from model.data import MAX_CM, MIN_CM

Species = Literal["setosa", "versicolor", "virginica"]

EXAMPLE_MODEL_VERSION = "3f1c2a9b7d10"
"""Stands for the model version in the examples; /openapi.json shows the served one instead."""

EXAMPLE_ROW: dict[str, Any] = {
    "sepal_length": 5.1,
    "sepal_width": 3.5,
    "petal_length": 1.4,
    "petal_width": 0.2,
}
EXAMPLE_ROW_2: dict[str, Any] = {
    "sepal_length": 6.7,
    "sepal_width": 3.0,
    "petal_length": 5.2,
    "petal_width": 2.3,
}
_EXAMPLE_PROBABILITIES: dict[str, Any] = {
    "setosa": 0.9790,
    "versicolor": 0.0210,
    "virginica": 0.0000,
}

# Strict: a JSON number only (no strings, no booleans), finite, within the range.
Centimetres = Annotated[
    float,
    Field(strict=True, gt=MIN_CM, le=MAX_CM, allow_inf_nan=False),
]


class Measurement(BaseModel):
    """One Iris flower, four measurements in centimetres."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"examples": [EXAMPLE_ROW]},
    )

    sepal_length: Centimetres = Field(description="Sepal length in cm.", examples=[5.1])
    sepal_width: Centimetres = Field(description="Sepal width in cm.", examples=[3.5])
    petal_length: Centimetres = Field(description="Petal length in cm.", examples=[1.4])
    petal_width: Centimetres = Field(description="Petal width in cm.", examples=[0.2])

    def row(self) -> tuple[float, float, float, float]:
        """The features in the order the model was trained on (FEATURE_NAMES)."""
        return (self.sepal_length, self.sepal_width, self.petal_length, self.petal_width)


if tuple(Measurement.model_fields) != FEATURE_NAMES:  # the row order the model expects
    raise RuntimeError(f"Measurement fields must be {FEATURE_NAMES}")


class BatchRequest(BaseModel):
    """Several flowers in one request; predictions come back in the same order."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"examples": [{"instances": [EXAMPLE_ROW, EXAMPLE_ROW_2]}]},
    )

    instances: list[Measurement] = Field(
        min_length=1,
        description="The flowers to classify: at least one, at most IRIS_MAX_BATCH_ROWS "
        "(default 1000; more get 413).",
    )


class Prediction(BaseModel):
    """The predicted species of one flower."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "species": "setosa",
                    "class_index": 0,
                    "probabilities": _EXAMPLE_PROBABILITIES,
                }
            ]
        }
    )

    species: Species = Field(description="The most probable species.")
    class_index: int = Field(ge=0, le=len(CLASS_NAMES) - 1, description="Index of the species.")
    probabilities: dict[str, float] = Field(
        description="Probability of every species; they sum to 1."
    )


class PredictResponse(Prediction):
    """The answer to POST /predict."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "species": "setosa",
                    "class_index": 0,
                    "probabilities": _EXAMPLE_PROBABILITIES,
                    "model_version": EXAMPLE_MODEL_VERSION,
                }
            ]
        }
    )

    model_version: str = Field(description="Version of the model that answered.")


class BatchResponse(BaseModel):
    """The answer to POST /predict/batch."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "predictions": [
                        {
                            "species": "setosa",
                            "class_index": 0,
                            "probabilities": _EXAMPLE_PROBABILITIES,
                        },
                        {
                            "species": "virginica",
                            "class_index": 2,
                            "probabilities": {
                                "setosa": 0.0,
                                "versicolor": 0.0306,
                                "virginica": 0.9694,
                            },
                        },
                    ],
                    "model_version": EXAMPLE_MODEL_VERSION,
                }
            ]
        }
    )

    predictions: list[Prediction] = Field(description="One prediction per instance, in order.")
    model_version: str = Field(description="Version of the model that answered.")


class Health(BaseModel):
    """Liveness or readiness."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok", "loading", "draining"] = Field(description="ok when healthy.")


class VersionInfo(BaseModel):
    """What is running: the model's metadata and the image's git revision."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "git_revision": "0f3a9c1",
                    "model_version": EXAMPLE_MODEL_VERSION,
                    "inference": "logistic-regression-arrays",
                    "model": {
                        "schema_version": 1,
                        "model_version": EXAMPLE_MODEL_VERSION,
                        "trained_at": "2026-01-01T00:00:00+00:00",
                        "estimator": "LogisticRegression",
                    },
                }
            ]
        }
    )

    git_revision: str = Field(description="Git commit the image was built from.")
    model_version: str = Field(description="Version of the loaded model.")
    inference: str = Field(description="Which inference path serves predictions.")
    model: dict[str, Any] = Field(description="The artifact's metadata.json.")


class ErrorDetail(BaseModel):
    """An error: `detail` says what was wrong (for 422, a list naming each field)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"detail": "Content-Type must be application/json, got 'text/plain'"},
                {
                    "detail": [
                        {
                            "type": "greater_than",
                            "loc": ["body", "petal_width"],
                            "msg": "Input should be greater than 0",
                        }
                    ]
                },
            ]
        }
    )

    detail: str | list[dict[str, Any]]


# --- Open Inference Protocol (KServe v2), REST ----------------------------------------------

V2_MODEL_NAME = "iris"
V2_INPUT_NAME = "features"


class V2Error(BaseModel):
    """The protocol's error body."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"error": "unknown model 'resnet'; this server serves 'iris'"}]
        }
    )

    error: str


class V2ServerMetadata(BaseModel):
    """GET /v2."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "iris-api", "version": "1.0.0", "extensions": []}]}
    )

    name: str
    version: str
    extensions: list[str]


class V2TensorMetadata(BaseModel):
    """Name, datatype and shape of a tensor; -1 means any size."""

    name: str
    datatype: str
    shape: list[int]


class V2ModelMetadata(BaseModel):
    """GET /v2/models/{model_name}."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "iris",
                    "versions": [EXAMPLE_MODEL_VERSION],
                    "platform": "scikit-learn",
                    "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}],
                    "outputs": [
                        {"name": "label", "datatype": "BYTES", "shape": [-1]},
                        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
                    ],
                }
            ]
        }
    )

    name: str
    versions: list[str]
    platform: str
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]


class V2Live(BaseModel):
    """Liveness of the server."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"live": True}]})

    live: bool


class V2Ready(BaseModel):
    """Readiness of the server or the model."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"ready": True}]})

    ready: bool


# A tensor's data: flat in row-major order, or nested rows. Numbers only (strict: no
# strings, no booleans); range and shape are checked against the tensor's shape.
_Number = Annotated[float, Field(strict=True)]


class V2RequestInput(BaseModel):
    """One input tensor."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=256)
    shape: list[int] = Field(max_length=8)
    datatype: str = Field(max_length=16)
    parameters: dict[str, Any] | None = Field(
        default=None,
        description="With the binary tensor data extension, `binary_data_size`: the bytes "
        "of this tensor after the JSON header (then `data` is left out).",
    )
    data: list[_Number] | list[list[_Number]] | None = Field(
        default=None, description="The values, flat in row-major order or as nested rows."
    )


class V2RequestOutput(BaseModel):
    """An output the client asks for."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=256)
    parameters: dict[str, Any] | None = None


class V2InferenceRequest(BaseModel):
    """POST /v2/models/{model_name}/infer: one FP32 or FP64 tensor of shape [N, 4]."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": "42",
                    "inputs": [
                        {
                            "name": "features",
                            "shape": [2, 4],
                            "datatype": "FP32",
                            "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3],
                        }
                    ],
                }
            ]
        },
    )

    id: str | None = Field(default=None, max_length=256)
    parameters: dict[str, Any] | None = None
    inputs: list[V2RequestInput] = Field(min_length=1, max_length=1)
    outputs: list[V2RequestOutput] | None = Field(default=None, max_length=2)


class V2ResponseOutput(BaseModel):
    """One output tensor: `data` in JSON, or `parameters.binary_data_size` bytes after the
    JSON header when the client asked for it in binary."""

    name: str
    shape: list[int]
    datatype: str
    data: list[float] | list[str] | None = None
    parameters: dict[str, Any] | None = None


class V2InferenceResponse(BaseModel):
    """The answer to an inference request: labels (BYTES, [N]) and probabilities (FP32, [N, 3])."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model_name": "iris",
                    "model_version": EXAMPLE_MODEL_VERSION,
                    "id": "42",
                    "outputs": [
                        {
                            "name": "label",
                            "shape": [2],
                            "datatype": "BYTES",
                            "data": ["setosa", "virginica"],
                        },
                        {
                            "name": "probabilities",
                            "shape": [2, 3],
                            "datatype": "FP32",
                            "data": [0.979, 0.021, 0.0, 0.0, 0.0306, 0.9694],
                        },
                    ],
                }
            ]
        }
    )

    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[V2ResponseOutput]
