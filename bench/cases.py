"""What wrk measures: a server, a path and a body, checked against the estimator first."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config import REPO_ROOT, Config
from model.artifact import CLASS_NAMES, FEATURE_NAMES

Verify = Callable[[bytes], None]


@dataclass
class Case:
    """One thing wrk measures: a server, a path and a body of `rows` rows.

    `key` names the case in code and in the results; `label` is what the table shows.
    """

    key: str
    label: str
    server: str
    path: str
    body: bytes
    rows: int
    # Checks one response before measuring, so every figure counts correct answers.
    verify: Verify | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body_file: Path | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)


def sample_rows(count: int) -> list[list[float]]:
    """`count` rows of data/v2 (cycled), so every request carries real measurements."""
    with (REPO_ROOT / "data/v2/data.csv").open(newline="") as handle:
        rows = [[float(r[k]) for k in FEATURE_NAMES] for r in csv.DictReader(handle)]
    return [rows[(i * 7) % len(rows)] for i in range(count)]


def measurement(row: list[float]) -> dict[str, float]:
    """A row as the /predict body."""
    return dict(zip(FEATURE_NAMES, row, strict=True))


def v2_body(rows: list[list[float]]) -> bytes:
    """An Open Inference Protocol request with the rows as one JSON FP32 tensor."""
    tensor = {
        "name": "input-0",
        "shape": [len(rows), 4],
        "datatype": "FP32",
        "data": [x for row in rows for x in row],
    }
    return json.dumps({"inputs": [tensor]}).encode()


def v2_binary_body(rows: list[list[float]]) -> tuple[bytes, dict[str, str]]:
    """The same tensor in Triton's binary tensor extension (what tritonclient sends by
    default): a JSON header, then the FP32 bytes; the answer asked for in binary too."""
    import numpy as np

    data = np.asarray(rows, dtype="<f4").tobytes()
    header = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [len(rows), 4],
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(data)},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    head = json.dumps(header).encode()
    return head + data, {"Inference-Header-Content-Length": str(len(head))}


def binary_labels(raw: bytes) -> list[str]:
    """The `label` output of a binary v2 answer: a JSON header, then each output's bytes in
    order; BYTES elements are a 4-byte little-endian length and the text."""
    header, end = json.JSONDecoder().raw_decode(raw.decode("latin-1"))
    offset = end
    for output in header["outputs"]:
        size = output["parameters"]["binary_data_size"]
        if output["name"] == "label":
            chunk, labels = raw[offset : offset + size], []
            while chunk:
                length = int.from_bytes(chunk[:4], "little")
                labels.append(chunk[4 : 4 + length].decode())
                chunk = chunk[4 + length :]
            return labels
        offset += size
    return []


def expect_binary_species(expected: list[str]) -> Verify:
    """A check that a binary v2 answer's labels are exactly these species, in order."""

    def check(raw: bytes) -> None:
        got = binary_labels(raw)
        if got != expected:
            raise AssertionError(f"expected species {expected[:5]}..., got {got[:5]}...")

    return check


def species_in(payload: Any) -> list[str]:
    """Every species label in a response, in order, whatever the nesting."""
    found: list[str] = []
    if isinstance(payload, dict):
        for key, value in payload.items():
            if key in ("species", "label") and isinstance(value, str):
                found.append(value)
            else:
                found.extend(species_in(value))
    elif isinstance(payload, list):
        for item in payload:
            if isinstance(item, str) and item in CLASS_NAMES:
                found.append(item)
            else:
                found.extend(species_in(item))
    return found


def expect_species(expected: list[str]) -> Verify:
    """A check that a response names exactly these species, in order."""

    def check(raw: bytes) -> None:
        got = species_in(json.loads(raw))
        if got != expected:
            raise AssertionError(f"expected species {expected[:5]}..., got {got[:5]}...")

    return check


def expect_classes(expected: list[int]) -> Verify:
    """A check of MLServer's answer: its first output holds the class indices."""

    def check(raw: bytes) -> None:
        outputs = json.loads(raw)["outputs"]
        got = [int(x) for x in outputs[0]["data"]]
        if got != expected:
            raise AssertionError(f"expected classes {expected[:5]}..., got {got[:5]}...")

    return check


def build_cases(cfg: Config, estimator: Any) -> list[Case]:
    """Every case, single rows first, each with the answer the estimator gives."""
    import numpy as np

    single = sample_rows(1)
    batch = sample_rows(cfg.batch_rows)
    want_single = [int(x) for x in estimator.predict(np.asarray(single))]
    want_batch = [int(x) for x in estimator.predict(np.asarray(batch))]
    species_single = expect_species([CLASS_NAMES[i] for i in want_single])
    species_batch = expect_species([CLASS_NAMES[i] for i in want_batch])
    single_json = json.dumps(measurement(single[0])).encode()
    batch_json = json.dumps({"instances": [measurement(r) for r in batch]}).encode()
    n = cfg.batch_rows
    infer = "/v2/models/iris/infer"
    binary_batch, binary_headers = v2_binary_body(batch)
    return [
        Case(
            "predict", "iris-api /predict", "iris-api", "/predict", single_json, 1, species_single
        ),
        Case(
            "v2", "iris-api v2 infer [1,4]", "iris-api", infer, v2_body(single), 1, species_single
        ),
        Case(
            "bare",
            "iris-bare /predict (no front)",
            "iris-bare",
            "/predict",
            single_json,
            1,
            species_single,
        ),
        Case("raw", "raw-asgi (ceiling)", "raw-asgi", "/predict", single_json, 1),
        Case("raw-whole", "raw whole request (no ASGI)", "raw-whole", "/predict", single_json, 1),
        Case(
            "tutorial", "tutorial FastAPI", "tutorial", "/predict", single_json, 1, species_single
        ),
        Case("tidy", "tidy FastAPI", "tidy", "/predict", single_json, 1, species_single),
        Case(
            "mlserver",
            "mlserver v2 infer [1,4]",
            "mlserver",
            infer,
            v2_body(single),
            1,
            expect_classes(want_single),
        ),
        Case(
            "batch",
            f"iris-api /predict/batch x{n}",
            "iris-api",
            "/predict/batch",
            batch_json,
            n,
            species_batch,
        ),
        Case(
            "v2-batch",
            f"iris-api v2 infer [{n},4]",
            "iris-api",
            infer,
            v2_body(batch),
            n,
            species_batch,
        ),
        Case(
            "v2-binary-batch",
            f"iris-api v2 infer [{n},4] binary",
            "iris-api",
            infer,
            binary_batch,
            n,
            expect_binary_species([CLASS_NAMES[i] for i in want_batch]),
            binary_headers,
        ),
        Case(
            "mlserver-batch",
            f"mlserver v2 infer [{n},4]",
            "mlserver",
            infer,
            v2_body(batch),
            n,
            expect_classes(want_batch),
        ),
    ]
