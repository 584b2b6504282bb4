"""Random syntax trees of gramlogs' LogQL subset, for property tests (hypothesis strategies).

:data:`queries` draws any :data:`~gramlogs.web.loki.logql.Query` that parse() can return: the
tests render each and check that parse() reads the same tree back, and that Grafana's grammar
parses the text.
"""

from __future__ import annotations

from itertools import pairwise

from hypothesis import strategies as st

from gramlogs.web.loki.logql import (
    And,
    BinaryOp,
    Comparison,
    Drop,
    LabelFilter,
    LabelPredicate,
    LineFilter,
    LineFormat,
    LogQuery,
    Matcher,
    MetricExpr,
    Or,
    Parser,
    Query,
    RangeAggregation,
    Stage,
    VectorAggregation,
    VectorLiteral,
)

__all__ = ["labels", "log_queries", "metrics", "predicates", "queries"]

# Words that are keywords somewhere in LogQL: Grafana's grammar refuses some of them as label
# names ({json="x"}), and after `|` parse() reads these as stages, so the trees avoid them all.
_KEYWORDS = frozenset(
    {
        "json", "logfmt", "unpack", "pattern", "regexp", "line_format", "label_format", "drop",
        "keep", "unwrap", "decolorize", "distinct", "ip", "offset", "by", "without", "bool", "on",
        "ignoring", "group_left", "group_right", "and", "or", "unless", "vector", "sum", "count",
        "min", "max", "avg", "stddev", "stdvar", "topk", "bottomk", "sort", "sort_desc",
        "count_over_time", "rate", "bytes_over_time", "bytes_rate", "avg_over_time",
        "sum_over_time", "min_over_time", "max_over_time", "stddev_over_time",
        "stdvar_over_time", "quantile_over_time", "first_over_time", "last_over_time",
        "absent_over_time", "rate_counter", "label_replace", "duration", "duration_seconds",
        "bytes", "approx_topk",
    }
)  # fmt: skip

labels = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(
    lambda name: name not in _KEYWORDS
)
# Any text but lone surrogates (not UTF-8, so no query can hold them).
_strings = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
_numbers = st.floats(allow_nan=False, allow_infinity=False)

_matchers = st.builds(Matcher, labels, st.sampled_from(("=", "!=", "=~", "!~")), _strings)
_comparisons = st.one_of(
    st.builds(Comparison, labels, st.sampled_from(("=", "!=", "=~", "!~")), _strings),
    st.builds(
        Comparison,
        labels,
        st.sampled_from(("==", "!=", ">", ">=", "<", "<=")),
        _numbers,
        st.just(True),
    ),
)
predicates: st.SearchStrategy[LabelPredicate] = st.recursive(
    _comparisons,
    lambda inner: st.builds(And, inner, inner) | st.builds(Or, inner, inner),
    max_leaves=6,
)
_stages: st.SearchStrategy[Stage] = st.one_of(
    st.builds(LineFilter, st.sampled_from(("|=", "!=", "|~", "!~")), _strings),
    st.builds(Parser, st.sampled_from(("json", "logfmt"))),
    st.builds(Drop, st.lists(labels, min_size=1, max_size=3).map(tuple)),
    st.builds(LabelFilter, predicates),
    st.builds(LineFormat, _strings),
)


def _readable(stages: list[Stage]) -> bool:
    """False for ``| drop a != "x"``: LogQL reads the `!=` as drop's matcher, not a line filter."""
    return not any(
        isinstance(stage, Drop) and isinstance(after, LineFilter) and after.op in ("!=", "!~")
        for stage, after in pairwise(stages)
    )


log_queries = st.builds(
    LogQuery,
    st.lists(_matchers, min_size=1, max_size=3).map(tuple),
    st.lists(_stages, max_size=4).filter(_readable).map(tuple),
)
_ranges_ns = st.integers(1, 2 * 365 * 86_400_000).map(lambda ms: ms * 1_000_000)
_groupings = st.none() | st.lists(labels, max_size=3).map(tuple)


def _aggregations(inner: st.SearchStrategy[MetricExpr]) -> st.SearchStrategy[MetricExpr]:
    return st.one_of(
        st.builds(
            VectorAggregation, st.sampled_from(("sum", "count", "min", "max")), inner, _groupings
        ),
        st.builds(VectorAggregation, st.just("topk"), inner, _groupings, st.integers(1, 1000)),
        st.builds(BinaryOp, st.just("+"), inner, inner),
    )


metrics: st.SearchStrategy[MetricExpr] = st.recursive(
    st.one_of(
        st.builds(
            RangeAggregation,
            st.sampled_from(("count_over_time", "rate", "bytes_over_time")),
            log_queries,
            _ranges_ns,
        ),
        st.builds(VectorLiteral, st.floats(min_value=0, allow_infinity=False)),
    ),
    _aggregations,
    max_leaves=4,
)
queries: st.SearchStrategy[Query] = st.one_of(log_queries, metrics)
