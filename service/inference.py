"""Turning validated rows into class indices and probabilities, as fast as it is safe.

scikit-learn's `predict` spends nearly all of its ~100 us per call on input checks
(type and dataframe detection, finiteness, feature counts) that the service has
already done on the request. For the estimator the project trains, a multinomial
LogisticRegression, the prediction is a matrix product and a softmax over its fitted
arrays, which takes a few microseconds (model.fastpath.LinearSoftmaxPredictor).

An artifact normally carries those arrays, exported at training, and is served from
them without unpickling (model.artifact.fast_predictor). For an unpickled estimator,
`make_predictor` picks the same path only for that exact estimator type and shape,
checks it against the estimator on probe rows before using it, and otherwise falls
back to the estimator's own methods. The parity test in tests/service/test_inference.py
is what keeps the two paths from drifting.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np

from model.fastpath import (
    Indices,
    LinearSoftmaxPredictor,
    Probabilities,
    Rows,
    agrees_with_estimator,
    is_multinomial_logistic_regression,
    probe_rows,
)

__all__ = [
    "EstimatorPredictor",
    "Indices",
    "LinearSoftmaxPredictor",
    "Predictor",
    "Probabilities",
    "Rows",
    "agrees_with_estimator",
    "make_predictor",
    "probe_rows",
]


class Predictor(Protocol):
    """What the HTTP layer needs from a model: class indices and probabilities per row."""

    name: str
    """Which path serves predictions (reported by /version and the model info metric)."""

    def predict(self, rows: Rows) -> tuple[Indices, Probabilities]:
        """Class index (into CLASS_NAMES) and class probabilities for each row of `rows`.

        `rows` is float64 of shape (n, len(FEATURE_NAMES)), already validated.
        """
        ...

    def predict_one(self, row: Sequence[float]) -> tuple[int, list[float]]:
        """Class index and probabilities of a single row (the /predict case)."""
        ...


class EstimatorPredictor:
    """Any fitted classifier, through its own predict and predict_proba."""

    name = "estimator"

    def __init__(self, estimator: Any) -> None:
        self._estimator = estimator

    def predict(self, rows: Rows) -> tuple[Indices, Probabilities]:
        """Class indices from `predict` (the artifact guarantees classes_ == 0..n-1)."""
        indices = np.asarray(self._estimator.predict(rows), dtype=np.intp)
        probabilities = np.asarray(self._estimator.predict_proba(rows), dtype=np.float64)
        return indices, probabilities

    def predict_one(self, row: Sequence[float]) -> tuple[int, list[float]]:
        """One row through predict and predict_proba."""
        indices, probabilities = self.predict(np.array([row], dtype=np.float64))
        return int(indices[0]), probabilities[0].tolist()


def make_predictor(estimator: Any, reference_rows: Iterable[Iterable[float]] = ()) -> Predictor:
    """The fastest predictor that gives the estimator's own answers.

    The array path is used only for a multinomial LogisticRegression and only after it
    reproduced the estimator on probe rows; anything else uses the estimator itself.
    """
    if is_multinomial_logistic_regression(estimator):
        fast = LinearSoftmaxPredictor.of(estimator)
        if agrees_with_estimator(fast, estimator, probe_rows(reference_rows)):
            return fast
    return EstimatorPredictor(estimator)
