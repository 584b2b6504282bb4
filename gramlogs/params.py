"""Query-string parsing shared by the dialects: each parser names its parameter in its error."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from starlette.requests import Request

from gramlogs import ids
from gramlogs.errors import (
    InvalidEnumValue,
    InvalidFieldType,
    InvalidFormat,
    InvalidLength,
    InvalidRange,
)

__all__ = [
    "MAX_TEXT_LENGTH",
    "first_values",
    "parse_enum",
    "parse_int",
    "parse_text",
    "parse_timestamp",
    "parse_uuid",
]

# Longest free-text filter (keyword, executionId), in characters. Far above any real search,
# and it keeps a keyword's trigram lookup small.
MAX_TEXT_LENGTH = 1024


def first_values(request: Request) -> dict[str, str]:
    """Each parameter's first value; empty values mean "not given" and are dropped."""
    found: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in found:
            found[name] = value
    return {name: value for name, value in found.items() if value != ""}


def parse_uuid(name: str, value: str) -> uuid.UUID:
    try:
        return ids.parse_uuid(value)
    except ids.IdError:
        raise InvalidFormat.of(name, value, "a uuid") from None


def parse_timestamp(name: str, value: str) -> datetime:
    try:
        return ids.parse_rfc3339(value)
    except ids.IdError:
        raise InvalidFormat.of(name, value, "an RFC 3339 date-time") from None


def parse_enum(name: str, value: str, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if value not in allowed:
        raise InvalidEnumValue.of(name, value, allowed)
    return value


def parse_int(name: str, value: str, minimum: int, maximum: int | None = None) -> int:
    text = value.strip()
    # int() alone would also take "1_000" and non-ASCII digits; the wire format is plain decimal.
    digits = text[1:] if text[:1] in "+-" else text
    if not (digits.isascii() and digits.isdigit()):
        raise InvalidFieldType.of(name, value, "integer")
    # Past 18 digits the exact value cannot matter; keep int() away from huge strings.
    number = int(text) if len(digits) <= 18 else (-1 if text[0] == "-" else 1) * 10**19
    shown = text if len(text) <= 40 else text[:40] + "…"
    if number < minimum:
        raise InvalidRange.at_least(name, minimum, shown)
    if maximum is not None and number > maximum:
        raise InvalidRange.at_most(name, maximum, shown)
    return number


def parse_text(name: str, value: str) -> str:
    """A free-text filter, taken literally; PostgreSQL text cannot hold NUL, so it is refused."""
    if len(value) > MAX_TEXT_LENGTH:
        raise InvalidLength.at_most(name, MAX_TEXT_LENGTH, len(value))
    if "\x00" in value:
        raise InvalidFormat(f"{name} must not contain NUL characters")
    return value
