"""From a log query to what storage reads: the indexed part, and what is checked line by line.

A stream selector's ``=`` on a column label (labels.INDEXED_LABELS), and the first ``|=`` line
filter (through the keyword index, which is case-insensitive and so finds a superset), become
the :class:`~gramlogs.storage.filters.LogFilter` of the read. Everything else (``!=``, ``=~``,
``!~``, ``service_name``, pushed labels, the other line filters) is checked on each line the read
returns, by :meth:`Selection.matches`. A selector that no line can match (``level="fatal"``, a
``function_id`` that is not a uuid) is :attr:`Selection.empty`: nothing is read.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from gramlogs.core import ids
from gramlogs.storage.filters import LogFilter
from gramlogs.storage.rows import StoredRow
from gramlogs.web.loki.labels import stream_labels
from gramlogs.web.loki.logql import LineFilter, LogQLError, LogQuery, Matcher
from gramlogs.web.reading import LEVELS, SOURCES

__all__ = ["Selection", "compile_regex", "line_matches", "select"]

# The level and source a label's "=" names, as the columns hold them.
_ENUMS: dict[str, tuple[str, ...]] = {
    "level": LEVELS,
    "detected_level": LEVELS,
    "source": SOURCES,
}
_UUID_LABELS = ("function_id", "deployment_id")
_COLUMN = {"detected_level": "level"}


def compile_regex(pattern: str, what: str) -> re.Pattern[str]:
    """A LogQL (RE2) regular expression as Python's; 400 naming ``what`` when it is invalid.

    Python's syntax is a superset of the RE2 constructs LogQL queries use (``(?i)``, classes,
    alternation, repetition); RE2 has no backreferences, so no query depends on them."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise LogQLError(f"invalid regular expression in {what} {pattern!r}: {exc}") from None


def _label_matcher(m: Matcher) -> Callable[[dict[str, str]], bool]:
    if m.op in ("=~", "!~"):
        # Loki anchors label regexes: the whole value must match.
        pattern = compile_regex(m.value, f"the matcher of {m.label}")
        if m.op == "=~":
            return lambda labels: pattern.fullmatch(labels.get(m.label, "")) is not None
        return lambda labels: pattern.fullmatch(labels.get(m.label, "")) is None
    if m.op == "=":
        return lambda labels: labels.get(m.label, "") == m.value
    return lambda labels: labels.get(m.label, "") != m.value


def line_matches(f: LineFilter) -> Callable[[str], bool]:
    """Whether a line passes the line filter ``f`` (``|=``/``!=`` case-sensitive, as Loki's)."""
    if f.op == "|=":
        return lambda line: f.value in line
    if f.op == "!=":
        return lambda line: f.value not in line
    pattern = compile_regex(f.value, "the line filter")
    if f.op == "|~":
        return lambda line: pattern.search(line) is not None
    return lambda line: pattern.search(line) is None


@dataclass(frozen=True, slots=True)
class Selection:
    """What a log query's selector and leading line filters read: ``filter`` through the
    indexes, ``matches`` for each line it returns. The line is the row's ``raw_log``."""

    filter: LogFilter
    empty: bool
    label_checks: tuple[Callable[[dict[str, str]], bool], ...]
    line_checks: tuple[Callable[[str], bool], ...]

    def matches(self, row: StoredRow) -> bool:
        """Whether ``row`` passes the selector and the leading line filters."""
        if not self.line_passes(row):
            return False
        return not self.label_checks or self.labels_pass(stream_labels(row))

    def line_passes(self, row: StoredRow) -> bool:
        """Whether ``row``'s line passes the leading line filters."""
        return all(check(row[5]) for check in self.line_checks)

    def labels_pass(self, labels: dict[str, str]) -> bool:
        """Whether the stream labels ``labels`` pass the selector's per-line matchers."""
        return all(check(labels) for check in self.label_checks)


def select(query: LogQuery, project_id: uuid.UUID, lo: int, hi: int) -> Selection:
    """The selection of ``query``'s selector and of the line filters before its first other
    stage (those after a parser or a line_format see a changed line or labels, so the
    pipeline runs them), within the inclusive id range ``lo..hi``."""
    if not query.matchers:
        raise LogQLError('a stream selector needs at least one matcher, e.g. {level="error"}')
    equals: dict[str, object] = {}
    checks: list[Callable[[dict[str, str]], bool]] = []
    empty = False
    for m in query.matchers:
        column = _COLUMN.get(m.label, m.label)
        if m.op == "=" and m.label in _ENUMS:
            if m.value not in _ENUMS[m.label]:
                empty = True
            elif equals.setdefault(column, m.value) != m.value:
                empty = True  # two different values of one column
            continue
        if m.op == "=" and m.label in _UUID_LABELS:
            try:
                value: object = ids.parse_uuid(m.value)
            except ids.IdError:
                empty = True
                continue
            if equals.setdefault(column, value) != value:
                empty = True
            continue
        if m.op == "=" and m.label == "instance":
            if equals.setdefault(column, m.value) != m.value:
                empty = True
            continue
        checks.append(_label_matcher(m))
    keyword: str | None = None
    line_checks: list[Callable[[str], bool]] = []
    for stage in query.stages:
        if not isinstance(stage, LineFilter):
            break
        if stage.op == "|=" and keyword is None and stage.value:
            keyword = stage.value
        line_checks.append(line_matches(stage))
    return Selection(
        filter=LogFilter(project_id=project_id, lo=lo, hi=hi, equals=equals, keyword=keyword),
        empty=empty,
        label_checks=tuple(checks),
        line_checks=tuple(line_checks),
    )
