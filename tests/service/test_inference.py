"""The fast inference path gives exactly the estimator's answers, or is not used.

This is the test that makes computing predictions from the fitted arrays safe: every
row of both data versions, and thousands of random valid inputs, must get the class
`estimator.predict` gives and the probabilities `estimator.predict_proba` gives.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from model.artifact import FEATURE_NAMES, load
from model.data import MAX_CM
from model.train import DEFAULT_MIN_ACCURACY, DEFAULT_SEED, train
from service.dataplane import load_model
from service.inference import (
    EstimatorPredictor,
    LinearSoftmaxPredictor,
    agrees_with_estimator,
    make_predictor,
    probe_rows,
)
from service.settings import Settings
from tests.service.support import make_client

REPO_ROOT = Path(__file__).resolve().parents[2]
RTOL = 1e-12  # a few ulps: the two softmax implementations round alike


def _data_rows(version: str) -> np.ndarray:
    with (REPO_ROOT / "data" / version / "data.csv").open(encoding="utf-8") as handle:
        rows = [[float(row[name]) for name in FEATURE_NAMES] for row in csv.DictReader(handle)]
    return np.array(rows, dtype=np.float64)


def _random_valid_rows(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Uniform over the accepted range, log-uniform down to 1e-6, and real-flower sizes.
    uniform = rng.uniform(np.nextafter(0.0, 1.0), MAX_CM, size=(count // 3, 4))
    tiny_to_huge = np.exp(rng.uniform(np.log(1e-6), np.log(MAX_CM), size=(count // 3, 4)))
    flowers = rng.uniform(0.1, 8.0, size=(count - 2 * (count // 3), 4))
    return np.vstack([uniform, tiny_to_huge, flowers])


@pytest.fixture(scope="module")
def estimator(trained_artifact_dir: Path) -> Any:
    return load(trained_artifact_dir).estimator


@pytest.fixture(scope="module")
def predictor(estimator: Any) -> LinearSoftmaxPredictor:
    chosen = make_predictor(estimator)
    assert isinstance(chosen, LinearSoftmaxPredictor), "the trained model must take the fast path"
    return chosen


def _assert_same_as_estimator(predictor: Any, estimator: Any, rows: np.ndarray) -> None:
    assert len(rows) > 0
    indices, probabilities = predictor.predict(rows.copy())
    np.testing.assert_array_equal(indices, estimator.predict(rows))
    np.testing.assert_allclose(probabilities, estimator.predict_proba(rows), rtol=RTOL, atol=0)
    for row, expected_class, expected_probabilities in zip(
        rows, estimator.predict(rows), estimator.predict_proba(rows), strict=True
    ):
        index, one = predictor.predict_one(tuple(row.tolist()))
        assert index == expected_class
        np.testing.assert_allclose(one, expected_probabilities, rtol=RTOL, atol=1e-300)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_fast_path_equals_estimator_on_every_data_row(
    predictor: LinearSoftmaxPredictor, estimator: Any, version: str
) -> None:
    rows = _data_rows(version)
    assert len(rows) >= 150
    _assert_same_as_estimator(predictor, estimator, rows)
    # Row by row through estimator.predict too: the shape a single request has.
    for row in rows:
        single = row.reshape(1, -1)
        assert predictor.predict_one(tuple(row.tolist()))[0] == int(estimator.predict(single)[0])


def test_fast_path_equals_estimator_on_thousands_of_random_valid_inputs(
    predictor: LinearSoftmaxPredictor, estimator: Any
) -> None:
    rows = _random_valid_rows(3000, seed=20260101)
    _assert_same_as_estimator(predictor, estimator, rows)
    # Batches of the sizes requests bring, as one block each.
    for size in (1, 2, 7, 100):
        block = rows[:size]
        indices, probabilities = predictor.predict(block.copy())
        np.testing.assert_array_equal(indices, estimator.predict(block))
        np.testing.assert_allclose(probabilities, estimator.predict_proba(block), rtol=RTOL)


def test_fast_path_is_much_cheaper_than_estimator_predict(
    predictor: LinearSoftmaxPredictor, estimator: Any
) -> None:
    # Not a timing assertion (that is `make bench`'s job): the fast path must not
    # call into scikit-learn at all, which is what makes it cheap.
    class Exploding:
        coef_ = estimator.coef_
        intercept_ = estimator.intercept_

        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"fast path touched estimator.{name}")

    fast = LinearSoftmaxPredictor.of(Exploding())
    fast.predict(np.array([[5.1, 3.5, 1.4, 0.2]]))
    fast.predict_one((5.1, 3.5, 1.4, 0.2))


def test_other_estimators_fall_back_to_their_own_methods(trained_artifact_dir: Path) -> None:
    rows = _data_rows("v2")
    labels = np.array([0] * 50 + [1] * 50 + [2] * 50)
    tree = DecisionTreeClassifier(random_state=0).fit(rows, labels)

    chosen = make_predictor(tree)

    assert isinstance(chosen, EstimatorPredictor)
    _assert_same_as_estimator(chosen, tree, _random_valid_rows(300, seed=1))


def test_binary_and_subclassed_logistic_regressions_fall_back(estimator: Any) -> None:
    rows = _data_rows("v2")
    binary = LogisticRegression().fit(rows[:100], [0] * 50 + [1] * 50)

    class Custom(LogisticRegression):
        pass

    custom = Custom(max_iter=1000).fit(rows, [0] * 50 + [1] * 50 + [2] * 50)

    assert isinstance(make_predictor(binary), EstimatorPredictor)
    assert isinstance(make_predictor(custom), EstimatorPredictor)


def test_a_fast_path_that_disagrees_with_the_estimator_is_rejected(estimator: Any) -> None:
    rows = _data_rows("v2")
    other = LogisticRegression(C=1e-3, max_iter=1000).fit(rows, [0] * 50 + [1] * 50 + [2] * 50)

    assert agrees_with_estimator(LinearSoftmaxPredictor.of(estimator), estimator, probe_rows())
    assert not agrees_with_estimator(LinearSoftmaxPredictor.of(other), estimator, probe_rows())


@pytest.fixture(scope="module")
def forest_artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fork's artifact: a RandomForest trained by model.train on the same data."""
    out = tmp_path_factory.mktemp("forest")
    train(
        REPO_ROOT / "data" / "v2" / "data.csv",
        out,
        DEFAULT_SEED,
        DEFAULT_MIN_ACCURACY,
        estimator_factory=lambda seed: RandomForestClassifier(n_estimators=30, random_state=seed),
    )
    return out / "model"


def test_random_forest_artifact_is_served_through_the_scikit_learn_fallback_with_parity(
    forest_artifact_dir: Path,
) -> None:
    served = load_model(forest_artifact_dir)
    forest = served.estimator

    assert isinstance(forest, RandomForestClassifier)
    assert served.metadata.estimator == "RandomForestClassifier"
    assert isinstance(served.predictor, EstimatorPredictor)
    # The same parity the fast path is held to: every data row and random valid inputs.
    for rows in (_data_rows("v1"), _data_rows("v2"), _random_valid_rows(600, seed=3)):
        _assert_same_as_estimator(served.predictor, forest, rows)

    with make_client(Settings(model_dir=forest_artifact_dir, log_format="json")) as client:
        version = client.get("/version").json()
        answer = client.post(
            "/predict",
            json={"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3},
        )
    assert version["inference"] == "estimator"
    assert version["model"]["estimator"] == "RandomForestClassifier"
    assert answer.status_code == 200
    expected = forest.predict_proba(np.array([[6.7, 3.0, 5.2, 2.3]]))[0]
    assert answer.json()["species"] == "virginica"
    assert list(answer.json()["probabilities"].values()) == pytest.approx(expected.tolist())
