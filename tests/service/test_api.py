"""The HTTP API in process: TestClient(create_app(settings)), startup and all."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from model.artifact import CLASS_NAMES, ArtifactError, load
from service import metrics
from service.app import create_app
from service.settings import Settings
from tests.service.support import make_client

SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
VIRGINICA = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}


def _expected(model_dir: Path, rows: list[dict[str, float]]) -> tuple[list[int], np.ndarray]:
    estimator = load(model_dir).estimator
    features = np.array([list(row.values()) for row in rows], dtype=np.float64)
    return [int(i) for i in estimator.predict(features)], estimator.predict_proba(features)


def test_predict_returns_species_index_probabilities_and_version(
    client: TestClient, service_settings: Settings
) -> None:
    response = client.post("/predict", json=SETOSA)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"species", "class_index", "probabilities", "model_version"}
    classes, probabilities = _expected(service_settings.model_dir, [SETOSA])
    assert body["class_index"] == classes[0]
    assert body["species"] == CLASS_NAMES[classes[0]]
    assert list(body["probabilities"]) == list(CLASS_NAMES)
    np.testing.assert_allclose(list(body["probabilities"].values()), probabilities[0], rtol=1e-12)
    assert body["model_version"] == load(service_settings.model_dir).metadata.model_version


def test_predict_with_and_without_trailing_slash_answer_alike_without_redirect(
    client: TestClient,
) -> None:
    plain = client.post("/predict", json=VIRGINICA, follow_redirects=False)
    slash = client.post("/predict/", json=VIRGINICA, follow_redirects=False)

    assert plain.status_code == slash.status_code == 200
    assert plain.json() == slash.json()


def test_predict_accepts_fields_in_any_order_and_integers(client: TestClient) -> None:
    shuffled = {"petal_width": 2, "sepal_width": 3, "petal_length": 5, "sepal_length": 7}
    ordered = {"sepal_length": 7.0, "sepal_width": 3.0, "petal_length": 5.0, "petal_width": 2.0}

    assert (
        client.post("/predict", json=shuffled).json()
        == client.post("/predict", json=ordered).json()
    )


def test_predict_accepts_json_with_charset_and_without_content_type(client: TestClient) -> None:
    body = json.dumps(SETOSA).encode()
    with_charset = client.post(
        "/predict", content=body, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    # Inference clients such as tritonclient send no Content-Type at all.
    bare = client.build_request("POST", "/predict", content=body)
    assert "content-type" not in bare.headers

    assert with_charset.status_code == 200
    assert client.send(bare).status_code == 200


def test_batch_returns_predictions_in_request_order(
    client: TestClient, service_settings: Settings
) -> None:
    rows = [SETOSA, VIRGINICA, SETOSA, VIRGINICA, VIRGINICA]

    response = client.post("/predict/batch", json={"instances": rows})

    assert response.status_code == 200
    body = response.json()
    classes, probabilities = _expected(service_settings.model_dir, rows)
    assert [p["class_index"] for p in body["predictions"]] == classes
    assert [p["species"] for p in body["predictions"]] == [CLASS_NAMES[i] for i in classes]
    got = [list(p["probabilities"].values()) for p in body["predictions"]]
    np.testing.assert_allclose(got, probabilities, rtol=1e-12)


def test_batch_over_row_limit_is_413_naming_the_setting(service_settings: Settings) -> None:
    settings = service_settings.model_copy(update={"max_batch_rows": 3})
    with make_client(settings) as small:
        ok = small.post("/predict/batch", json={"instances": [SETOSA] * 3})
        too_many = small.post("/predict/batch", json={"instances": [SETOSA] * 4})
        v2 = small.post(
            "/v2/models/iris/infer",
            json={
                "inputs": [{"name": "x", "shape": [4, 4], "datatype": "FP32", "data": [1.0] * 16}]
            },
        )

    assert ok.status_code == 200
    assert too_many.status_code == 413
    assert "IRIS_MAX_BATCH_ROWS" in too_many.json()["detail"]
    assert v2.status_code == 413
    assert "IRIS_MAX_BATCH_ROWS" in v2.json()["error"]


def test_body_over_size_limit_is_413_before_parsing(client: TestClient) -> None:
    padding = " " * 70_000  # valid JSON whitespace: only the size is wrong
    response = client.post(
        "/predict",
        content=(json.dumps(SETOSA) + padding).encode(),
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 413
    assert "IRIS_MAX_BODY_BYTES" in response.json()["detail"]


def test_body_over_size_limit_without_content_length_is_413(client: TestClient) -> None:
    def chunks():  # streamed: no Content-Length, the limit applies while reading
        yield json.dumps(SETOSA).encode()
        for _ in range(20):
            yield b" " * 4096

    response = client.post(
        "/v2/models/iris/infer", content=chunks(), headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 413
    assert "IRIS_MAX_BODY_BYTES" in response.json()["error"]


def test_health_endpoints_report_a_loaded_model(client: TestClient) -> None:
    assert client.get("/livez").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok"}
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2/models/iris/ready").json() == {"ready": True}


def test_a_preloaded_model_is_served_without_loading_again_once_the_worker_starts(
    trained_artifact_dir: Path, tmp_path: Path
) -> None:
    artifact = tmp_path / "model"
    shutil.copytree(trained_artifact_dir, artifact)
    app = create_app(Settings(model_dir=artifact, log_format="json"))
    app.preload()  # what the gunicorn master does before it forks
    preloaded = app.preloaded
    assert preloaded is not None
    # Gone from disk: a worker that loaded it again would fail its startup.
    shutil.rmtree(artifact)

    # A worker not started yet (no lifespan) is not ready, preloaded model or not.
    assert TestClient(app).get("/readyz").json() == {"status": "loading"}
    with TestClient(app) as worker:
        assert worker.get("/readyz").json() == {"status": "ok"}
        assert app.state.model is preloaded
        assert worker.post("/predict", json=SETOSA).json()["species"] == "setosa"


def test_a_broken_artifact_fails_the_preload_with_the_artifact_message(tmp_path: Path) -> None:
    app = create_app(Settings(model_dir=tmp_path / "nowhere"))

    with pytest.raises(ArtifactError, match="does not exist"):
        app.preload()
    assert app.preloaded is None


def test_readyz_is_503_while_draining(service_settings: Settings) -> None:
    with make_client(service_settings) as draining:
        draining.app.state.draining = True  # type: ignore[attr-defined]
        assert draining.get("/readyz").status_code == 503
        assert draining.get("/readyz").json() == {"status": "draining"}
        assert draining.get("/v2/health/ready").status_code == 503
        # Draining still serves: in-flight and late requests complete.
        assert draining.post("/predict", json=SETOSA).status_code == 200
        assert draining.get("/livez").status_code == 200


def test_version_reports_model_metadata_and_git_revision(service_settings: Settings) -> None:
    settings = service_settings.model_copy(update={"git_revision": "0123abc"})
    with make_client(settings) as versioned:
        body = versioned.get("/version").json()

    metadata = load(service_settings.model_dir).metadata
    assert body["git_revision"] == "0123abc"
    assert body["model_version"] == metadata.model_version
    assert body["model"] == json.loads(json.dumps(metadata.to_dict()))
    assert body["inference"] == "logistic-regression-arrays"


def test_metrics_count_requests_predictions_and_model_info(client: TestClient) -> None:
    def sample(text: str, prefix: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
        )

    # In process the metrics live in this process's registry; a server answers them on
    # IRIS_METRICS_PORT (test_server.py).
    before = metrics.render()[0].decode()
    for _ in range(3):
        client.post("/predict", json=VIRGINICA)
    client.post("/predict", json={"sepal_length": -1})
    client.post("/predict", content=b"5.1", headers={"Content-Type": "text/plain"})
    client.get("/no/such/path")
    text, content_type = metrics.render()[0].decode(), metrics.render()[1]

    assert content_type.startswith("text/plain")
    ok = 'iris_http_requests_total{method="POST",route="/predict",status="200"}'
    bad = 'iris_http_requests_total{method="POST",route="/predict",status="422"}'
    assert sample(text, ok) - sample(before, ok) == 3
    assert sample(text, bad) - sample(before, bad) == 1
    media = 'iris_http_requests_total{method="POST",route="/predict",status="415"}'
    assert sample(text, media) - sample(before, media) == 1
    unknown = 'iris_http_requests_total{method="GET",route="unmatched",status="404"}'
    assert sample(text, unknown) - sample(before, unknown) == 1
    virginica = 'iris_predictions_total{species="virginica"}'
    assert sample(text, virginica) - sample(before, virginica) == 3
    assert (
        'iris_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/predict"'
        in text
    )
    assert "iris_model_info{" in text


def test_every_response_carries_a_request_id_and_a_given_one_is_kept(client: TestClient) -> None:
    generated = client.get("/livez").headers["x-request-id"]
    kept = client.get("/livez", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"]
    unsafe = client.get("/livez", headers={"X-Request-ID": "a b;<c>"}).headers["x-request-id"]

    assert len(generated) == 16
    assert kept == "abc-123"
    assert len(unsafe) == 16  # replaced, not echoed into logs


def test_one_json_log_line_per_request_without_the_body(
    client: TestClient, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="iris.access")  # the server's logging config does this
    capsys.readouterr()
    client.post("/predict", json=SETOSA, headers={"X-Request-ID": "req-1"})
    client.post("/predict", json={"sepal_length": 123456.789}, headers={"X-Request-ID": "req-2"})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    requests = [line for line in lines if line["logger"] == "iris.access"]
    assert [line["request_id"] for line in requests] == ["req-1", "req-2"]
    ok, bad = requests
    assert ok["level"] == "info"
    assert ok["status"] == 200
    assert {"ts", "method", "path", "status", "duration_ms", "model_version"} <= set(ok)
    assert ok["method"] == "POST"
    assert ok["path"] == "/predict"
    # A client error is INFO, with no traceback, and the request body never appears.
    assert bad["level"] == "info"
    assert bad["status"] == 422
    assert "exception" not in bad
    assert "123456" not in json.dumps(lines)


def test_request_log_obeys_the_log_level(
    client: TestClient, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="iris.access")
    capsys.readouterr()
    client.post("/predict", json=SETOSA)
    client.post("/predict", json={})

    assert capsys.readouterr().out == ""


def test_no_cors_headers_by_default(client: TestClient) -> None:
    preflight = client.options(
        "/predict",
        headers={"Origin": "https://example.com", "Access-Control-Request-Method": "POST"},
    )
    simple = client.post("/predict", json=SETOSA, headers={"Origin": "https://example.com"})

    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in simple.headers


def test_docs_can_be_switched_off(service_settings: Settings) -> None:
    with make_client(service_settings) as with_docs:
        assert with_docs.get("/docs").status_code == 200
    settings = service_settings.model_copy(update={"docs_enabled": False})
    with make_client(settings) as without_docs:
        assert without_docs.get("/docs").status_code == 404
        assert without_docs.get("/openapi.json").status_code == 200


def test_openapi_documents_every_endpoint_with_examples(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    paths = document["paths"]
    expected = {
        ("/predict", "post"),
        ("/predict/batch", "post"),
        ("/livez", "get"),
        ("/readyz", "get"),
        ("/version", "get"),
        ("/v2", "get"),
        ("/v2/health/live", "get"),
        ("/v2/health/ready", "get"),
        ("/v2/models/{model_name}", "get"),
        ("/v2/models/{model_name}/ready", "get"),
        ("/v2/models/{model_name}/infer", "post"),
    }
    assert expected <= {(path, method) for path, ops in paths.items() for method in ops}
    schemas = document["components"]["schemas"]
    for name in ("Measurement", "BatchRequest", "PredictResponse", "V2InferenceRequest"):
        assert schemas[name].get("examples"), f"{name} has no example"
    measurement = schemas["Measurement"]["properties"]["petal_width"]
    assert measurement["exclusiveMinimum"] == 0
    assert measurement["maximum"] == 100


def test_a_missing_artifact_fails_startup_with_only_the_artifact_message(tmp_path: Path) -> None:
    app = create_app(Settings(model_dir=tmp_path / "nowhere"))
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "lifespan.startup"}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    # What uvicorn does at worker boot: the lifespan protocol, by hand.
    with pytest.raises(ArtifactError, match="does not exist"):
        asyncio.run(app({"type": "lifespan", "state": {}}, receive, send))

    assert [message["type"] for message in sent] == ["lifespan.startup.failed"]
    reported = sent[0]["message"]
    assert reported.startswith("cannot serve the model: model artifact")
    assert "does not exist" in reported
    assert "make train" in reported
    assert "\n" not in reported
    assert "Traceback" not in reported


def test_importing_the_app_module_needs_no_model(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "import service.app; print(type(service.app.app).__name__)"],
        cwd=Path(__file__).resolve().parents[2],
        env={"IRIS_MODEL_DIR": str(tmp_path / "nowhere"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "IrisApp"


def test_the_api_port_serves_no_metrics(client: TestClient) -> None:
    # /metrics lives on IRIS_METRICS_PORT, which the Service never exposes.
    assert client.get("/metrics").status_code == 404
