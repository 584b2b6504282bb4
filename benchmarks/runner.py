"""The one way to run a benchmark: ``python -m benchmarks.<name> [options] [--smoke]``.

Every benchmark hands :func:`run` its options, what ``--smoke`` shrinks (unless ``main`` reads
it: a run of seconds on tiny data, which ``make test`` makes) and its ``main``; ``--write`` is
there when the benchmark has a results file (``benchmarks/<name>.md`` mostly). ``main`` runs on
uvloop, as the server does, or on asyncio's own loop where the figures quoted were made on it
(``loop="asyncio"``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import uvloop

__all__ = ["results_file", "run"]

_HERE = Path(__file__).parent


def results_file(name: str) -> Path:
    return _HERE / f"{name}.md"


def run(
    name: str,
    doc: str | None,
    main: Callable[[argparse.Namespace], Coroutine[Any, Any, Any]],
    *,
    options: Callable[[argparse.ArgumentParser], None],
    smoke_help: str,
    smoke: Callable[[argparse.Namespace], None] | None = None,
    results: Path | None = None,
    loop: str = "uvloop",
    argv: list[str] | None = None,
) -> None:
    """Parse the command line of benchmark ``name`` and run ``main`` with it. The namespace
    also holds ``command`` (the command line as typed, for the report) and ``write_to``: the
    ``results`` file when ``--write`` was given, else None."""
    prog = f"python -m benchmarks.{name}"
    parser = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    options(parser)
    parser.add_argument("--smoke", action="store_true", help=f"seconds: {smoke_help}")
    if results is not None:
        parser.add_argument("--write", action="store_true", help=f"append the report to {results}")
    args = parser.parse_args(argv)
    args.command = " ".join([prog, *(sys.argv[1:] if argv is None else argv)])
    args.write_to = results if results is not None and args.write else None
    if args.smoke and smoke is not None:
        smoke(args)
    if loop == "uvloop":
        uvloop.run(main(args))
    else:
        asyncio.run(main(args))
