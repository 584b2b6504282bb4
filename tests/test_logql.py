"""The LogQL parser: each query of the subset to its exact tree, each error to a message naming
where and what, the bounds on length and depth, and logql_render's text read back as the same
tree.

Every valid query here is marked with ``logql(…)``: tests/test_logql_grammar.py checks that
Grafana's own grammar parses each of them too.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gramlogs.core.errors import BadRequest
from gramlogs.web.loki.logql import (
    And,
    BinaryOp,
    Comparison,
    Drop,
    LabelFilter,
    LineFilter,
    LineFormat,
    LogQLError,
    LogQuery,
    Matcher,
    Or,
    Parser,
    Query,
    RangeAggregation,
    VectorAggregation,
    VectorLiteral,
    parse,
)
from gramlogs.web.loki.logql_render import render
from testkit.logql import logql
from testkit.logql_trees import queries

MINUTE = 60 * 10**9
A = (Matcher("app", "=", "api"),)
APP = LogQuery(A)


def _rate(query: LogQuery = APP, range_ns: int = MINUTE) -> RangeAggregation:
    return RangeAggregation("rate", query, range_ns)


VALID: list[tuple[str, Query]] = [
    (logql('{app="api"}'), APP),
    (
        logql('{app="api", level!="debug", env=~"prod|stag.*", pod!~`web-\\d+`}'),
        LogQuery(
            (
                *A,
                Matcher("level", "!=", "debug"),
                Matcher("env", "=~", "prod|stag.*"),
                Matcher("pod", "!~", "web-\\d+"),
            )
        ),
    ),
    (
        logql('{app="api"} |= "timeout" != "retry" |~ "(?i)error" !~ `5\\d\\d`'),
        LogQuery(
            A,
            (
                LineFilter("|=", "timeout"),
                LineFilter("!=", "retry"),
                LineFilter("|~", "(?i)error"),
                LineFilter("!~", "5\\d\\d"),
            ),
        ),
    ),
    # After `|`, `label != "x"` is a label filter; without, `!= "x"` is a line filter.
    (
        logql('{app="api"} | level != "info" != "info"'),
        LogQuery(
            A,
            (LabelFilter(Comparison("level", "!=", "info")), LineFilter("!=", "info")),
        ),
    ),
    (
        logql('{app="api"} | json | logfmt | drop __error__, __error_details__'),
        LogQuery(A, (Parser("json"), Parser("logfmt"), Drop(("__error__", "__error_details__")))),
    ),
    (
        logql('{app="api"} | logfmt | line_format "{{.level}}: {{ .msg }}"'),
        LogQuery(A, (Parser("logfmt"), LineFormat("{{.level}}: {{ .msg }}"))),
    ),
    (
        logql('{app="api"} | json | duration > 1.5 and status >= 500 , status < 600'),
        LogQuery(
            A,
            (
                Parser("json"),
                LabelFilter(
                    And(
                        And(
                            Comparison("duration", ">", 1.5, numeric=True),
                            Comparison("status", ">=", 500.0, numeric=True),
                        ),
                        Comparison("status", "<", 600.0, numeric=True),
                    )
                ),
            ),
        ),
    ),
    # `and` and `,` bind tighter than `or`; parentheses group.
    (
        logql('{app="api"} | a="1" or b="2" and c="3"'),
        LogQuery(
            A,
            (
                LabelFilter(
                    Or(
                        Comparison("a", "=", "1"),
                        And(Comparison("b", "=", "2"), Comparison("c", "=", "3")),
                    )
                ),
            ),
        ),
    ),
    (
        logql('{app="api"} | (a="1" or b=~"2") and c!~"3"'),
        LogQuery(
            A,
            (
                LabelFilter(
                    And(
                        Or(Comparison("a", "=", "1"), Comparison("b", "=~", "2")),
                        Comparison("c", "!~", "3"),
                    )
                ),
            ),
        ),
    ),
    (
        logql('{app="api"} | x == -2 | y != 0.25 | z <= 3 | w = 200'),
        LogQuery(
            A,
            (
                LabelFilter(Comparison("x", "==", -2.0, numeric=True)),
                LabelFilter(Comparison("y", "!=", 0.25, numeric=True)),
                LabelFilter(Comparison("z", "<=", 3.0, numeric=True)),
                # Loki reads `= 200` as `== 200`.
                LabelFilter(Comparison("w", "==", 200.0, numeric=True)),
            ),
        ),
    ),
    (logql('count_over_time({app="api"}[1m])'), RangeAggregation("count_over_time", APP, MINUTE)),
    (
        logql('bytes_over_time({app="api"} |= "x" [1h30m])'),
        RangeAggregation("bytes_over_time", LogQuery(A, (LineFilter("|=", "x"),)), 90 * MINUTE),
    ),
    # The range may also follow the selector, before the pipeline.
    (
        logql('rate({app="api"}[5m] | json)'),
        _rate(LogQuery(A, (Parser("json"),)), 5 * MINUTE),
    ),
    (
        logql('rate({app="api"}[1y2w3d4h5m6s7ms])'),
        _rate(
            APP,
            ((((365 + 14 + 3) * 24 + 4) * 60 + 5) * 60 + 6) * 10**9 + 7 * 10**6,
        ),
    ),
    (logql('rate({app="api"}[500ms])'), _rate(APP, 500 * 10**6)),
    (logql('rate({app="api"}[292y])'), _rate(APP, 292 * 365 * 86_400 * 10**9)),
    # What Go's Duration.String() writes: zero amounts are fine.
    (logql('rate({app="api"}[1h0m0s])'), _rate(APP, 60 * MINUTE)),
    # What Grafana's log volume sends (no space before the range).
    (
        logql(
            "sum by (level, detected_level) "
            '(count_over_time({service_name="x"} | drop __error__[1m]))'
        ),
        VectorAggregation(
            "sum",
            RangeAggregation(
                "count_over_time",
                LogQuery((Matcher("service_name", "=", "x"),), (Drop(("__error__",)),)),
                MINUTE,
            ),
            ("level", "detected_level"),
        ),
    ),
    (logql('sum(rate({app="api"}[1m])) by (a, b)'), VectorAggregation("sum", _rate(), ("a", "b"))),
    (logql('count by () (rate({app="api"}[1m]))'), VectorAggregation("count", _rate(), ())),
    (
        logql('min(max(rate({app="api"}[1m])))'),
        VectorAggregation("min", VectorAggregation("max", _rate())),
    ),
    (logql('topk(5, rate({app="api"}[1m]))'), VectorAggregation("topk", _rate(), None, 5)),
    (
        logql('topk by (app) (3, sum by (app) (rate({app="api"}[1m])))'),
        VectorAggregation("topk", VectorAggregation("sum", _rate(), ("app",)), ("app",), 3),
    ),
    # Grafana's "Save & test".
    (
        logql("vector(1)+vector(1)"),
        BinaryOp("+", VectorLiteral(1.0), VectorLiteral(1.0)),
    ),
    # `+` is left-associative; parentheses regroup.
    (
        logql("vector(1) + vector(2) + (vector(3) + vector(4.5))"),
        BinaryOp(
            "+",
            BinaryOp("+", VectorLiteral(1.0), VectorLiteral(2.0)),
            BinaryOp("+", VectorLiteral(3.0), VectorLiteral(4.5)),
        ),
    ),
    (
        logql('(sum(rate({app="api"}[1m])) + vector(0))'),
        BinaryOp("+", VectorAggregation("sum", _rate()), VectorLiteral(0.0)),
    ),
    # Comments and whitespace anywhere between tokens.
    (
        logql('# the errors\n{ app = "api" }  # of the api\n\t|=\n"x" # end'),
        LogQuery(A, (LineFilter("|=", "x"),)),
    ),
]


@pytest.mark.parametrize(("text", "tree"), VALID, ids=[text for text, _ in VALID])
def test_parse_gives_the_tree(text: str, tree: Query) -> None:
    assert parse(text) == tree


@pytest.mark.parametrize(("text", "tree"), VALID, ids=[text for text, _ in VALID])
def test_render_reads_back_as_the_same_tree(text: str, tree: Query) -> None:
    assert parse(render(tree)) == tree


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (logql('{app="a\\"b\\\\c"}'), 'a"b\\c'),
        (logql('{app="\\n\\t\\r\\a\\b\\f\\v"}'), "\n\t\r\a\b\f\v"),
        (logql('{app="\\u00e9\\U0001F600"}'), "é\U0001f600"),
        # \x and octal escapes are bytes, read together as UTF-8 as Go's strings are.
        (logql('{app="\\xc3\\xa9\\101\\x41"}'), "éAA"),
        (logql('{app="ünïcode ✓"}'), "ünïcode ✓"),
        (logql('{app=`raw \\n \\d "q"`}'), 'raw \\n \\d "q"'),
        # As Go's strconv.Unquote: a raw string loses its carriage returns.
        (logql("{app=`two\r\nlines`}"), "two\nlines"),
    ],
)
def test_strings_take_gos_escapes(text: str, value: str) -> None:
    assert parse(text) == LogQuery((Matcher("app", "=", value),))


# Valid LogQL outside the subset: the message names the feature. tests/test_logql_grammar.py
# checks that Grafana's grammar parses each of these (they are real LogQL, not typos).
UNSUPPORTED: list[tuple[str, str]] = [
    ('{app="api"} | pattern "<ip> <_>"', "column 15: `| pattern` is not supported"),
    ('{app="api"} | regexp "(?P<x>.)"', "`| regexp` is not supported"),
    ('{app="api"} | label_format a=b', "`| label_format` is not supported"),
    ('{app="api"} | keep a', "`| keep` is not supported"),
    ('{app="api"} | unpack', "`| unpack` is not supported"),
    ('{app="api"} | decolorize', "`| decolorize` is not supported"),
    ('sum without (a) (rate({app="api"}[1m]))', "column 5: `without` is not supported"),
    ('sum(rate({app="api"}[1m])) without (a)', "`without` is not supported"),
    (
        'sum(avg_over_time({app="api"} | unwrap latency [1m]))',
        "`avg_over_time` is not supported; supported: count_over_time, rate, bytes_over_time",
    ),
    (
        'sum(count_over_time({app="api"} | unwrap latency [1m]))',
        "column 35: `unwrap` is not supported",
    ),
    ('rate({app="api"}[1m] offset 1h)', "column 22: `offset` is not supported"),
    (
        'avg_over_time({app="api"} | unwrap latency [1m])',
        "`avg_over_time` is not supported; supported: count_over_time, rate, bytes_over_time",
    ),
    (
        'quantile_over_time(0.99, {app="api"} | unwrap latency [1m])',
        "`quantile_over_time` is not supported",
    ),
    (
        'avg(rate({app="api"}[1m]))',
        "`avg` is not supported; supported: sum, count, min, max, topk",
    ),
    ('bottomk(3, rate({app="api"}[1m]))', "`bottomk` is not supported"),
    ('{app="api"} |= "a" or "b"', "column 20: a line filter `or` is not supported"),
    ('{app="api"} | json first="a"', "column 20: `json` with parameters is not supported"),
    ('{app="api"} | logfmt --strict', "`logfmt` with parameters is not supported"),
    ('{app="api"} | drop a="x"', "`drop` with a matcher is not supported"),
    ('{app="api"} |> "<_> error"', "the pattern line filter `|>` is not supported"),
    ('{app="api"} | latency > 250ms', "comparing a label with a duration (250ms) is not supported"),
    ('{app="api"} | size > 10KB', "comparing a label with a byte size (10KB) is not supported"),
    ('{app="api"} |= ip("10.0.0.1")', "`ip()` in a line filter is not supported"),
    (
        'rate({app="api"}[1m]) - vector(1)',
        "the binary operator `-` is not supported; supported: +",
    ),
    ('rate({app="api"}[1m]) > 10', "the binary operator `>` is not supported"),
    ('rate({app="api"}[1m]) or vector(0)', "the binary operator `or` is not supported"),
    ('rate({app="api"}[1m]) + on (a) vector(0)', "`on` is not supported"),
    ('1 + rate({app="api"}[1m])', "a number alone (a scalar) is not supported"),
]


# Not LogQL at all: the message says where and what was expected.
INVALID: list[tuple[str, str]] = [
    ("", "column 1: expected a metric expression, found the end of the query"),
    ("{}", "column 2: a stream selector needs at least one matcher"),
    ('{app="api"', "column 11: expected `}` to close the stream selector"),
    ('{app="api",}', "column 12: expected a label name in the stream selector, found `}`"),
    ("{app=api}", "column 6: expected a string after `app=`, found `api`"),
    ('{app=="api"}', "column 5: expected =, !=, =~ or !~ after `app`, found `==`"),
    ('{app="api}', 'column 6: a string ("…") is not closed before the end of its line'),
    ("{app=`api}", "column 6: a raw string (`…`) is not closed"),
    ('{app="a\\qb"}', "column 8: invalid escape \\q in a string"),
    ('{app="\\ud800"}', "invalid escape \\ud800: not a Unicode character"),
    ('{app="\\400"}', "octal escapes end at \\377"),
    ('{app="\\xff"}', "the string's escapes are not valid UTF-8"),
    ('{app="api"}[1m]', "column 12: a range goes inside a range function"),
    ('{app="api"} | ', "column 15: expected json, logfmt, drop, line_format or a label filter"),
    ('{app="api"} | level', "expected a comparison (= != =~ !~ == > >= < <=) after `level`"),
    ('{app="api"} | level > "x"', "column 21: `>` compares numbers, not strings"),
    ('{app="api"} | level =~ 5', "expected a string or a number after `=~`, found `5`"),
    ('{app="api"} | (a="1"', "expected `)` to close the parenthesis"),
    ('{app="api"} | drop', "expected a label name after `drop`, found the end of the query"),
    ('{app="api"} |= "x" + vector(1)', "column 20: unexpected `+` after the log query"),
    ('rate({app="api"})', "column 17: `rate` needs a range after its log query, e.g. [1m]"),
    ('rate({app="api"}[1m]', "expected `)` to close `rate(`, found the end of the query"),
    ('rate({app="api"}[60])', "expected a duration such as 1m or 1h30m, found `60`"),
    ('rate({app="api"}[0s])', "a range must be longer than 0"),
    ('rate({app="api"}[1.5h])', "invalid duration '1.5h': whole amounts of ms, s, m, h, d, w, y"),
    ('rate({app="api"}[30m1h])', "units go from the largest to the smallest, each once"),
    ('rate({app="api"}[1m1m])', "units go from the largest to the smallest, each once"),
    ('rate({app="api"}[5x])', "invalid number '5x'"),
    ('rate({app="api"}[293y])', "column 18: the duration 293y is too long: at most 292y"),
    ("rate(vector(1))", "`rate` takes a log query and a range"),
    ('sum({app="api"})', "a log query stands where a metric is expected"),
    ('sum(2, rate({app="api"}[1m]))', "`sum` takes no parameter"),
    ('topk(rate({app="api"}[1m]))', "topk's first parameter is a whole number ≥ 1"),
    ('topk(0, rate({app="api"}[1m]))', "topk's first parameter is a whole number ≥ 1, found `0`"),
    ('topk(2.5, rate({app="api"}[1m]))', "topk's first parameter is a whole number ≥ 1"),
    ('sum by (a) (rate({app="api"}[1m])) by (b)', "`sum` has two groupings"),
    ('sum by a (rate({app="api"}[1m]))', "expected `(` after `by`, found `a`"),
    ("vector(-1)", "`vector` takes a number ≥ 0, found `-`"),
    ("vector(1) +", "expected a metric expression, found the end of the query"),
    ("histogram_quantile(0.9, x)", "unknown function `histogram_quantile`"),
    ('{app="api"} @ 5', "column 13: unexpected character '@'"),
    ("vector(1e400)", "column 8: the number 1e400 is too large"),
    # Digits are ASCII: float() would read these, LogQL does not.
    ("vector(\u0663)", "column 8: unexpected character"),
    ('{app="api"} | x > \u00b9', "column 19: unexpected character"),
    ('{app="api"}\n  | level >', "line 2, column 12: expected a string or a number after `>`"),
]


@pytest.mark.parametrize(("text", "message"), UNSUPPORTED + INVALID)
def test_errors_say_where_and_what(text: str, message: str) -> None:
    with pytest.raises(LogQLError) as raised:
        parse(text)
    assert message in str(raised.value)
    assert str(raised.value).startswith(("column ", "line "))


def test_a_logql_error_is_a_400() -> None:
    assert issubclass(LogQLError, BadRequest)
    assert LogQLError.status == 400


def test_a_query_over_10000_characters_is_refused() -> None:
    padding = " " * (10_000 - len('{app="api"}'))
    assert parse('{app="api"}' + padding) == APP
    with pytest.raises(LogQLError, match="the query has 10001 characters; at most 10000"):
        parse('{app="api"}' + padding + " ")


@pytest.mark.parametrize(
    ("template", "ok"),
    [
        ("{open}vector(1){close}", 50),
        ('sum({open}rate({{app="api"}}[1m]){close})', 48),
        ('{{app="api"}} | {open}a="1"{close}', 50),
    ],
)
def test_nesting_is_bounded_at_50(template: str, ok: int) -> None:
    def query(depth: int) -> str:
        return template.format(open="(" * depth, close=")" * depth)

    parse(query(ok))
    with pytest.raises(LogQLError, match="the query nests deeper than 50 levels"):
        parse(query(ok + 1))


@pytest.mark.parametrize(
    "text",
    [
        "(" * 5_000,
        "sum(" * 2_500,
        '{app="api"} | ' + "(" * 5_000,
        " + ".join(["vector(1)"] * 800),
        '{app="api"} | ' + " and ".join(['a="1"'] * 900),
        '{app="api"} | ' + " or ".join(['a="1"'] * 900),
    ],
    ids=["parens", "sums", "predicate parens", "plus chain", "and chain", "or chain"],
)
def test_deep_or_long_queries_are_400s_not_recursion_errors(text: str) -> None:
    assert len(text) <= 10_000
    with pytest.raises(LogQLError, match="nests deeper than 50"):
        parse(text)


def test_a_chain_of_50_operands_parses() -> None:
    tree = parse(" + ".join(["vector(1)"] * 51))
    depth = 0
    while isinstance(tree, BinaryOp):
        assert tree.right == VectorLiteral(1.0)
        tree, depth = tree.left, depth + 1
    assert depth == 50


@settings(max_examples=300)
@given(queries)
def test_render_then_parse_is_the_identity(query: Query) -> None:
    assert parse(render(query)) == query


# Pieces of LogQL, valid and not, for the text of the next test.
_PIECES = (
    *'{}()[],|=~!<>+-#`"\\\n .',
    *("|=", "!=", "=~", "==", ">=", '"x"', "`y`", "1", "1.5", "1e3", "1m", "5KB", "a"),
    *("json", "logfmt", "drop", "line_format", "sum", "by", "without", "topk", "rate"),
    *("count_over_time", "vector", "and", "or", "offset", "unwrap", "pattern", "\u0663"),
)


@settings(max_examples=500)
@given(
    st.lists(st.sampled_from(_PIECES), max_size=40).map("".join)
    | st.lists(st.sampled_from(_PIECES), max_size=40).map(" ".join)
    | st.text(max_size=60)
)
def test_any_text_is_a_tree_or_a_logql_error(text: str) -> None:
    try:
        tree = parse(text)
    except LogQLError as exc:
        assert str(exc).startswith(("column ", "line ", "the query has"))
    else:
        assert parse(render(tree)) == tree


def test_render_writes_readable_logql() -> None:
    tree = parse(
        logql(
            'topk by (app) (2, sum(count_over_time({app="api"} |= "a\\"b" | json | '
            '(x="1" or y>2) and z!=-0.5 | line_format "{{.x}}\\n" [1h30m])) + vector(0.001))'
        )
    )
    assert render(tree) == (
        'topk by (app) (2, sum(count_over_time({app="api"} |= "a\\"b" | json | '
        '(x="1" or y>2) and z!=-0.5 | line_format "{{.x}}\\n" [1h30m])) + vector(0.001))'
    )
