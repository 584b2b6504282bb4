"""The one results writer of the benchmarks: the machine and versions a run was measured on,
percentiles, the one machine-readable ``RESULT <name> {...}`` line, Markdown tables, and the
results files (``benchmarks/<name>.md``) that ``--write`` appends a report to, newest last."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shutil
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from gramlogs import __version__

__all__ = [
    "append_results",
    "check",
    "fmt_ms",
    "json_line",
    "machine",
    "percentiles",
    "print_machine",
    "publish",
    "table",
    "targets_table",
]


def percentiles(samples_s: Sequence[float], *, extremes: bool = False) -> dict[str, float]:
    """p50/p95/p99 in milliseconds (nearest rank), and the sample count; with ``extremes``, the
    least and the most too."""
    ordered = sorted(samples_s)
    if not ordered:
        nan = float("nan")
        return {"n": 0, "p50": nan, "p95": nan, "p99": nan} | (
            {"min": nan, "max": nan} if extremes else {}
        )

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000

    out = {"n": len(ordered), "p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99)}
    return out | ({"min": ordered[0] * 1000, "max": ordered[-1] * 1000} if extremes else {})


def fmt_ms(value: float) -> str:
    if math.isnan(value):
        return "—"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def machine(pg_version: str, *more_packages: str) -> dict[str, Any]:
    """The machine, its load, and the versions of what ran: PostgreSQL's, the server's
    packages', and ``more_packages``' ("absent" when not installed)."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    packages = ("asyncpg", "starlette", "uvicorn", "uvloop", "httptools", "msgspec", *more_packages)
    versions = {p: _version(p) for p in packages}
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": pg_version,
        "gramlogs": __version__,
        "wrk": _wrk_version(),
        **versions,
    }


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def print_machine(info: dict[str, Any]) -> None:
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)


def _wrk_version() -> str:
    path = shutil.which("wrk")
    if not path:
        return "absent"
    out = subprocess.run([path, "-v"], capture_output=True, text=True, check=False)
    return (out.stdout + out.stderr).split("\n")[0].split(" [")[0].strip() or "unknown"


def json_line(name: str, data: dict[str, Any]) -> None:
    """The one machine-readable line every benchmark prints."""
    print(f"RESULT {name} " + json.dumps(data, default=str, separators=(",", ":")), flush=True)


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; numbers right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def check(target: str, met: bool, measured: str) -> dict[str, Any]:
    """A target, whether the run met it, and what it measured (reported, never asserted)."""
    return {"target": target, "met": met, "measured": measured}


def targets_table(
    checks: Sequence[dict[str, Any]], title: str = "target (the issue's)"
) -> list[str]:
    """The Markdown lines of a table of :func:`check` results, a blank line first."""
    rows = [
        f"| {t['target']} | {'yes' if t['met'] else '**no**'} | {t['measured']} |" for t in checks
    ]
    return ["", f"| {title} | met | measured |", "|---|---|---|", *rows]


def append_results(path: Path, intro: str, report: str) -> None:
    """Append ``report`` to a benchmark's results file (``benchmarks/<name>.md``), newest last;
    a new file starts with its title and ``intro`` (what the runs measure)."""
    head = f"# benchmarks/{path.stem}.py: results\n\n{intro}\n"
    text = path.read_text() if path.exists() else head
    path.write_text(text.rstrip("\n") + "\n\n" + report)


def publish(name: str, result: dict[str, Any], report: str, *, write_to: Path | None) -> None:
    """Print ``report`` (Markdown), append it to ``write_to`` when given, and print the result
    line: what every benchmark does with its figures."""
    print(report, flush=True)
    if write_to is not None:
        intro = f"What it measures: the docstring of benchmarks/{name}.py and docs/benchmarks.md."
        append_results(write_to, intro, report)
        print(f"appended to {write_to}", flush=True)
    json_line(name, result)
