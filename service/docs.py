"""/docs: Swagger UI served from this process, so the page works without internet access.

FastAPI's default page loads Swagger UI from a CDN (a floating major version, without an
integrity hash): blank on an air-gapped network, and whatever the CDN serves otherwise.
Here the page is FastAPI's own HTML (`get_swagger_ui_html`, its documented way to
self-host), pointed at the Swagger UI files that the pinned `fastapi-offline` package
ships; the lock holds that package by hash, so the files are fixed too. The examples
in the OpenAPI document show the served model's version and answers (`live_examples`).
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from model.artifact import CONTRACT
from service.dataplane import ServedModel, model_metadata
from service.errors import NotFoundError
from service.schemas import EXAMPLE_MODEL_VERSION, V2_INPUT_NAME, V2_MODEL_NAME

DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"
ASSETS: dict[str, str] = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}
"""The files the page loads, with their content types; nothing else is served."""


def _asset(name: str) -> bytes:
    return (files("fastapi_offline") / "static" / name).read_bytes()


def add_docs(app: FastAPI, title: str) -> None:
    """Serve Swagger UI at /docs, its files under /docs/assets/ (read once, at start)."""
    assets = {name: _asset(name) for name in ASSETS}
    page = get_swagger_ui_html(
        openapi_url=app.openapi_url or "/openapi.json",
        title=f"{title} - docs",
        swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
    ).body

    @app.get(DOCS_URL, include_in_schema=False)
    async def docs() -> Response:
        return HTMLResponse(page)

    @app.get(f"{ASSETS_URL}/{{name}}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        if name not in assets:
            raise NotFoundError(f"no such file: {ASSETS_URL}/{name}")
        # The files change only with the pinned package, i.e. with a new image.
        headers: dict[str, Any] = {"Cache-Control": "public, max-age=86400"}
        return Response(assets[name], media_type=ASSETS[name], headers=headers)


def live_examples(document: dict[str, Any], model: ServedModel) -> dict[str, Any]:
    """`document` with the served model in its examples: its version, rows, predictions,
    and its feature range in the descriptions.

    The examples are written once in service.schemas with a stand-in version and made-up
    probabilities; /docs should show what this server answers to the example requests.
    """
    raw = orjson.dumps(document).replace(EXAMPLE_MODEL_VERSION.encode(), model.version.encode())
    contract = model.codec.contract
    raw = raw.replace(CONTRACT.feature_range.encode(), contract.feature_range.encode())
    live: dict[str, Any] = orjson.loads(raw)
    schemas = live.get("components", {}).get("schemas", {})
    classes = contract.class_names
    rows = np.array(model.codec.schemas.example_rows, dtype=np.float64)
    # The predictor, not ServedModel.predict: examples must not count as predictions.
    indices, probabilities = model.predictor.predict(rows)
    predictions = [
        {
            "species": classes[index],
            "class_index": index,
            "probabilities": {
                name: round(value, 4) for name, value in zip(classes, row, strict=True)
            },
        }
        for index, row in zip(indices.tolist(), probabilities.tolist(), strict=True)
    ]
    examples = {
        "Prediction": predictions[0],
        "PredictResponse": {**predictions[0], "model_version": model.version},
        "BatchResponse": {"predictions": predictions, "model_version": model.version},
        "V2InferenceRequest": {
            "id": "42",
            "inputs": [
                {
                    "name": V2_INPUT_NAME,
                    "shape": list(rows.shape),
                    "datatype": "FP32",
                    "data": rows.ravel().tolist(),
                }
            ],
        },
        "V2ModelMetadata": orjson.loads(model_metadata(model)),
        "V2InferenceResponse": {
            "model_name": V2_MODEL_NAME,
            "model_version": model.version,
            "id": "42",
            "outputs": [
                {
                    "name": "label",
                    "shape": [len(rows)],
                    "datatype": "BYTES",
                    "data": [classes[i] for i in indices.tolist()],
                },
                {
                    "name": "probabilities",
                    "shape": list(probabilities.shape),
                    "datatype": "FP32",
                    "data": [round(value, 4) for value in probabilities.ravel().tolist()],
                },
            ],
        },
    }
    for name, example in examples.items():
        if name in schemas:
            schemas[name]["examples"] = [example]
    return live
