"""The protobuf wire format, read by hand: enough for the importers to pull the few fields they
need out of TensorBoard events and W&B records without the ``protobuf`` package.

A message is a sequence of (field number, wire type, payload). :func:`fields` walks one message
and yields each field's number and payload: an ``int`` for varints (unsigned; see
:func:`int64`), ``bytes`` for length-delimited fields (strings, bytes, nested messages, packed
repeated numbers), and ``bytes`` of length 8 or 4 for the fixed64/fixed32 types (doubles, floats).
Fields of a type the caller does not ask for are skipped by their wire type, so new fields in a
newer writer never break the reader.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Union

Payload = Union[int, bytes]

VARINT = 0
FIXED64 = 1
LENGTH = 2
FIXED32 = 5

_DOUBLE = struct.Struct("<d")
_FLOAT = struct.Struct("<f")


class DecodeError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def varint(buf: bytes, pos: int) -> tuple[int, int]:
    """The varint starting at ``pos`` and the position after it."""
    result = 0
    shift = 0
    while True:
        try:
            b = buf[pos]
        except IndexError:
            raise DecodeError("varint runs past the end of the message") from None
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise DecodeError("varint longer than 10 bytes")


def fields(buf: bytes) -> Iterator[tuple[int, Payload]]:
    """Each field of one message, in wire order: (field number, payload)."""
    pos = 0
    end = len(buf)
    while pos < end:
        # Almost every key is one byte (field numbers below 16); skip the varint call for those.
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = varint(buf, pos)
        number = key >> 3
        wire = key & 7
        if number == 0:
            raise DecodeError("field number 0")
        if wire == VARINT:
            b = buf[pos] if pos < end else 0x80
            if b < 0x80:
                yield number, b
                pos += 1
            else:
                value, pos = varint(buf, pos)
                yield number, value
        elif wire == LENGTH:
            size, pos = varint(buf, pos)
            if pos + size > end:
                raise DecodeError(f"field {number} runs past the end of the message")
            yield number, buf[pos : pos + size]
            pos += size
        elif wire == FIXED64:
            if pos + 8 > end:
                raise DecodeError(f"field {number} runs past the end of the message")
            yield number, buf[pos : pos + 8]
            pos += 8
        elif wire == FIXED32:
            if pos + 4 > end:
                raise DecodeError(f"field {number} runs past the end of the message")
            yield number, buf[pos : pos + 4]
            pos += 4
        else:  # groups (3, 4) are long deprecated and never used by these writers
            raise DecodeError(f"field {number} has unsupported wire type {wire}")


def int64(value: Payload) -> int:
    """A varint as a signed 64-bit (or 32-bit: negatives are sign-extended to 64) integer."""
    if not isinstance(value, int):
        raise DecodeError("expected a varint")
    value &= 0xFFFF_FFFF_FFFF_FFFF
    return value - (1 << 64) if value >= 1 << 63 else value


def uint(value: Payload) -> int:
    if not isinstance(value, int):
        raise DecodeError("expected a varint")
    return value


def double(value: Payload) -> float:
    if not isinstance(value, bytes) or len(value) != 8:
        raise DecodeError("expected a fixed64 double")
    result: float = _DOUBLE.unpack(value)[0]
    return result


def float32(value: Payload) -> float:
    if not isinstance(value, bytes) or len(value) != 4:
        raise DecodeError("expected a fixed32 float")
    result: float = _FLOAT.unpack(value)[0]
    return result


def message(value: Payload) -> bytes:
    """A length-delimited payload (a nested message, bytes)."""
    if not isinstance(value, bytes):
        raise DecodeError("expected a length-delimited field")
    return value


def string(value: Payload) -> str:
    return message(value).decode("utf-8", errors="replace")


def packed_varints(value: Payload) -> list[int]:
    """A repeated varint field, packed (one length-delimited payload) or not (one varint)."""
    if isinstance(value, int):
        return [value]
    out: list[int] = []
    pos = 0
    while pos < len(value):
        item, pos = varint(value, pos)
        out.append(item)
    return out
