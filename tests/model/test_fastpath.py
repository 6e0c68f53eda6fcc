"""Fitted arrays exported at training: served without scikit-learn or unpickling, and only
when they give the estimator's own predictions."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier

from model import fastpath
from model.artifact import MODEL_FILE, ArtifactError, check, fast_predictor, load
from model.data import load_dataset
from tests.model.support import edit_metadata

REPO_ROOT = Path(__file__).resolve().parents[2]


def _in_a_fresh_interpreter(script: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_training_exports_arrays_that_give_the_estimators_predictions(
    trained_artifact_dir: Path,
) -> None:
    loaded = load(trained_artifact_dir)
    exported = loaded.metadata.fast_path

    assert exported is not None
    assert exported["kind"] == fastpath.LINEAR_SOFTMAX
    # Exactly the fitted numbers: JSON keeps every bit of a double.
    np.testing.assert_array_equal(exported["coef"], loaded.estimator.coef_)
    np.testing.assert_array_equal(exported["intercept"], loaded.estimator.intercept_)
    served = fast_predictor(trained_artifact_dir, check(trained_artifact_dir))
    assert served is not None
    rows = fastpath.probe_rows(count=512, seed=7)
    assert fastpath.agrees_with_estimator(served, loaded.estimator, rows)


def test_estimators_without_a_fast_path_export_nothing() -> None:
    dataset = load_dataset(REPO_ROOT / "data" / "v2" / "data.csv")
    tree = DecisionTreeClassifier(random_state=0).fit(dataset.features, dataset.labels)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(
        dataset.features, dataset.labels
    )

    assert fastpath.export(tree) is None
    assert fastpath.export(forest) is None


def test_an_artifact_with_arrays_is_served_without_importing_scikit_learn_or_joblib(
    trained_artifact_dir: Path,
) -> None:
    lines = _in_a_fresh_interpreter(
        f"""
import sys
from pathlib import Path
from service.dataplane import load_model
model = load_model(Path({str(trained_artifact_dir)!r}))
print(model.predictor.name, model.estimator is None)
print(model.predictor.predict_one((5.1, 3.5, 1.4, 0.2))[0])
print(sorted(name for name in ("sklearn", "joblib", "scipy") if name in sys.modules))
"""
    )

    assert lines == ["logistic-regression-arrays True", "0", "[]"]


def _break(kind: str, directory: Path) -> None:
    if kind == "another scikit-learn":
        edit_metadata(directory, lambda m: m["versions"].update({"scikit-learn": "1.5.2"}))
    elif kind == "a class named twice":
        edit_metadata(directory, lambda m: m.update(class_names=["a", "a", "c"]))
    elif kind == "corrupted model file":
        data = (directory / MODEL_FILE).read_bytes()
        (directory / MODEL_FILE).write_bytes(data[: len(data) // 2])
    elif kind == "arrays of another shape":
        edit_metadata(directory, lambda m: m["fast_path"].update(intercept=[0.0, 1.0]))
    else:
        raise ValueError(kind)


BROKEN = (
    "another scikit-learn",
    "a class named twice",
    "corrupted model file",
    "arrays of another shape",
)


def test_bad_artifacts_are_refused_before_scikit_learn_or_joblib_is_imported(
    tmp_path: Path, trained_artifact_dir: Path
) -> None:
    directories = []
    for kind in BROKEN:
        broken = Path(shutil.copytree(trained_artifact_dir, tmp_path / kind.replace(" ", "-")))
        _break(kind, broken)
        directories.append(str(broken))

    lines = _in_a_fresh_interpreter(
        f"""
import sys
from pathlib import Path
from model.artifact import ArtifactError
from service.dataplane import load_model
for directory in {directories!r}:
    try:
        load_model(Path(directory))
        print("served")
    except ArtifactError as exc:
        print("refused:", exc)
print(sorted(name for name in ("sklearn", "joblib", "scipy") if name in sys.modules))
"""
    )

    assert len(lines) == len(BROKEN) + 1
    assert all(line.startswith("refused:") for line in lines[:-1]), lines
    assert "trained with scikit-learn 1.5.2" in lines[0]
    assert "class names ['a', 'a', 'c'] must be distinct" in lines[1]
    assert "is corrupted or truncated" in lines[2]
    assert "field 'fast_path' intercept must be (3,) finite numbers" in lines[3]
    assert lines[-1] == "[]"


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda f: f.update(kind="gradient-boosting"), "unknown kind 'gradient-boosting'"),
        (lambda f: f.update(coef=[[1.0, 2.0]] * 3), "coef must be (3, 4) finite numbers"),
        (lambda f: f.update(coef="fast"), "coef is not an array of numbers"),
        (lambda f: f.update(intercept=[1.0, "x", 2.0]), "intercept is not an array of numbers"),
        (lambda f: f.update(extra=1), "must hold exactly kind, coef and intercept"),
    ],
)
def test_malformed_arrays_are_refused_by_the_check(
    artifact: Path, change: Callable[[dict[str, Any]], None], fragment: str
) -> None:
    edit_metadata(artifact, lambda m: change(m["fast_path"]))
    with pytest.raises(ArtifactError, match="field 'fast_path'") as caught:
        check(artifact)
    assert fragment in str(caught.value)


def test_arrays_that_do_not_give_the_models_predictions_are_refused(artifact: Path) -> None:
    def nudge(metadata: dict[str, Any]) -> None:
        metadata["fast_path"]["intercept"][0] += 0.5

    edit_metadata(artifact, nudge)

    with pytest.raises(ArtifactError, match="do not reproduce the predictions recorded"):
        fast_predictor(artifact, check(artifact))
    # Where scikit-learn is at hand (the image build runs load): against the estimator.
    with pytest.raises(ArtifactError, match=r"do not give the predictions of .*model\.joblib"):
        load(artifact)


def test_an_artifact_without_arrays_is_unpickled_and_verified_instead(artifact: Path) -> None:
    from service.dataplane import load_model

    edit_metadata(artifact, lambda m: m.pop("fast_path"))

    assert check(artifact).fast_path is None
    assert fast_predictor(artifact, check(artifact)) is None
    served = load_model(artifact)
    assert served.estimator is not None
    # The fast path is still taken, after it reproduced the unpickled estimator.
    assert served.predictor.name == "logistic-regression-arrays"


@pytest.mark.parametrize(("n_classes", "n_features"), [(3, 4), (5, 2), (4, 7)])
def test_one_row_gives_the_block_paths_class_and_probabilities(
    n_classes: int, n_features: int
) -> None:
    rng = np.random.default_rng(n_classes * 10 + n_features)
    predictor = fastpath.LinearSoftmaxPredictor(
        rng.normal(size=(n_classes, n_features)), rng.normal(size=n_classes)
    )
    rows = fastpath.probe_rows(count=64, n_features=n_features)
    assert rows.shape == (64, n_features)
    indices, block = predictor.predict(rows.copy())

    for row, index, probabilities in zip(rows, indices, block, strict=True):
        one_index, one = predictor.predict_one(tuple(row.tolist()))
        assert one_index == index
        np.testing.assert_allclose(one, probabilities, rtol=1e-12, atol=1e-300)


def test_one_row_with_tied_scores_takes_the_first_class_as_argmax_does() -> None:
    # Classes 1 and 2 have the same weights: their scores tie on every row.
    predictor = fastpath.LinearSoftmaxPredictor(
        [[0.0, 0.0], [1.0, 2.0], [1.0, 2.0]], [0.0, 0.5, 0.5]
    )

    index, probabilities = predictor.predict_one((1.0, 1.0))

    assert index == 1 == int(predictor.predict(np.array([[1.0, 1.0]]))[0][0])
    assert probabilities[1] == probabilities[2]
