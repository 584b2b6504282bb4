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

Strings are LogQL's: double-quoted with Go's escapes, or back-quoted raw. Durations are
Prometheus' (``1m``, ``30s``, ``1h30m``, ``500ms``, ``1d``; units ms s m h d w y, largest first).
A range may also stand right after the selector (``rate({a="b"}[1m] | json)``), as Loki allows;
``label = 200`` is read as ``label == 200``; ``#`` starts a comment to the end of the line.
Anything else is a :class:`LogQLError` naming what is not supported, which the HTTP layer answers
with a 400, its message starting with where (``column 14: `| pattern` is not supported``).
logql_render.py writes a tree back as LogQL.

The tokens are logql_tokens.py's; the parser is hand-written recursive descent, bounded in length
and depth (:data:`MAX_LENGTH`, :data:`MAX_DEPTH`) so that no query reaches Python's recursion
limit. Grafana's own grammar (@grafana/lezer-logql) accepts every query of the subset, which
tests/test_logql_grammar.py checks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, NoReturn, cast

from gramlogs.core.errors import BadRequest
from gramlogs.web.loki.logql_tokens import (
    BYTES,
    DURATION,
    EOF,
    IDENT,
    NUMBER,
    OP,
    STRING,
    Token,
    TokenError,
    tokenize,
    where,
)

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
RangeFunction = Literal["count_over_time", "rate", "bytes_over_time"]
AggregationOp = Literal["sum", "count", "min", "max", "topk"]


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

    function: RangeFunction
    query: LogQuery
    range_ns: int


@dataclass(frozen=True, slots=True)
class VectorAggregation:
    """``op by (labels) (inner)``; ``by`` None: no grouping clause (one series). ``k`` is
    topk's parameter (None for the others)."""

    op: AggregationOp
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


MAX_LENGTH = 10_000
MAX_DEPTH = 50

_RANGE_FUNCTIONS = ("count_over_time", "rate", "bytes_over_time")
_AGGREGATIONS = ("sum", "count", "min", "max", "topk")
# Valid LogQL outside the subset: named in the error rather than called a syntax error.
_OTHER_RANGE_FUNCTIONS = frozenset(
    {
        "avg_over_time", "sum_over_time", "min_over_time", "max_over_time", "stddev_over_time",
        "stdvar_over_time", "quantile_over_time", "first_over_time", "last_over_time",
        "absent_over_time", "rate_counter", "bytes_rate",
    }
)  # fmt: skip
_OTHER_AGGREGATIONS = frozenset({"avg", "stddev", "stdvar", "bottomk", "sort", "sort_desc"})
_OTHER_FUNCTIONS = frozenset({"label_replace", "approx_topk", "absent"})
_OTHER_STAGES = frozenset(
    {"pattern", "regexp", "unpack", "label_format", "keep", "decolorize", "distinct", "unwrap"}
)
_OTHER_BINARY_OPS = ("-", "*", "/", "%", "^", "==", "!=", ">", ">=", "<", "<=")
_OTHER_BINARY_WORDS = ("and", "or", "unless")
_MATCH_OPS: tuple[MatchOp, ...] = ("=", "!=", "=~", "!~")
_LINE_OPS: tuple[LineOp, ...] = ("|=", "!=", "|~", "!~")
_NUMERIC_OPS = ("==", "!=", ">", ">=", "<", "<=")


def parse(text: str) -> Query:
    """The syntax tree of ``text``; :class:`LogQLError` (a 400) naming what is wrong and where.

    At most :data:`MAX_LENGTH` characters, nested at most :data:`MAX_DEPTH` deep (parentheses,
    function calls and each further operand of a ``+``, ``and`` or ``or`` chain count one), so
    that neither this parser nor what walks the tree can run out of stack."""
    if len(text) > MAX_LENGTH:
        raise LogQLError(f"the query has {len(text)} characters; at most {MAX_LENGTH} are read")
    try:
        tokens = tokenize(text)
    except TokenError as exc:
        raise LogQLError(f"{where(text, exc.pos)}: {exc}") from None
    return _Reader(text, tokens).query()


class _Reader:
    """Recursive descent over the tokens, one method per rule of the module docstring."""

    def __init__(self, text: str, tokens: list[Token]) -> None:
        self._text = text
        self._tokens = tokens
        self._i = 0
        self._depth = 0

    # -- the tokens ------------------------------------------------------------------------

    @property
    def _next(self) -> Token:
        return self._tokens[self._i]

    def _peek(self) -> Token:
        return self._tokens[min(self._i + 1, len(self._tokens) - 1)]

    def _take(self) -> Token:
        token = self._tokens[self._i]
        if token.kind != EOF:
            self._i += 1
        return token

    def _at(self, *ops: str) -> bool:
        return self._next.kind == OP and self._next.text in ops

    def _at_word(self, *words: str) -> bool:
        return self._next.kind == IDENT and self._next.text in words

    def _expect(self, op: str, why: str = "") -> Token:
        if not self._at(op):
            self._fail(f"expected `{op}`{why}, found {_describe(self._next)}")
        return self._take()

    def _fail(self, message: str, token: Token | None = None) -> NoReturn:
        token = token or self._next
        raise LogQLError(f"{where(self._text, token.pos)}: {message}")

    def _unsupported(self, feature: str, token: Token, supported: Iterable[str] = ()) -> NoReturn:
        also = ", ".join(supported)
        self._fail(f"{feature} is not supported" + (f"; supported: {also}" if also else ""), token)

    def _nest(self, token: Token) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            self._fail(f"the query nests deeper than {MAX_DEPTH} levels", token)

    def _unnest(self, levels: int = 1) -> None:
        self._depth -= levels

    # -- the rules -------------------------------------------------------------------------

    def query(self) -> Query:
        query: Query
        if self._at("{"):
            query = self._log_query()
            if self._at("["):
                self._fail("a range goes inside a range function, e.g. count_over_time({…}[1m])")
            if self._next.kind != EOF:
                self._fail(f"unexpected {_describe(self._next)} after the log query")
        else:
            query = self._metric()
            if self._next.kind != EOF:
                self._fail(f"unexpected {_describe(self._next)}; expected the end of the query")
        return query

    def _metric(self) -> MetricExpr:
        left = self._operand()
        chained = 0
        while self._at("+"):
            plus = self._take()
            if self._at_word("bool", "on", "ignoring", "group_left", "group_right"):
                self._unsupported(f"`{self._next.text}`", self._next)
            self._nest(plus)
            chained += 1
            left = BinaryOp("+", left, self._operand())
        self._unnest(chained)
        if self._at(*_OTHER_BINARY_OPS) or self._at_word(*_OTHER_BINARY_WORDS):
            self._unsupported(f"the binary operator `{self._next.text}`", self._next, ["+"])
        return left

    def _operand(self) -> MetricExpr:
        token = self._next
        if self._at("("):
            self._nest(self._take())
            inner = self._metric()
            self._expect(")", " to close the parenthesis")
            self._unnest()
            return inner
        if self._at("{"):
            self._fail(
                "a log query stands where a metric is expected; count its lines with a range "
                "function, e.g. count_over_time({…}[1m])"
            )
        if token.kind == NUMBER:
            self._unsupported("a number alone (a scalar)", token, ["vector(N)"])
        if token.kind != IDENT:
            self._fail(f"expected a metric expression, found {_describe(token)}")
        name = token.text
        if name in _RANGE_FUNCTIONS:
            return self._range_aggregation()
        if name in _AGGREGATIONS:
            return self._vector_aggregation()
        if name == "vector":
            return self._vector()
        if name in _OTHER_RANGE_FUNCTIONS:
            self._unsupported(f"`{name}`", token, _RANGE_FUNCTIONS)
        if name in _OTHER_AGGREGATIONS:
            self._unsupported(f"`{name}`", token, _AGGREGATIONS)
        if name in _OTHER_FUNCTIONS:
            self._unsupported(f"`{name}`", token)
        self._fail(
            f"unknown function `{name}`; supported: "
            + ", ".join((*_RANGE_FUNCTIONS, *_AGGREGATIONS, "vector"))
        )

    def _range_aggregation(self) -> RangeAggregation:
        function = self._take().text
        self._nest(self._expect("(", f" after `{function}`"))
        if not self._at("{"):
            self._fail(
                f'`{function}` takes a log query and a range, e.g. {function}({{job="x"}}[1m]); '
                f"found {_describe(self._next)}"
            )
        matchers = self._selector()
        # Loki also takes the range right after the selector, before the pipeline.
        range_ns = self._range() if self._at("[") else None
        stages = self._stages()
        if self._at("[") and range_ns is None:
            range_ns = self._range()
        if range_ns is None:
            self._fail(f"`{function}` needs a range after its log query, e.g. [1m]")
        if self._at_word("offset"):
            self._unsupported("`offset`", self._next)
        self._expect(")", f" to close `{function}(`")
        self._unnest()
        return RangeAggregation(cast(RangeFunction, function), LogQuery(matchers, stages), range_ns)

    def _range(self) -> int:
        self._expect("[")
        token = self._next
        if token.kind != DURATION:
            self._fail(f"expected a duration such as 1m or 1h30m, found {_describe(token)}")
        self._take()
        assert isinstance(token.value, int)
        if token.value <= 0:
            self._fail("a range must be longer than 0", token)
        self._expect("]", " to close the range")
        return token.value

    def _vector_aggregation(self) -> VectorAggregation:
        op = self._take()
        by = self._grouping() if self._at_word("by", "without") else None
        self._nest(self._expect("(", f" after `{op.text}`"))
        k = None
        if op.text == "topk":
            k = self._k()
            self._expect(",", " after topk's number of series")
        elif self._next.kind == NUMBER and self._peek().text == ",":
            self._fail(f"`{op.text}` takes no parameter")
        inner = self._metric()
        self._expect(")", f" to close `{op.text}(`")
        self._unnest()
        if self._at_word("by", "without"):
            if by is not None:
                self._fail(f"`{op.text}` has two groupings")
            by = self._grouping()
        return VectorAggregation(cast(AggregationOp, op.text), inner, by, k)

    def _grouping(self) -> tuple[str, ...]:
        if self._at_word("without"):
            self._unsupported("`without`", self._next, ["by"])
        self._take()
        self._expect("(", " after `by`")
        labels: list[str] = []
        if not self._at(")"):
            labels.append(self._label("in `by (…)`"))
            while self._at(","):
                self._take()
                labels.append(self._label("in `by (…)`"))
        self._expect(")", " to close `by (`")
        return tuple(labels)

    def _k(self) -> int:
        token = self._next
        if token.kind != NUMBER or not float(token.text).is_integer() or float(token.text) < 1:
            self._fail(f"topk's first parameter is a whole number ≥ 1, found {_describe(token)}")
        self._take()
        return int(float(token.text))

    def _vector(self) -> VectorLiteral:
        self._take()
        self._expect("(", " after `vector`")
        token = self._next
        if token.kind != NUMBER:
            self._fail(f"`vector` takes a number ≥ 0, found {_describe(token)}")
        self._take()
        self._expect(")", " to close `vector(`")
        return VectorLiteral(float(token.text))

    def _log_query(self) -> LogQuery:
        return LogQuery(self._selector(), self._stages())

    def _selector(self) -> tuple[Matcher, ...]:
        self._expect("{")
        if self._at("}"):
            self._fail('a stream selector needs at least one matcher, e.g. {level="error"}')
        matchers = [self._matcher()]
        while self._at(","):
            self._take()
            matchers.append(self._matcher())
        self._expect("}", " to close the stream selector")
        return tuple(matchers)

    def _matcher(self) -> Matcher:
        label = self._label("in the stream selector")
        op = self._next
        if op.kind != OP or op.text not in _MATCH_OPS:
            self._fail(f"expected =, !=, =~ or !~ after `{label}`, found {_describe(op)}")
        self._take()
        return Matcher(label, _match_op(op.text), self._string(f"`{label}{op.text}`"))

    def _stages(self) -> tuple[Stage, ...]:
        stages: list[Stage] = []
        while True:
            if self._at(*_LINE_OPS):
                stages.append(self._line_filter())
            elif self._at("|>", "!>"):
                self._unsupported(f"the pattern line filter `{self._next.text}`", self._next)
            elif self._at("|"):
                stages.append(self._pipe_stage())
            else:
                return tuple(stages)

    def _line_filter(self) -> LineFilter:
        op = self._take().text
        if self._at_word("ip") and self._peek().text == "(":
            self._unsupported("`ip()` in a line filter", self._next)
        value = self._string(f"`{op}`")
        if self._at_word("or"):
            self._unsupported("a line filter `or`", self._next)
        return LineFilter(_line_op(op), value)

    def _pipe_stage(self) -> Stage:
        self._take()
        token = self._next
        name = token.text if token.kind == IDENT else ""
        if name in ("json", "logfmt"):
            self._take()
            if self._next.kind in (IDENT, STRING) or self._at("-"):
                self._unsupported(f"`{name}` with parameters", self._next)
            return Parser("json" if name == "json" else "logfmt")
        if name == "drop":
            return self._drop()
        if name == "line_format":
            self._take()
            return LineFormat(self._string("`line_format`"))
        if name == "unwrap":
            self._unsupported("`unwrap`", token)
        if name in _OTHER_STAGES:
            self._unsupported(f"`| {name}`", token)
        if token.kind == IDENT or self._at("("):
            return LabelFilter(self._predicate())
        self._fail(
            "expected json, logfmt, drop, line_format or a label filter after `|`, "
            f"found {_describe(token)}"
        )

    def _drop(self) -> Drop:
        self._take()
        labels = [self._label("after `drop`")]
        while self._at(","):
            self._take()
            labels.append(self._label("after `drop`"))
        if self._at(*_MATCH_OPS):
            self._unsupported("`drop` with a matcher", self._next)
        return Drop(tuple(labels))

    def _predicate(self) -> LabelPredicate:
        left = self._conjunction()
        chained = 0
        while self._at_word("or"):
            self._nest(self._take())
            chained += 1
            left = Or(left, self._conjunction())
        self._unnest(chained)
        return left

    def _conjunction(self) -> LabelPredicate:
        left = self._predicate_operand()
        chained = 0
        while self._at_word("and") or self._at(","):
            self._nest(self._take())
            chained += 1
            left = And(left, self._predicate_operand())
        self._unnest(chained)
        return left

    def _predicate_operand(self) -> LabelPredicate:
        if self._at("("):
            self._nest(self._take())
            inner = self._predicate()
            self._expect(")", " to close the parenthesis")
            self._unnest()
            return inner
        return self._comparison()

    def _comparison(self) -> Comparison:
        label = self._label("in a label filter")
        op = self._next
        if op.kind != OP or op.text not in (*_MATCH_OPS, *_NUMERIC_OPS):
            self._fail(f"expected a comparison (= != =~ !~ == > >= < <=) after `{label}`")
        self._take()
        value = self._next
        if value.kind == STRING:
            if op.text not in _MATCH_OPS:
                self._fail(f"`{op.text}` compares numbers, not strings", op)
            return Comparison(label, _match_op(op.text), self._string(""))
        sign = -1.0 if self._at("-") else 1.0
        if sign < 0:
            self._take()
            value = self._next
        if value.kind == NUMBER and op.text not in ("=~", "!~"):
            self._take()
            # Loki takes `status = 200` as `status == 200`.
            compare = "==" if op.text == "=" else op.text
            return Comparison(label, _compare_op(compare), sign * float(value.text), numeric=True)
        if value.kind == DURATION:
            self._unsupported(f"comparing a label with a duration ({value.text})", value)
        if value.kind == BYTES:
            self._unsupported(f"comparing a label with a byte size ({value.text})", value)
        if value.kind == IDENT and value.text == "ip":
            self._unsupported("`ip()` in a label filter", value)
        self._fail(f"expected a string or a number after `{op.text}`, found {_describe(value)}")

    def _label(self, where: str) -> str:
        token = self._next
        if token.kind != IDENT:
            self._fail(f"expected a label name {where}, found {_describe(token)}")
        self._take()
        return token.text

    def _string(self, after: str) -> str:
        token = self._next
        if token.kind != STRING:
            self._fail(
                f"expected a string{' after ' + after if after else ''}, found {_describe(token)}"
            )
        self._take()
        assert isinstance(token.value, str)
        return token.value


def _describe(token: Token) -> str:
    if token.kind == EOF:
        return "the end of the query"
    return f"`{token.text}`"


def _match_op(op: str) -> MatchOp:
    return cast(MatchOp, op)


def _line_op(op: str) -> LineOp:
    return cast(LineOp, op)


def _compare_op(op: str) -> CompareOp:
    return cast(CompareOp, op)
