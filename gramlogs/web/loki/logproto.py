"""Loki's protobuf push body: snappy-compressed ``logproto.PushRequest``, read by hand.

The messages (Loki's ``pkg/push/push.proto``, Apache-2.0), as far as a push uses them::

    PushRequest      { repeated StreamAdapter streams = 1; string format = 2; }
    StreamAdapter    { string labels = 1; repeated EntryAdapter entries = 2; uint64 hash = 3; }
    EntryAdapter     { google.protobuf.Timestamp timestamp = 1; string line = 2;
                       repeated LabelPairAdapter structuredMetadata = 3;
                       repeated LabelPairAdapter parsed = 4; }   // never sent by clients
    LabelPairAdapter { string name = 1; string value = 2; }
    Timestamp        { int64 seconds = 1; int32 nanos = 2; }

Decoded by the ``protobuf`` runtime (its C implementation, upb, already here for OTLP), from
message classes built at import from the definitions above: ~1 µs a line, where a wire decoder
in Python took ~4.5 (benchmarks/loki.py). The runtime checks that strings are UTF-8; a missing
timestamp is told from the epoch by ``HasField`` (a message field). Unknown fields are skipped.

The body is snappy's block format (what Promtail, Alloy and winston-loki send), inflated by
``cramjam`` after its declared length is checked against the body limit.

A stream's ``labels`` is a selector's text, ``{a="b", c="d"}``: :func:`parse_labels` reads it
strictly (``=`` matchers only, Go-quoted or back-quoted values, each name once).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import cramjam
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

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


def _message_classes() -> Any:
    """The PushRequest class, built from the messages above at import (no generated code)."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="gramlogs/loki_push.proto", package="gramlogs.logproto", syntax="proto3"
    )
    field = descriptor_pb2.FieldDescriptorProto
    one, many = field.LABEL_OPTIONAL, field.LABEL_REPEATED

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> None:
        m = proto.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            f = m.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                f.type_name = f".gramlogs.logproto.{type_name}"

    message("Timestamp", ("seconds", 1, field.TYPE_INT64, one, ""),
            ("nanos", 2, field.TYPE_INT32, one, ""))  # fmt: skip
    message("LabelPairAdapter", ("name", 1, field.TYPE_STRING, one, ""),
            ("value", 2, field.TYPE_STRING, one, ""))  # fmt: skip
    message(
        "EntryAdapter",
        ("timestamp", 1, field.TYPE_MESSAGE, one, "Timestamp"),
        ("line", 2, field.TYPE_STRING, one, ""),
        ("structuredMetadata", 3, field.TYPE_MESSAGE, many, "LabelPairAdapter"),
    )
    message(
        "StreamAdapter",
        ("labels", 1, field.TYPE_STRING, one, ""),
        ("entries", 2, field.TYPE_MESSAGE, many, "EntryAdapter"),
        ("hash", 3, field.TYPE_UINT64, one, ""),
    )
    message("PushRequest", ("streams", 1, field.TYPE_MESSAGE, many, "StreamAdapter"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("gramlogs.logproto.PushRequest")
    )


_PushRequest = _message_classes()
_NOT = "the body is not a snappy-compressed protobuf PushRequest"


def snappy_inflate(body: bytes, limit: int) -> bytes:
    """The snappy block ``body`` inflated; 413 when it declares more than ``limit`` bytes, 400
    when it does not inflate."""
    declared = _length(body)
    if declared is None:
        raise BadRequest(f"{_NOT}: it does not start with snappy's length")
    if declared > limit:
        raise PayloadTooLarge(
            f"the request body inflates to {declared} bytes; at most {limit} are allowed "
            "(GRAMLOGS_MAX_BODY_BYTES)"
        )
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise BadRequest(f"{_NOT}: it is not valid snappy ({exc})") from None


def _length(body: bytes) -> int | None:
    """The varint that starts a snappy block: the inflated length (None: cut off or over 32
    bits, which snappy's format does not allow)."""
    value = 0
    for i, byte in enumerate(body[:5]):
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            return value
    return None


def decode_push_request(data: bytes, cap: int) -> list[PushedStream]:
    """The streams of a (snappy-inflated) PushRequest; 400 when it does not decode (a string
    that is not UTF-8 included), 413 past ``cap`` entries in all."""
    try:
        request = _PushRequest.FromString(data)
    except DecodeError as exc:
        raise BadRequest(f"{_NOT}: {exc}") from None
    if sum(len(stream.entries) for stream in request.streams) > cap:
        raise PayloadTooLarge(f"a push holds at most {cap} entries; this one has more")
    return [_stream(stream, f"streams[{i}]") for i, stream in enumerate(request.streams)]


def _stream(message: Any, where: str) -> PushedStream:
    entries: list[Entry | str] = []
    for i, entry in enumerate(message.entries):
        # proto3 tells a missing message field from an empty one (HasField), not so a scalar.
        pairs = entry.structuredMetadata
        metadata = {p.name: p.value for p in pairs} if pairs else {}
        if not entry.HasField("timestamp"):
            entries.append((None, entry.line, metadata))
            continue
        ts = entry.timestamp
        if not 0 <= ts.nanos < 1_000_000_000:
            raise BadRequest(
                f"{_NOT}: {where}.entries[{i}].timestamp.nanos must be within 0 .. 999999999;"
                f" got {ts.nanos}"
            )
        entries.append((ts.seconds * 1_000_000_000 + ts.nanos, entry.line, metadata))
    stream = PushedStream(where, {}, entries)
    try:
        stream.labels = parse_labels(message.labels)
    except ValueError as exc:
        stream.problem = f"{where}.labels: {exc}"
    return stream


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
