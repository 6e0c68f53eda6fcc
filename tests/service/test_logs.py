"""Request lines: the written-out JSON line says exactly what the generic one would."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.front import REQUEST_ID
from service.logs import REQUEST_LOGGER, RequestLog, console_line, iso_timestamp, json_line

texts = st.text(max_size=40)  # quotes, backslashes, control characters, any code point


def _written(request_log: RequestLog, *fields: object) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        request_log.write(*fields)  # type: ignore[arg-type]
    lines = out.getvalue().split("\n")[:-1]  # not splitlines(): U+2028 is valid inside JSON
    assert len(lines) == 1
    return lines[0]


@pytest.fixture(autouse=True)
def _request_lines_on() -> None:
    logging.getLogger(REQUEST_LOGGER).setLevel(logging.INFO)


@settings(max_examples=300, deadline=None)
@given(
    level=st.sampled_from([logging.INFO, logging.ERROR, logging.CRITICAL]),
    method=st.one_of(st.sampled_from(["GET", "POST"]), texts),
    path=texts,
    status=st.integers(min_value=100, max_value=599),
    seconds=st.floats(min_value=0, max_value=1e5),
    # What the front passes on: a client's id it accepted, or one it made.
    request_id=st.one_of(
        st.from_regex(REQUEST_ID.pattern.decode(), fullmatch=True),
        st.binary(min_size=8, max_size=8).map(bytes.hex),
    ),
    model_version=texts,
)
def test_a_json_request_line_is_what_json_line_writes_for_the_same_fields(
    level: int,
    method: str,
    path: str,
    status: int,
    seconds: float,
    request_id: str,
    model_version: str,
) -> None:
    line = _written(
        RequestLog("json"), level, method, path, status, seconds, request_id, model_version
    )
    written = json.loads(line)
    expected = json.loads(
        json_line(
            0.0,
            logging.getLevelName(level),
            REQUEST_LOGGER,
            "request",
            {
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "request_id": request_id,
                "model_version": model_version,
            },
        )
    )

    assert list(written) == list(expected)  # the same keys in the same order
    assert {**written, "ts": None} == {**expected, "ts": None}
    assert written["ts"].endswith("+00:00")


def test_a_console_request_line_names_every_field() -> None:
    line = _written(
        RequestLog("console"), logging.INFO, "POST", "/predict", 200, 0.0012345, "r-1", "v1"
    )

    assert line.endswith(
        console_line(
            0.0,
            "info",
            REQUEST_LOGGER,
            "request",
            {
                "method": "POST",
                "path": "/predict",
                "status": 200,
                "duration_ms": "1.234",
                "request_id": "r-1",
                "model_version": "v1",
            },
        ).split(" ", 1)[1]
    )


@given(st.floats(min_value=0, max_value=4e9))
def test_timestamps_are_iso_8601_in_utc_to_the_millisecond(created: float) -> None:
    # Twice, so the second comes from the one-millisecond cache.
    for _ in range(2):
        text = iso_timestamp(created)
        millis = int(created * 1000)
        expected = datetime.fromtimestamp(millis // 1000, UTC).isoformat()
        assert text == f"{expected.removesuffix('+00:00')}.{millis % 1000:03d}+00:00"
