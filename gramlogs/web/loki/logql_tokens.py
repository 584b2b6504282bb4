"""LogQL's tokens: what logql.py's parser reads, each with where it starts in the query.

A string token carries its value (Go's escapes resolved), a duration token its nanoseconds, a
number token its float. Whitespace and ``#`` comments (to the end of the line) separate tokens
and are dropped. Words (``sum``, ``by``, ``json``, label names) are all :data:`IDENT`: LogQL's
keywords depend on where they stand, so the parser decides.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = [
    "BYTES",
    "DURATION",
    "DURATION_UNITS",
    "EOF",
    "IDENT",
    "NUMBER",
    "OP",
    "STRING",
    "Token",
    "TokenError",
    "tokenize",
    "where",
]

IDENT = "ident"
STRING = "string"
NUMBER = "number"
DURATION = "duration"
BYTES = "bytes"  # 5KB: a valid LogQL value outside the subset, kept to name it in the error
OP = "op"
EOF = "end of query"


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str  # as written (for an OP: the operator itself)
    pos: int  # offset in the query
    value: str | float | int | None = None


class TokenError(ValueError):
    """Text that is no LogQL token; ``pos`` is where."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.pos = pos


# Longest first, so that "|=" is never read as "|" then "=". `|>` and `!>` (pattern line
# filters) and the arithmetic operators are valid LogQL, read so as to be named in the error.
_OPERATORS = (
    "|=", "|~", "|>", "!=", "!~", "!>", "=~", "==", ">=", "<=",
    "{", "}", "(", ")", "[", "]", ",", "|", "=", ">", "<", "+", "-", "*", "/", "%", "^",
)  # fmt: skip
_SPACE = re.compile(r"(?:\s+|#[^\n]*)+")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Prometheus' durations (what Loki's ranges take): whole amounts, largest unit first.
# ASCII digits only: Python's \d would take any script's, which float() reads but LogQL does not.
_DURATION = re.compile(r"(?:[0-9]+(?:ms|[smhdwy]))+(?![A-Za-z0-9_.])")
_DURATION_PART = re.compile(r"([0-9]+)(ms|[smhdwy])")
_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DIGITS = frozenset("0123456789")
_SUFFIX = re.compile(r"[A-Za-z_µ][A-Za-z0-9_µ]*")
_BYTES_UNIT = re.compile(r"(?:[kKMGTPE]i?)?B", re.IGNORECASE)
# Largest first: render() writes a range with them in this order.
DURATION_UNITS = {
    "y": 365 * 86_400 * 10**9,
    "w": 7 * 86_400 * 10**9,
    "d": 86_400 * 10**9,
    "h": 3_600 * 10**9,
    "m": 60 * 10**9,
    "s": 10**9,
    "ms": 10**6,
}
_UNIT_ORDER = tuple(DURATION_UNITS)
# As Prometheus and Go: a duration is an int64 of nanoseconds (about 292 years).
_MAX_DURATION_NS = 2**63 - 1
_SIMPLE_ESCAPES = {
    "a": 0x07, "b": 0x08, "f": 0x0C, "n": 0x0A, "r": 0x0D, "t": 0x09, "v": 0x0B,
    "\\": 0x5C, '"': 0x22,
}  # fmt: skip


def where(text: str, pos: int) -> str:
    """``column N`` (1-based), or ``line L, column N`` in a query of several lines."""
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"column {column}" if line == 1 else f"line {line}, column {column}"


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, ending with an :data:`EOF` token; :class:`TokenError` otherwise."""
    tokens: list[Token] = []
    pos = 0
    while True:
        space = _SPACE.match(text, pos)
        if space:
            pos = space.end()
        if pos >= len(text):
            tokens.append(Token(EOF, "", pos))
            return tokens
        token = _token(text, pos)
        tokens.append(token)
        pos += len(token.text)


def _token(text: str, pos: int) -> Token:
    c = text[pos]
    if c == '"':
        return _quoted(text, pos)
    if c == "`":
        end = text.find("`", pos + 1)
        if end < 0:
            raise TokenError("a raw string (`…`) is not closed", pos)
        # As Go's strconv.Unquote does: carriage returns are dropped from raw strings.
        return Token(STRING, text[pos : end + 1], pos, text[pos + 1 : end].replace("\r", ""))
    if c in _DIGITS or (c == "." and text[pos + 1 : pos + 2] in _DIGITS):
        return _numeric(text, pos)
    ident = _IDENT.match(text, pos)
    if ident:
        return Token(IDENT, ident.group(), pos, ident.group())
    for op in _OPERATORS:
        if text.startswith(op, pos):
            return Token(OP, op, pos)
    raise TokenError(f"unexpected character {c!r}", pos)


def _numeric(text: str, pos: int) -> Token:
    duration = _DURATION.match(text, pos)
    if duration:
        return Token(DURATION, duration.group(), pos, _duration_ns(duration.group(), pos))
    number = _NUMBER.match(text, pos)
    assert number is not None  # _token saw a digit, or a dot before one
    suffix = _SUFFIX.match(text, number.end())
    if suffix is None:
        value = float(number.group())
        if math.isinf(value):
            raise TokenError(f"the number {number.group()} is too large", pos)
        return Token(NUMBER, number.group(), pos, value)
    written = text[pos : suffix.end()]
    if _BYTES_UNIT.fullmatch(suffix.group()):
        return Token(BYTES, written, pos)
    if (
        re.fullmatch(r"[0-9]+(?:ms|[smhdwy])", number.group() + suffix.group()[:1])
        or "." in written
    ):
        raise TokenError(
            f"invalid duration {written!r}: whole amounts of ms, s, m, h, d, w, y, e.g. 1h30m",
            pos,
        )
    raise TokenError(f"invalid number {written!r}", pos)


def _duration_ns(written: str, pos: int) -> int:
    total = 0
    last = -1
    for amount, unit in _DURATION_PART.findall(written):
        rank = _UNIT_ORDER.index(unit)
        if rank <= last:
            raise TokenError(
                f"invalid duration {written!r}: units go from the largest to the smallest, "
                "each once, e.g. 1h30m",
                pos,
            )
        last = rank
        total += int(amount) * DURATION_UNITS[unit]
    if total > _MAX_DURATION_NS:
        raise TokenError(f"the duration {written} is too long: at most 292y", pos)
    return total


def _quoted(text: str, pos: int) -> Token:
    """A double-quoted string with Go's escapes; octal and ``\\x`` escapes are bytes, so the
    result is decoded as UTF-8 at the end, as Go's string would be read."""
    out = bytearray()
    i = pos + 1
    while i < len(text):
        c = text[i]
        if c == '"':
            try:
                value = out.decode("utf-8")
            except UnicodeDecodeError:
                raise TokenError("the string's escapes are not valid UTF-8", pos) from None
            return Token(STRING, text[pos : i + 1], pos, value)
        if c == "\n":
            break
        if c != "\\":
            out += c.encode("utf-8", "surrogatepass")
            i += 1
            continue
        i = _escape(text, i, out)
    raise TokenError('a string ("…") is not closed before the end of its line', pos)


def _escape(text: str, i: int, out: bytearray) -> int:
    """Appends the escape at ``text[i]`` (a backslash) to ``out``; the offset after it."""
    kind = text[i + 1 : i + 2]
    if kind in _SIMPLE_ESCAPES:
        out.append(_SIMPLE_ESCAPES[kind])
        return i + 2
    digits, base, width = {"x": ("0-9a-fA-F", 16, 2), "u": ("0-9a-fA-F", 16, 4)}.get(
        kind, ("0-7", 8, 3)
    )
    if kind == "U":
        digits, base, width = "0-9a-fA-F", 16, 8
    start = i + 1 if base == 8 else i + 2
    code = text[start : start + width]
    if not re.fullmatch(f"[{digits}]{{{width}}}", code):
        raise TokenError(f"invalid escape \\{kind} in a string", i)
    value = int(code, base)
    if kind in "uU":
        if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
            raise TokenError(f"invalid escape \\{kind}{code}: not a Unicode character", i)
        out += chr(value).encode("utf-8")
    elif value > 0xFF:
        raise TokenError(f"invalid escape \\{code}: octal escapes end at \\377", i)
    else:
        out.append(value)
    return start + width
