"""Every hand-written bad request in data/bad_requests.json gets its documented 4xx."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.errors import is_protocol_path

CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "bad_requests.json").read_text(encoding="utf-8")
)["cases"]


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_bad_request_gets_documented_status_and_message(
    client: TestClient, case: dict[str, Any]
) -> None:
    headers = dict(case.get("headers", {}))
    content_type = case.get("content_type", "application/json")
    if content_type is not None:
        headers["Content-Type"] = content_type
    body = case["body"]
    response = client.request(
        case.get("method", "POST"),
        case["path"],
        content=None if body is None else body.encode(),
        headers=headers,
    )

    assert response.status_code == case["status"], response.text
    assert response.headers["content-type"].startswith("application/json")
    payload = response.json()
    if is_protocol_path(case["path"]):
        assert set(payload) == {"error"}
        assert isinstance(payload["error"], str)
    else:
        assert set(payload) == {"detail"}
    text = json.dumps(payload)
    assert case["contains"], "every case names what its answer must say"
    for fragment in case["contains"]:
        assert fragment in text, f"{fragment!r} missing from {text}"
    for fragment in case.get("not_contains", []):
        assert fragment not in text
    # Errors name the field and the reason; they never hand the client's input back.
    assert '"input"' not in text


def test_golden_table_covers_every_documented_client_error_status() -> None:
    assert {case["status"] for case in CASES} >= {400, 404, 405, 415, 422}
