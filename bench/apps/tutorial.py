"""The endpoint most tutorials write: a one-row DataFrame, then `predict`.

A tutorial trains on a DataFrame, so its estimator carries feature names and
scikit-learn checks them on every call; giving this worker's copy of the estimator
the same names reproduces that cost without a warning on every request. The
endpoint is a plain `def`, as tutorials write it, so FastAPI runs it in a thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]  # the lock ships no pandas stubs
from fastapi import FastAPI

from bench.apps.common import Measurement, load_artifact
from model.artifact import CLASS_NAMES, FEATURE_NAMES

state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    estimator = load_artifact().estimator
    estimator.feature_names_in_ = np.asarray(FEATURE_NAMES, dtype=object)
    state["model"] = estimator
    yield


app = FastAPI(lifespan=lifespan)


@app.post("/predict")
def predict(item: Measurement) -> dict[str, str]:
    frame = pd.DataFrame([item.model_dump()])
    prediction = state["model"].predict(frame)[0]
    return {"species": CLASS_NAMES[int(prediction)]}
