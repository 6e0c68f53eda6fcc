"""The requests the scenarios send: what a busy pod sees."""

from __future__ import annotations

import json

from reliability.load import Request

ROWS = [
    [5.1, 3.5, 1.4, 0.2],
    [6.2, 2.9, 4.3, 1.3],
    [7.7, 3.0, 6.1, 2.3],
    [5.8, 2.7, 5.1, 1.9],
]
KEYS = ("sepal_length", "sepal_width", "petal_length", "petal_width")


def measurement(row: list[float]) -> dict[str, float]:
    return dict(zip(KEYS, row, strict=True))


PREDICT = Request("POST", "/predict", json.dumps(measurement(ROWS[0])).encode())
BATCH = Request(
    "POST",
    "/predict/batch",
    json.dumps({"instances": [measurement(r) for r in ROWS * 5]}).encode(),
)
V2_INFER = Request(
    "POST",
    "/v2/models/iris/infer",
    json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [len(ROWS), 4],
                    "datatype": "FP32",
                    "data": [x for r in ROWS for x in r],
                }
            ]
        }
    ).encode(),
)
READYZ = Request("GET", "/readyz")
LIVEZ = Request("GET", "/livez")
# What a busy pod sees: mostly single predictions, some batches and v2 calls...
WORK = [PREDICT, PREDICT, BATCH, PREDICT, V2_INFER, PREDICT]
# ...and the kubelet's probes.
MIX = [*WORK, READYZ]
