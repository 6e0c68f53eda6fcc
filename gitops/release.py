"""The release record: which image the environments run, and what the model inside it is.

`deploy/release/release.yaml` is written by `set-image` together with the image entry, from
the trained artifact's `metadata.json`, so the two can never disagree. Production reads it at
its pinned commit, staging at the tip of main; `status` and the promotion pull request show
it. It is not a Kubernetes object and kustomize never reads it.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from gitops.errors import GitOpsError
from gitops.imageref import ImageRef

RELEASE_DIR = "deploy/release"
RELEASE_KUSTOMIZATION = f"{RELEASE_DIR}/kustomization.yaml"
RELEASE_RECORD = f"{RELEASE_DIR}/release.yaml"

_HEADER = """\
# The release record, written by `python -m gitops set-image` together with the image entry
# in kustomization.yaml; do not edit it by hand. `python -m gitops status` shows it per
# environment, and a promotion pull request compares it with production's.
"""
# metadata.json metric -> release record key, in the order shown.
_METRICS = {
    "holdout_accuracy": "holdoutAccuracy",
    "holdout_macro_f1": "holdoutMacroF1",
    "cv_accuracy_mean": "cvAccuracyMean",
    "cv_accuracy_std": "cvAccuracyStd",
}


@dataclass(frozen=True)
class ModelRecord:
    """What the release's model artifact says about itself."""

    version: str
    estimator: str
    trained_at: str
    class_names: tuple[str, ...]
    data_path: str
    data_sha256: str
    metrics: dict[str, float]

    @property
    def data_version(self) -> str:
        """The data directory's name (data/<version>/data.csv), else the file path."""
        parts = Path(self.data_path).parts
        return parts[-2] if len(parts) >= 2 else self.data_path


@dataclass(frozen=True)
class ReleaseRecord:
    """The contents of release.yaml."""

    image: str
    source_commit: str | None
    model: ModelRecord | None

    def to_json(self) -> dict[str, Any]:
        """The record as `status --json` prints it."""
        model = self.model
        return {
            "image": self.image,
            "source_commit": self.source_commit,
            "model": None
            if model is None
            else {
                "version": model.version,
                "estimator": model.estimator,
                "trained_at": model.trained_at,
                "class_names": list(model.class_names),
                "data_path": model.data_path,
                "data_sha256": model.data_sha256,
                "metrics": dict(model.metrics),
            },
        }


def _require(data: dict[str, Any], key: str, kind: type, label: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise GitOpsError(f"{label}: {key} is missing or not a {kind.__name__}")
    return value


def model_from_metadata(path: Path) -> ModelRecord:
    """Read an artifact's metadata.json (or the artifact directory holding it)."""
    if path.is_dir():
        path = path / "metadata.json"
    label = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise GitOpsError(f"{label}: no such file (the artifact's metadata.json)") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GitOpsError(f"{label}: not a JSON metadata file: {exc}") from exc
    if not isinstance(data, dict):
        raise GitOpsError(f"{label}: not a JSON object")
    metrics_in = _require(data, "metrics", dict, label)
    metrics: dict[str, float] = {}
    for key, name in _METRICS.items():
        value = metrics_in.get(key)
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
        ):
            raise GitOpsError(f"{label}: metrics.{key} is missing or not a number")
        metrics[name] = float(value)
    classes = _require(data, "class_names", list, label)
    if not classes or not all(isinstance(name, str) for name in classes):
        raise GitOpsError(f"{label}: class_names is not a list of names")
    return ModelRecord(
        version=_require(data, "model_version", str, label),
        estimator=_require(data, "estimator", str, label),
        trained_at=_require(data, "trained_at", str, label),
        class_names=tuple(classes),
        data_path=_require(data, "data_path", str, label),
        data_sha256=_require(data, "data_sha256", str, label),
        metrics=metrics,
    )


def render_record(ref: ImageRef, source_commit: str | None, model: ModelRecord | None) -> str:
    """The text of release.yaml for a release of `ref`."""
    body: dict[str, Any] = {"image": str(ref), "sourceCommit": source_commit}
    if model is not None:
        body["model"] = {
            "version": model.version,
            "estimator": model.estimator,
            "trainedAt": model.trained_at,
            "classNames": list(model.class_names),
            "data": {"path": model.data_path, "sha256": model.data_sha256},
            "metrics": dict(model.metrics),
        }
    else:
        body["model"] = None
    return _HEADER + _dump(body)


def _dump(body: dict[str, Any]) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    yaml.width = 4096
    out = io.StringIO()
    yaml.dump(body, out)
    return out.getvalue()


def parse_record(text: str, *, label: str) -> ReleaseRecord:
    """Parse release.yaml; GitOpsError naming the file if it is malformed."""
    try:
        data = YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        raise GitOpsError(f"{label}: malformed YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise GitOpsError(f"{label}: not a mapping")
    image = _require(data, "image", str, label)
    commit = data.get("sourceCommit")
    model_data = data.get("model")
    model = None
    if isinstance(model_data, dict):
        metrics = model_data.get("metrics") or {}
        file = model_data.get("data") or {}
        model = ModelRecord(
            version=str(model_data.get("version", "")),
            estimator=str(model_data.get("estimator", "")),
            trained_at=str(model_data.get("trainedAt", "")),
            class_names=tuple(str(c) for c in model_data.get("classNames") or []),
            data_path=str(file.get("path", "")),
            data_sha256=str(file.get("sha256", "")),
            metrics={str(k): float(v) for k, v in metrics.items() if isinstance(v, int | float)},
        )
    return ReleaseRecord(image, None if commit is None else str(commit), model)
