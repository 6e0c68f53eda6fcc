"""The fast parsers accept exactly what the BatchRequest and Measurement models accept.

`/predict/batch` builds its float array straight from orjson's parse (service.codecs.
batch_rows), and `/predict` its row (measurement_row); each goes through the pydantic
model only when that check refuses a body, so the model's error is the answer. These
properties hold the two paths together on random valid and invalid bodies: the same rows
for every body the model accepts, a refusal for every body it refuses, and byte-identical
answers (or identical errors) from the endpoint compared with validating every batch
through the model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from model.artifact import CLASS_NAMES, CONTRACT, FEATURE_NAMES
from service.codecs import Codec
from service.dataplane import DataPlane, ServiceState, load_model
from service.errors import InvalidInputError, ServiceError, validation_detail
from service.schemas import BatchRequest, Measurement

EXAMPLES = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# --- the reference: every batch through the pydantic model (the endpoint before the fast path)

batch_rows = Codec(CONTRACT).batch_rows
measurement_row = Codec(CONTRACT).measurement_row


def _row(instance: BaseModel) -> list[float]:
    fields = instance.model_dump(by_alias=True)
    return [fields[name] for name in FEATURE_NAMES]


def model_rows(body: bytes) -> np.ndarray | None:
    """The rows BatchRequest gives for `body`, or None if it refuses it."""
    try:
        batch = BatchRequest.model_validate_json(body)
    except ValidationError:
        return None
    return np.array([_row(instance) for instance in batch.instances], dtype=np.float64)


def reference_answer(plane: DataPlane, body: bytes) -> bytes:
    """/predict/batch as it answered with BatchRequest validating every body."""
    try:
        batch = BatchRequest.model_validate_json(body)
    except ValidationError as exc:
        detail = validation_detail(exc.errors(include_url=False, include_input=False))
        raise InvalidInputError(detail) from None
    rows = np.array([_row(instance) for instance in batch.instances], dtype=np.float64)
    if len(rows) > plane.max_batch_rows:
        raise ServiceError("too many rows", 413)
    indices, probabilities = plane.model.predictor.predict(rows)
    return orjson.dumps(
        {
            "predictions": [
                {
                    "species": CLASS_NAMES[index],
                    "class_index": index,
                    "probabilities": dict(zip(CLASS_NAMES, row, strict=True)),
                }
                for index, row in zip(indices.tolist(), probabilities.tolist(), strict=True)
            ],
            "model_version": plane.model.version,
        }
    )


def outcome(call: Any) -> tuple[str, Any]:
    """("ok", body) or (status, detail) of an endpoint call, so errors compare too."""
    try:
        return "ok", call()
    except ServiceError as exc:
        return str(exc.status_code), exc.detail


def assert_same_rows(body: bytes) -> None:
    fast, reference = batch_rows(body), model_rows(body)
    if reference is None:
        assert fast is None, f"fast path accepted what the model refuses: {body[:300]!r}"
    else:
        assert fast is not None, f"fast path refused a valid batch: {body[:300]!r}"
        assert fast.dtype == np.float64
        assert fast.shape == reference.shape
        # Bit for bit: the two JSON parsers must round every number alike.
        assert fast.tobytes() == reference.tobytes(), body[:300]


# --- inputs -------------------------------------------------------------------------------

in_range = st.floats(min_value=0.0, max_value=100.0, exclude_min=True)
any_value = st.one_of(
    in_range,
    st.integers(min_value=1, max_value=100),
    st.floats(allow_nan=True, allow_infinity=True),  # negative, zero, huge, NaN, +-Infinity
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
    st.just("5.1"),
    st.lists(in_range, max_size=2),
)


@st.composite
def instance(draw: st.DrawFn, valid: bool) -> dict[str, Any]:
    values = st.one_of(in_range, st.integers(min_value=1, max_value=100)) if valid else any_value
    names = list(FEATURE_NAMES)
    if not valid:
        names = draw(st.lists(st.sampled_from([*FEATURE_NAMES, "colour", "Sepal_Length"])))
    fields = {name: draw(values) for name in names}
    # Field order never matters to the model.
    order = draw(st.permutations(list(fields)))
    return {name: fields[name] for name in order}


def dump(document: Any) -> bytes:
    # allow_nan writes NaN/Infinity tokens, which clients do send and both paths refuse.
    return json.dumps(document, allow_nan=True).encode()


@st.composite
def flawed_instance(draw: st.DrawFn) -> dict[str, Any]:
    """A valid instance with one flaw: an extra field, a missing one, or one odd value."""
    row = draw(instance(valid=True))
    flaw = draw(st.sampled_from(["extra", "missing", "value"]))
    if flaw == "extra":
        row[draw(st.sampled_from(["colour", "Sepal_Length", "sepal_length "]))] = draw(any_value)
    elif flaw == "missing":
        del row[draw(st.sampled_from(FEATURE_NAMES))]
    else:
        row[draw(st.sampled_from(FEATURE_NAMES))] = draw(any_value)
    return row


valid_batches = st.lists(instance(valid=True), min_size=1, max_size=30).map(
    lambda rows: dump({"instances": rows})
)
# Mostly valid rows and one flawed one somewhere: the batches a fast path gets wrong.
nearly_valid_batches = st.tuples(
    st.lists(instance(valid=True), max_size=5), flawed_instance(), st.integers(0, 5)
).map(lambda t: dump({"instances": [*t[0][: t[2]], t[1], *t[0][t[2] :]]}))
mixed_batches = st.lists(
    st.one_of(instance(valid=True), instance(valid=False), any_value), max_size=8
).map(lambda rows: dump({"instances": rows}))
odd_documents = st.one_of(
    st.lists(instance(valid=True), max_size=3).map(dump),  # a bare list
    st.dictionaries(st.sampled_from(["instances", "rows", "extra"]), any_value).map(dump),
    st.tuples(st.lists(instance(valid=True), min_size=1, max_size=3), any_value).map(
        lambda pair: dump({"instances": pair[0], "extra": pair[1]})
    ),
)
# Number literals as clients write them: long mantissas, exponents, integers, leading
# signs and zeros (some invalid JSON), so the two parsers' rounding is compared.
number_literals = st.from_regex(
    r"\A-?(0|[1-9][0-9]{0,25}|00)(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,3})?\Z", fullmatch=True
)
# Mostly within (0, 100], so whole batches are valid and every value is compared.
plausible_literals = st.from_regex(
    r"\A([1-9][0-9]?|0)(\.[0-9]{1,30})?([eE](-1?[0-9]|\+?[01]))?\Z", fullmatch=True
)


@st.composite
def literal_row(draw: st.DrawFn) -> str:
    """One instance written with random number literals."""
    literals = [
        draw(st.one_of(plausible_literals, plausible_literals, number_literals))
        for _ in FEATURE_NAMES
    ]
    pairs = zip(FEATURE_NAMES, literals, strict=True)
    return "{" + ", ".join(f'"{name}": {value}' for name, value in pairs) + "}"


literal_batches = st.lists(literal_row(), min_size=1, max_size=4).map(
    lambda rows: ('{"instances": [' + ", ".join(rows) + "]}").encode()
)


@st.composite
def mutated(draw: st.DrawFn, bodies: st.SearchStrategy[bytes]) -> bytes:
    """A valid body with one byte deleted, replaced or inserted: mostly malformed JSON."""
    body = bytearray(draw(bodies))
    position = draw(st.integers(min_value=0, max_value=len(body) - 1))
    byte = draw(st.sampled_from(list(b'{}[]",:0123456789.eE-+ tnfa\\\x00\xff')))
    edit = draw(st.sampled_from(["delete", "replace", "insert"]))
    if edit == "delete":
        del body[position]
    elif edit == "replace":
        body[position] = byte
    else:
        body.insert(position, byte)
    return bytes(body)


# --- properties ---------------------------------------------------------------------------


@EXAMPLES
@given(valid_batches)
def test_fast_parser_gives_the_models_rows_for_valid_batches(body: bytes) -> None:
    assert batch_rows(body) is not None
    assert_same_rows(body)


@EXAMPLES
@given(
    st.one_of(
        nearly_valid_batches, mixed_batches, odd_documents, literal_batches, mutated(valid_batches)
    )
)
def test_fast_parser_refuses_exactly_what_the_model_refuses(body: bytes) -> None:
    assert_same_rows(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"instances": [{"sepal_length": true, "sepal_width": 3.5, '
        b'"petal_length": 1.4, "petal_width": 0.2}]}',
        # Duplicate keys: both parsers keep the last value.
        b'{"instances": [{"sepal_length": "x", "sepal_length": 5.1, "sepal_width": 3.5, '
        b'"petal_length": 1.4, "petal_width": 0.2}]}',
        b'{"instances": 1, "instances": [{"sepal_length": 5.1, "sepal_width": 3.5, '
        b'"petal_length": 1.4, "petal_width": 0.2}]}',
        b'{"instances": [{"sepal_length": 1e400, "sepal_width": 3.5, '
        b'"petal_length": 1.4, "petal_width": 0.2}]}',
        b'{"instances": [{"sepal_length": 18446744073709551616, "sepal_width": 3.5, '
        b'"petal_length": 1.4, "petal_width": 0.2}]}',
        b'{"instances": [{"sepal_length": 100, "sepal_width": 4.9406564584124654e-324, '
        b'"petal_length": -0.0, "petal_width": 0.2}]}',
        b'{"instances": [{"sepal_length": 100, "sepal_width": 4.9406564584124654e-324, '
        b'"petal_length": 1e2, "petal_width": 0.2}]}',
        # Rounds to 100.0 in both parsers, so it is in range; -1e-400 rounds to -0.0.
        b'{"instances": [{"sepal_length": 100.0000000000000001, "sepal_width": 3.5, '
        b'"petal_length": -1e-400, "petal_width": 0.2}]}',
        b'{"instances": [{"sepal_length": 100.0000000000000001, "sepal_width": 3.5, '
        b'"petal_length": 1e-400, "petal_width": 0.2}]}',
        b'{"instances": [{"sepal_length": 18446744073709551615, "sepal_width": 3.5, '
        b'"petal_length": -9223372036854775809, "petal_width": 0.2}]}',
        b'\xef\xbb\xbf{"instances": []}',
        b"",
        b"   ",
        b'{"instances": [{}]}',
        b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}',
    ],
)
def test_fast_parser_matches_the_model_on_edge_cases(body: bytes) -> None:
    assert_same_rows(body)


@pytest.fixture(scope="module")
def served(trained_artifact_dir: Path) -> DataPlane:
    state = ServiceState(model=load_model(trained_artifact_dir))
    return DataPlane(state, max_batch_rows=20, git_revision="test")


@EXAMPLES
@given(st.one_of(valid_batches, nearly_valid_batches, mixed_batches, odd_documents))
def test_batch_endpoint_answers_and_errors_exactly_as_through_the_model(
    served: DataPlane, body: bytes
) -> None:
    got = outcome(lambda: served.predict_batch(body))
    expected = outcome(lambda: reference_answer(served, body))

    assert got[0] == expected[0], body[:300]
    if got[0] == "413":
        return  # same status; the message names the limit (test_api checks it)
    assert got[1] == expected[1], body[:300]


def test_one_bad_row_among_valid_ones_gets_the_models_error_naming_that_row(
    served: DataPlane,
) -> None:
    row = dict(zip(FEATURE_NAMES, (5.1, 3.5, 1.4, 0.2), strict=True))

    answer = json.loads(served.predict_batch(dump({"instances": [row] * 10})))
    assert len(answer["predictions"]) == 10

    with pytest.raises(InvalidInputError) as refused:
        served.predict_batch(dump({"instances": [row, {**row, "petal_width": math.inf}]}))
    assert refused.value.detail == [
        {
            "type": "finite_number",
            "loc": ["body", "instances", 1, "petal_width"],
            "msg": "Input should be a finite number",
        }
    ]


# --- single rows: /predict's parser against the Measurement model ------------------------


def assert_same_row(body: bytes) -> None:
    try:
        instance = Measurement.model_validate_json(body)
    except ValidationError:
        reference = None
    else:
        reference = tuple(_row(instance))
    fast = measurement_row(body)
    if reference is None:
        assert fast is None, f"fast path accepted what the model refuses: {body[:300]!r}"
    else:
        assert fast is not None, f"fast path refused a valid row: {body[:300]!r}"
        assert all(type(value) is float for value in fast)
        # Bit for bit, as for batches.
        assert np.array(fast).tobytes() == np.array(reference).tobytes(), body[:300]


valid_rows = instance(valid=True).map(dump)


@EXAMPLES
@given(valid_rows)
def test_fast_row_parser_gives_the_models_row_for_valid_bodies(body: bytes) -> None:
    assert measurement_row(body) is not None
    assert_same_row(body)


@EXAMPLES
@given(
    st.one_of(
        flawed_instance().map(dump),
        instance(valid=False).map(dump),
        any_value.map(dump),
        literal_row().map(str.encode),
        mutated(valid_rows),
    )
)
def test_fast_row_parser_refuses_exactly_what_the_model_refuses(body: bytes) -> None:
    assert_same_row(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"sepal_length": true, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}',
        b'{"sepal_length": 5, "sepal_width": 3, "petal_length": 1, "petal_width": 100}',
        # Duplicate keys: both parsers keep the last value.
        b'{"sepal_length": "x", "sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, '
        b'"petal_width": 0.2}',
        b'{"sepal_length": 5.1, "sepal_length": "x", "sepal_width": 3.5, "petal_length": 1.4, '
        b'"petal_width": 0.2}',
        b'{"sepal_length": 1e400, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}',
        b'{"sepal_length": 18446744073709551616, "sepal_width": 3.5, "petal_length": 1.4, '
        b'"petal_width": 0.2}',
        b'{"sepal_length": 10000000000000000000000000000000000000000000000000000000000000000'
        b"0000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        b"0000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        b"0000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        b"0000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        b'00, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}',
        b'{"sepal_length": 100.0000000000000001, "sepal_width": 3.5, "petal_length": -1e-400, '
        b'"petal_width": 0.2}',
        b'{"sepal_length": 0, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}',
        b'{"sepal_length": -0.0, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}',
        b'{"sepal_length": NaN, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}',
        b'{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4}',
        b"[5.1, 3.5, 1.4, 0.2]",
        b"null",
        b"",
        b"\xef\xbb\xbf{}",
    ],
)
def test_fast_row_parser_matches_the_model_on_edge_cases(body: bytes) -> None:
    assert_same_row(body)
