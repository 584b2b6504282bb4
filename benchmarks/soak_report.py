"""What a soak run saw, and its report: every request's schedule, times and answer; the
restart window; the answers per time bucket and per endpoint; lost and doubled lines; the
server's RSS and its slope; one ``RESULT soak {...}`` line (benchmarks/soak.py runs the load).
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from benchmarks.results import fmt_ms, json_line, percentiles

PROJECT = "soak"
FUNCTIONS = [uuid.UUID(int=i + 1, version=4) for i in range(8)]
DEPLOYMENT = uuid.UUID(int=99, version=4)
WORDS = ("tool call started", "tool call finished", "upstream timeout", "cache lookup")
LEVELS = ("debug", "info", "info", "info", "warn", "error")


@dataclass
class Options:
    seconds: float
    reads: float  # per second
    batches: float  # per second
    lines: int  # per batch
    read_clients: int
    ingest_clients: int
    restart_at: float  # seconds into the run
    down: float
    grace: float
    bucket: float
    workers: int

    @classmethod
    def of(cls, a: argparse.Namespace) -> Options:
        seconds = a.minutes * 60
        down, bucket, lines = a.down, a.bucket, a.lines
        if a.smoke:
            seconds, down, bucket, lines = 12.0, 2.0, 2.0, min(lines, 50)
        return cls(
            seconds=seconds,
            reads=a.reads,
            batches=a.batches,
            lines=lines,
            read_clients=a.read_clients,
            ingest_clients=a.ingest_clients,
            restart_at=seconds / 2,
            down=down,
            grace=a.grace if not a.smoke else 2.0,
            bucket=bucket,
            workers=a.workers,
        )


# -- what happened ------------------------------------------------------------------------------


@dataclass
class Sample:
    kind: str  # read, ingest, readyz
    due: float  # scheduled send, seconds since the start
    sent: float  # actual send (later than due when the client was still busy)
    done: float
    status: str  # "200", "503", or "exc:ReadTimeout"
    retry: bool = False
    endpoint: str = ""  # the route, "?keyword" for a keyword search

    @property
    def service(self) -> float:
        """From the actual send: the server's time, without the wait for a busy client."""
        return self.done - self.sent

    @property
    def latency(self) -> float:
        return self.done - self.due


@dataclass
class Window:
    stop_called: float | None = None
    stopped: float | None = None
    start_called: float | None = None
    started: float | None = None
    grace: float = 0.0

    @property
    def end(self) -> float | None:
        return None if self.started is None else self.started + self.grace

    def overlaps(self, begin: float, end: float) -> bool:
        """Was a request in flight (``begin``..``end``) at any time within the window?"""
        if self.stop_called is None:
            return False
        window_end = self.end if self.end is not None else float("inf")
        return begin < window_end and end > self.stop_called


@dataclass
class Run:
    t0: float
    samples: list[Sample] = field(default_factory=list)
    rss: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MiB)
    acked: set[str] = field(default_factory=set)  # markers of acknowledged lines
    acked_batches: int = 0
    stored_reported: int = 0  # sum of the replies' "stored"
    duplicates_reported: int = 0
    unacknowledged_batches: int = 0  # given up on (still failing at the deadline)
    window: Window = field(default_factory=Window)

    def now(self) -> float:
        return time.monotonic() - self.t0


def by_endpoint(run: Run) -> dict[str, dict[str, Any]]:
    """Per endpoint, over the whole run: answers by status; p50/p99 from the scheduled send
    (what a client waits) and of the server's own time; and the server's p99 per minute."""
    grouped: dict[str, list[Sample]] = defaultdict(list)
    for s in run.samples:
        grouped[s.endpoint].append(s)
    out = {}
    for name, samples in sorted(grouped.items()):
        late = percentiles([s.latency for s in samples])
        own = percentiles([s.service for s in samples])
        minutes: dict[int, list[float]] = defaultdict(list)
        for s in samples:
            minutes[int(s.due // 60)].append(s.service)
        out[name] = {
            "statuses": dict(sorted(Counter(s.status for s in samples).items())),
            "p50_ms": late["p50"],
            "p99_ms": late["p99"],
            "service_p50_ms": own["p50"],
            "service_p99_ms": own["p99"],
            "service_p99_ms_per_minute": [
                round(percentiles(minutes[m])["p99"], 2) for m in sorted(minutes)
            ],
        }
    return out


def rss_slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope, MiB per minute."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(m for _, m in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mx) * (m - my) for t, m in points) / var * 60


# -- report -------------------------------------------------------------------------------------


def classify(run: Run) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, ...]]]:
    """(all answers by kind and status, the ones that miss the target by kind/status/where)."""
    statuses: Counter[tuple[str, str]] = Counter()
    failures: Counter[tuple[str, ...]] = Counter()
    w = run.window
    for s in run.samples:
        statuses[(s.kind, s.status)] += 1
        if s.status.startswith("2"):
            continue
        inside = w.overlaps(s.sent, s.done)
        if s.status == "503" and inside:
            continue
        failures[(s.kind, s.status, "in window" if inside else "outside window")] += 1
    return statuses, failures


def buckets(run: Run, opts: Options) -> list[dict[str, Any]]:
    rows = []
    n = max(1, round(opts.seconds / opts.bucket + 0.4999))
    by: dict[int, list[Sample]] = defaultdict(list)
    for s in run.samples:
        by[min(n - 1, int(s.due // opts.bucket))].append(s)
    rss: dict[int, list[float]] = defaultdict(list)
    for t, m in run.rss:
        rss[min(n - 1, int(t // opts.bucket))].append(m)
    for i in range(n):
        begin, end = i * opts.bucket, (i + 1) * opts.bucket
        got = [s for s in by[i] if s.kind != "readyz"]
        read = percentiles([s.latency for s in got if s.kind == "read"])
        ing = percentiles([s.latency for s in got if s.kind == "ingest"])
        rows.append(
            {
                "t": begin,
                "restart": run.window.overlaps(begin, end),
                "statuses": dict(sorted(Counter(s.status for s in got).items())),
                "reads": read["n"],
                "read_p50_ms": read["p50"],
                "read_p99_ms": read["p99"],
                "ingests": ing["n"],
                "ingest_p50_ms": ing["p50"],
                "ingest_p99_ms": ing["p99"],
                "rss_mib": max(rss[i]) if rss[i] else float("nan"),
            }
        )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'t (s)':>6} {'':1} {'reads':>5} {'p50':>7} {'p99':>7}  {'ingests':>7} {'p50':>7} "
        f"{'p99':>7}  {'RSS MiB':>7}  statuses (reads+ingests)"
    )
    print(head)
    for r in rows:
        statuses = " ".join(f"{k}:{v}" for k, v in r["statuses"].items())
        print(
            f"{r['t']:>6.0f} {'R' if r['restart'] else '':1} {r['reads']:>5} "
            f"{fmt_ms(r['read_p50_ms']):>7} {fmt_ms(r['read_p99_ms']):>7}  {r['ingests']:>7} "
            f"{fmt_ms(r['ingest_p50_ms']):>7} {fmt_ms(r['ingest_p99_ms']):>7}  "
            f"{r['rss_mib']:>7.1f}  {statuses}"
        )
    print("(latencies in ms, from each request's scheduled send; R: the restart window)")


def report(
    run: Run,
    opts: Options,
    info: dict[str, Any],
    elapsed: float,
    stored: Counter[str],
    metrics: str,
) -> None:
    rows = buckets(run, opts)
    print_table(rows)
    endpoints = by_endpoint(run)
    statuses, failures = classify(run)
    lost = sorted(run.acked - stored.keys())
    doubled = sorted(m for m, c in stored.items() if c > 1)
    unacked_stored = len(stored.keys() - run.acked)
    warm = [(t, m) for t, m in run.rss if t >= opts.seconds / 10]
    slope = rss_slope(warm)
    rss_values = [m for _, m in run.rss]
    warm_rss = warm[0][1] if warm else float("nan")
    growth = slope * (opts.seconds - opts.seconds / 10) / 60
    rss_flat = growth <= max(5.0, 0.05 * warm_rss)
    w = run.window
    db_failures = {
        line.split(" ")[0]: float(line.split(" ")[-1])
        for line in metrics.splitlines()
        if line.startswith("gramlogs_db_failures_total")
    }
    ready = [s for s in run.samples if s.kind == "readyz"]
    not_ready = [s for s in ready if s.status != "200"]
    summary: dict[str, Any] = {
        "seconds": round(elapsed, 1),
        "options": vars(opts),
        "window": {
            "stop_called": w.stop_called,
            "stopped": w.stopped,
            "start_called": w.start_called,
            "started": w.started,
            "end": w.end,
        },
        "readyz_not_ready": [not_ready[0].due, not_ready[-1].done] if not_ready else None,
        "statuses": {f"{k} {s}": n for (k, s), n in sorted(statuses.items())},
        "failures": {" ".join(k): n for k, n in sorted(failures.items())},
        "batches_acknowledged": run.acked_batches,
        "batches_unacknowledged": run.unacknowledged_batches,
        "ingest_retries": sum(1 for s in run.samples if s.retry),
        "lines_acknowledged": len(run.acked),
        "lines_verified": len(run.acked & stored.keys()),
        "lines_lost": len(lost),
        "lines_doubled": len(doubled),
        "lines_stored_unacknowledged": unacked_stored,
        "stored_reported": run.stored_reported,
        "duplicates_reported": run.duplicates_reported,
        "rss_mib": {
            "start": rss_values[0] if rss_values else None,
            "after_warmup": warm_rss,
            "end": rss_values[-1] if rss_values else None,
            "max": max(rss_values, default=None),
            "slope_mib_per_min": round(slope, 3),
        },
        "db_failures_metric": db_failures,
        "pass": {
            "no_error_outside_window": not failures,
            "no_line_lost": not lost,
            "no_line_doubled": not doubled,
            "rss_flat": rss_flat,
        },
        "endpoints": endpoints,
        "buckets": rows,
        "machine": info,
    }
    print()
    assert w.stop_called is not None and w.stopped is not None and w.end is not None
    assert w.start_called is not None and w.started is not None
    took = f"stop took {w.stopped - w.stop_called:.2f} s, start {w.started - w.start_called:.2f} s"
    print(f"ran {elapsed:.1f} s; restart window {w.stop_called:.1f}-{w.end:.1f} s ({took})")
    if not_ready:
        print(f"/readyz not ready from {not_ready[0].due:.1f} to {not_ready[-1].done:.1f} s")
    print("answers: " + ", ".join(f"{k} {s}: {n}" for (k, s), n in sorted(statuses.items())))
    print(
        "by endpoint (ms): p50/p99 from the scheduled send; from the actual send; "
        "p99 from the actual send per minute"
    )
    for name, e in endpoints.items():
        print(
            f"  {name}: {fmt_ms(e['p50_ms'])}/{fmt_ms(e['p99_ms'])}; "
            f"{fmt_ms(e['service_p50_ms'])}/{fmt_ms(e['service_p99_ms'])}; "
            + " ".join(fmt_ms(x) for x in e["service_p99_ms_per_minute"])
        )
    print(
        "errors missing the target: "
        + (", ".join(f"{' '.join(k)}: {n}" for k, n in sorted(failures.items())) or "none")
    )
    print(
        f"lines: {len(run.acked)} acknowledged ({run.acked_batches} batches), "
        f"{summary['lines_verified']} verified, {len(lost)} lost, {len(doubled)} doubled, "
        f"{unacked_stored} stored without an acknowledgement; "
        f"{summary['ingest_retries']} resends, {run.unacknowledged_batches} batches given up"
    )
    r = summary["rss_mib"]
    print(
        f"server RSS (MiB): start {r['start']:.1f}, after warm-up {warm_rss:.1f}, end "
        f"{r['end']:.1f}, max {r['max']:.1f}; slope {slope:+.3f} MiB/min "
        f"({'flat' if rss_flat else 'GROWING'})"
    )
    print(
        "targets: "
        + ", ".join(f"{k}={'pass' if v else 'FAIL'}" for k, v in summary["pass"].items())
    )
    json_line("soak", summary)
