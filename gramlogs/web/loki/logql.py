"""LogQL, the subset gramlogs answers: its syntax tree and its parser.

The subset (docs/grafana.md says it to users)::

    query      = log_query | metric
    log_query  = selector stage*
    selector   = "{" matcher ("," matcher)* "}"             at least one matcher
    matcher    = label ("=" | "!=" | "=~" | "!~") string
    stage      = line filter:  ("|=" | "!=" | "|~" | "!~") string
               | "|" "json" | "|" "logfmt"
               | "|" "drop" label ("," label)*
               | "|" label_predicate                         after a parser, or on any label
               | "|" "line_format" string
    label_predicate = comparison | label_predicate ("and" | "," | "or") label_predicate
                    | "(" label_predicate ")"
    comparison = label ("=" | "!=" | "=~" | "!~") string
               | label ("==" | "!=" | ">" | ">=" | "<" | "<=") number
    metric     = range_fn "(" log_query "[" duration "]" ")"
               | agg [grouping] "(" metric ")" | agg "(" metric ")" grouping
               | "topk" [grouping] "(" integer "," metric ")"
               | "vector" "(" number ")"
               | metric "+" metric
               | "(" metric ")"
    range_fn   = "count_over_time" | "rate" | "bytes_over_time"
    agg        = "sum" | "count" | "min" | "max"
    grouping   = "by" "(" [label ("," label)*] ")"

Strings are LogQL's: double-quoted with Go's escapes, or back-quoted raw. Durations are Go's
(``1m``, ``30s``, ``1h30m``, ``500ms``). Anything else is a :class:`LogQLError` naming what is
not supported, which the HTTP layer answers with a 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gramlogs.core.errors import BadRequest

__all__ = [
    "And",
    "BinaryOp",
    "Comparison",
    "Drop",
    "LabelFilter",
    "LabelPredicate",
    "LineFilter",
    "LineFormat",
    "LogQLError",
    "LogQuery",
    "Matcher",
    "MetricExpr",
    "Or",
    "Parser",
    "Query",
    "RangeAggregation",
    "Stage",
    "VectorAggregation",
    "VectorLiteral",
    "parse",
]

MatchOp = Literal["=", "!=", "=~", "!~"]
LineOp = Literal["|=", "!=", "|~", "!~"]
CompareOp = Literal["=", "!=", "=~", "!~", "==", ">", ">=", "<", "<="]


class LogQLError(BadRequest):
    """A query gramlogs cannot parse, or one outside the subset; the message says which part."""


@dataclass(frozen=True, slots=True)
class Matcher:
    """One matcher of a stream selector: ``label op "value"``."""

    label: str
    op: MatchOp
    value: str


@dataclass(frozen=True, slots=True)
class LineFilter:
    """``|= "x"`` (contains), ``!= "x"``, ``|~ "re"`` (RE2 match, ``(?i)`` allowed), ``!~``."""

    op: LineOp
    value: str


@dataclass(frozen=True, slots=True)
class Parser:
    """``| json`` or ``| logfmt``: the line's fields become labels (``__error__`` on failure)."""

    kind: Literal["json", "logfmt"]


@dataclass(frozen=True, slots=True)
class Drop:
    """``| drop a, b``: these labels go."""

    labels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Comparison:
    """``label op value``: a string value for ``= != =~ !~``; a float for ``== != > >= < <=``
    with a number (then ``numeric`` is True and a label that is not a number fails it)."""

    label: str
    op: CompareOp
    value: str | float
    numeric: bool = False


@dataclass(frozen=True, slots=True)
class And:
    left: LabelPredicate
    right: LabelPredicate


@dataclass(frozen=True, slots=True)
class Or:
    left: LabelPredicate
    right: LabelPredicate


LabelPredicate = Comparison | And | Or


@dataclass(frozen=True, slots=True)
class LabelFilter:
    """``| predicate``: keeps the lines whose labels satisfy it."""

    predicate: LabelPredicate


@dataclass(frozen=True, slots=True)
class LineFormat:
    """``| line_format "template"``: the line becomes the template (Go text/template; gramlogs
    fills ``{{.label}}`` and ``{{ .label }}`` and refuses other actions)."""

    template: str


Stage = LineFilter | Parser | Drop | LabelFilter | LineFormat


@dataclass(frozen=True, slots=True)
class LogQuery:
    """A stream selector and its pipeline, in order."""

    matchers: tuple[Matcher, ...]
    stages: tuple[Stage, ...] = ()


@dataclass(frozen=True, slots=True)
class RangeAggregation:
    """``fn(log_query [range])``: per stream, over the ``range_ns`` before each step."""

    function: Literal["count_over_time", "rate", "bytes_over_time"]
    query: LogQuery
    range_ns: int


@dataclass(frozen=True, slots=True)
class VectorAggregation:
    """``op by (labels) (inner)``; ``by`` None: no grouping clause (one series). ``k`` is
    topk's parameter (None for the others)."""

    op: Literal["sum", "count", "min", "max", "topk"]
    inner: MetricExpr
    by: tuple[str, ...] | None = None
    k: int | None = None


@dataclass(frozen=True, slots=True)
class VectorLiteral:
    """``vector(N)``: one series with no labels, N at every step."""

    value: float


@dataclass(frozen=True, slots=True)
class BinaryOp:
    """``left + right``: series with the same labels add up (a vector literal adds to each)."""

    op: Literal["+"]
    left: MetricExpr
    right: MetricExpr


MetricExpr = RangeAggregation | VectorAggregation | VectorLiteral | BinaryOp
Query = LogQuery | MetricExpr


def parse(text: str) -> Query:
    """The syntax tree of ``text``; :class:`LogQLError` (a 400) naming what is wrong."""
    raise LogQLError("LogQL is not supported yet")
