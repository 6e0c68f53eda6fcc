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

from model.artifact import CLASS_NAMES, FEATURE_NAMES
from service.dataplane import ServedModel
from service.errors import NotFoundError
from service.schemas import EXAMPLE_MODEL_VERSION, EXAMPLE_ROW, EXAMPLE_ROW_2

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
    """`document` with the served model in its examples: its version, its predictions.

    The examples are written once in service.schemas with a stand-in version and made-up
    probabilities; /docs should show what this server answers to the example requests.
    """
    raw = orjson.dumps(document).replace(EXAMPLE_MODEL_VERSION.encode(), model.version.encode())
    live: dict[str, Any] = orjson.loads(raw)
    schemas = live.get("components", {}).get("schemas", {})
    rows = np.array([[row[name] for name in FEATURE_NAMES] for row in (EXAMPLE_ROW, EXAMPLE_ROW_2)])
    # The predictor, not ServedModel.predict: examples must not count as predictions.
    indices, probabilities = model.predictor.predict(rows)
    predictions = [
        {
            "species": CLASS_NAMES[index],
            "class_index": index,
            "probabilities": {
                name: round(value, 4) for name, value in zip(CLASS_NAMES, row, strict=True)
            },
        }
        for index, row in zip(indices.tolist(), probabilities.tolist(), strict=True)
    ]
    examples = {
        "Prediction": predictions[0],
        "PredictResponse": {**predictions[0], "model_version": model.version},
        "BatchResponse": {"predictions": predictions, "model_version": model.version},
    }
    for name, example in examples.items():
        if name in schemas:
            schemas[name]["examples"] = [example]
    return live
