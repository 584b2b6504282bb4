"""Parameters: each declared once (:class:`Param`: name, place, schema, description), parsed
by that declaration, and listed by it in /openapi.json; each parser names its parameter in its
error.

Text that reaches PostgreSQL must be valid UTF-8 without NUL characters (PostgreSQL refuses NUL
in ``text``); :func:`first_values` and :func:`header_text` check that here, where the error can
name the parameter, rather than letting the database refuse it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import unquote_to_bytes

from starlette.requests import Request
from starlette.types import Scope

from gramlogs.core import ids
from gramlogs.core.errors import (
    BadRequest,
    InvalidEnumValue,
    InvalidFieldType,
    InvalidFormat,
    InvalidLength,
    InvalidRange,
    Unauthorized,
    shorten,
)
from gramlogs.core.keys import basic, bearer

__all__ = [
    "EXTENSION",
    "GRAM_KEY",
    "GRAM_PROJECT",
    "IDEMPOTENCY_KEY",
    "IDEMPOTENCY_KEY_HEADER",
    "IDEMPOTENCY_KEY_PATTERN",
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "MAX_TEXT_LENGTH",
    "NO_NUL",
    "Param",
    "credential_headers",
    "enum",
    "first_values",
    "gram_credentials",
    "header_text",
    "idempotency_key",
    "integer",
    "parse_enum",
    "parse_int",
    "parse_query",
    "parse_text",
    "parse_timestamp",
    "parse_uuid",
    "presented_key",
    "string",
    "text",
    "uuid_param",
]

_TEXT = "UTF-8 text without NUL characters"
# The same rule as a JSON Schema pattern, for /openapi.json: saying so in the schema keeps a
# generator of valid requests from sending a NUL and a fuzzer from counting the 400 as a fault.
NO_NUL = "^[^\\u0000]*$"
# Longest free-text filter (keyword, executionId), in characters. Far above any real search,
# and it keeps a keyword's trigram lookup small.
MAX_TEXT_LENGTH = 1024
# The write endpoints' Idempotency-Key (storage/idempotency.py): Stripe allows 255 characters;
# printable ASCII, what the IETF draft's sf-string may hold.
IDEMPOTENCY_KEY = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY_LENGTH = 255
IDEMPOTENCY_KEY_PATTERN = "^[ -~]+$"
_PRINTABLE_ASCII = re.compile(r"[ -~]+\Z")


def first_values(request: Request) -> dict[str, str]:
    """Each parameter's first value; empty values mean "not given" and are dropped."""
    return parse_query(request.scope["query_string"])


def parse_query(raw: bytes) -> dict[str, str]:
    """:func:`first_values` of a raw query string.

    Starlette would decode invalid UTF-8 to U+FFFD and pass NUL through; here either is a 400
    ``invalid_format`` naming the parameter. Unknown parameters are checked too: one rule for
    the whole query string is easier to state than one per parameter.
    """
    found: dict[str, str] = {}
    for part in raw.split(b"&"):
        if not part:
            continue
        name_bytes, _, value_bytes = part.partition(b"=")
        name = _decode(name_bytes, None)
        value = _decode(value_bytes, name)
        if name not in found:
            found[name] = value
    return {name: value for name, value in found.items() if value != ""}


def _decode(raw: bytes, param: str | None) -> str:
    if b"%" in raw or b"+" in raw:
        raw = unquote_to_bytes(raw.replace(b"+", b" "))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        shown = raw.decode("utf-8", "replace").replace("\x00", "\ufffd")
        raise InvalidFormat.of(param or "a query parameter name", shown, _TEXT)
    return text


def header_text(name: str, value: str) -> str:
    """A header value bound for the database; NUL and other control characters are a 400.

    Header values arrive decoded as Latin-1, so a NUL can only come through an ASGI server that
    does not refuse it (uvicorn's parser does); checked all the same, before any query.
    """
    if not value.isprintable():
        raise InvalidFormat.of(name, value, "printable text")
    return value


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
    shown = shorten(text)
    if number < minimum:
        raise InvalidRange.at_least(name, minimum, shown)
    if maximum is not None and number > maximum:
        raise InvalidRange.at_most(name, maximum, shown)
    return number


def parse_text(name: str, value: str, most: int = MAX_TEXT_LENGTH) -> str:
    """A free-text filter, taken literally (NUL is refused by :func:`first_values` already)."""
    if len(value) > most:
        raise InvalidLength.at_most(name, most, len(value))
    return value


# Which header carries the key, by route: the rate limiter (ratelimit.py) and the handlers both
# ask :func:`presented_key`, so the key that is limited is the key that is checked.
_POLY_PREFIX = "/functions/"
_OTLP_PATH = "/v1/logs"
_LOKI_PREFIX = "/loki/"


def credential_headers(path: str) -> tuple[str, ...]:
    """The header(s) the route at ``path`` authenticates with, the one used first when both are
    sent: Poly's routes take ``Authorization`` (Bearer), OTLP's ``Gram-Key`` or else
    ``Authorization`` (what OpenTelemetry exporters can set), Loki's likewise (basic auth's
    password or a Bearer token: Grafana's data source and log shippers), every other route
    ``Gram-Key``."""
    if path.startswith(_POLY_PREFIX):
        return ("authorization",)
    if path == _OTLP_PATH or path.startswith(_LOKI_PREFIX):
        return ("gram-key", "authorization")
    return ("gram-key",)


def presented_key(scope: Scope) -> str | None:
    """The key a request presents for its route (:func:`credential_headers`); None without one.
    Any other key header is ignored, by the handler and the rate limiter alike."""
    headers: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name, value)  # the first of a repeated header, as Starlette reads it
    for name in credential_headers(scope["path"]):
        value = headers.get(name.encode())
        if value is None:
            continue
        text = value.decode("latin-1")
        # Loki's clients (Grafana's data source, shippers) send the key as basic auth's
        # password, the project slug as its user (web/loki/auth.py).
        if (pair := basic(text)) is not None and pair[1]:
            return pair[1]
        if key := bearer(text):
            return key
    return None


def gram_credentials(request: Request) -> tuple[str, str]:
    """The key and project slug of a Gram-dialect request; 401 when either is missing."""
    key = presented_key(request.scope)
    if key is None:
        raise Unauthorized("missing Gram-Key header")
    slug = header_text("Gram-Project", request.headers.get("gram-project", "").strip())
    if not slug:
        raise Unauthorized("missing Gram-Project header")
    return key, slug


def idempotency_key(request: Request) -> str | None:
    """The request's ``Idempotency-Key``, taken as sent, or None without one (400 when it is
    empty, longer than 255 characters, not printable ASCII, or sent twice)."""
    value = request.headers.get("idempotency-key")
    if value is None:
        return None
    if len(request.headers.getlist("idempotency-key")) > 1:
        raise BadRequest(f"{IDEMPOTENCY_KEY} must be sent once")
    if len(value) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise InvalidLength.at_most(IDEMPOTENCY_KEY, MAX_IDEMPOTENCY_KEY_LENGTH, len(value))
    if not _PRINTABLE_ASCII.match(value):
        raise InvalidFormat.of(IDEMPOTENCY_KEY, value, "printable ASCII text, 1 to 255 characters")
    return value


# -- Declarations -----------------------------------------------------------------------------

Json = dict[str, Any]
# Marks, in /openapi.json, what Gram's API does not have.
EXTENSION = "x-gramlogs-extension"
T = TypeVar("T")


def _as_is(name: str, value: str) -> str:
    return value


@dataclass(frozen=True, slots=True)
class Param(Generic[T]):
    """One parameter of an endpoint, declared once: the handler parses it with :meth:`get` or
    :meth:`value`, and /openapi.json lists it (web/openapi.py), so the two cannot disagree.

    ``parse`` takes the name and the raw value and raises an error naming the parameter.
    ``default`` is what an absent parameter means; the kinds below decide whether the schema
    says so (Goa states ``per_page``'s default, not ``ts_start``'s). ``goa``: the form Goa gives
    a parameter (the description repeated in the schema, ``allowEmptyValue``), which every query
    parameter and Gram header has, and a path parameter and ``Idempotency-Key`` do not.
    """

    name: str
    where: Literal["query", "header", "path"]
    description: str
    schema: Json
    parse: Callable[[str, str], T]
    default: T | None = None
    required: bool = False
    missing: str | None = None  # the 400's message when a required parameter is absent
    goa: bool = True
    extra: Json = field(default_factory=dict)  # more keys of the Parameter Object

    def get(self, params: Mapping[str, str]) -> T | None:
        """The parsed value, else the default, else None."""
        value = params.get(self.name)
        return self.default if value is None else self.parse(self.name, value)

    def value(self, params: Mapping[str, str]) -> T:
        """:meth:`get` of a parameter that has a default or is required (a 400 when absent)."""
        found = self.get(params)
        if found is None:
            raise BadRequest(self.missing or f"{self.name} is required")
        return found


def uuid_param(
    name: str, description: str, where: Literal["query", "path"] = "query", **options: Any
) -> Param[uuid.UUID]:
    schema = {"type": "string", "format": "uuid"}
    return Param(name, where, description, schema, parse_uuid, **options)


def text(name: str, description: str, *, most: int | None = None, **options: Any) -> Param[str]:
    """Free text, taken literally; at most ``most`` characters when given (400 beyond)."""
    schema: Json = {"type": "string", "pattern": NO_NUL}
    if most is None:
        return Param(name, "query", description, schema, _as_is, **options)
    schema["maxLength"] = most
    return Param(name, "query", description, schema, lambda n, v: parse_text(n, v, most), **options)


def enum(
    name: str,
    description: str,
    values: tuple[str, ...],
    *,
    default: str | None = None,
    listed: tuple[str, ...] | None = None,
    **options: Any,
) -> Param[str]:
    """One of ``values`` (the error lists them in this order); the schema's enum is ``listed``
    when given (the same values, Gram's first)."""
    schema: Json = {"type": "string", "enum": list(listed or values)}
    if default is not None:
        schema["default"] = default

    def parse(param: str, value: str) -> str:
        return parse_enum(param, value, values)

    return Param(name, "query", description, schema, parse, default=default, **options)


def integer(
    name: str,
    description: str,
    *,
    minimum: int,
    maximum: int | None = None,
    default: int | None = None,
    int64: bool = False,
    **options: Any,
) -> Param[int]:
    """An integer from ``minimum`` to ``maximum``; ``int64``: Goa's format for Gram's own."""
    schema: Json = {"type": "integer", "minimum": minimum}
    if int64:
        schema["format"] = "int64"
    if maximum is not None:
        schema["maximum"] = maximum
    if default is not None:
        schema["default"] = default

    def parse(param: str, value: str) -> int:
        return parse_int(param, value, minimum, maximum)

    return Param(name, "query", description, schema, parse, default=default, **options)


def timestamp(
    name: str,
    description: str,
    parse: Callable[[str, str], datetime] = parse_timestamp,
    **options: Any,
) -> Param[datetime]:
    """An RFC 3339 date-time; a default is not stated in the schema (Goa's has none)."""
    schema = {"type": "string", "format": "date-time"}
    return Param(name, "query", description, schema, parse, **options)


def string(
    name: str, description: str, where: Literal["query", "header"] = "query", **options: Any
) -> Param[str]:
    """Any string, as sent (a header's or a token's, which its reader checks)."""
    return Param(name, where, description, {"type": "string"}, _as_is, **options)


# The Gram dialect's credentials (read by gram_credentials, which the rate limiter shares).
GRAM_KEY = string("Gram-Key", "API Key header (a leading 'Bearer ' is tolerated)", "header")
GRAM_PROJECT = string("Gram-Project", "project header (the project's slug)", "header")
# The write endpoints' Idempotency-Key (idempotency_key; docs/ingestion.md): a resend with the
# same key and request is answered as the first send was, with Idempotent-Replayed.
IDEMPOTENCY_KEY_HEADER: Param[str] = Param(
    IDEMPOTENCY_KEY,
    "header",
    "Makes a resend safe: the same key with the same request (endpoint, content type, encoding "
    "and body) within GRAMLOGS_IDEMPOTENCY_HOURS (default 24) of the first store stores nothing "
    "and gets the first reply again, with Idempotent-Replayed: true; with another request, a "
    "422. Scoped to the project. 1 to 255 printable ASCII characters (else 400).",
    {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH,
        "pattern": IDEMPOTENCY_KEY_PATTERN,
    },
    _as_is,
    goa=False,
    extra={EXTENSION: True},
)
