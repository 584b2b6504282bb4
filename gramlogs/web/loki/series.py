"""Metric queries: their series at each step of a window.

The steps are ``t = start, start + step, …, ≤ end`` (nanoseconds); a range aggregation's value at
``t`` is over the lines of ``(t - range, t]``, and a series has no point at a step where it saw
no line, as in Loki. A series is its labels (sorted pairs) and one value or None per step.

Two ways to the counts of a range aggregation:

- **Counted** (:func:`_counted`): for ``sum [by (level|detected_level|source)]`` of
  ``count_over_time`` or ``rate`` over a query whose every check is in the index (selector
  ``=`` on column labels, nothing else but ``| drop __error__``): one
  :func:`~gramlogs.storage.histogram.count_ranges` per level or source, over id ranges cut at
  every step's edges; no line is read. This is the log volume Grafana draws above the logs.
- **Read** (:func:`_read`): the window's lines through lines.read_lines (bounded by
  lines.MAX_EXAMINED), each line a sample of its labels' series.
"""

from __future__ import annotations

import bisect
import itertools
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from gramlogs.storage import histogram
from gramlogs.web.loki.lines import (
    Line,
    Plan,
    Reader,
    id_at_micros,
    plan,
    read_lines,
    truncation_warning,
)
from gramlogs.web.loki.logql import (
    BinaryOp,
    Drop,
    LogQLError,
    MetricExpr,
    RangeAggregation,
    VectorAggregation,
    VectorLiteral,
)
from gramlogs.web.reading import LEVELS, SOURCES

__all__ = ["MAX_SERIES", "Key", "Series", "Steps", "evaluate", "fast_path"]

Key = tuple[tuple[str, str], ...]
Values = list[float | None]
Series = dict[Key, Values]

# The labels the counted path groups by, and the values each takes (a read per combination).
# Loki's max_query_series: the series a read metric query may make (each holds a value for every
# step, so series times steps is what it costs); more is a 400 saying to group by fewer labels.
MAX_SERIES = 500
_ENUMERABLE = {"level": LEVELS, "detected_level": LEVELS, "source": SOURCES}
_COLUMN = {"detected_level": "level", "level": "level", "source": "source"}
_DROPPABLE = frozenset({"__error__", "__error_details__"})


@dataclass(frozen=True, slots=True)
class Steps:
    start_ns: int
    end_ns: int
    step_ns: int

    @property
    def times(self) -> list[int]:
        count = (self.end_ns - self.start_ns) // self.step_ns + 1
        return [self.start_ns + k * self.step_ns for k in range(count)]


@dataclass(slots=True)
class _Context:
    conn: Reader
    project_id: uuid.UUID
    steps: Steps
    warnings: list[str] = field(default_factory=list)


def key_of(labels: dict[str, str]) -> Key:
    return tuple(sorted(labels.items()))


async def evaluate(
    conn: Reader, expr: MetricExpr, project_id: uuid.UUID, steps: Steps
) -> tuple[Series, list[str]]:
    """``expr``'s series over ``steps``, and the warnings of its reads (a read cut short)."""
    ctx = _Context(conn, project_id, steps)
    return await _evaluate(ctx, expr), ctx.warnings


async def _evaluate(ctx: _Context, expr: MetricExpr) -> Series:
    n = len(ctx.steps.times)
    if isinstance(expr, VectorLiteral):
        return {(): [expr.value] * n}
    if isinstance(expr, BinaryOp):
        return _add(await _evaluate(ctx, expr.left), await _evaluate(ctx, expr.right), n)
    if isinstance(expr, RangeAggregation):
        return await _read(ctx, expr)
    counted = await _counted(ctx, expr)
    if counted is not None:
        return counted
    return _aggregate(expr, await _evaluate(ctx, expr.inner), n)


# -- Operators --------------------------------------------------------------------------------


def _add(left: Series, right: Series, n: int) -> Series:
    """Loki's ``+`` between vectors: series with equal labels add up, where both have a
    point; a side with only the label-less series (a literal) adds to each of the other's."""
    if list(left) == [()] and right and list(right) != [()]:
        left, right = right, left
    if list(right) == [()]:
        scalar = right[()]
        return {
            k: [
                a + b if a is not None and b is not None else None
                for a, b in zip(v, scalar, strict=True)
            ]
            for k, v in left.items()
        }
    out: Series = {}
    for k, v in left.items():
        other = right.get(k)
        if other is None:
            continue
        out[k] = [
            a + b if a is not None and b is not None else None
            for a, b in zip(v, other, strict=True)
        ]
    return {k: v for k, v in out.items() if any(x is not None for x in v)}


def _group(key: Key, by: tuple[str, ...] | None) -> Key:
    if not by:
        return ()
    return tuple((name, value) for name, value in key if name in by and value)


def _aggregate(expr: VectorAggregation, inner: Series, n: int) -> Series:
    if expr.op == "topk":
        return _topk(inner, expr.k or 0, expr.by, n)
    groups: dict[Key, list[Values]] = defaultdict(list)
    for key, values in inner.items():
        groups[_group(key, expr.by)].append(values)
    out: Series = {}
    for key, members in groups.items():
        column: Values = []
        for i in range(n):
            present = [v[i] for v in members if v[i] is not None]
            column.append(_combine(expr.op, present) if present else None)
        out[key] = column
    return out


def _combine(op: str, values: list[float | None]) -> float:
    numbers = [v for v in values if v is not None]
    if op == "sum":
        return float(sum(numbers))
    if op == "count":
        return float(len(numbers))
    if op == "min":
        return min(numbers)
    return max(numbers)


def _topk(inner: Series, k: int, by: tuple[str, ...] | None, n: int) -> Series:
    out: Series = {key: [None] * n for key in inner}
    groups: dict[Key, list[Key]] = defaultdict(list)
    for key in inner:
        groups[_group(key, by)].append(key)
    for members in groups.values():
        for i in range(n):
            present = [(inner[m][i], m) for m in members if inner[m][i] is not None]
            # Highest first; equal values in label order, so that the answer is stable.
            present.sort(key=lambda p: (-(p[0] or 0.0), p[1]))
            for value, m in present[:k]:
                out[m][i] = value
    return {key: v for key, v in out.items() if any(x is not None for x in v)}


# -- Range aggregations over read lines -------------------------------------------------------


def _value(function: str, count: int, total: float, range_ns: int) -> float:
    if function == "count_over_time":
        return float(count)
    if function == "rate":
        return count / (range_ns / 1e9)
    return total


def _window(ctx: _Context, range_ns: int) -> tuple[int, int]:
    """The ``[start, end)`` ns window that every step's ``(t - range, t]`` lies in."""
    times = ctx.steps.times
    return times[0] - range_ns + 1, times[-1] + 1


async def _read(ctx: _Context, expr: RangeAggregation) -> Series:
    start, end = _window(ctx, expr.range_ns)
    p = plan(expr.query, ctx.project_id, start, end)
    samples: dict[Key, tuple[list[int], list[float]]] = {}

    def take(line: Line) -> None:
        key = key_of(line.labels)
        sample = samples.get(key)
        if sample is None:
            if len(samples) >= MAX_SERIES:
                raise LogQLError(
                    f"maximum of series ({MAX_SERIES}) reached for a single query; group by"
                    " fewer labels (sum by (…)) or narrow the selector"
                )
            sample = samples[key] = ([], [])
        sample[0].append(line.ns)
        sample[1].append(float(line.size))

    found = await read_lines(ctx.conn, p, limit=None, forward=True, sink=take)
    if found.truncated:
        ctx.warnings.append(truncation_warning(found.examined))
    out: Series = {}
    for key, (times, sizes) in samples.items():
        sums = [0.0, *itertools.accumulate(sizes)]
        values: Values = []
        for t in ctx.steps.times:
            lo = bisect.bisect_right(times, t - expr.range_ns)
            hi = bisect.bisect_right(times, t)
            count = hi - lo
            total = sums[hi] - sums[lo]
            values.append(_value(expr.function, count, total, expr.range_ns) if count else None)
        out[key] = values
    return out


# -- The counted path -------------------------------------------------------------------------


def fast_path(expr: MetricExpr) -> bool:
    """Whether ``expr`` is answered from the index's counts alone (no line read); the
    project is not needed to tell."""
    return _countable(expr, uuid.UUID(int=0)) is not None


def _countable(expr: MetricExpr, project_id: uuid.UUID) -> Plan | None:
    if not isinstance(expr, VectorAggregation) or expr.op != "sum":
        return None
    inner = expr.inner
    if not isinstance(inner, RangeAggregation) or inner.function == "bytes_over_time":
        return None
    if any(name not in _ENUMERABLE for name in expr.by or ()):
        return None
    stages = inner.query.stages
    if any(not isinstance(s, Drop) or not set(s.labels) <= _DROPPABLE for s in stages):
        return None
    # The drops change no count: only the selector is left to the indexes.
    p = plan(replace(inner.query, stages=()), project_id, 0, 1)
    if p.selection.label_checks or p.selection.line_checks:
        return None
    return p


def _edges_us(times: list[int], range_ns: int) -> list[int]:
    """Each step's window ``(t - range, t]`` in microseconds is ``[b(t - range), b(t))`` with
    ``b(x) = floor(x / 1000) + 1``, the first microsecond after ``x``: every such bound, once,
    ascending."""
    bounds = {x // 1000 + 1 for t in times for x in (t - range_ns, t)}
    return sorted(bounds)


async def _counted(ctx: _Context, expr: VectorAggregation) -> Series | None:
    p = _countable(expr, ctx.project_id)
    if p is None:
        return None
    inner = expr.inner
    assert isinstance(inner, RangeAggregation)
    times = ctx.steps.times
    bounds = _edges_us(times, inner.range_ns)
    index = {b: i for i, b in enumerate(bounds)}
    ids = [id_at_micros(b) for b in bounds]
    base = replace(p.selection.filter, lo=ids[0], hi=ids[-1] - 1)
    by = tuple(dict.fromkeys(expr.by or ()))
    columns = sorted({_COLUMN[name] for name in by})
    split: dict[str, list[int]] | None = None
    if len(columns) == 1 and not p.selection.empty and base.lo <= base.hi:
        # One column (the volume's level): every value counted in one read of the window.
        split = await histogram.count_ranges_by(ctx.conn, base, ids[1:-1], columns[0])
    out: Series = {}
    for combination in _combinations(by, dict(base.equals)):
        if combination is None:
            continue
        labels, equals = combination
        counts = [0] if p.selection.empty else []
        if split is not None:
            counts = split.get(str(equals[columns[0]]), [0])
        elif not p.selection.empty and base.lo <= base.hi:
            f = replace(base, equals=equals)
            counts = await histogram.count_ranges(ctx.conn, f, ids[1:-1])
        prefix = [0, *itertools.accumulate(counts)]
        values: Values = []
        for t in times:
            a = index[(t - inner.range_ns) // 1000 + 1]
            b = index[t // 1000 + 1]
            count = prefix[min(b, len(prefix) - 1)] - prefix[min(a, len(prefix) - 1)]
            values.append(_value(inner.function, count, 0.0, inner.range_ns) if count else None)
        if any(v is not None for v in values):
            out[key_of(labels)] = values
    return out


def _combinations(
    by: tuple[str, ...], equals: dict[str, object]
) -> Iterable[tuple[dict[str, str], dict[str, object]] | None]:
    """Each read of the counted path: the series' labels and the filter's equalities (None:
    a combination the selector rules out). Grouping by nothing is one read."""
    columns = sorted({_COLUMN[name] for name in by})
    choices = [LEVELS if column == "level" else SOURCES for column in columns]
    for values in itertools.product(*choices):
        chosen = dict(zip(columns, values, strict=True))
        if any(column in equals and equals[column] != v for column, v in chosen.items()):
            yield None
            continue
        labels = {name: chosen[_COLUMN[name]] for name in by}
        yield labels, {**equals, **chosen}
