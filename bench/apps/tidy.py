"""A tidy FastAPI endpoint: async, a numpy row instead of pandas, one scikit-learn call.

It answers with the same fields as the service's /predict, so the two differ only
in how they get there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI

from bench.apps.common import Measurement, load_artifact
from model.artifact import CLASS_NAMES

state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    artifact = load_artifact()
    state["model"] = artifact.estimator
    state["version"] = artifact.metadata.model_version
    yield


app = FastAPI(lifespan=lifespan)


@app.post("/predict")
async def predict(item: Measurement) -> dict[str, Any]:
    row = np.array(
        [[item.sepal_length, item.sepal_width, item.petal_length, item.petal_width]],
        dtype=np.float64,
    )
    probabilities = state["model"].predict_proba(row)[0]
    index = int(probabilities.argmax())
    return {
        "species": CLASS_NAMES[index],
        "class_index": index,
        "probabilities": dict(zip(CLASS_NAMES, probabilities.tolist(), strict=True)),
        "model_version": state["version"],
    }
