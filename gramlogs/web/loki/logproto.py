"""Loki's protobuf push body: snappy-compressed ``logproto.PushRequest``, read by hand.

The messages (Loki's ``pkg/push/push.proto``, Apache-2.0), as far as a push uses them::

    PushRequest      { repeated StreamAdapter streams = 1; string format = 2; }
    StreamAdapter    { string labels = 1; repeated EntryAdapter entries = 2; uint64 hash = 3; }
    EntryAdapter     { google.protobuf.Timestamp timestamp = 1; string line = 2;
                       repeated LabelPairAdapter structuredMetadata = 3;
                       repeated LabelPairAdapter parsed = 4; }   // never sent by clients
    LabelPairAdapter { string name = 1; string value = 2; }
    Timestamp        { int64 seconds = 1; int32 nanos = 2; }

A small wire decoder rather than the ``protobuf`` runtime: four messages of a few scalar fields
read in one walk that counts entries as it goes (413 past the cap before the rest is built),
tells a missing timestamp from the epoch (proto3 classes cannot), and names the stream and
entry of each problem; and it needs no message classes built from a descriptor, which mypy
cannot type. Unknown fields are skipped, as protobuf does.

The body is snappy's block format (what Promtail, Alloy and winston-loki send), inflated by
``cramjam`` after its declared length is checked against the body limit.

A stream's ``labels`` is a selector's text, ``{a="b", c="d"}``: :func:`parse_labels` reads it
strictly (``=`` matchers only, Go-quoted or back-quoted values, each name once).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import cramjam

from gramlogs.core.errors import BadRequest, PayloadTooLarge, shorten

__all__ = ["Entry", "PushedStream", "decode_push_request", "parse_labels", "snappy_inflate"]

# (Unix nanoseconds or None when the entry has no timestamp, the line, structured metadata)
Entry = tuple[int | None, str, dict[str, str]]


@dataclass(slots=True)
class PushedStream:
    """One stream of a push: where it is in the body, its labels, its entries (or for one that
    is not an entry, why). ``problem`` says why its labels cannot be used. The batch is refused
    for either, naming them."""

    where: str
    labels: dict[str, str]
    entries: list[Entry | str] = field(default_factory=list)
    problem: str | None = None


class _Malformed(Exception):
    """Bytes that are not the PushRequest they should be; the message says where."""


_NOT = "the body is not a snappy-compressed protobuf PushRequest"
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def snappy_inflate(body: bytes, limit: int) -> bytes:
    """The snappy block ``body`` inflated; 413 when it declares more than ``limit`` bytes, 400
    when it does not inflate."""
    try:
        declared, _ = _varint(body, 0, len(body))
    except _Malformed:
        raise BadRequest(f"{_NOT}: it does not start with snappy's length") from None
    if declared > limit:
        raise PayloadTooLarge(
            f"the request body inflates to {declared} bytes; at most {limit} are allowed "
            "(GRAMLOGS_MAX_BODY_BYTES)"
        )
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise BadRequest(f"{_NOT}: it is not valid snappy ({exc})") from None


def decode_push_request(data: bytes, cap: int) -> list[PushedStream]:
    """The streams of a (snappy-inflated) PushRequest; 400 naming where it does not decode,
    413 past ``cap`` entries in all (counted as they are read)."""
    streams: list[PushedStream] = []
    count = 0
    try:
        for number, wire, start, end in _fields(data, 0, len(data), "$"):
            if number != 1:
                continue
            where = f"streams[{len(streams)}]"
            _expect(wire, _BYTES, where)
            stream = _stream(data, start, end, where)
            count += len(stream.entries)
            if count > cap:
                raise PayloadTooLarge(f"a push holds at most {cap} entries; this one has more")
            streams.append(stream)
    except _Malformed as exc:
        raise BadRequest(f"{_NOT}: {exc}") from None
    return streams


def _stream(data: bytes, start: int, end: int, where: str) -> PushedStream:
    text = ""
    entries: list[Entry | str] = []
    for number, wire, s, e in _fields(data, start, end, where):
        if number == 1:
            _expect(wire, _BYTES, f"{where}.labels")
            text = _text(data, s, e, f"{where}.labels")
        elif number == 2:
            _expect(wire, _BYTES, f"{where}.entries[{len(entries)}]")
            entries.append(_entry(data, s, e, f"{where}.entries[{len(entries)}]"))
    stream = PushedStream(where, {}, entries)
    try:
        stream.labels = parse_labels(text)
    except ValueError as exc:
        stream.problem = f"{where}.labels: {exc}"
    return stream


def _entry(data: bytes, start: int, end: int, where: str) -> Entry:
    ns: int | None = None
    line = ""
    metadata: dict[str, str] = {}
    for number, wire, s, e in _fields(data, start, end, where):
        if number == 1:
            _expect(wire, _BYTES, f"{where}.timestamp")
            ns = _timestamp(data, s, e, f"{where}.timestamp")
        elif number == 2:
            _expect(wire, _BYTES, f"{where}.line")
            line = _text(data, s, e, f"{where}.line")
        elif number == 3:
            at = f"{where}.structuredMetadata[{len(metadata)}]"
            _expect(wire, _BYTES, at)
            name, value = _pair(data, s, e, at)
            metadata[name] = value
    return ns, line, metadata


def _pair(data: bytes, start: int, end: int, where: str) -> tuple[str, str]:
    name = value = ""
    for number, wire, s, e in _fields(data, start, end, where):
        if number in (1, 2):
            _expect(wire, _BYTES, where)
            if number == 1:
                name = _text(data, s, e, f"{where}.name")
            else:
                value = _text(data, s, e, f"{where}.value")
    return name, value


def _timestamp(data: bytes, start: int, end: int, where: str) -> int:
    seconds = nanos = 0
    for number, wire, s, _ in _fields(data, start, end, where):
        if number in (1, 2):
            _expect(wire, _VARINT, where)
            # int64 and int32 are two's complement in 64 bits on the wire.
            value = s - (1 << 64) if s >= 1 << 63 else s
            if number == 1:
                seconds = value
            else:
                nanos = value
    if not 0 <= nanos < 1_000_000_000:
        raise _Malformed(f"{where}.nanos must be within 0 .. 999999999; got {nanos}")
    return seconds * 1_000_000_000 + nanos


def _text(data: bytes, start: int, end: int, where: str) -> str:
    try:
        return data[start:end].decode("utf-8")
    except UnicodeDecodeError:
        raise _Malformed(f"{where} is not valid UTF-8") from None


def _expect(wire: int, wanted: int, where: str) -> None:
    if wire != wanted:
        raise _Malformed(f"{where} has wire type {wire}, not {wanted}")


def _fields(data: bytes, start: int, end: int, where: str) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, start, end) of each field of the message in
    ``data[start:end]``; for a varint, ``start`` is its value."""
    i = start
    while i < end:
        key, i = _varint(data, i, end)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, i = _varint(data, i, end)
            yield number, wire, value, i
            continue
        if wire == _BYTES:
            size, i = _varint(data, i, end)
            begin, i = i, i + size
        elif wire == _FIXED64:
            begin, i = i, i + 8
        elif wire == _FIXED32:
            begin, i = i, i + 4
        else:  # groups (3, 4) have no place in a PushRequest; 6 and 7 do not exist
            raise _Malformed(f"{where} has a field of wire type {wire}")
        if i > end:
            raise _Malformed(f"{where} ends inside a field")
        yield number, wire, begin, i


def _varint(data: bytes, i: int, end: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while i < end:
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if byte < 0x80:
            return value, i
        shift += 7
        if shift > 63:
            break
    raise _Malformed("a varint is cut off or longer than 10 bytes")


# -- A stream's labels: the text of a selector of "=" matchers -----------------------------------

LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_NAME_AT = re.compile(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*")
_QUOTED = re.compile(r'"((?:[^"\\\n]|\\.)*)"|`([^`]*)`', re.DOTALL)
_SEPARATOR = re.compile(r"\s*(,|\})")
_ESCAPE = re.compile(
    r"\\(?:([abfnrtv\\\"'])|x([0-9a-fA-F]{2})|([0-7]{3})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8}))"
)
_SIMPLE_ESCAPES = {
    "a": b"\a",
    "b": b"\b",
    "f": b"\f",
    "n": b"\n",
    "r": b"\r",
    "t": b"\t",
    "v": b"\v",
    "\\": b"\\",
    '"': b'"',
    "'": b"'",
}


def parse_labels(text: str) -> dict[str, str]:
    """The labels of ``{a="b", c="d"}`` (Prometheus' label set text, which Loki's clients
    write); ValueError saying what is wrong."""
    at = len(text) - len(text.lstrip())
    if not text.startswith("{", at):
        raise ValueError(f'must be a label set such as {{app="web"}}; got {shorten(text)!r}')
    labels: dict[str, str] = {}
    at += 1
    if (closing := _SEPARATOR.match(text, at)) is not None and closing[1] == "}":
        at = closing.end()
    else:
        while True:
            name = _NAME_AT.match(text, at)
            if name is None:
                raise ValueError(f"expected a label name and = at offset {at} of {shorten(text)!r}")
            value = _QUOTED.match(text, name.end())
            if value is None:
                raise ValueError(f"expected a quoted value for {name[1]} in {shorten(text)!r}")
            if name[1] in labels:
                raise ValueError(f"label {name[1]} is given twice")
            labels[name[1]] = value[2] if value[2] is not None else _unquote(value[1])
            separator = _SEPARATOR.match(text, value.end())
            if separator is None:
                raise ValueError(f"expected , or }} at offset {value.end()} of {shorten(text)!r}")
            at = separator.end()
            if separator[1] == "}":
                break
    if text[at:].strip():
        raise ValueError(f"unexpected text after the closing }} of {shorten(text)!r}")
    if not labels:
        raise ValueError("a stream needs at least one label")
    return labels


def _unquote(body: str) -> str:
    """A Go double-quoted string's content (strconv.Quote's escapes; \\x and octal are bytes)."""
    if "\\" not in body:
        return body
    out = bytearray()
    at = 0
    for m in _ESCAPE.finditer(body):
        if "\\" in body[at : m.start()]:
            break
        out += body[at : m.start()].encode()
        simple, hexa, octal, short, long = m.groups()
        if simple is not None:
            out += _SIMPLE_ESCAPES[simple]
        elif hexa is not None or octal is not None:
            value = int(hexa, 16) if hexa is not None else int(octal, 8)
            if value > 0xFF:
                raise ValueError(f"invalid escape \\{octal} in a label value")
            out.append(value)
        else:
            point = int(short or long, 16)
            if point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
                raise ValueError(f"invalid escape of code point {point:#x} in a label value")
            out += chr(point).encode()
        at = m.end()
    if "\\" in body[at:]:
        raise ValueError(f"invalid escape in the label value {shorten(body)!r}")
    out += body[at:].encode()
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"the label value {shorten(body)!r} is not valid UTF-8") from None
