"""AMF0 encoding and decoding, the value format of RTMP commands and FLV metadata.

Pure functions over bytes. Decoding is bounded (nesting depth, element count) because
the input comes straight from untrusted publishers; malformed input raises ``AMFError``.

Python mapping: number <-> float (ints encode as numbers), boolean <-> bool,
string/long string <-> str, object <-> dict, ECMA array <-> ``ECMAArray`` (a dict),
strict array <-> list, null <-> None, undefined <-> ``UNDEFINED``,
date <-> aware ``datetime`` (UTC, millisecond precision).
"""

from __future__ import annotations

import datetime as _dt
import math
import struct
from typing import Any, Final

__all__ = [
    "AMFError",
    "ECMAArray",
    "UNDEFINED",
    "Undefined",
    "decode",
    "decode_value",
    "encode",
    "encode_value",
]

NUMBER: Final = 0x00
BOOLEAN: Final = 0x01
STRING: Final = 0x02
OBJECT: Final = 0x03
NULL: Final = 0x05
UNDEFINED_MARKER: Final = 0x06
ECMA_ARRAY: Final = 0x08
OBJECT_END: Final = 0x09
STRICT_ARRAY: Final = 0x0A
DATE: Final = 0x0B
LONG_STRING: Final = 0x0C

DEFAULT_MAX_DEPTH: Final = 32
DEFAULT_MAX_ITEMS: Final = 100_000

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_DOUBLE = struct.Struct(">d")
_MARKER_NAMES = {
    0x04: "movieclip",
    0x07: "reference",
    0x0D: "unsupported",
    0x0E: "recordset",
    0x0F: "XML document",
    0x10: "typed object",
    0x11: "AVM+ (AMF3)",
}


class AMFError(ValueError):
    """Raised for malformed AMF0 input or values that cannot be encoded."""


class Undefined:
    """The AMF0 ``undefined`` value (distinct from ``null``/None); use ``UNDEFINED``."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Undefined)

    def __hash__(self) -> int:
        return hash(Undefined)

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Final = Undefined()


class ECMAArray(dict[str, Any]):
    """An associative array that encodes as AMF0 ECMA array (what onMetaData uses)."""


# --------------------------------------------------------------------------- encode


def encode(*values: Any) -> bytes:
    """Encode a sequence of values back to back, as RTMP command messages carry them."""
    out = bytearray()
    for value in values:
        _encode_into(out, value, 0)
    return bytes(out)


def encode_value(value: Any) -> bytes:
    """Encode one value."""
    out = bytearray()
    _encode_into(out, value, 0)
    return bytes(out)


def _encode_key(out: bytearray, key: Any) -> None:
    if not isinstance(key, str):
        raise AMFError(f"AMF0 object keys must be str, got {type(key).__name__}")
    raw = key.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise AMFError("AMF0 object key longer than 65535 bytes")
    out += len(raw).to_bytes(2, "big")
    out += raw


def _encode_into(out: bytearray, value: Any, depth: int) -> None:
    if depth > DEFAULT_MAX_DEPTH:
        raise AMFError(f"AMF0 value nested deeper than {DEFAULT_MAX_DEPTH} levels")
    if value is None:
        out.append(NULL)
    elif isinstance(value, Undefined):
        out.append(UNDEFINED_MARKER)
    elif isinstance(value, bool):
        out.append(BOOLEAN)
        out.append(1 if value else 0)
    elif isinstance(value, (int, float)):
        out.append(NUMBER)
        out += _DOUBLE.pack(float(value))
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) <= 0xFFFF:
            out.append(STRING)
            out += len(raw).to_bytes(2, "big")
        else:
            if len(raw) > 0xFFFFFFFF:
                raise AMFError("AMF0 string longer than 4 GiB")
            out.append(LONG_STRING)
            out += len(raw).to_bytes(4, "big")
        out += raw
    elif isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        millis = (value - _EPOCH) / _dt.timedelta(milliseconds=1)
        out.append(DATE)
        out += _DOUBLE.pack(millis)
        out += b"\x00\x00"
    elif isinstance(value, dict):
        if isinstance(value, ECMAArray):
            out.append(ECMA_ARRAY)
            out += len(value).to_bytes(4, "big")
        else:
            out.append(OBJECT)
        for key, item in value.items():
            _encode_key(out, key)
            _encode_into(out, item, depth + 1)
        out += b"\x00\x00\x09"
    elif isinstance(value, (list, tuple)):
        out.append(STRICT_ARRAY)
        out += len(value).to_bytes(4, "big")
        for item in value:
            _encode_into(out, item, depth + 1)
    else:
        raise AMFError(f"cannot encode {type(value).__name__} as AMF0")


# --------------------------------------------------------------------------- decode


def decode(
    data: bytes | bytearray | memoryview,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> list[Any]:
    """Decode every value in ``data`` (a whole command or data message body)."""
    decoder = _Decoder(bytes(data), max_depth, max_items)
    values = []
    while decoder.pos < len(decoder.data):
        values.append(decoder.value(0))
    return values


def decode_value(
    data: bytes | bytearray | memoryview,
    offset: int = 0,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> tuple[Any, int]:
    """Decode one value at ``offset``; returns (value, offset after it)."""
    decoder = _Decoder(bytes(data), max_depth, max_items)
    decoder.pos = offset
    value = decoder.value(0)
    return value, decoder.pos


class _Decoder:
    __slots__ = ("data", "pos", "max_depth", "items_left")

    def __init__(self, data: bytes, max_depth: int, max_items: int) -> None:
        self.data = data
        self.pos = 0
        self.max_depth = max_depth
        self.items_left = max_items

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise AMFError(
                f"truncated AMF0 data: {what} needs {n} bytes at offset {self.pos}, "
                f"only {len(self.data) - self.pos} left"
            )
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def text(self, length_bytes: int) -> str:
        length = int.from_bytes(self.take(length_bytes, "string length"), "big")
        return self.take(length, "string").decode("utf-8", errors="replace")

    def value(self, depth: int) -> Any:
        if depth > self.max_depth:
            raise AMFError(f"AMF0 value nested deeper than {self.max_depth} levels")
        self.items_left -= 1
        if self.items_left < 0:
            raise AMFError("AMF0 data has too many elements")
        start = self.pos
        marker = self.take(1, "type marker")[0]
        if marker == NUMBER:
            return _DOUBLE.unpack(self.take(8, "number"))[0]
        if marker == BOOLEAN:
            return self.take(1, "boolean")[0] != 0
        if marker == STRING:
            return self.text(2)
        if marker == LONG_STRING:
            return self.text(4)
        if marker == NULL:
            return None
        if marker == UNDEFINED_MARKER:
            return UNDEFINED
        if marker == OBJECT:
            obj: dict[str, Any] = {}
            self.properties(obj, depth)
            return obj
        if marker == ECMA_ARRAY:
            # The count is only a hint: encoders get it wrong, the end marker is authoritative.
            self.take(4, "ECMA array count")
            arr = ECMAArray()
            self.properties(arr, depth)
            return arr
        if marker == STRICT_ARRAY:
            count = int.from_bytes(self.take(4, "strict array count"), "big")
            if count > len(self.data) - self.pos:
                raise AMFError(
                    f"truncated AMF0 data: strict array of {count} elements at offset {start} "
                    f"cannot fit in the {len(self.data) - self.pos} bytes left"
                )
            return [self.value(depth + 1) for _ in range(count)]
        if marker == DATE:
            millis = _DOUBLE.unpack(self.take(8, "date"))[0]
            self.take(2, "date time zone")
            try:
                if not math.isfinite(millis):
                    raise OverflowError
                return _EPOCH + _dt.timedelta(milliseconds=millis)
            except OverflowError:
                raise AMFError(f"AMF0 date out of range at offset {start}") from None
        if marker == OBJECT_END:
            raise AMFError(f"unexpected AMF0 object end marker at offset {start}")
        name = _MARKER_NAMES.get(marker)
        if name is not None:
            raise AMFError(f"unsupported AMF0 type {name} (0x{marker:02x}) at offset {start}")
        raise AMFError(f"invalid AMF0 type marker 0x{marker:02x} at offset {start}")

    def properties(self, target: dict[str, Any], depth: int) -> None:
        while True:
            key = self.text(2)
            if key == "" and self.pos < len(self.data) and self.data[self.pos] == OBJECT_END:
                self.pos += 1
                return
            target[key] = self.value(depth + 1)
