"""A LogQL syntax tree written back as LogQL: ``parse(render(q)) == q`` for every tree parse()
returns (tests/test_logql.py checks it over random trees).

The text is canonical rather than as written: one space around stages and ``+``, ``and`` for
``,``, ``==`` for a number's ``=``, the grouping before the parentheses, the range at the end of
its log query, parentheses only where the tree would otherwise regroup, and strings double-quoted
with Go's escapes.
"""

from __future__ import annotations

from decimal import Decimal

from gramlogs.web.loki.logql import (
    And,
    BinaryOp,
    Comparison,
    Drop,
    LabelPredicate,
    LineFilter,
    LineFormat,
    LogQuery,
    Or,
    Parser,
    Query,
    RangeAggregation,
    Stage,
    VectorAggregation,
    VectorLiteral,
)
from gramlogs.web.loki.logql_tokens import DURATION_UNITS

__all__ = ["render"]


def render(query: Query) -> str:
    """``query`` as LogQL that :func:`parse` reads back as the same tree."""
    if isinstance(query, LogQuery):
        return _render_log(query)
    if isinstance(query, RangeAggregation):
        return f"{query.function}({_render_log(query.query)} [{_render_duration(query.range_ns)}])"
    if isinstance(query, VectorAggregation):
        by = "" if query.by is None else f" by ({', '.join(query.by)})"
        k = "" if query.k is None else f"{query.k}, "
        return f"{query.op}{by}{' ' if by else ''}({k}{render(query.inner)})"
    if isinstance(query, VectorLiteral):
        return f"vector({_render_number(query.value)})"
    # `+` is left-associative: only a sum on the right needs parentheses.
    right = render(query.right)
    if isinstance(query.right, BinaryOp):
        right = f"({right})"
    return f"{render(query.left)} {query.op} {right}"


def _render_log(query: LogQuery) -> str:
    matchers = ", ".join(f"{m.label}{m.op}{_quote(m.value)}" for m in query.matchers)
    return " ".join(["{" + matchers + "}", *map(_render_stage, query.stages)])


def _render_stage(stage: Stage) -> str:
    if isinstance(stage, LineFilter):
        return f"{stage.op} {_quote(stage.value)}"
    if isinstance(stage, Parser):
        return f"| {stage.kind}"
    if isinstance(stage, Drop):
        return f"| drop {', '.join(stage.labels)}"
    if isinstance(stage, LineFormat):
        return f"| line_format {_quote(stage.template)}"
    return f"| {_render_predicate(stage.predicate)}"


def _render_predicate(p: LabelPredicate) -> str:
    if isinstance(p, Comparison):
        value = _render_number(p.value) if p.numeric else _quote(str(p.value))
        return f"{p.label}{p.op}{value}"
    left = _render_predicate(p.left)
    right = _render_predicate(p.right)
    # Left-associative, `and` binding tighter than `or`: parenthesize what would regroup.
    if isinstance(p, And):
        if isinstance(p.left, Or):
            left = f"({left})"
        if not isinstance(p.right, Comparison):
            right = f"({right})"
        return f"{left} and {right}"
    if isinstance(p.right, Or):
        right = f"({right})"
    return f"{left} or {right}"


def _render_number(value: str | float) -> str:
    number = float(value)
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    # Without an exponent, and exact: the shortest repr, written out in full.
    return format(Decimal(repr(number)), "f")


def _render_duration(ns: int) -> str:
    parts = []
    for unit, size in DURATION_UNITS.items():
        amount, ns = divmod(ns, size)
        if amount:
            parts.append(f"{amount}{unit}")
    if ns or not parts:
        raise ValueError("a range is a positive whole number of milliseconds")
    return "".join(parts)


_QUOTED = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _quote(value: str) -> str:
    """``value`` as a Go string literal (control characters as ``\\xNN``)."""
    out = []
    for c in value:
        if c in _QUOTED:
            out.append(_QUOTED[c])
        elif c < " " or c == "\x7f":
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'
