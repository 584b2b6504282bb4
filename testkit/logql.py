"""Marks a LogQL query in the tests: ``logql('{level="error"}')`` is the query itself.

tests/test_logql_grammar.py finds every ``logql("…")`` in the tests and checks that Grafana's own
grammar (@grafana/lezer-logql) parses each one, so that the tests never rely on a dialect Grafana
would not send.
"""

from __future__ import annotations

__all__ = ["logql"]


def logql(query: str) -> str:
    """``query``, marked as LogQL for the grammar check."""
    return query
