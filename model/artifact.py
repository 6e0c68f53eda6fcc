"""The model artifact contract: a directory holding exactly model.joblib and metadata.json.

The metadata records what the model was trained on and with which libraries. `load`
refuses an artifact whose libraries differ from the running ones before it unpickles
anything: a scikit-learn pickle loaded under another scikit-learn can fail deep inside
the estimator (a `KeyError` on the first request, a crash-looping pod) or, worse, load
and predict differently. The only fix is to retrain in the serving environment, which
the message says.

Only load artifacts you built: unpickling runs code from the file. `check` makes every
check that needs no unpickling, without importing scikit-learn or joblib (the versions
come from the installed packages' metadata), so a bad artifact is refused in the time it
takes to read two files; `fast_predictor` serves an artifact whose fitted arrays were
exported at training (model.fastpath) without unpickling it at all.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.data import CLASS_NAMES, CONTRACT, FEATURE_NAMES, DataContract

if TYPE_CHECKING:
    from model.fastpath import LinearSoftmaxPredictor

__all__ = [
    "CLASS_NAMES",
    "CONTRACT",
    "FEATURE_NAMES",
    "METADATA_FILE",
    "MODEL_FILE",
    "SCHEMA_VERSION",
    "Artifact",
    "ArtifactError",
    "DataContract",
    "Metadata",
    "check",
    "contract_metadata",
    "fast_predictor",
    "load",
    "runtime_versions",
    "save",
]

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
SCHEMA_VERSION = 2
"""2 added label_name and feature_range: the service builds its API from the artifact."""

RETRAIN_HINT = "retrain with `make train` in this environment"

# Libraries whose versions must match exactly. scikit-learn pickles its private
# attributes, which change between releases; numpy's array pickles and joblib's
# container format follow their own versions. The lock pins all three and the
# image trains and serves from one environment, so any difference means the
# artifact was built somewhere else.
EXACT_LIBRARIES = ("scikit-learn", "numpy", "joblib")


class ArtifactError(Exception):
    """The artifact cannot be served; the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class Metadata:
    """Everything recorded about a trained model, stored as metadata.json."""

    schema_version: int
    model_version: str
    trained_at: str
    data_path: str
    data_sha256: str
    feature_names: list[str]
    class_names: list[str]
    label_name: str
    # The accepted feature values: {"greater_than": x, "at_most": y, "unit": "cm"}.
    feature_range: dict[str, Any]
    estimator: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    versions: dict[str, str]
    model_sha256: str
    # Rows with the probabilities the model gave at training time; `load` checks that
    # the loaded model still gives them.
    reference_predictions: list[dict[str, Any]] = field(default_factory=list)
    # The fitted arrays (model.fastpath), when the estimator has a fast path: the service
    # predicts from them without scikit-learn or unpickling. Absent: served from the pickle.
    fast_path: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The metadata as a JSON-serialisable dict."""
        return asdict(self)

    @property
    def contract(self) -> DataContract:
        """What the model takes and answers: features in order, their range, classes.

        Raises ValueError when the recorded names or range do not make a contract.
        """
        bounds = self.feature_range
        return DataContract(
            feature_names=tuple(self.feature_names),
            label_name=self.label_name,
            class_names=tuple(self.class_names),
            greater_than=float(bounds["greater_than"]),
            at_most=float(bounds["at_most"]),
            unit=str(bounds["unit"]),
        )


def contract_metadata(contract: DataContract) -> dict[str, Any]:
    """The Metadata fields that record `contract` (training writes them)."""
    return {
        "feature_names": list(contract.feature_names),
        "class_names": list(contract.class_names),
        "label_name": contract.label_name,
        "feature_range": {
            "greater_than": contract.greater_than,
            "at_most": contract.at_most,
            "unit": contract.unit,
        },
    }


@dataclass(frozen=True)
class Artifact:
    """A loaded, verified model."""

    estimator: Any
    metadata: Metadata
    path: Path


def runtime_versions() -> dict[str, str]:
    """Versions of Python and of the model libraries installed for this interpreter.

    Read from the packages' metadata rather than from the modules, so that checking an
    artifact imports none of them (scikit-learn alone takes most of the service's start).
    """
    versions = {"python": platform.python_version()}
    for library in EXACT_LIBRARIES:
        versions[library] = importlib.metadata.version(library)
    return versions


def model_version(
    data_sha256: str, estimator: str, params: dict[str, Any], versions: dict[str, str]
) -> str:
    """A short content hash: same data, estimator, parameters and libraries, same version."""
    blob = json.dumps(
        {"data": data_sha256, "estimator": estimator, "params": params, "versions": versions},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def save(directory: Path, estimator: Any, metadata: Metadata) -> None:
    """Write an artifact to `directory`, replacing any previous one only once it is complete.

    `metadata.model_sha256` is filled in here from the written model file.
    """
    import joblib

    directory = directory.resolve()
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        joblib.dump(estimator, staging / MODEL_FILE)
        digest = hashlib.sha256((staging / MODEL_FILE).read_bytes()).hexdigest()
        final = Metadata(**{**metadata.to_dict(), "model_sha256": digest})
        (staging / METADATA_FILE).write_text(
            json.dumps(final.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        if directory.exists():
            shutil.rmtree(directory)
        staging.replace(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def check(directory: Path) -> Metadata:
    """Every check of the artifact that needs no unpickling; its metadata, or ArtifactError.

    Checks, in order: the directory holds exactly model.joblib and metadata.json; the
    metadata follows the schema; Python (major.minor), scikit-learn, numpy and joblib
    equal the installed versions; the feature names, class names and range make a valid
    contract (the service serves whatever contract the artifact records); model.joblib
    has the recorded sha256 (so a truncated or corrupted file is caught before
    unpickling); exported fitted arrays, if any, have the expected form. Imports
    neither scikit-learn nor joblib.
    """
    directory = Path(directory)
    if not directory.is_dir():
        hint = _missing_hint(directory)
        raise ArtifactError(f"model artifact {directory} does not exist; {hint}")

    present = sorted(entry.name for entry in directory.iterdir())
    expected = sorted((MODEL_FILE, METADATA_FILE))
    if present != expected:
        missing = sorted(set(expected) - set(present))
        extra = sorted(set(present) - set(expected))
        details = []
        if missing:
            details.append(f"missing {', '.join(missing)}")
        if extra:
            details.append(f"unexpected {', '.join(extra)}")
        raise ArtifactError(
            f"model artifact {directory} must hold exactly {MODEL_FILE} and {METADATA_FILE} "
            f"({'; '.join(details)}); {RETRAIN_HINT}"
        )

    metadata = _read_metadata(directory / METADATA_FILE)
    _check_versions(directory, metadata)
    _check_contract(directory, metadata)

    model_path = directory / MODEL_FILE
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    if digest != metadata.model_sha256:
        raise ArtifactError(
            f"{model_path} is corrupted or truncated (sha256 {digest[:12]}..., metadata records "
            f"{metadata.model_sha256[:12]}...); {RETRAIN_HINT}"
        )
    if metadata.fast_path is not None:
        _fast_path_of(directory, metadata)
    return metadata


def load(directory: Path) -> Artifact:
    """Load and verify an artifact; raise ArtifactError naming the problem and the fix.

    After `check`: the model unpickles into a fitted classifier of the expected shape; it
    reproduces the reference predictions recorded at training; and exported fitted
    arrays, if any, give its predictions on probe rows.
    """
    directory = Path(directory)
    metadata = check(directory)
    model_path = directory / MODEL_FILE
    import joblib

    try:
        estimator = joblib.load(model_path)
    except Exception as exc:  # any unpickling failure means the same thing to the caller
        raise ArtifactError(
            f"{model_path} cannot be unpickled ({type(exc).__name__}: {exc}); {RETRAIN_HINT}"
        ) from exc

    _check_estimator(model_path, estimator, metadata, metadata.contract)
    if metadata.fast_path is not None:
        from model import fastpath

        fast = _fast_path_of(directory, metadata)
        reference = [ref["features"] for ref in metadata.reference_predictions]
        if not fastpath.agrees_with_estimator(fast, estimator, fastpath.probe_rows(reference)):
            raise ArtifactError(
                f"{directory / METADATA_FILE}: the exported fitted arrays (fast_path) do not "
                f"give the predictions of {model_path}; {RETRAIN_HINT}"
            )
    return Artifact(estimator=estimator, metadata=metadata, path=directory)


def fast_predictor(directory: Path, metadata: Metadata) -> LinearSoftmaxPredictor | None:
    """The predictor of the artifact's exported arrays, checked against the reference
    predictions recorded at training; None when the artifact has no usable export (no
    arrays, or no reference rows to check them on), so it must be served from the pickle.

    `metadata` is what `check(directory)` returned. Raises ArtifactError when the arrays
    do not reproduce the recorded predictions.
    """
    if metadata.fast_path is None or not metadata.reference_predictions:
        return None
    from model import fastpath

    fast = _fast_path_of(directory, metadata)
    if not fastpath.reproduces(fast, metadata.reference_predictions):
        raise ArtifactError(
            f"{directory / METADATA_FILE}: the exported fitted arrays (fast_path) do not "
            f"reproduce the predictions recorded at training time; {RETRAIN_HINT}"
        )
    return fast


def _fast_path_of(directory: Path, metadata: Metadata) -> LinearSoftmaxPredictor:
    from model import fastpath  # and numpy: only once every cheaper check has passed

    try:
        return fastpath.from_arrays(
            metadata.fast_path, len(metadata.class_names), len(metadata.feature_names)
        )
    except fastpath.FastPathError as exc:
        raise ArtifactError(
            f"{directory / METADATA_FILE}: field 'fast_path' {exc}; {RETRAIN_HINT}"
        ) from None


def _missing_hint(directory: Path) -> str:
    # model.train writes <out>/model: say the command that fills this very directory.
    if directory.name == "model":
        return (
            f"train one there with `python -m model.train --out {directory.parent}` "
            "(`make train` writes artifacts/model), or set IRIS_MODEL_DIR to an existing artifact"
        )
    return (
        "set IRIS_MODEL_DIR to an artifact directory (`make train` writes artifacts/model; "
        "`python -m model.train --out DIR` writes DIR/model)"
    )


def _read_metadata(path: Path) -> Metadata:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}); {RETRAIN_HINT}") from None
    if not isinstance(raw, dict):
        raise ArtifactError(f"{path} must hold a JSON object; {RETRAIN_HINT}")
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise ArtifactError(
            f"{path} has schema_version {raw.get('schema_version')!r}, this code reads "
            f"{SCHEMA_VERSION}; {RETRAIN_HINT}"
        )
    types: dict[str, type | tuple[type, ...]] = {
        "model_version": str,
        "trained_at": str,
        "data_path": str,
        "data_sha256": str,
        "feature_names": list,
        "class_names": list,
        "label_name": str,
        "feature_range": dict,
        "estimator": str,
        "params": dict,
        "metrics": dict,
        "versions": dict,
        "model_sha256": str,
        "reference_predictions": list,
    }
    optional: dict[str, type] = {"fast_path": dict}
    for key, optional_kind in optional.items():
        if raw.get(key) is not None and not isinstance(raw[key], optional_kind):
            raise ArtifactError(f"{path}: field {key!r} has the wrong type; {RETRAIN_HINT}")
    for key, kind in types.items():
        if key not in raw:
            raise ArtifactError(f"{path} lacks the field {key!r}; {RETRAIN_HINT}")
        if not isinstance(raw[key], kind):
            raise ArtifactError(f"{path}: field {key!r} has the wrong type; {RETRAIN_HINT}")
    unknown = sorted(set(raw) - set(types) - set(optional) - {"schema_version"})
    if unknown:
        raise ArtifactError(f"{path} has unknown field(s) {', '.join(unknown)}; {RETRAIN_HINT}")
    return Metadata(**raw)


def _check_versions(directory: Path, metadata: Metadata) -> None:
    running = runtime_versions()
    for library in EXACT_LIBRARIES:
        recorded = metadata.versions.get(library)
        if recorded != running[library]:
            raise ArtifactError(
                f"model artifact {directory} was trained with {library} {recorded}, but this "
                f"environment runs {library} {running[library]}; {RETRAIN_HINT}"
            )
    recorded_python = str(metadata.versions.get("python", ""))
    if recorded_python.split(".")[:2] != running["python"].split(".")[:2]:
        raise ArtifactError(
            f"model artifact {directory} was trained with Python {recorded_python}, but this "
            f"environment runs Python {running['python']}; {RETRAIN_HINT}"
        )


def _check_contract(directory: Path, metadata: Metadata) -> DataContract:
    try:
        return metadata.contract
    except (KeyError, TypeError, ValueError) as exc:
        detail = f"lacks {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ArtifactError(
            f"model artifact {directory}: features, classes or feature_range are not usable "
            f"({detail}); {RETRAIN_HINT}"
        ) from None


def _check_estimator(
    path: Path, estimator: Any, metadata: Metadata, contract: DataContract
) -> None:
    if not hasattr(estimator, "predict_proba") or not hasattr(estimator, "classes_"):
        raise ArtifactError(f"{path} does not hold a fitted classifier; {RETRAIN_HINT}")
    features = contract.feature_names
    if getattr(estimator, "n_features_in_", None) != len(features):
        raise ArtifactError(
            f"{path} was fitted on {getattr(estimator, 'n_features_in_', '?')} features, "
            f"its metadata names {len(features)} ({', '.join(features)}); {RETRAIN_HINT}"
        )
    classes = contract.class_names
    if len(estimator.classes_) != len(classes):
        raise ArtifactError(
            f"{path} predicts {len(estimator.classes_)} classes, its metadata names "
            f"{len(classes)} ({', '.join(classes)}); {RETRAIN_HINT}"
        )
    if [int(c) for c in estimator.classes_] != list(range(len(classes))):
        raise ArtifactError(
            f"{path} has classes {[int(c) for c in estimator.classes_]}, expected indices "
            f"0 to {len(classes) - 1}; {RETRAIN_HINT}"
        )
    if not metadata.reference_predictions:
        return
    import numpy as np

    rows = np.asarray([ref["features"] for ref in metadata.reference_predictions], dtype=np.float64)
    expected = np.asarray([ref["probabilities"] for ref in metadata.reference_predictions])
    actual = estimator.predict_proba(rows)
    if actual.shape != expected.shape or not np.allclose(actual, expected, rtol=0, atol=1e-9):
        raise ArtifactError(
            f"{path} no longer reproduces the predictions recorded at training time; {RETRAIN_HINT}"
        )
