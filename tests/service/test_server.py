"""The real thing: `python -m service` (gunicorn, uvicorn workers) on a loopback port.

The Open Inference Protocol endpoints are driven with tritonclient's HTTP client, a
client this project did not write.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.http import read_response, request
from harness.servers import ServiceServer, service_server, start_service
from model.artifact import CLASS_NAMES, load

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("service-server")]

SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def _triton_client(server: ServiceServer) -> Any:
    import tritonclient.http as triton

    return triton.InferenceServerClient(url=f"127.0.0.1:{server.port}", network_timeout=10)


def test_v2_protocol_through_tritonclient(
    server: ServiceServer, trained_artifact_dir: Path
) -> None:
    import tritonclient.http as triton

    artifact = load(trained_artifact_dir)
    rng = np.random.default_rng(7)
    features = rng.uniform(0.1, 8.0, size=(25, 4)).astype(np.float32)
    client = _triton_client(server)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("iris")
        assert not client.is_model_ready("resnet")
        metadata = client.get_model_metadata("iris")
        assert metadata["name"] == "iris"
        assert metadata["versions"] == [artifact.metadata.model_version]
        assert metadata["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}]
        assert client.get_server_metadata()["name"] == "iris-api"

        # tritonclient's defaults: binary tensors both ways (Triton's binary extension).
        tensor = triton.InferInput("features", list(features.shape), "FP32")
        tensor.set_data_from_numpy(features)
        outputs = [
            triton.InferRequestedOutput("label"),
            triton.InferRequestedOutput("probabilities"),
        ]
        result = client.infer("iris", [tensor], outputs=outputs, request_id="req-7")
        # No outputs named: tritonclient asks for all of them in binary.
        everything = client.infer("iris", [tensor])
        # And JSON tensors, for clients that ask for them.
        as_json = triton.InferInput("features", list(features.shape), "FP32")
        as_json.set_data_from_numpy(features, binary_data=False)
        json_outputs = [
            triton.InferRequestedOutput("label", binary_data=False),
            triton.InferRequestedOutput("probabilities", binary_data=False),
        ]
        json_result = client.infer("iris", [as_json], outputs=json_outputs)
    finally:
        client.close()

    served = features.astype(np.float64)  # the exact values the client sent
    expected_classes = artifact.estimator.predict(served)
    expected_probabilities = artifact.estimator.predict_proba(served)
    for answer in (result, everything, json_result):
        labels = [
            label.decode() if isinstance(label, bytes) else str(label)
            for label in answer.as_numpy("label")
        ]
        assert labels == [CLASS_NAMES[i] for i in expected_classes]
        probabilities = answer.as_numpy("probabilities")
        assert probabilities.dtype == np.float32
        assert probabilities.shape == (25, 3)
        np.testing.assert_allclose(probabilities, expected_probabilities, rtol=1e-6, atol=1e-7)
    # Binary and JSON tensors carry the same float32 values, bit for bit.
    np.testing.assert_array_equal(
        result.as_numpy("probabilities"), json_result.as_numpy("probabilities")
    )
    binary_outputs = result.get_response()["outputs"]
    assert all("data" not in output for output in binary_outputs)
    assert [o["parameters"]["binary_data_size"] for o in binary_outputs][1] == 25 * 3 * 4
    response = result.get_response()
    assert response["id"] == "req-7"
    assert response["model_version"] == artifact.metadata.model_version


def test_tritonclient_sees_unknown_model_as_protocol_error(server: ServiceServer) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    client = _triton_client(server)
    tensor = triton.InferInput("features", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], np.float32))
    try:
        with pytest.raises(InferenceServerException, match="unknown model 'resnet'"):
            client.infer("resnet", [tensor])
        bad = triton.InferInput("features", [1, 3], "FP32")
        bad.set_data_from_numpy(np.array([[5.1, 3.5, 1.4]], np.float32))
        with pytest.raises(InferenceServerException, match=r"shape must be \[N, 4\]"):
            client.infer("iris", [bad])
        out_of_range = triton.InferInput("features", [1, 4], "FP32")
        out_of_range.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, -1.0]], np.float32))
        with pytest.raises(InferenceServerException, match=r"petal_width = -1\.0 is outside"):
            client.infer("iris", [out_of_range])
    finally:
        client.close()


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if all(found.get(key) == value for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_add_up_across_both_workers(tmp_path: Path, trained_artifact_dir: Path) -> None:
    # A server of its own: every count starts at zero, whatever other tests sent.
    server = start_service(trained_artifact_dir, tmp_path, workers=2)
    try:
        body = json.dumps(SETOSA).encode()
        sent = 60
        for _ in range(sent):  # a new connection each: the kernel spreads them over the workers
            assert server.post("/predict", body)[0] == 200
        labels = {"route": "/predict", "method": "POST", "status": "200"}
        wanted = {
            ("iris_http_requests_total", frozenset(labels.items())): sent,
            ("iris_http_request_duration_seconds_count", frozenset(labels.items())): sent,
            ("iris_predictions_total", frozenset({("species", "setosa")})): sent,
        }

        def counted(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
            return {(name, chosen): _metric(text, name, **dict(chosen)) for name, chosen in wanted}

        # Wait for the last answer's turn to end (at most 10 s), then compare exactly: too
        # few means updates were lost, too many that some were written twice.
        status, after = server.metrics_when(lambda text: min(counted(text).values()) >= sent)

        assert status == 200
        assert counted(after) == wanted
        # Reported once, not once per worker.
        assert sum(line.startswith("iris_model_info{") for line in after.splitlines()) == 1
        # Both workers served some of them: each wrote its own counter file.
        writers = {path.name for path in server.metrics_dir.glob("counter_*.db")}
        assert len(writers) >= 2, writers
    finally:
        server.stop()


def test_workers_serve_the_exported_arrays_without_scikit_learn_or_pandas(
    server: ServiceServer,
) -> None:
    workers = server.workers()
    assert len(workers) == 2
    assert json.loads(server.get("/version")[1])["inference"] == "logistic-regression-arrays"
    for pid in workers:
        mapped = Path(f"/proc/{pid}/maps").read_text()
        assert "/numpy/" in mapped, "the check must see the worker's native libraries"
        assert "/sklearn/" not in mapped
        assert "/scipy/" not in mapped
        assert "/pandas/" not in mapped


def test_request_lines_are_json_with_request_id_and_no_body(server: ServiceServer) -> None:
    marker = "3.14159"
    server.post("/predict", json.dumps({**SETOSA, "sepal_width": float(marker)}).encode())
    last = "lines-test-last"
    request(
        server.port,
        "POST",
        "/predict",
        b'{"sepal_length": "secret-value"}',
        headers={"X-Request-ID": last},
    )
    # A worker writes a turn's lines when the turn ends, just after its answers went out.
    server.wait_until(lambda: last in server.log_text(), timeout=10)
    lines = [json.loads(line) for line in server.log_lines()]  # every line is JSON

    requests = [line for line in lines if line.get("logger") == "iris.access"]
    assert requests
    for line in requests:
        assert {"ts", "level", "method", "path", "status", "duration_ms", "request_id"} <= set(line)
        assert line["model_version"] != "none"
    assert any(line["status"] == 422 and line["level"] == "info" for line in requests)
    text = server.log_text()
    assert marker not in text
    assert "secret-value" not in text
    assert "Traceback" not in text
    # The master loads the model once; both workers serve that copy.
    loaded = [line for line in lines if line.get("message") == "model loaded"]
    assert [line["pid"] for line in loaded] == [server.process.pid]
    serving = [line for line in lines if line.get("message") == "worker serving"]
    assert sorted(line["pid"] for line in serving) == sorted(server.workers())
    assert all(line["preloaded"] for line in serving)


def test_sigterm_drains_readiness_then_finishes_in_flight_requests(
    tmp_path: Path, trained_artifact_dir: Path
) -> None:
    server = start_service(trained_artifact_dir, tmp_path, workers=1, drain_seconds=1.5)
    body = json.dumps(SETOSA).encode()
    try:
        # An in-flight request: headers and half the body sent before the SIGTERM.
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        slow.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:20]
        )
        time.sleep(0.2)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)

        assert server.get("/readyz")[0] == 503  # draining: the load balancer stops sending
        assert server.get("/livez")[0] == 200
        assert server.post("/predict", body)[0] == 200  # but requests are still served

        slow.sendall(body[20:])
        head, answer, _ = read_response(slow)
        slow.close()
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b'"species":"setosa"' in answer

        assert server.process.wait(timeout=20) == 0
    finally:
        server.stop()
    assert any('"message":"draining"' in line for line in server.log_lines())


def test_bad_artifact_makes_the_server_exit_nonzero_with_its_message(
    tmp_path: Path, trained_artifact_dir: Path
) -> None:
    broken = tmp_path / "model"
    shutil.copytree(trained_artifact_dir, broken)
    (broken / "model.joblib").write_bytes(b"truncated")

    server = start_service(broken, tmp_path, wait=False, workers=2)
    code = server.process.wait(timeout=120)

    assert code == 3  # gunicorn's "worker failed to boot"
    lines = server.log_lines()
    # Checked in the master before any worker is forked.
    assert not any("Booting worker" in line for line in lines), "\n".join(lines)
    reasons = [line for line in lines if "cannot serve the model" in line]
    assert reasons, "\n".join(lines)
    reason = json.loads(reasons[0])
    assert reason["level"] == "error"
    assert "corrupted or truncated" in reason["message"]
    assert "make train" in reason["message"]
    assert "Traceback" not in server.log_text()


def test_metrics_are_served_on_their_own_port_and_only_there(server: ServiceServer) -> None:
    status, body = server.metrics()
    api_status, _ = server.get("/metrics")
    other, _ = request(server.metrics_port, "GET", "/predict")

    assert status == 200
    assert b"iris_http_requests_total" in body
    assert api_status == 404
    assert other == 404


def test_a_busy_metrics_port_stops_the_start_with_one_line(
    tmp_path: Path, trained_artifact_dir: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        server = service_server(trained_artifact_dir, tmp_path, {"IRIS_METRICS_PORT": str(busy)})
        server.start()
        code = server.process.wait(timeout=60)

    lines = server.log_lines()
    assert code == 2, "\n".join(lines)
    errors = [json.loads(line) for line in lines if "cannot serve" in line]
    assert [e["message"] for e in errors] == [
        f"cannot serve: metrics port {busy} is in use; set IRIS_METRICS_PORT to a free port"
    ]
    assert not any("Booting worker" in line for line in lines)
    assert "Traceback" not in server.log_text()
