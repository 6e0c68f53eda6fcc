"""Fitted arrays exported into the artifact, so that serving needs neither scikit-learn nor pickle.

For the estimator the project trains, a multinomial LogisticRegression, a prediction is
a matrix product and a softmax over its 15 fitted numbers. Training writes them into
metadata.json (`fast_path`), but only once they reproduced the estimator's `predict` and
`predict_proba` on probe rows (`export`). `model.artifact.load`, which unpickles, checks
them against the estimator again (the image build runs it in the serving environment);
the service checks them against the reference predictions recorded at training and
then predicts from them alone: it starts without importing scikit-learn (most of its
start-up time) and never unpickles, that is never runs code from the model file.
Estimators without an export are served from the pickle (service.inference).

Only numpy is imported here; scikit-learn only inside the functions that need an estimator.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from model.codegen import generated
from model.data import CLASS_NAMES, FEATURE_NAMES

Rows = npt.NDArray[np.float64]
Indices = npt.NDArray[np.intp]
Probabilities = npt.NDArray[np.float64]

LINEAR_SOFTMAX = "multinomial-logistic-regression"
"""`fast_path.kind` of a multinomial LogisticRegression's coef_ and intercept_."""


class FastPathError(ValueError):
    """The exported arrays are malformed; the message says which part."""


class LinearSoftmaxPredictor:
    """A multinomial LogisticRegression computed from its fitted coef_ and intercept_.

    It repeats scikit-learn's arithmetic: each score is the same four products and
    intercept (a matrix product), then the same in-place softmax, so class indices equal
    `estimator.predict` and probabilities equal `estimator.predict_proba`. The scores are
    laid out one class per row, (classes, rows): the softmax's max and sum then run down
    three contiguous rows of N values instead of along N rows of three, which is what
    makes a 100-row batch cost 7 us rather than 13. The element-wise steps round the same
    either way; the product is checked against the estimator before export and against
    the reference rows before serving, as predict_one's is.
    """

    name = "logistic-regression-arrays"

    def __init__(self, coef: Any, intercept: Any) -> None:
        # (classes, features), as scikit-learn stores coef_; the intercept as a column.
        self._coef: npt.NDArray[np.float64] = np.array(coef, dtype=np.float64, order="C")
        self._intercept: npt.NDArray[np.float64] = np.array(intercept, dtype=np.float64)
        self._intercept_column = self._intercept.reshape(-1, 1)
        self._predict_one: Callable[[Sequence[float]], tuple[int, list[float]]]
        self._predict_one = _predict_one_function(self._coef.tolist(), self._intercept.tolist())

    @classmethod
    def of(cls, estimator: Any) -> LinearSoftmaxPredictor:
        """The predictor of a fitted LogisticRegression's own arrays."""
        return cls(estimator.coef_, estimator.intercept_)

    def predict(self, rows: Rows) -> tuple[Indices, Probabilities]:
        """Class indices and probabilities, without scikit-learn's per-call validation.

        The probabilities are a (rows, classes) view of a (classes, rows) array.
        """
        scores = self._coef.dot(rows.T)  # ndarray.dot: the same product as @, half the overhead
        scores += self._intercept_column
        # predict() takes the argmax of the scores, not of the probabilities: rounding
        # in exp could tie two probabilities that the scores still tell apart.
        indices = scores.argmax(axis=0)
        # The ufuncs' own reduce: ndarray.max and .sum add a Python wrapper each.
        scores -= np.maximum.reduce(scores, axis=0)
        np.exp(scores, out=scores)
        scores /= np.add.reduce(scores, axis=0)
        return indices, scores.T

    def predict_one(self, row: Sequence[float]) -> tuple[int, list[float]]:
        """One row in plain Python floats: the scores, then the softmax.

        numpy costs ~10 us on a 1x4 row (array creation, matrix product, conversion back),
        ten times the arithmetic. Each score is the features' products summed in order,
        then the intercept, as the matrix product computes it; the matrix product may
        round its last bit differently (BLAS kernels fuse multiply and add), so the
        probabilities agree with predict_proba to within a few ulps and the class index
        with predict except where two scores are within an ulp of each other. Both are
        checked on probe rows before the arrays are exported (`agrees_with_estimator`)
        and on the reference rows before they are served (`reproduces`).
        """
        return self._predict_one(row)

    @property
    def shape(self) -> tuple[int, int]:
        """(classes, features) of the model."""
        classes, features = self._coef.shape
        return classes, features

    def arrays(self) -> dict[str, Any]:
        """The exported form: `fast_path` in metadata.json (JSON floats round-trip exactly)."""
        return {
            "kind": LINEAR_SOFTMAX,
            "coef": self._coef.tolist(),
            "intercept": self._intercept.tolist(),
        }


def _predict_one_function(coef: list[list[float]], intercept: list[float]) -> Any:
    """predict_one(row) for these weights, written out: one expression per class score,
    then the softmax, on Python floats (model.codegen)."""
    n_features = len(coef[0])
    xs = [f"x{j}" for j in range(n_features)]
    constants: dict[str, Any] = {"exp": math.exp}
    scores = []
    for k, (weights, bias) in enumerate(zip(coef, intercept, strict=True)):
        terms = []
        for j, weight in enumerate(weights):
            constants[f"w{k}_{j}"] = weight
            terms.append(f"x{j} * w{k}_{j}")
        constants[f"b{k}"] = bias
        scores.append(f"    s{k} = {' + '.join(terms)} + b{k}\n")
    classes = range(len(coef))
    ss = ", ".join(f"s{k}" for k in classes)
    # The first class whose score is the maximum, as numpy's argmax.
    index = " else ".join(f"{k} if s{k} == top" for k in classes[:-1]) + f" else {classes[-1]}"
    source = (
        f"def predict_one(row):\n"
        f"    {', '.join(xs)}, = row\n"
        + "".join(scores)
        + f"    top = max({ss})\n"
        + "".join(f"    e{k} = exp(s{k} - top)\n" for k in classes)
        + f"    total = {' + '.join(f'e{k}' for k in classes)}\n"
        + f"    return {index}, [{', '.join(f'e{k} / total' for k in classes)}]\n"
    )
    return generated(source, "predict_one", constants)


def is_multinomial_logistic_regression(estimator: Any) -> bool:
    """True for exactly the estimator whose arithmetic LinearSoftmaxPredictor repeats."""
    from sklearn.linear_model import LogisticRegression

    if type(estimator) is not LogisticRegression:  # a subclass may override predict
        return False
    classes = getattr(estimator, "classes_", None)
    coef = getattr(estimator, "coef_", None)
    intercept = getattr(estimator, "intercept_", None)
    if classes is None or coef is None or intercept is None:
        return False
    n_classes, n_features = len(classes), getattr(estimator, "n_features_in_", None)
    # Two classes use a single row of coef_ and a logistic, not a softmax; liblinear
    # fits one-vs-rest, whose probabilities are normalised differently.
    return (
        n_classes > 2
        and np.shape(coef) == (n_classes, n_features)
        and np.shape(intercept) == (n_classes,)
        and getattr(estimator, "solver", None) != "liblinear"
        and getattr(estimator, "multi_class", "auto") in ("auto", "multinomial", "deprecated")
    )


def probe_rows(
    extra: Iterable[Iterable[float]] = (),
    count: int = 256,
    seed: int = 0,
    n_features: int | None = None,
) -> Rows:
    """Rows spread over the accepted input range, plus `extra` (e.g. reference rows).

    `n_features` defaults to the width of `extra`, else the repository's feature count.
    """
    listed = [list(row) for row in extra]
    if n_features is None:
        n_features = len(listed[0]) if listed else len(FEATURE_NAMES)
    rng = np.random.default_rng(seed)
    # Log-uniform over (0, 100] reaches both tiny and huge values, where a softmax
    # overflows or underflows first; the uniform half covers real flowers.
    wide = np.exp(rng.uniform(np.log(1e-3), np.log(100.0), size=(count // 2, n_features)))
    typical = rng.uniform(0.1, 8.0, size=(count - count // 2, n_features))
    rows = [wide, typical]
    if listed:
        rows.append(np.asarray(listed, dtype=np.float64).reshape(-1, n_features))
    return np.ascontiguousarray(np.vstack(rows), dtype=np.float64)


def agrees_with_estimator(predictor: LinearSoftmaxPredictor, estimator: Any, rows: Rows) -> bool:
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


def export(estimator: Any, reference_rows: Iterable[Iterable[float]] = ()) -> dict[str, Any] | None:
    """The fitted arrays to store in the artifact, or None when the estimator has no fast
    path or the arrays do not reproduce it on probe rows (it is then served from the pickle)."""
    if not is_multinomial_logistic_regression(estimator):
        return None
    fast = LinearSoftmaxPredictor.of(estimator)
    probes = probe_rows(reference_rows, n_features=estimator.n_features_in_)
    if not agrees_with_estimator(fast, estimator, probes):
        return None
    return fast.arrays()


def from_arrays(
    exported: Any, n_classes: int = len(CLASS_NAMES), n_features: int = len(FEATURE_NAMES)
) -> LinearSoftmaxPredictor:
    """The predictor of a `fast_path` read from metadata.json, for a model of `n_classes`
    and `n_features` (the artifact's contract); FastPathError if malformed."""
    if not isinstance(exported, dict) or exported.get("kind") != LINEAR_SOFTMAX:
        kind = exported.get("kind") if isinstance(exported, dict) else None
        raise FastPathError(f"unknown kind {kind!r} (this code reads {LINEAR_SOFTMAX!r})")
    if set(exported) != {"kind", "coef", "intercept"}:
        raise FastPathError("must hold exactly kind, coef and intercept")
    shapes = {"coef": (n_classes, n_features), "intercept": (n_classes,)}
    for key, shape in shapes.items():
        try:
            array = np.array(exported[key], dtype=np.float64)
        except (TypeError, ValueError):
            raise FastPathError(f"{key} is not an array of numbers") from None
        if array.shape != shape or not np.isfinite(array).all():
            raise FastPathError(f"{key} must be {shape} finite numbers")
    return LinearSoftmaxPredictor(exported["coef"], exported["intercept"])


def reproduces(predictor: LinearSoftmaxPredictor, references: list[dict[str, Any]]) -> bool:
    """True when `predictor` gives the probabilities recorded at training for every
    reference row, whole and one row at a time (to 1e-9, as `model.artifact.load`)."""
    try:
        rows = np.array([ref["features"] for ref in references], dtype=np.float64)
        expected = np.array([ref["probabilities"] for ref in references], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        return False
    n_classes, n_features = predictor.shape
    if rows.shape != (len(references), n_features) or expected.shape != (
        len(references),
        n_classes,
    ):
        return False
    _, block = predictor.predict(rows.copy())
    ones = np.array([predictor.predict_one(tuple(row.tolist()))[1] for row in rows])
    return bool(
        np.allclose(block, expected, rtol=0, atol=1e-9)
        and np.allclose(ones, expected, rtol=0, atol=1e-9)
    )
