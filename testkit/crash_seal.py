"""``python -m testkit.crash_seal URL --kill POINT [--after N] [--block-rows R] [--now ISO]``: a
sealing loop that dies by SIGKILL at a chosen point.

The loop is the server's sealing without the server: sealing.seal_some, then merge_some, a few
blocks each, until neither finds anything to do (exit 0), with blocks of ``--block-rows``
lines, at a fixed ``--now``. It dies at the ``N + 1``-th time it reaches ``POINT``:

- ``seal-open`` / ``merge-open``: inside the transaction, after its rows (its old blocks) are
  deleted and its block written (``sealed.write`` returned), before COMMIT;
- ``seal-committed`` / ``merge-committed``: right after the COMMIT (``sealing._seal_block`` /
  ``sealing._merge`` returned having done its work);
- ``none``: never.

Only the tests run this (tests/test_sealing_crash.py); the package has no such hook.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg

from gramlogs.storage import sealed, sealing

__all__ = ["POINTS", "main"]

POINTS = ("seal-open", "seal-committed", "merge-open", "merge-committed", "none")
# Few blocks a round, so that seals and merges alternate and every point is reached early.
_PER_ROUND = 4


class _Killer:
    def __init__(self, point: str, after: int) -> None:
        self.point = point
        self.left = after
        self.doing = ""  # "seal" or "merge": whose transaction sealed.write is in

    def reached(self, point: str) -> None:
        if point != self.point:
            return
        if self.left == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        self.left -= 1


def _around(
    killer: _Killer, doing: str, step: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(step)
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        killer.doing = doing
        done = await step(*args, **kwargs)
        if done:
            killer.reached(f"{doing}-committed")
        return done

    return wrapped


def _install(killer: _Killer) -> None:
    # seal_some, merge_some and _replace look these up on their modules when they call them.
    write = sealed.write

    @functools.wraps(write)
    async def write_then_maybe_die(*args: Any, **kwargs: Any) -> None:
        await write(*args, **kwargs)
        killer.reached(f"{killer.doing}-open")

    sealed.write = write_then_maybe_die
    sealing._seal_block = _around(killer, "seal", sealing._seal_block)  # type: ignore[assignment]
    sealing._merge = _around(killer, "merge", sealing._merge)  # type: ignore[assignment]


async def _seal_all(url: str, now: datetime) -> None:
    conn = await asyncpg.connect(url)
    try:
        while True:
            seals = await sealing.seal_some(conn, now=now, max_blocks=_PER_ROUND)
            merges = await sealing.merge_some(conn, max_merges=_PER_ROUND)
            if not seals.blocks and not merges.blocks:
                return
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testkit.crash_seal")
    parser.add_argument("url")
    parser.add_argument("--kill", choices=POINTS, required=True)
    parser.add_argument("--after", type=int, default=0, help="times the point is passed first")
    parser.add_argument("--block-rows", type=int, default=sealing.BLOCK_ROWS)
    parser.add_argument("--now", type=datetime.fromisoformat, required=True)
    args = parser.parse_args(argv)
    sealing.BLOCK_ROWS = args.block_rows
    sealing.MERGE_BELOW = max(2, args.block_rows // 2)
    _install(_Killer(args.kill, args.after))
    asyncio.run(_seal_all(args.url, args.now))
    return 0


if __name__ == "__main__":
    sys.exit(main())
