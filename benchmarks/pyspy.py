"""Where a server's time goes: py-spy samples of its process while a load runs, summed by stack.

Cython and C code (uvloop, httptools, asyncpg's protocol, msgspec) has no Python frame of its
own: its time counts toward the Python frame that called it, or toward the event loop."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["missing", "recording", "summarise"]


def _py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def missing() -> str | None:
    """Why there can be no profile, or None."""
    return None if _py_spy() else "py-spy is not installed (pip install -e '.[bench]')"


@contextlib.contextmanager
def recording(pid: int, out: Path, *, rate: int = 250) -> Iterator[None]:
    """py-spy samples process ``pid`` into ``out`` (its raw format) while the body runs."""
    command = [str(_py_spy()), "record", "--pid", str(pid), "--rate", str(rate)]
    spy = subprocess.Popen(
        [*command, "--format", "raw", "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=30)


def summarise(
    raw: Path, markers: Mapping[str, str], *, rest: str = "other", top: int = 12
) -> dict[str, Any]:
    """Percentages of the samples. ``inclusive``: toward every marker (a substring of a frame;
    ``leaf:`` first for the leaf frame only) found in the stack; ``exclusive``: toward the first
    marker found, the markers most specific first, else ``rest``; ``top_own``: the leaf frames."""
    if not raw.exists():
        return {"skipped": "py-spy wrote no samples"}
    total = 0
    inclusive: Counter[str] = Counter()
    exclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        n = int(count_text)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        hits = [label for label, marker in markers.items() if _found(marker, frames)]
        inclusive.update(dict.fromkeys(hits, n))
        exclusive[hits[0] if hits else rest] += n
    if not total:
        return {"skipped": "no samples"}

    def pct(counts: Counter[str], most: int | None = None) -> dict[str, float]:
        return {k: round(100 * v / total, 1) for k, v in counts.most_common(most)}

    return {
        "samples": total,
        "inclusive_pct": pct(inclusive),
        "exclusive_pct": pct(exclusive),
        "top_own_pct": pct(own, top),
    }


def _found(marker: str, frames: list[str]) -> bool:
    if marker.startswith("leaf:"):
        return marker[5:] in frames[-1]
    return any(marker in frame for frame in frames)
