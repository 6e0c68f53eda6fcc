"""The fast parse of a v2 request header accepts only what V2InferenceRequest accepts.

service.v2_header.plain checks orjson's parse by hand and returns None for anything it
does not plainly accept; the schema then decides, and its error is the answer. These
properties hold the two together: whatever `plain` accepts, the schema accepts and reads
the same way; and the headers real clients send (tritonclient's binary requests) do take
the fast path, so the test fails if it silently stops being used.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service import v2_header
from service.errors import BadRequestError

EXAMPLES = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def schema_reading(raw: bytes) -> v2_header.Header | None:
    """The header as the schema reads it, or None if it refuses it."""
    try:
        return v2_header.validated(raw)
    except BadRequestError:
        return None


def tensor(**changes: Any) -> dict[str, Any]:
    """An input tensor as tritonclient declares a binary one, with `changes`."""
    item: dict[str, Any] = {
        "name": "input-0",
        "shape": [3, 4],
        "datatype": "FP32",
        "parameters": {"binary_data_size": 48},
    }
    item.update(changes)
    return {k: v for k, v in item.items() if v is not ...}


def request(**changes: Any) -> dict[str, Any]:
    """A binary request header, with `changes` (Ellipsis removes a field)."""
    item: dict[str, Any] = {"inputs": [tensor()], "parameters": {"binary_data_output": True}}
    item.update(changes)
    return {k: v for k, v in item.items() if v is not ...}


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


# Valid headers first: names at and past their limits, shapes of plain ints.
names = st.one_of(st.text(max_size=3), st.just("x" * 256), st.just("x" * 257), st.just("é" * 256))
anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
parameters = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {}, optional={"binary_data_size": st.integers(0, 2000), "binary_data": st.booleans()}
    ),
)
tensors = st.builds(
    tensor,
    name=names,
    shape=st.lists(st.integers(-3, 1000), max_size=8),
    datatype=st.sampled_from(["FP32", "FP64", "INT8", "F" * 16, "F" * 17]),
    parameters=st.one_of(parameters, st.just(...)),
)
outputs = st.lists(
    st.fixed_dictionaries(
        {"name": st.one_of(st.sampled_from(["label", "probabilities"]), names)},
        optional={"parameters": parameters},
    ),
    max_size=2,
)
valid = st.builds(
    request,
    id=st.one_of(st.just(...), st.none(), names),
    parameters=st.one_of(st.just(...), parameters),
    inputs=st.lists(tensors, min_size=1, max_size=1),
    outputs=st.one_of(st.just(...), st.none(), outputs),
)
# ...then up to three changes anywhere in one: a field set to any JSON value (a wrong
# type, a float or string dimension, data, a huge number), removed, or an extra field.
edits = st.sampled_from(["set", "remove", "add"])


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    header = draw(valid)
    for _ in range(draw(st.integers(0, 3))):
        places: list[tuple[Any, Any]] = [(header, key) for key in header]
        lists = [header.get("inputs"), header.get("outputs")]
        for item in [x for items in lists if isinstance(items, list) for x in items]:
            if isinstance(item, dict):
                places += [(item, key) for key in item]
                shape = item.get("shape")
                if isinstance(shape, list):
                    places += [(shape, i) for i in range(len(shape))]
        if not places:
            break
        container, key = draw(st.sampled_from(places))
        edit = draw(edits)
        if edit == "set" or isinstance(container, list):
            container[key] = draw(
                st.one_of(
                    anything,
                    st.sampled_from([4.0, True, "4", 2**31, 2**63, [1.0, 2.0, 3.0, 4.0], None]),
                )
            )
        elif edit == "remove":
            del container[key]
        else:
            container[draw(st.sampled_from(["data", "extra", "name", "id"]))] = draw(anything)
    return header


@EXAMPLES
@given(requests())
def test_what_the_fast_parse_accepts_the_schema_accepts_and_reads_the_same(
    header: dict[str, Any],
) -> None:
    raw = encode(header)
    fast = v2_header.plain(raw)
    if fast is not None:
        assert fast == schema_reading(raw)


@EXAMPLES
@given(requests(), st.data())
def test_the_fast_parse_of_mangled_bytes_never_accepts_what_the_schema_refuses(
    header: dict[str, Any], data: st.DataObject
) -> None:
    raw = bytearray(encode(header))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    fast = v2_header.plain(bytes(raw))
    if fast is not None:
        assert fast == schema_reading(bytes(raw))


@pytest.mark.parametrize(
    "raw",
    [
        encode(request()),
        encode(request(parameters=..., outputs=[{"name": "label"}])),
        encode(
            request(
                id="42", outputs=[{"name": "probabilities", "parameters": {"binary_data": True}}]
            )
        ),
        encode(request(inputs=[tensor(shape=[100, 4], parameters={"binary_data_size": 1600})])),
        b' {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "parameters": {}}]}\n',
        # A repeated key: both read the last one.
        b'{"inputs": [], "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32"}]}',
    ],
)
def test_headers_clients_send_take_the_fast_path_and_read_as_the_schema_reads_them(
    raw: bytes,
) -> None:
    fast = v2_header.plain(raw)

    assert fast is not None
    assert fast == schema_reading(raw)


@pytest.mark.parametrize(
    "raw",
    [
        # JSON data: pydantic checks every value, in Rust.
        encode(request(inputs=[tensor(parameters=..., data=[1.0, 2.0, 3.0, 4.0], shape=[1, 4])])),
        # A BOM, a float or a string dimension, a huge one, null fields.
        b"\xef\xbb\xbf" + encode(request()),
        encode(request(inputs=[tensor(shape=[1.0, 4])])),
        encode(request(inputs=[tensor(shape=["1", 4])])),
        encode(request(inputs=[tensor(shape=[2**40, 4])])),
        encode(request(inputs=None)),
        encode(request(inputs=[tensor(parameters=None), tensor()])),
        encode(request(id=7)),
        encode(request(outputs=[{"name": "label"}] * 3)),
        encode(request(inputs=[tensor(name="x" * 257)])),
        b"[]",
        b"",
    ],
)
def test_anything_unusual_is_left_to_the_schema(raw: bytes) -> None:
    assert v2_header.plain(raw) is None


def test_parse_answers_the_schemas_error_for_what_it_refuses() -> None:
    raw = encode(request(inputs=[tensor(datatype=...)]))

    with pytest.raises(BadRequestError) as refused:
        v2_header.parse(raw)

    assert str(refused.value) == "inputs.0.datatype: Field required"
