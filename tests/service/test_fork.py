"""A model trained on other columns is served with its own request schema, from its artifact.

The fork path of docs/fork.md, end to end: a CSV with three features of other names, a
label column of another name, other classes and another range is trained by
`model.train.train` into a real artifact, and the unchanged service serves it. The
feature names and order, the range and the classes reach /predict, /predict/batch, the
Open Inference Protocol shape checks, the error messages and /openapi.json from the
artifact's metadata alone.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model.artifact import CONTRACT, DataContract, load
from model.data import DataValidationError, load_dataset
from model.train import DEFAULT_MIN_ACCURACY, DEFAULT_SEED, current_artifact, train
from service.inference import LinearSoftmaxPredictor
from service.settings import Settings
from tests.service.support import TestClient, make_client

WINE = DataContract(
    feature_names=("alcohol", "acidity", "colour_intensity"),
    label_name="grade",
    class_names=("table", "reserve", "grand_cru"),
    greater_than=0.0,
    at_most=50.0,
    unit="g/l",
)
# One centre per grade, far apart for the spread: the quality gate passes by a wide margin.
CENTRES = {"table": (9.0, 6.0, 3.0), "reserve": (12.0, 4.0, 8.0), "grand_cru": (14.0, 2.5, 13.0)}
TABLE_ROW = {"alcohol": 9.1, "acidity": 6.2, "colour_intensity": 2.9}


def _write_wine_csv(path: Path, per_class: int = 40) -> None:
    rng = np.random.default_rng(7)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(WINE.columns)
        for grade, centre in CENTRES.items():
            for row in rng.normal(centre, 0.6, size=(per_class, 3)).clip(0.1, 49.0):
                writer.writerow([f"{value:.2f}" for value in row] + [grade])


@pytest.fixture(scope="module")
def wine_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wine-data") / "data.csv"
    _write_wine_csv(path)
    return path


@pytest.fixture(scope="module")
def wine_out(tmp_path_factory: pytest.TempPathFactory, wine_data: Path) -> Path:
    out = tmp_path_factory.mktemp("wine-model")
    train(wine_data, out, DEFAULT_SEED, DEFAULT_MIN_ACCURACY, contract=WINE)
    return out


@pytest.fixture(scope="module")
def wine(wine_out: Path) -> Iterator[TestClient]:
    with make_client(Settings(model_dir=wine_out / "model", log_format="json")) as client:
        yield client


def _post(client: TestClient, path: str, body: dict[str, Any]) -> Any:
    return client.post(path, json=body)


def test_the_artifact_records_the_contract_it_was_trained_with(wine_out: Path) -> None:
    metadata = load(wine_out / "model").metadata

    assert metadata.contract == WINE
    assert metadata.feature_names == ["alcohol", "acidity", "colour_intensity"]
    assert metadata.label_name == "grade"
    assert metadata.feature_range == {"greater_than": 0.0, "at_most": 50.0, "unit": "g/l"}


def test_the_fork_takes_the_fast_path_with_three_features(wine: TestClient) -> None:
    version = wine.get("/version").json()

    assert version["inference"] == LinearSoftmaxPredictor.name


def test_predict_accepts_the_artifacts_fields_and_answers_its_classes(wine: TestClient) -> None:
    response = _post(wine, "/predict", TABLE_ROW)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["species"] == "table"
    assert list(body["probabilities"]) == ["table", "reserve", "grand_cru"]


def test_a_batch_is_read_in_the_artifacts_feature_order(wine: TestClient) -> None:
    # Keys in another order than the CSV's: the codec must place each by name.
    shuffled = [{"colour_intensity": c, "alcohol": a, "acidity": b} for a, b, c in CENTRES.values()]
    response = _post(wine, "/predict/batch", {"instances": shuffled})

    assert response.status_code == 200, response.text
    assert [p["species"] for p in response.json()["predictions"]] == list(CENTRES)


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_a_missing_field_is_a_422_naming_it(wine: TestClient, path: str) -> None:
    row = {"alcohol": 9.1, "acidity": 6.2}
    response = _post(wine, path, {"instances": [row]} if path.endswith("batch") else row)

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"][-1] == "colour_intensity"
    assert error["msg"] == "Field required"


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_an_extra_field_is_a_422_naming_it(wine: TestClient, path: str) -> None:
    row = {**TABLE_ROW, "vintage": 1999}
    response = _post(wine, path, {"instances": [row]} if path.endswith("batch") else row)

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"][-1] == "vintage"
    assert error["msg"] == "Extra inputs are not permitted"


def test_the_iris_fields_are_refused_naming_the_artifacts_fields(wine: TestClient) -> None:
    iris = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    response = _post(wine, "/predict", iris)

    assert response.status_code == 422
    named = {error["loc"][-1] for error in response.json()["detail"]}
    assert {"alcohol", "acidity", "colour_intensity", "sepal_length"} <= named


def test_a_value_outside_the_artifacts_range_is_refused(wine: TestClient) -> None:
    response = _post(wine, "/predict", {**TABLE_ROW, "alcohol": 60.0})

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "alcohol"]
    assert "less than or equal to 50" in error["msg"]


def test_v2_takes_tensors_of_the_artifacts_width(wine: TestClient) -> None:
    rows = [list(centre) for centre in CENTRES.values()]
    tensor = {"name": "features", "shape": [3, 3], "datatype": "FP64", "data": rows}
    response = _post(wine, "/v2/models/iris/infer", {"inputs": [tensor]})

    assert response.status_code == 200, response.text
    label, probabilities = response.json()["outputs"]
    assert label["data"] == list(CENTRES)
    assert probabilities["shape"] == [3, 3]
    metadata = wine.get("/v2/models/iris").json()
    assert metadata["inputs"][0]["shape"] == [-1, 3]


def test_v2_refuses_the_iris_width_naming_the_artifacts_features(wine: TestClient) -> None:
    tensor = {"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}
    response = _post(wine, "/v2/models/iris/infer", {"inputs": [tensor]})

    assert response.status_code == 400
    assert response.json()["error"] == (
        "input 'features': shape must be [N, 3] with N >= 1 (one row per instance: "
        "alcohol, acidity, colour_intensity), got [1, 4]"
    )


def test_v2_range_errors_name_the_feature_and_the_unit(wine: TestClient) -> None:
    tensor = {"name": "features", "shape": [1, 3], "datatype": "FP64", "data": [9.0, 6.0, 51.0]}
    response = _post(wine, "/v2/models/iris/infer", {"inputs": [tensor]})

    assert response.status_code == 400
    assert response.json()["error"] == (
        "input 'features': row 0 colour_intensity = 51.0 is outside the accepted range "
        "(greater than 0, at most 50 g/l, finite)"
    )


def test_openapi_documents_the_artifacts_fields_range_and_classes(wine: TestClient) -> None:
    document = wine.get("/openapi.json").json()
    schemas = document["components"]["schemas"]

    measurement = schemas["Measurement"]
    assert list(measurement["properties"]) == list(WINE.feature_names)
    assert measurement["required"] == list(WINE.feature_names)
    assert measurement["properties"]["alcohol"]["maximum"] == 50
    assert measurement["properties"]["alcohol"]["description"] == "Alcohol in g/l."
    # The examples are rows the model was trained on, and the answers are the model's.
    (example,) = measurement["examples"]
    assert sorted(example) == sorted(WINE.feature_names)
    batch_items = schemas["BatchRequest"]["properties"]["instances"]["items"]
    assert batch_items == {"$ref": "#/components/schemas/Measurement"}
    assert schemas["Prediction"]["properties"]["species"]["enum"] == list(WINE.class_names)
    (answer,) = schemas["PredictResponse"]["examples"]
    live = _post(wine, "/predict", example).json()
    for key in ("species", "class_index", "model_version"):
        assert answer[key] == live[key]
    (v2_request,) = schemas["V2InferenceRequest"]["examples"]
    assert v2_request["inputs"][0]["shape"] == [2, 3]
    assert "at most 50 g/l" in document["info"]["description"]
    assert "sepal_length" not in str(document)


def test_the_default_document_keeps_the_repositorys_contract(wine: TestClient) -> None:
    """Serving the fork changed no module-level schema: an Iris app still shows Iris."""
    from service.schemas import Measurement

    assert list(Measurement.model_json_schema()["properties"]) == list(CONTRACT.feature_names)


def test_retraining_is_needed_when_the_contract_changes(wine_data: Path, wine_out: Path) -> None:
    # `make serve` retrains only when the artifact is not current (--if-changed).
    assert current_artifact(wine_data, wine_out, DEFAULT_SEED, WINE) is not None
    assert current_artifact(wine_data, wine_out, DEFAULT_SEED, CONTRACT) is None


def test_the_iris_contract_refuses_the_fork_data_naming_the_columns(wine_data: Path) -> None:
    with pytest.raises(DataValidationError, match="missing column"):
        load_dataset(wine_data)
