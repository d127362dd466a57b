"""AMF0: hand-written wire bytes, round trips, and the exact errors for bad input."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formats.amf0 import UNDEFINED, AMFError, ECMAArray, decode, decode_value, encode

# "connect", 1.0, {"app": "live"} exactly as it appears on the wire
CONNECT_BYTES = (
    b"\x02\x00\x07connect"
    b"\x00\x3f\xf0\x00\x00\x00\x00\x00\x00"
    b"\x03\x00\x03app\x02\x00\x04live\x00\x00\x09"
)


def test_encode_matches_wire_bytes() -> None:
    assert encode("connect", 1.0, {"app": "live"}) == CONNECT_BYTES
    assert encode(1) == b"\x00\x3f\xf0\x00\x00\x00\x00\x00\x00"  # ints are AMF0 numbers


def test_decode_wire_bytes() -> None:
    assert decode(CONNECT_BYTES) == ["connect", 1.0, {"app": "live"}]


@pytest.mark.parametrize(
    ("wire", "value"),
    [
        (b"\x01\x01", True),
        (b"\x01\x00", False),
        (b"\x05", None),
        (b"\x06", UNDEFINED),
        (b"\x02\x00\x00", ""),
        (b"\x0c\x00\x00\x00\x03abc", "abc"),
        (b"\x0a\x00\x00\x00\x02\x05\x01\x01", [None, True]),
        (
            b"\x0b" + bytes.fromhex("4278cc820d888000") + b"\x00\x00",
            dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        ),
        (b"\x02\x00\x02\xc3\xa9", "\u00e9"),
        (b"\x02\x00\x01\xff", "\ufffd"),  # invalid UTF-8 is replaced, not fatal
    ],
)
def test_decode_scalars(wire: bytes, value: Any) -> None:
    assert decode(wire) == [value]


def test_ecma_array_count_is_only_a_hint() -> None:
    # ffmpeg and others write the count; some encoders write 0. The end marker decides.
    wire = b"\x08\x00\x00\x00\x00" + b"\x00\x01a\x00" + bytes(8) + b"\x00\x00\x09"
    [value] = decode(wire)
    assert isinstance(value, ECMAArray)
    assert value == {"a": 0.0}


def test_long_strings_switch_marker() -> None:
    text = "x" * 70000
    wire = encode(text)
    assert wire[0] == 0x0C
    assert decode(wire) == [text]


def test_decode_value_returns_offset() -> None:
    value, offset = decode_value(CONNECT_BYTES, 10)
    assert (value, offset) == (1.0, 19)


def test_undefined_differs_from_null() -> None:
    assert encode(None, UNDEFINED) == b"\x05\x06"
    assert decode(b"\x05\x06") == [None, UNDEFINED]


def _amf_values() -> st.SearchStrategy[Any]:
    scalars = (
        st.floats(allow_nan=False)
        | st.booleans()
        | st.text(max_size=20)
        | st.none()
        | st.just(UNDEFINED)
        | st.integers(min_value=-(2**52), max_value=2**52).map(float)
        | st.datetimes(
            min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1), timezones=st.just(dt.UTC)
        ).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
    )
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=10), children, max_size=5)
        | st.dictionaries(st.text(max_size=10), children, max_size=5).map(ECMAArray),
        max_leaves=30,
    )


@given(st.lists(_amf_values(), max_size=5))
@settings(max_examples=100, deadline=None)
def test_round_trip(values: list[Any]) -> None:
    decoded = decode(encode(*values))
    assert decoded == values
    assert [type(v) for v in decoded] == [type(v) for v in values]


@given(st.binary(max_size=200))
@settings(max_examples=500, deadline=None)
def test_arbitrary_bytes_raise_only_amf_error(data: bytes) -> None:
    try:
        decode(data)
    except AMFError:
        pass


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"\x02\x00\x05ab", "truncated AMF0 data: string needs 5 bytes at offset 3, only 2 left"),
        (b"\x00\x01", "truncated AMF0 data: number needs 8 bytes at offset 1, only 1 left"),
        (b"\x03\x00\x01a", "truncated AMF0 data: type marker needs 1 bytes at offset 4, only 0 left"),
        (b"\x42", "invalid AMF0 type marker 0x42 at offset 0"),
        (b"\x07\x00\x01", "unsupported AMF0 type reference (0x07) at offset 0"),
        (b"\x11\x02", "unsupported AMF0 type AVM+ (AMF3) (0x11) at offset 0"),
        (b"\x09", "unexpected AMF0 object end marker at offset 0"),
        (
            b"\x0a\xff\xff\xff\xff\x05",
            "truncated AMF0 data: strict array of 4294967295 elements at offset 0 cannot fit in the 1 bytes left",
        ),
        (b"\x0b\x7f\xf0\x00\x00\x00\x00\x00\x00\x00\x00", "AMF0 date out of range at offset 0"),
    ],
)
def test_malformed_input_errors(wire: bytes, message: str) -> None:
    with pytest.raises(AMFError) as excinfo:
        decode(wire)
    assert str(excinfo.value) == message


def test_depth_is_bounded() -> None:
    nested = b"\x0a\x00\x00\x00\x01" * 40 + b"\x05"
    with pytest.raises(AMFError, match="^AMF0 value nested deeper than 32 levels$"):
        decode(nested)
    assert decode(nested, max_depth=64)[0] is not None


def test_element_count_is_bounded() -> None:
    wire = b"\x0a\x00\x00\x03\xe8" + b"\x05" * 1000
    with pytest.raises(AMFError, match="^AMF0 data has too many elements$"):
        decode(wire, max_items=500)


def test_unencodable_values() -> None:
    with pytest.raises(AMFError, match="^cannot encode bytes as AMF0$"):
        encode(b"raw")
    with pytest.raises(AMFError, match="^AMF0 object keys must be str, got int$"):
        encode({1: 2})
    assert math.isinf(decode(encode(float("inf")))[0])
