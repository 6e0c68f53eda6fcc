"""Request and response bodies of the HTTP API, with the examples /docs shows.

"Model" means the estimator in this project, so the pydantic classes here are called
schemas. The bodies that name features or classes are built from the served model's
contract (`body_schemas`, from the artifact's metadata): its feature names and order, the
accepted range (the training data's) and its classes. The others are fixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, create_model

from model.artifact import CONTRACT, DataContract

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
EXAMPLE_ROWS = (EXAMPLE_ROW, EXAMPLE_ROW_2)
"""Two Iris flowers for the examples; a model with other features shows its own reference
rows instead (`example_rows`)."""


ExampleRows = tuple[tuple[float, ...], tuple[float, ...]]


def example_rows(
    contract: DataContract, reference_rows: Sequence[Sequence[float]] = ()
) -> ExampleRows:
    """Two rows for the examples, in the contract's feature order: EXAMPLE_ROWS when they
    hold exactly the contract's features, else the first and last of `reference_rows`
    (recorded at training), else the middle of the accepted range."""
    names = contract.feature_names
    if all(tuple(row) == names for row in EXAMPLE_ROWS):
        return (tuple(EXAMPLE_ROW.values()), tuple(EXAMPLE_ROW_2.values()))
    if reference_rows:
        return (tuple(reference_rows[0]), tuple(reference_rows[-1]))
    middle = (contract.greater_than + contract.at_most) / 2
    return ((middle,) * len(names), (middle,) * len(names))


def _stand_in_probabilities(classes: Sequence[str], index: int, top: float) -> dict[str, float]:
    # Made-up probabilities for the examples of the document without a model: `top` on
    # the class, the rest on a neighbour. /openapi.json shows the served model's answers.
    neighbour = index + 1 if index + 1 < len(classes) else index - 1
    shares = {index: top, neighbour: round(1 - top, 4)}
    return {name: shares.get(i, 0.0) for i, name in enumerate(classes)}


@dataclass(frozen=True)
class BodySchemas:
    """The bodies whose fields follow the model: built from its contract (`body_schemas`)."""

    measurement: type[BaseModel]
    """/predict: one field per feature, in the contract's order."""
    batch_request: type[BaseModel]
    """/predict/batch: `instances`, a list of measurements."""
    prediction: type[BaseModel]
    predict_response: type[BaseModel]
    batch_response: type[BaseModel]
    example_rows: ExampleRows
    """The two rows the request examples show, in feature order."""

    @property
    def requests(self) -> tuple[type[BaseModel], ...]:
        """The request bodies (documented as validated)."""
        return (self.measurement, self.batch_request)

    @property
    def responses(self) -> tuple[type[BaseModel], ...]:
        """The response bodies (documented as serialised)."""
        return (self.prediction, self.predict_response, self.batch_response)


def feature_description(name: str, unit: str) -> str:
    """A field's description: `sepal_length` in cm is "Sepal length in cm."."""
    return f"{name.replace('_', ' ').capitalize()} in {unit}."


@cache
def body_schemas(contract: DataContract, examples: ExampleRows | None = None) -> BodySchemas:
    """The request and response bodies of a model with `contract`.

    `examples` are two rows in the contract's feature order (default: `example_rows`).
    Fields are named `f0`, `f1`, ... and take the feature names as aliases, so any
    feature name is a JSON field without clashing with pydantic's own attributes;
    validation errors and the JSON schema use the aliases, i.e. the feature names.
    """
    names, classes = contract.feature_names, contract.class_names
    chosen = example_rows(contract) if examples is None else examples
    rows: list[dict[str, Any]] = [dict(zip(names, row, strict=True)) for row in chosen]
    # Strict: a JSON number only (no strings, no booleans), finite, within the range.
    value = Annotated[
        float,
        Field(strict=True, gt=contract.greater_than, le=contract.at_most, allow_inf_nan=False),
    ]
    fields: dict[str, Any] = {
        f"f{i}": (
            value,
            Field(
                alias=name,
                description=feature_description(name, contract.unit),
                examples=[rows[0][name]],
            ),
        )
        for i, name in enumerate(names)
    }
    measurement = create_model(
        "Measurement",
        __config__=ConfigDict(
            extra="forbid", frozen=True, json_schema_extra={"examples": [rows[0]]}
        ),
        __doc__=f"One instance: {len(names)} feature(s), each {contract.feature_range}.",
        **fields,
    )
    batch_request = create_model(
        "BatchRequest",
        __config__=ConfigDict(
            extra="forbid",
            frozen=True,
            json_schema_extra={"examples": [{"instances": [rows[0], rows[1]]}]},
        ),
        __doc__="Several instances in one request; predictions come back in the same order.",
        instances=(
            list[measurement],  # type: ignore[valid-type]
            Field(
                min_length=1,
                description="The instances to classify: at least one, at most "
                "IRIS_MAX_BATCH_ROWS (default 1000; more get 413).",
            ),
        ),
    )
    last = len(classes) - 1
    first_guess: dict[str, Any] = {
        "species": classes[0],
        "class_index": 0,
        "probabilities": _stand_in_probabilities(classes, 0, 0.9790),
    }
    last_guess: dict[str, Any] = {
        "species": classes[last],
        "class_index": last,
        "probabilities": _stand_in_probabilities(classes, last, 0.9694),
    }
    species = cast(Any, Literal).__getitem__(classes)
    prediction = create_model(
        "Prediction",
        __config__=ConfigDict(json_schema_extra={"examples": [first_guess]}),
        __doc__="The predicted species of one instance.",
        species=(species, Field(description="The most probable species.")),
        class_index=(int, Field(ge=0, le=last, description="Index of the species.")),
        probabilities=(
            dict[str, float],
            Field(description="Probability of every species; they sum to 1."),
        ),
    )
    predict_response = create_model(
        "PredictResponse",
        __base__=prediction,
        __config__=ConfigDict(
            json_schema_extra={
                "examples": [{**first_guess, "model_version": EXAMPLE_MODEL_VERSION}]
            }
        ),
        __doc__="The answer to POST /predict.",
        model_version=(str, Field(description="Version of the model that answered.")),
    )
    batch_response = create_model(
        "BatchResponse",
        __config__=ConfigDict(
            json_schema_extra={
                "examples": [
                    {
                        "predictions": [first_guess, last_guess],
                        "model_version": EXAMPLE_MODEL_VERSION,
                    }
                ]
            }
        ),
        __doc__="The answer to POST /predict/batch.",
        predictions=(
            list[prediction],  # type: ignore[valid-type]
            Field(description="One prediction per instance, in order."),
        ),
        model_version=(str, Field(description="Version of the model that answered.")),
    )
    return BodySchemas(
        measurement, batch_request, prediction, predict_response, batch_response, chosen
    )


DEFAULT_BODIES = body_schemas(CONTRACT)
"""The bodies for the repository's contract: what /docs shows before a model is served."""
Measurement = DEFAULT_BODIES.measurement
BatchRequest = DEFAULT_BODIES.batch_request
Prediction = DEFAULT_BODIES.prediction
PredictResponse = DEFAULT_BODIES.predict_response
BatchResponse = DEFAULT_BODIES.batch_response


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
                        "schema_version": 2,
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


# The request's length limits; service.v2_header's plain parse checks the same ones.
V2_MAX_NAME = 256
"""Characters of a tensor's or an output's name, and of a request id."""
V2_MAX_DATATYPE = 16
V2_MAX_DIMENSIONS = 8
V2_MAX_OUTPUTS = 2


class V2RequestInput(BaseModel):
    """One input tensor."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=V2_MAX_NAME)
    shape: list[int] = Field(max_length=V2_MAX_DIMENSIONS)
    datatype: str = Field(max_length=V2_MAX_DATATYPE)
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

    name: str = Field(max_length=V2_MAX_NAME)
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

    id: str | None = Field(default=None, max_length=V2_MAX_NAME)
    parameters: dict[str, Any] | None = None
    inputs: list[V2RequestInput] = Field(min_length=1, max_length=1)
    outputs: list[V2RequestOutput] | None = Field(default=None, max_length=V2_MAX_OUTPUTS)


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
