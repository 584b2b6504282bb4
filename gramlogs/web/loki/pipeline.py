"""A log query's pipeline: its stages run on one line and its labels, in order.

A stage keeps the line or drops it, and may change the line (``line_format``) or the labels
(parsers, ``drop``). What a parser adds is kept apart (:attr:`Outcome.parsed`) because Loki's
``categorize-labels`` answer lists it apart from the stream's labels.

Loki's rules, as its LogQL documentation states them:

- ``| json`` flattens nested objects with ``_`` (``{"a":{"b":1}}`` is ``a_b="1"``), skips
  arrays and nulls, and writes numbers and booleans as their JSON text; a line that is not a
  JSON object gets ``__error__="JSONParserErr"``.
- ``| logfmt`` reads ``key=value`` pairs (values bare or double-quoted with Go's escapes, a bare
  key is ``""``); a line it cannot read gets ``__error__="LogfmtParserErr"``.
- A parsed key becomes a label name: every character outside ``[a-zA-Z0-9_]`` becomes ``_``, and
  a leading digit gets a ``_`` before it; a name the line's labels already have gets the suffix
  ``_extracted`` rather than overwriting them.
- Label filters compare a missing label as ``""``; regexes are anchored (the whole value);
  a numeric comparison fails on a label that is not a number.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from gramlogs.web.loki.logql import (
    And,
    Comparison,
    Drop,
    LabelFilter,
    LabelPredicate,
    LineFilter,
    LineFormat,
    LogQLError,
    Or,
    Parser,
    Stage,
)
from gramlogs.web.loki.selection import compile_regex, line_matches

__all__ = ["ERROR_LABEL", "Outcome", "Pipeline", "compile_pipeline", "parsed_pairs"]

ERROR_LABEL = "__error__"
_ERROR_DETAILS = "__error_details__"
_JSON_ERROR = "JSONParserErr"
_LOGFMT_ERROR = "LogfmtParserErr"
_EXTRACTED = "_extracted"

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
_NOT_LABEL_CHAR = re.compile(r"[^a-zA-Z0-9_]")


@dataclass(slots=True)
class Outcome:
    """A line that passed the pipeline: the line as it now reads, every label it has (stream
    labels, structured metadata and parsed ones, as the stages left them), and the names the
    parsers added."""

    line: str
    labels: dict[str, str]
    parsed: set[str] = field(default_factory=set)


_Step = Callable[[Outcome], bool]


@dataclass(frozen=True, slots=True)
class Pipeline:
    """Compiled stages; :meth:`run` is the pipeline over one line."""

    steps: tuple[_Step, ...]
    parses: bool  # a stage adds labels (a parser)

    def run(self, line: str, labels: dict[str, str]) -> Outcome | None:
        """The line's outcome, or None when a stage drops it. ``labels`` is not changed."""
        outcome = Outcome(line, dict(labels))
        for step in self.steps:
            if not step(outcome):
                return None
        return outcome


def compile_pipeline(stages: Sequence[Stage]) -> Pipeline:
    """The pipeline of ``stages``; a :class:`LogQLError` for what gramlogs cannot run (a
    line_format action other than ``{{.label}}``, an invalid regex)."""
    steps = tuple(_step(stage) for stage in stages)
    return Pipeline(steps, parses=any(isinstance(s, Parser) for s in stages))


def _step(stage: Stage) -> _Step:
    if isinstance(stage, LineFilter):
        check = line_matches(stage)
        return lambda o: check(o.line)
    if isinstance(stage, Parser):
        parse = _parse_json if stage.kind == "json" else _parse_logfmt
        return lambda o: _add_parsed(o, parse)
    if isinstance(stage, Drop):
        return _drop(stage.labels)
    if isinstance(stage, LabelFilter):
        predicate = _predicate(stage.predicate)
        return lambda o: predicate(o.labels)
    return _line_format(stage)


def _drop(names: tuple[str, ...]) -> _Step:
    def drop(o: Outcome) -> bool:
        for name in names:
            o.labels.pop(name, None)
            o.parsed.discard(name)
            if name == ERROR_LABEL:
                o.labels.pop(_ERROR_DETAILS, None)
        return True

    return drop


# -- Parsers ----------------------------------------------------------------------------------


class _ParseError(Exception):
    def __init__(self, kind: str, details: str) -> None:
        super().__init__(details)
        self.kind = kind
        self.details = details


def sanitize(key: str) -> str:
    """A parsed key as a label name (Loki's rule: see the module's docstring)."""
    name = _NOT_LABEL_CHAR.sub("_", key)
    if name and name[0].isdigit():
        name = "_" + name
    return name


def _add_parsed(o: Outcome, parse: Callable[[str], list[tuple[str, str]]]) -> bool:
    try:
        pairs = parse(o.line)
    except _ParseError as exc:
        o.labels[ERROR_LABEL] = exc.kind
        o.labels[_ERROR_DETAILS] = exc.details
        o.parsed.update((ERROR_LABEL, _ERROR_DETAILS))
        return True
    existing = set(o.labels) - o.parsed
    for key, value in pairs:
        name = sanitize(key)
        if not name:
            continue
        if name in existing:
            name += _EXTRACTED
        o.labels[name] = value
        o.parsed.add(name)
    return True


def parsed_pairs(kind: str, line: str) -> list[tuple[str, str]] | None:
    """What ``| json`` or ``| logfmt`` (``kind``) reads from ``line``, each key as a label
    name; None when the parser cannot read the line."""
    try:
        pairs = (_parse_json if kind == "json" else _parse_logfmt)(line)
    except _ParseError:
        return None
    return [(name, value) for key, value in pairs if (name := sanitize(key))]


def _parse_json(line: str) -> list[tuple[str, str]]:
    try:
        value = _decoder.decode(line)
    except msgspec.DecodeError as exc:
        raise _ParseError(_JSON_ERROR, str(exc)) from None
    if not isinstance(value, dict):
        raise _ParseError(_JSON_ERROR, "the line is not a JSON object")
    pairs: list[tuple[str, str]] = []
    _flatten(value, "", pairs)
    return pairs


def _flatten(obj: dict[str, Any], prefix: str, out: list[tuple[str, str]]) -> None:
    for key, value in obj.items():
        name = prefix + key
        if isinstance(value, dict):
            _flatten(value, name + "_", out)
        elif isinstance(value, str):
            out.append((name, value))
        elif isinstance(value, bool | int | float):
            out.append((name, _encoder.encode(value).decode()))
        # Arrays and nulls are skipped, as Loki's parser without parameters does.


_GO_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "/": "/"}


def _parse_logfmt(line: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] <= " ":
            i += 1
        if i >= n:
            break
        start = i
        while i < n and line[i] > " " and line[i] not in '="':
            i += 1
        key = line[start:i]
        if i < n and line[i] == '"':
            raise _ParseError(_LOGFMT_ERROR, f"unexpected '\"' at {i}")
        if not key:
            raise _ParseError(_LOGFMT_ERROR, f"unexpected '=' at {i}")
        if i >= n or line[i] != "=":
            pairs.append((key, ""))
            continue
        i += 1
        if i < n and line[i] == '"':
            value, i = _quoted(line, i)
        else:
            start = i
            while i < n and line[i] > " ":
                if line[i] in '="':
                    raise _ParseError(_LOGFMT_ERROR, f"unexpected {line[i]!r} at {i}")
                i += 1
            value = line[start:i]
        pairs.append((key, value))
    return pairs


def _quoted(line: str, i: int) -> tuple[str, int]:
    """The Go-quoted string starting at ``line[i]`` (a ``"``) and the index after it."""
    out: list[str] = []
    i += 1
    while i < len(line):
        c = line[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\" and i + 1 < len(line):
            nxt = line[i + 1]
            if nxt == "u" and i + 6 <= len(line):
                try:
                    out.append(chr(int(line[i + 2 : i + 6], 16)))
                except ValueError:
                    raise _ParseError(_LOGFMT_ERROR, f"invalid escape at {i}") from None
                i += 6
                continue
            if nxt not in _GO_ESCAPES:
                raise _ParseError(_LOGFMT_ERROR, f"invalid escape at {i}")
            out.append(_GO_ESCAPES[nxt])
            i += 2
            continue
        out.append(c)
        i += 1
    raise _ParseError(_LOGFMT_ERROR, "unterminated quoted value")


# -- Label filters ----------------------------------------------------------------------------

_Predicate = Callable[[dict[str, str]], bool]


def _predicate(p: LabelPredicate) -> _Predicate:
    if isinstance(p, And):
        left, right = _predicate(p.left), _predicate(p.right)
        return lambda labels: left(labels) and right(labels)
    if isinstance(p, Or):
        left, right = _predicate(p.left), _predicate(p.right)
        return lambda labels: left(labels) or right(labels)
    return _comparison(p)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else value


_NUMERIC: dict[str, Callable[[float, float], bool]] = {
    "==": lambda a, b: a == b,
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


def _comparison(c: Comparison) -> _Predicate:
    name = c.label
    if c.numeric or isinstance(c.value, float):
        if c.op not in _NUMERIC:
            raise LogQLError(f"the operator {c.op} does not compare numbers (label {name})")
        compare, bound = _NUMERIC[c.op], float(c.value)

        def numeric(labels: dict[str, str]) -> bool:
            value = _number(labels.get(name, ""))
            return value is not None and compare(value, bound)

        return numeric
    text = str(c.value)
    if c.op in ("=~", "!~"):
        pattern = compile_regex(text, f"the label filter on {name}")
        want = c.op == "=~"
        return lambda labels: (pattern.fullmatch(labels.get(name, "")) is not None) == want
    if c.op in ("=", "=="):
        return lambda labels: labels.get(name, "") == text
    if c.op == "!=":
        return lambda labels: labels.get(name, "") != text
    raise LogQLError(f"the operator {c.op} compares numbers, not the string {text!r}")


# -- line_format ------------------------------------------------------------------------------

_ACTION = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_FIELD = re.compile(r"\s*\.([a-zA-Z_][a-zA-Z0-9_]*)\s*")


def _line_format(stage: LineFormat) -> _Step:
    """Go's text/template reduced to ``{{.label}}``: literal text and label values."""
    parts: list[str | tuple[str]] = []  # text, or (label,)
    at = 0
    for m in _ACTION.finditer(stage.template):
        field_match = _FIELD.fullmatch(m.group(1))
        if field_match is None:
            raise LogQLError(
                f"line_format supports only {{{{.label}}}} actions, not {m.group(0)!r}"
            )
        parts.append(stage.template[at : m.start()])
        parts.append((field_match.group(1),))
        at = m.end()
    rest = stage.template[at:]
    if "{{" in rest:
        raise LogQLError(f"line_format has an unclosed action in {stage.template!r}")
    parts.append(rest)

    def render(o: Outcome) -> bool:
        o.line = "".join(p if isinstance(p, str) else o.labels.get(p[0], "") for p in parts)
        return True

    return render
