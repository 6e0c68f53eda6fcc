"""Turning validated rows into class indices and probabilities, as fast as it is safe.

scikit-learn's `predict` spends nearly all of its ~100 us per call on input checks
(type and dataframe detection, finiteness, feature counts) that the service has
already done on the request. For the estimator the project trains, a multinomial
LogisticRegression, the prediction is a matrix product and a softmax over its fitted
arrays, which takes a few microseconds. `make_predictor` picks that path only for that
exact estimator type and shape, checks it against the estimator on probe rows before
using it, and otherwise falls back to the estimator's own methods. The parity test in
tests/service/test_inference.py is what keeps the two paths from drifting.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from model.artifact import FEATURE_NAMES

Rows = npt.NDArray[np.float64]
Indices = npt.NDArray[np.intp]
Probabilities = npt.NDArray[np.float64]


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


class LinearSoftmaxPredictor:
    """A multinomial LogisticRegression computed from its fitted coef_ and intercept_.

    It repeats scikit-learn's arithmetic step for step (the same matrix product on the
    same array layout, then the same in-place softmax), so class indices equal
    `estimator.predict` and probabilities equal `estimator.predict_proba`.
    """

    name = "logistic-regression-arrays"

    def __init__(self, estimator: Any) -> None:
        # The transposed view, as decision_function uses it: same BLAS call, same rounding.
        self._coef_t: npt.NDArray[np.float64] = np.asarray(estimator.coef_, dtype=np.float64).T
        self._intercept: npt.NDArray[np.float64] = np.asarray(
            estimator.intercept_, dtype=np.float64
        )

    def predict(self, rows: Rows) -> tuple[Indices, Probabilities]:
        """Class indices and probabilities, without scikit-learn's per-call validation."""
        scores = rows @ self._coef_t + self._intercept
        # predict() takes the argmax of the scores, not of the probabilities: rounding
        # in exp could tie two probabilities that the scores still tell apart.
        indices = scores.argmax(axis=1)
        scores -= scores.max(axis=1).reshape(-1, 1)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1).reshape(-1, 1)
        return indices, scores

    def predict_one(self, row: Sequence[float]) -> tuple[int, list[float]]:
        """One row: the same scores, then the softmax on three Python floats.

        Ten numpy calls on a 1x3 array cost more than the arithmetic; after the matrix
        product (kept in numpy so the scores round exactly as scikit-learn's do) plain
        floats are twice as fast. The probabilities agree with predict_proba to within
        a few ulps, the class index exactly (first maximum, as numpy's argmax).
        """
        scores: list[float] = (np.array([row]) @ self._coef_t + self._intercept)[0].tolist()
        top = max(scores)
        exps = [math.exp(score - top) for score in scores]
        total = math.fsum(exps)
        return scores.index(top), [value / total for value in exps]


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


def _is_multinomial_logistic_regression(estimator: Any) -> bool:
    # Imported here so the module can be read without scikit-learn loaded.
    from sklearn.linear_model import LogisticRegression

    if type(estimator) is not LogisticRegression:  # a subclass may override predict
        return False
    classes = getattr(estimator, "classes_", None)
    coef = getattr(estimator, "coef_", None)
    intercept = getattr(estimator, "intercept_", None)
    if classes is None or coef is None or intercept is None:
        return False
    n_classes, n_features = len(classes), len(FEATURE_NAMES)
    # Two classes use a single row of coef_ and a logistic, not a softmax; liblinear
    # fits one-vs-rest, whose probabilities are normalised differently.
    return (
        n_classes > 2
        and np.shape(coef) == (n_classes, n_features)
        and np.shape(intercept) == (n_classes,)
        and getattr(estimator, "solver", None) != "liblinear"
        and getattr(estimator, "multi_class", "auto") in ("auto", "multinomial", "deprecated")
    )


def probe_rows(extra: Iterable[Iterable[float]] = (), count: int = 256, seed: int = 0) -> Rows:
    """Rows spread over the accepted input range, plus `extra` (e.g. reference rows)."""
    rng = np.random.default_rng(seed)
    # Log-uniform over (0, 100] reaches both tiny and huge values, where a softmax
    # overflows or underflows first; the uniform half covers real flowers.
    wide = np.exp(rng.uniform(np.log(1e-3), np.log(100.0), size=(count // 2, len(FEATURE_NAMES))))
    typical = rng.uniform(0.1, 8.0, size=(count - count // 2, len(FEATURE_NAMES)))
    rows = [wide, typical]
    listed = [list(row) for row in extra]
    if listed:
        rows.append(np.asarray(listed, dtype=np.float64).reshape(-1, len(FEATURE_NAMES)))
    return np.ascontiguousarray(np.vstack(rows), dtype=np.float64)


def agrees_with_estimator(predictor: Predictor, estimator: Any, rows: Rows) -> bool:
    """True when `predictor` gives the estimator's classes and probabilities on `rows`.

    Checked on the whole block and on single rows, the two shapes the service uses.
    """
    indices, probabilities = predictor.predict(np.array(rows))
    if not np.array_equal(indices, estimator.predict(rows)):
        return False
    if not np.allclose(probabilities, estimator.predict_proba(rows), rtol=1e-12, atol=1e-300):
        return False
    for row in rows[:32]:
        index, one = predictor.predict_one(tuple(row.tolist()))
        block = row.reshape(1, -1)
        if index != int(estimator.predict(block)[0]):
            return False
        if not np.allclose(one, estimator.predict_proba(block)[0], rtol=1e-12, atol=1e-300):
            return False
    return True


def make_predictor(estimator: Any, reference_rows: Iterable[Iterable[float]] = ()) -> Predictor:
    """The fastest predictor that gives the estimator's own answers.

    The array path is used only for a multinomial LogisticRegression and only after it
    reproduced the estimator on probe rows; anything else uses the estimator itself.
    """
    if _is_multinomial_logistic_regression(estimator):
        fast = LinearSoftmaxPredictor(estimator)
        if agrees_with_estimator(fast, estimator, probe_rows(reference_rows)):
            return fast
    return EstimatorPredictor(estimator)
