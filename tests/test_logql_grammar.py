"""gramlogs' LogQL against Grafana's own grammar (@grafana/lezer-logql, under Node).

Every ``logql("…")`` literal in the tests is a query that both our parser and Grafana's grammar
parse, so no test relies on a dialect Grafana would not send; random trees of the subset, once
rendered, are all Grafana's LogQL too; the queries named unsupported are real LogQL (Grafana
parses them); and what is no LogQL, both refuse.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings

from gramlogs.web.loki.logql import LogQLError, Query, parse
from gramlogs.web.loki.logql_render import render
from testkit.logql_grammar import grafana_parses
from testkit.logql_trees import queries
from tests.test_logql import UNSUPPORTED

TESTS = Path(__file__).resolve().parent
# tests/test_logql.py alone marks 35 (the other Loki tests add theirs); fewer means that the
# collection broke, not that the tests changed.
AT_LEAST = 35


def _marked_queries() -> tuple[list[tuple[str, str]], list[str]]:
    """(where, query) of every ``logql(…)`` call in tests/*.py, and where a call is on anything
    but one string literal (this check could not see its query)."""
    found: list[tuple[str, str]] = []
    unseen: list[str] = []
    for path in sorted(TESTS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not (isinstance(node, ast.Call) and _is_logql(node.func)):
                continue
            where = f"{path.name}:{node.lineno}"
            literal = node.args[0] if len(node.args) == 1 and not node.keywords else None
            if isinstance(literal, ast.Constant) and isinstance(literal.value, str):
                found.append((where, literal.value))
            else:
                unseen.append(where)
    return found, unseen


def _is_logql(func: ast.expr) -> bool:
    return (isinstance(func, ast.Name) and func.id == "logql") or (
        isinstance(func, ast.Attribute) and func.attr == "logql"
    )


MARKED, UNSEEN = _marked_queries()


def test_the_tests_mark_enough_queries_each_a_literal() -> None:
    assert len(MARKED) >= AT_LEAST, MARKED
    assert UNSEEN == [], "logql() takes one string literal"


def test_every_marked_query_parses_under_both_grammars() -> None:
    queries_ = [query for _, query in MARKED]
    grafana = grafana_parses(queries_)
    failures = []
    for (where, query), error in zip(MARKED, grafana, strict=True):
        if error is not None:
            failures.append(f"{where}: Grafana's grammar: {error}: {query!r}")
        try:
            parse(query)
        except LogQLError as exc:
            failures.append(f"{where}: gramlogs: {exc}: {query!r}")
    assert not failures, "\n".join(failures)


def test_the_unsupported_queries_are_grafanas_logql() -> None:
    texts = [text for text, _ in UNSUPPORTED]
    verdicts = dict(zip(texts, grafana_parses(texts), strict=True))
    assert {text: error for text, error in verdicts.items() if error is not None} == {}


# Not LogQL: Grafana's grammar and gramlogs both refuse each. (Grafana's grammar is looser than
# Loki in places: it takes `{app="api"} + vector(1)`, which Loki and gramlogs refuse.)
SYNTAX_ERRORS = [
    "",
    "{}",
    '{app="api"',
    '{app="api",}',
    "{app=api}",
    '{app=="api"}',
    '{app="api"} |',
    '{app="api"} | level',
    '{app="api"} | level > "x"',
    '{app="api"} |= ',
    '{app="api"}[1m]',
    'rate({app="api"})',
    'rate({app="api"}[1m]',
    'rate({app="api"}[60])',
    'sum by a (rate({app="api"}[1m]))',
    'sum(rate({app="api"}[1m])',
    "vector(-1)",
    "vector(1) +",
    "vector()",
    "(vector(1)",
    'topk(, rate({app="api"}[1m]))',
    '{app="api"} | json | (a="1"',
    '{app="api"} | drop',
    '{app="api"} @ 5',
]


def test_syntax_errors_are_refused_by_both() -> None:
    grafana = grafana_parses(SYNTAX_ERRORS)
    accepted_by_grafana = [q for q, error in zip(SYNTAX_ERRORS, grafana, strict=True) if not error]
    assert accepted_by_grafana == []
    for query in SYNTAX_ERRORS:
        with pytest.raises(LogQLError):
            parse(query)


_RENDERED: list[str] = []


@settings(max_examples=200)
@given(queries)
def _collect_rendered(query: Query) -> None:
    _RENDERED.append(render(query))


def test_random_queries_of_the_subset_are_grafanas_logql() -> None:
    # Drawn first (the fixed seed of the "gramlogs" profile), then judged in one Node run.
    _RENDERED.clear()
    _collect_rendered()
    assert len(_RENDERED) >= 150
    verdicts = grafana_parses(_RENDERED)
    refused = {text: error for text, error in zip(_RENDERED, verdicts, strict=True) if error}
    assert refused == {}
