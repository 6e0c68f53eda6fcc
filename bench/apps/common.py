"""What the FastAPI baselines share: the request body and the artifact they load."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from model.artifact import Artifact, load


class Measurement(BaseModel):
    """One Iris flower, the body every tutorial posts."""

    sepal_length: float
    sepal_width: float
    petal_length: float
    petal_width: float


def load_artifact() -> Artifact:
    """The artifact named by IRIS_MODEL_DIR, the service's own setting."""
    return load(Path(os.environ.get("IRIS_MODEL_DIR", "artifacts/model")))
