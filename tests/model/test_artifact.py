"""The artifact refuses to load anywhere it would not predict exactly as it was trained to."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import pytest
import sklearn
from sklearn.tree import DecisionTreeClassifier

from model.artifact import (
    CLASS_NAMES,
    FEATURE_NAMES,
    METADATA_FILE,
    MODEL_FILE,
    ArtifactError,
    load,
    runtime_versions,
)
from tests.model.support import edit_metadata

RETRAIN = "retrain with `make train` in this environment"


def test_trained_artifact_loads_with_complete_metadata(trained_artifact_dir: Path) -> None:
    loaded = load(trained_artifact_dir)
    meta = loaded.metadata
    assert tuple(meta.feature_names) == FEATURE_NAMES
    assert tuple(meta.class_names) == CLASS_NAMES
    assert meta.versions == runtime_versions()
    assert set(meta.versions) == {"python", "scikit-learn", "numpy", "joblib"}
    assert len(meta.model_version) == 12
    assert len(meta.data_sha256) == 64
    assert meta.estimator == "LogisticRegression"
    assert meta.params["random_state"] == 42
    assert meta.trained_at.endswith("Z")
    assert len(meta.reference_predictions) == len(CLASS_NAMES)
    assert loaded.estimator.predict([[5.1, 3.5, 1.4, 0.2]]).tolist() == [0]


def test_artifact_from_another_scikit_learn_is_refused_naming_both_versions(artifact: Path) -> None:
    edit_metadata(artifact, lambda m: m["versions"].update({"scikit-learn": "1.5.2"}))
    with pytest.raises(ArtifactError) as caught:
        load(artifact)
    message = str(caught.value)
    assert "trained with scikit-learn 1.5.2" in message
    assert f"this environment runs scikit-learn {sklearn.__version__}" in message
    assert RETRAIN in message


@pytest.mark.parametrize(
    ("library", "recorded"), [("numpy", "1.26.4"), ("joblib", "1.3.2"), ("Python", "3.12.1")]
)
def test_artifact_from_other_libraries_is_refused(
    artifact: Path, library: str, recorded: str
) -> None:
    key = library.lower()
    edit_metadata(artifact, lambda m: m["versions"].update({key: recorded}))
    with pytest.raises(ArtifactError, match=re.escape(f"trained with {library} {recorded}")):
        load(artifact)


def test_python_patch_release_difference_is_accepted(artifact: Path) -> None:
    major_minor = ".".join(runtime_versions()["python"].split(".")[:2])
    edit_metadata(artifact, lambda m: m["versions"].update({"python": f"{major_minor}.999"}))
    assert load(artifact).metadata.versions["python"].endswith(".999")


@pytest.mark.parametrize("keep", [MODEL_FILE, METADATA_FILE])
def test_missing_file_is_refused(artifact: Path, keep: str) -> None:
    for name in (MODEL_FILE, METADATA_FILE):
        if name != keep:
            (artifact / name).unlink()
    with pytest.raises(
        ArtifactError, match=r"must hold exactly model\.joblib and metadata\.json \(missing"
    ):
        load(artifact)


def test_unexpected_extra_file_is_refused(artifact: Path) -> None:
    (artifact / "model-old.joblib").write_bytes(b"")
    with pytest.raises(ArtifactError, match=r"unexpected model-old\.joblib"):
        load(artifact)


def test_missing_directory_is_refused_with_a_fix_that_fills_that_directory(
    tmp_path: Path,
) -> None:
    with pytest.raises(ArtifactError, match="does not exist") as other:
        load(tmp_path / "nowhere")
    assert "set IRIS_MODEL_DIR to an artifact directory" in str(other.value)
    # model.train writes <out>/model: for such a directory the hint names the exact command.
    with pytest.raises(ArtifactError) as model_dir:
        load(tmp_path / "elsewhere" / "model")
    assert f"`python -m model.train --out {tmp_path / 'elsewhere'}`" in str(model_dir.value)


def test_truncated_model_file_is_refused_before_unpickling(artifact: Path) -> None:
    data = (artifact / MODEL_FILE).read_bytes()
    (artifact / MODEL_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="is corrupted or truncated") as caught:
        load(artifact)
    assert RETRAIN in str(caught.value)


def test_unreadable_pickle_with_matching_checksum_gives_a_clear_message(artifact: Path) -> None:
    """Even if someone updates the checksum, joblib's own failure is wrapped, not leaked."""
    garbage = b"this is not a pickle"
    (artifact / MODEL_FILE).write_bytes(garbage)
    edit_metadata(
        artifact, lambda m: m.update({"model_sha256": hashlib.sha256(garbage).hexdigest()})
    )
    with pytest.raises(ArtifactError, match=r"cannot be unpickled \("):
        load(artifact)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda m: m.update({"schema_version": 99}), "schema_version 99"),
        (lambda m: m.pop("data_sha256"), "lacks the field 'data_sha256'"),
        (lambda m: m.update({"metrics": []}), "field 'metrics' has the wrong type"),
        (lambda m: m.update({"colour": "blue"}), "unknown field(s) colour"),
        (
            lambda m: m.update({"feature_names": ["a", "b", "c"], "fast_path": None}),
            "fitted on 4 features, its metadata names 3 (a, b, c)",
        ),
        (
            lambda m: m.update({"class_names": ["x", "y"], "fast_path": None}),
            "predicts 3 classes, its metadata names 2 (x, y)",
        ),
        (
            # With exported arrays the mismatch is caught before unpickling.
            lambda m: m.update({"feature_names": ["a", "b", "c"]}),
            "field 'fast_path' coef must be (3, 3) finite numbers",
        ),
        (
            lambda m: m.update({"feature_names": ["a", "b", "a", "d"]}),
            "feature names ['a', 'b', 'a', 'd'] must be distinct",
        ),
        (lambda m: m.update({"feature_names": ["a", "b", "c", "d e"]}), "'d e' is not a name"),
        (lambda m: m["feature_range"].pop("at_most"), "lacks 'at_most'"),
        (lambda m: m["feature_range"].update({"at_most": -1.0}), "empty feature range (0, -1]"),
    ],
    ids=[
        "schema-version",
        "missing-field",
        "wrong-type",
        "unknown-field",
        "feature-count",
        "class-count",
        "feature-count-of-the-arrays",
        "duplicate-feature",
        "feature-not-a-name",
        "range-bound-missing",
        "range-empty",
    ],
)
def test_malformed_metadata_is_refused(
    artifact: Path, change: Callable[[dict[str, Any]], None], fragment: str
) -> None:
    edit_metadata(artifact, change)
    with pytest.raises(ArtifactError) as caught:
        load(artifact)
    assert fragment in str(caught.value)


def test_metadata_that_is_not_json_is_refused(artifact: Path) -> None:
    (artifact / METADATA_FILE).write_text("{not json")
    with pytest.raises(ArtifactError, match="is not valid JSON"):
        load(artifact)


def test_model_that_no_longer_reproduces_its_reference_predictions_is_refused(
    artifact: Path,
) -> None:
    """A different fitted model swapped in under the same metadata is caught by the self-check."""
    from model.data import load_dataset

    dataset = load_dataset(Path(__file__).resolve().parents[2] / "data" / "v2" / "data.csv")
    impostor = DecisionTreeClassifier(max_depth=1, random_state=0).fit(
        dataset.features, dataset.labels
    )
    joblib.dump(impostor, artifact / MODEL_FILE)
    digest = hashlib.sha256((artifact / MODEL_FILE).read_bytes()).hexdigest()
    edit_metadata(artifact, lambda m: m.update({"model_sha256": digest}))
    with pytest.raises(ArtifactError, match="no longer reproduces the predictions"):
        load(artifact)
