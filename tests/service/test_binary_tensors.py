"""The binary tensor data extension in process, framed by tritonclient's own code.

tritonclient builds the request bodies (`generate_request_body`, the framing its
`infer()` sends) and parses the answers (`parse_response_body`); the service must give
the estimator's answers with binary tensors in either direction, and the same answers as
with JSON tensors.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from fastapi.testclient import TestClient

from model.artifact import CLASS_NAMES, load
from model.data import CONTRACT
from service import codecs
from service.codecs import Codec
from service.errors import BadRequestError

FEATURES = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])


def _infer(
    client: TestClient, datatype: str, binary_in: bool, binary_out: bool | None
) -> tuple[Any, Any]:
    tensor = triton.InferInput("features", list(FEATURES.shape), datatype)
    tensor.set_data_from_numpy(
        FEATURES.astype(np.float32 if datatype == "FP32" else np.float64), binary_data=binary_in
    )
    outputs = (
        None
        if binary_out is None
        else [
            triton.InferRequestedOutput("label", binary_data=binary_out),
            triton.InferRequestedOutput("probabilities", binary_data=binary_out),
        ]
    )
    body, json_size = triton.InferenceServerClient.generate_request_body(
        [tensor], outputs=outputs, request_id="r-1"
    )
    headers = {} if json_size is None else {"Inference-Header-Content-Length": str(json_size)}
    response = client.post("/v2/models/iris/infer", content=body, headers=headers)
    assert response.status_code == 200, response.content[:300]
    length = response.headers.get("inference-header-content-length")
    result = triton.InferenceServerClient.parse_response_body(
        response.content, header_length=None if length is None else int(length)
    )
    return result, response


def _labels(result: Any) -> list[str]:
    # BYTES come back as bytes from binary data and as str from JSON.
    return [x.decode() if isinstance(x, bytes) else str(x) for x in result.as_numpy("label")]


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
@pytest.mark.parametrize(
    ("binary_in", "binary_out"),
    [(True, True), (True, False), (False, True), (True, None), (False, False)],
    ids=["binary-both", "binary-in", "binary-out", "all-outputs-binary", "json-both"],
)
def test_tritonclient_framing_gets_the_estimators_answer(
    client: TestClient,
    trained_artifact_dir: Path,
    datatype: str,
    binary_in: bool,
    binary_out: bool | None,
) -> None:
    estimator = load(trained_artifact_dir).estimator
    sent = FEATURES.astype(np.float32).astype(np.float64) if datatype == "FP32" else FEATURES

    result, response = _infer(client, datatype, binary_in, binary_out)

    labels = _labels(result)
    assert labels == [CLASS_NAMES[i] for i in estimator.predict(sent)]
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), estimator.predict_proba(sent), rtol=1e-6, atol=1e-7
    )
    assert result.get_response()["id"] == "r-1"
    binary_answer = binary_out is not False
    assert ("inference-header-content-length" in response.headers) == binary_answer
    expected_type = "application/octet-stream" if binary_answer else "application/json"
    assert response.headers["content-type"] == expected_type


def test_binary_and_json_tensors_give_the_same_bytes_of_answer(client: TestClient) -> None:
    binary, _ = _infer(client, "FP32", binary_in=True, binary_out=True)
    plain, _ = _infer(client, "FP32", binary_in=False, binary_out=False)

    np.testing.assert_array_equal(binary.as_numpy("probabilities"), plain.as_numpy("probabilities"))
    assert _labels(binary) == _labels(plain)


def test_a_binary_batch_over_the_row_limit_is_413_before_its_bytes_are_read(
    client: TestClient,
) -> None:
    rows = 1001  # IRIS_MAX_BATCH_ROWS is 1000 by default
    tensor = {
        "name": "features",
        "shape": [rows, 4],
        "datatype": "FP32",
        "parameters": {"binary_data_size": rows * 16},
    }
    header = json.dumps({"inputs": [tensor]}).encode()
    body = header + np.ones((rows, 4), "<f4").tobytes()

    response = client.post(
        "/v2/models/iris/infer",
        content=body,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )

    assert response.status_code == 413
    assert "IRIS_MAX_BATCH_ROWS" in response.json()["error"]


@pytest.mark.parametrize(("datatype", "numpy_type"), [("FP32", np.float32), ("FP64", np.float64)])
def test_binary_values_are_checked_against_the_range_in_double_precision(
    datatype: str, numpy_type: type[np.floating[Any]]
) -> None:
    # 30.1 is no float32: the float32 nearest to it is above it, so a client sending
    # "30.1" in FP32 sends a value outside (0, 30.1]. Compared in float32, it would pass.
    contract = dataclasses.replace(CONTRACT, at_most=30.1)
    codec = Codec(contract)
    above = float(np.float32(30.1))
    assert above > 30.1
    below = float(np.nextafter(np.float32(30.1), np.float32(0)))

    def decode(value: float) -> Any:
        data = np.array([[1.0, 2.0, 3.0, value]], dtype=numpy_type).tobytes()
        tensor = {"name": "x", "shape": [1, 4], "datatype": datatype}
        header = json.dumps(
            {
                "inputs": [
                    {**tensor, "parameters": {"binary_data_size": 16 if datatype == "FP32" else 32}}
                ]
            }
        ).encode()
        return codec.decode_inference(header + data, 100, str(len(header)).encode())

    assert decode(below).rows.tolist() == [[1.0, 2.0, 3.0, below]]
    assert decode(below).rows.dtype == np.float64
    if datatype == "FP32":
        with pytest.raises(
            BadRequestError, match=r"row 0 petal_width = 30\.100000381469727 is outside"
        ):
            decode(30.1)
    else:
        assert decode(30.1).rows.tolist() == [[1.0, 2.0, 3.0, 30.1]]
        with pytest.raises(BadRequestError, match="is outside the accepted range"):
            decode(float(np.nextafter(30.1, 31.0)))


def test_a_header_seen_before_decodes_its_data_as_a_header_seen_for_the_first_time() -> None:
    # The codec remembers what a valid binary header settles (decode_inference's plans);
    # a later request with the same header bytes must get exactly the first-sight answer.
    header = json.dumps(
        {
            "id": "batch-7",
            "inputs": [
                {
                    "name": "x",
                    "shape": [3, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 48},
                }
            ],
            "outputs": [{"name": "label", "parameters": {"binary_data": True}}],
        }
    ).encode()
    length = str(len(header)).encode()
    valid = FEATURES.astype("<f4").tobytes()
    out_of_range = np.array([[1, 2, 3, 4], [1, 2, 3, -4], [1, 2, 3, 4]], "<f4").tobytes()
    bodies = [valid, out_of_range, valid[:-4], valid + b"\0" * 4, np.float32([np.nan] * 12)]

    def outcome(codec: Codec, data: Any) -> Any:
        try:
            request = codec.decode_inference(header + bytes(data), 100, length)
        except BadRequestError as exc:
            return ("error", str(exc))
        return (request.rows.tolist(), request.outputs, request.id, request.binary_outputs)

    first_sight = [outcome(Codec(CONTRACT), data) for data in bodies]
    seen = Codec(CONTRACT)
    outcome(seen, valid)  # the header is now remembered
    assert [outcome(seen, data) for data in bodies] == first_sight
    assert first_sight[0] == (FEATURES.astype("<f4").tolist(), ("label",), "batch-7", {"label"})
    assert [kind for kind, *_ in first_sight[1:]] == ["error"] * 4


def _binary_body(request_id: str, **parameters: Any) -> tuple[bytes, bytes]:
    """A one-row FP32 binary request with this id (and request parameters): body, header length."""
    header = json.dumps(
        {
            "id": request_id,
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 16},
                }
            ],
            **({"parameters": parameters} if parameters else {}),
        }
    ).encode()
    return header + FEATURES[:1].astype("<f4").tobytes(), str(len(header)).encode()


def test_a_codec_remembers_a_bounded_number_of_binary_headers_and_reads_the_rest_anew() -> None:
    codec = Codec(CONTRACT)
    for n in range(codecs.HEADERS_KEPT + 5):
        body, length = _binary_body(f"r-{n}")
        assert codec.decode_inference(body, 100, length).id == f"r-{n}"
    assert len(codec._binary_plans) == codecs.HEADERS_KEPT
    body, length = _binary_body(f"r-{codecs.HEADERS_KEPT + 3}")  # past the bound
    assert codec.decode_inference(body, 100, length).id == f"r-{codecs.HEADERS_KEPT + 3}"
    assert len(codec._binary_plans) == codecs.HEADERS_KEPT


def test_a_refused_or_long_binary_header_is_never_remembered() -> None:
    codec = Codec(CONTRACT)
    refused = json.dumps({"inputs": [{"name": "x", "shape": [1, 4]}]}).encode()
    for _ in range(2):
        with pytest.raises(BadRequestError, match="datatype: Field required"):
            codec.decode_inference(refused + bytes(16), 100, str(len(refused)).encode())
    body, length = _binary_body("long", note="x" * codecs.HEADER_BYTES_KEPT)
    first, second = (codec.decode_inference(body, 100, length) for _ in range(2))
    assert first.rows.tolist() == second.rows.tolist() == FEATURES[:1].astype("<f4").tolist()
    assert codec._binary_plans == {}
