"""The LogQL pipeline on hand-made lines: the parsers (json flattened, logfmt quoting, errors),
label filters (strings, anchored regexes, numbers), drop, line_format and line filters."""

from __future__ import annotations

import pytest

from gramlogs.web.loki.logql import (
    And,
    Comparison,
    Drop,
    LabelFilter,
    LineFilter,
    LineFormat,
    LogQLError,
    Or,
    Parser,
    Stage,
)
from gramlogs.web.loki.pipeline import Outcome, compile_pipeline, sanitize

JSON = Parser("json")
LOGFMT = Parser("logfmt")
STREAM = {"level": "info", "service_name": "api"}


def run(stages: list[Stage], line: str, labels: dict[str, str] | None = None) -> Outcome | None:
    return compile_pipeline(stages).run(line, dict(STREAM if labels is None else labels))


def labels_of(stages: list[Stage], line: str) -> dict[str, str]:
    outcome = run(stages, line)
    assert outcome is not None
    return outcome.labels


def test_json_flattens_nested_objects_with_underscores_and_skips_arrays_and_nulls() -> None:
    line = '{"a":{"b":{"c":1}},"s":"x","t":true,"f":1.5,"arr":[1,2],"n":null,"e":{}}'
    outcome = run([JSON], line)
    assert outcome is not None
    assert outcome.labels == {**STREAM, "a_b_c": "1", "s": "x", "t": "true", "f": "1.5"}
    assert outcome.parsed == {"a_b_c", "s", "t", "f"}
    assert outcome.line == line


def test_json_sanitises_keys_and_keeps_stream_labels() -> None:
    line = '{"http.method":"GET","1st":"a","level":"debug","user-id":7}'
    assert labels_of([JSON], line) == {
        **STREAM,
        "http_method": "GET",
        "_1st": "a",
        "level_extracted": "debug",
        "user_id": "7",
    }


@pytest.mark.parametrize("line", ["not json", "[1,2]", '"text"', "{"])
def test_json_error_on_a_line_that_is_not_an_object(line: str) -> None:
    found = labels_of([JSON], line)
    assert found["__error__"] == "JSONParserErr"
    assert "__error_details__" in found


def test_drop_error_removes_the_error_and_its_details() -> None:
    assert labels_of([JSON, Drop(("__error__",))], "oops") == STREAM


def test_drop_removes_stream_and_parsed_labels() -> None:
    outcome = run([JSON, Drop(("level", "a"))], '{"a":"1","b":"2"}')
    assert outcome is not None
    assert outcome.labels == {"service_name": "api", "b": "2"}
    assert outcome.parsed == {"b"}


def test_logfmt_reads_bare_quoted_and_escaped_values() -> None:
    line = 'msg="hello \\"world\\"\\n" status=200 dur=1.5s bare'
    assert labels_of([LOGFMT], line) == {
        **STREAM,
        "msg": 'hello "world"\n',
        "status": "200",
        "dur": "1.5s",
        "bare": "",
    }


def test_logfmt_unicode_escape_and_empty_value() -> None:
    assert labels_of([LOGFMT], 'a="caf\\u00e9" b= c=x')["a"] == "café"
    assert labels_of([LOGFMT], "a= c=x") == {**STREAM, "a": "", "c": "x"}


@pytest.mark.parametrize("line", ['msg="unterminated', "=value", 'a"b=1', 'a=b"c'])
def test_logfmt_error(line: str) -> None:
    assert labels_of([LOGFMT], line)["__error__"] == "LogfmtParserErr"


def test_string_label_filters_and_anchored_regexes() -> None:
    line = '{"path":"/api/users","code":"E42"}'
    keep = [
        Comparison("path", "=", "/api/users"),
        Comparison("path", "!=", "/api"),
        Comparison("path", "=~", "/api/.*"),
        Comparison("path", "!~", "api"),  # anchored: "api" is not the whole value
        Comparison("missing", "=", ""),
    ]
    for c in keep:
        assert run([JSON, LabelFilter(c)], line) is not None, c
    drop = [
        Comparison("path", "=~", "api"),
        Comparison("path", "!~", "/api/.*"),
        Comparison("path", "=", "/api"),
        Comparison("missing", "!=", ""),
    ]
    for c in drop:
        assert run([JSON, LabelFilter(c)], line) is None, c


@pytest.mark.parametrize(
    ("op", "bound", "kept"),
    [
        ("==", 200.0, True),
        ("!=", 200.0, False),
        (">", 199.5, True),
        (">=", 200.0, True),
        ("<", 200.0, False),
        ("<=", 200.0, True),
    ],
)
def test_numeric_label_filters(op: str, bound: float, kept: bool) -> None:
    stage = LabelFilter(Comparison("status", op, bound, numeric=True))  # type: ignore[arg-type]
    assert (run([LOGFMT, stage], "status=200") is not None) is kept


def test_a_label_that_is_not_a_number_fails_every_numeric_comparison() -> None:
    for op in ("==", "!=", ">", ">=", "<", "<="):
        stage = LabelFilter(Comparison("status", op, 1.0, numeric=True))
        assert run([LOGFMT, stage], "status=abc") is None, op
        assert run([LOGFMT, stage], "other=1") is None, op


def test_and_or_predicates() -> None:
    a = Comparison("a", "=", "1")
    b = Comparison("b", "=", "2")
    assert run([LOGFMT, LabelFilter(And(a, b))], "a=1 b=2") is not None
    assert run([LOGFMT, LabelFilter(And(a, b))], "a=1 b=3") is None
    assert run([LOGFMT, LabelFilter(Or(a, b))], "a=0 b=2") is not None
    assert run([LOGFMT, LabelFilter(Or(a, b))], "a=0 b=0") is None


def test_line_format_fills_labels_and_later_filters_see_the_new_line() -> None:
    stages: list[Stage] = [
        LOGFMT,
        LineFormat("{{.level}}: {{ .msg }} ({{.absent}})"),
        LineFilter("|=", "info: hi"),
    ]
    outcome = run(stages, "msg=hi")
    assert outcome is not None
    assert outcome.line == "info: hi ()"
    assert run([*stages, LineFilter("|=", "msg=")], "msg=hi") is None


@pytest.mark.parametrize(
    "template", ["{{ if .a }}x{{ end }}", "{{ .a | upper }}", '{{ printf "%s" .a }}', "{{ .a"]
)
def test_line_format_refuses_other_actions(template: str) -> None:
    with pytest.raises(LogQLError) as caught:
        compile_pipeline([LineFormat(template)])
    assert "line_format" in caught.value.message


def test_line_filters_are_case_sensitive_and_regexes_search() -> None:
    assert run([LineFilter("|=", "Err")], "an Error") is not None
    assert run([LineFilter("|=", "err")], "an Error") is None
    assert run([LineFilter("!=", "err")], "an Error") is not None
    assert run([LineFilter("|~", "(?i)ERR")], "an Error") is not None
    assert run([LineFilter("!~", "E.r")], "an Error") is None


def test_the_pipeline_leaves_the_callers_labels_alone() -> None:
    labels = dict(STREAM)
    compile_pipeline([JSON, Drop(("level",))]).run('{"x":"1"}', labels)
    assert labels == STREAM


def test_sanitize() -> None:
    assert sanitize("a.b-c d") == "a_b_c_d"
    assert sanitize("9lives") == "_9lives"
    assert sanitize("ok_1") == "ok_1"
