"""``gramlogs logs``: read a project's logs from a gramlogs server, or follow them live."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import msgspec

from gramlogs.client.output import FORMATS, Formatter, use_color
from gramlogs.client.remote import ClientError, Remote

__all__ = ["DEFAULT_URL", "add_parser", "parse_duration", "run", "since"]

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_LINES = 100
DEFAULT_FOLLOW_LINES = 10
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+)([smhd])")

DESCRIPTION = """\
Read a project's logs from a gramlogs server over HTTP, or follow them as they arrive.

Which lines:
  -n N             the newest N matching lines (of the window, if one is given), oldest first
  a window         (--since, --from, --to) without -n: every line of the window, oldest first
  neither          the newest 100 lines (as -n 100)
  -f               the newest -n lines (10 by default; -n 0 for none), then each new line as
                   it arrives, until Ctrl-C; reconnects and resumes by itself, without a gap
                   or a repeated line

Filters are the server's own parameters; it checks them, and its error message is printed.
The key is sent in the Gram-Key header only; prefer GRAMLOGS_KEY to --key, which other users
of the machine can see in the process list.
"""


def add_parser(sub: Any) -> None:
    """Add ``logs`` to the subcommands ``sub`` (an argparse subparsers action)."""
    p = sub.add_parser(
        "logs",
        help="read or follow a project's logs from a gramlogs server",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = p.add_argument_group("server")
    where.add_argument("--url", help=f"the server (default {DEFAULT_URL}; env GRAMLOGS_URL)")
    where.add_argument("--key", help="API key, a consumer key will do (env GRAMLOGS_KEY)")
    where.add_argument("--project", help="project slug, the Gram-Project (env GRAMLOGS_PROJECT)")

    which = p.add_argument_group("filters")
    which.add_argument("--level", help="debug, info, warn or error")
    which.add_argument("--function", metavar="UUID", help="function id")
    which.add_argument("--deployment", metavar="UUID", help="deployment id")
    which.add_argument("--instance", help="instance, exactly")
    which.add_argument("--source", help="server, function, stdout or stderr")
    which.add_argument(
        "--grep", metavar="WORD", help="lines whose message or raw line contains WORD, any case"
    )
    window = which.add_mutually_exclusive_group()
    window.add_argument(
        "--since",
        type=parse_duration,
        metavar="AGE",
        help="lines of the last AGE: a number and s, m, h or d (90s, 15m, 1h, 2d)",
    )
    window.add_argument("--from", dest="ts_from", metavar="TIME", help="from TIME (RFC 3339)")
    which.add_argument("--to", dest="ts_to", metavar="TIME", help="up to TIME (RFC 3339)")

    how = p.add_argument_group("output")
    how.add_argument(
        "-n", "--lines", type=_lines, metavar="N", help="the newest N lines (see above)"
    )
    how.add_argument("-f", "--follow", action="store_true", help="then follow new lines")
    how.add_argument(
        "--output",
        choices=FORMATS,
        default="pretty",
        help="pretty (default): time, level, source, instance, function, message;"
        " jsonl: each entry as the server's JSON; raw: each entry's raw_log",
    )
    how.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the level (pretty): auto does on a terminal, unless NO_COLOR is set",
    )
    zone = how.add_mutually_exclusive_group()
    zone.add_argument(
        "--utc",
        dest="local",
        action="store_false",
        default=False,
        help="pretty: timestamps in UTC (default)",
    )
    zone.add_argument(
        "--local", dest="local", action="store_true", help="pretty: timestamps in local time"
    )
    p.set_defaults(func=run, usage_error=p.error)


def _lines(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be zero or more")
    return value


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``1h``, ``2d``: a whole number and a unit."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an age such as 90s, 15m, 1h or 2d (a number and s, m, h or d)"
        )
    seconds = int(match[1]) * _UNITS[match[2]]
    # timedelta's own limit, about 2.7 million years: past it, no log is that old anyway.
    return timedelta(seconds=min(seconds, 86400 * 999_999_999))


def since(age: timedelta, now: datetime) -> str:
    """``ts_start`` for ``--since age``: ``now - age`` in RFC 3339 UTC (not before 1970)."""
    start = _EPOCH if age >= now - _EPOCH else now - age
    return _rfc3339(start)


def _rfc3339(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _setting(value: str | None, env: str) -> str | None:
    return value or os.environ.get(env) or None


def filters(args: argparse.Namespace) -> dict[str, str]:
    """The server's parameters for the filters given: same for a page and for the tail."""
    given = {
        "level": args.level,
        "function_id": args.function,
        "deployment_id": args.deployment,
        "instance": args.instance,
        "source": args.source,
        "keyword": args.grep,
    }
    return {name: value for name, value in given.items() if value is not None}


def run(args: argparse.Namespace, *, now: datetime | None = None) -> None:
    if args.follow and any(w is not None for w in (args.since, args.ts_from, args.ts_to)):
        args.usage_error("--follow takes no window (--since, --from, --to): use -n with --follow")
    key = _setting(args.key, "GRAMLOGS_KEY")
    if key is None:
        raise ClientError("no API key: set GRAMLOGS_KEY or pass --key")
    key = key.strip()
    project = _setting(args.project, "GRAMLOGS_PROJECT")
    # Header values: printable ASCII, else http.client would refuse them with a traceback. The
    # key itself is never shown.
    if not (key.isascii() and key.isprintable()):
        raise ClientError("the API key (GRAMLOGS_KEY or --key) holds characters no key has")
    if project is not None and not (project.isascii() and project.isprintable()):
        raise ClientError(f"the project (GRAMLOGS_PROJECT or --project) is not a slug: {project!r}")
    remote = Remote(_setting(args.url, "GRAMLOGS_URL") or DEFAULT_URL, key, project)
    color = use_color(args.color, isatty=sys.stdout.isatty(), no_color=os.environ.get("NO_COLOR"))
    formatter = Formatter(args.output, color=color, local=args.local)
    out = sys.stdout.buffer
    params = filters(args)
    try:
        if args.follow:
            _follow(remote, params, args, formatter, out)
        else:
            if args.since is not None:
                params["ts_start"] = since(args.since, now or datetime.now(UTC))
            if args.ts_from is not None:
                params["ts_start"] = args.ts_from
            if args.ts_to is not None:
                params["ts_end"] = args.ts_to
            _list(remote, params, args, formatter, out)
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly. Later writes to the closed pipe, and
        # the interpreter's last flush, go to /dev/null instead of raising again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    finally:
        remote.close()


def _list(
    remote: Remote,
    params: dict[str, str],
    args: argparse.Namespace,
    formatter: Formatter,
    out: IO[bytes],
) -> None:
    windowed = "ts_start" in params or "ts_end" in params
    if args.lines is None and windowed:
        for logs in remote.walk(params, sort="asc"):
            _write(out, map(formatter.line, logs))
        return
    # The newest N, read newest first and printed oldest first: at most N lines held.
    limit = DEFAULT_LINES if args.lines is None else args.lines
    newest: list[msgspec.Raw] = []
    for logs in remote.walk(params, sort="desc", limit=limit):
        newest += logs
    _write(out, map(formatter.line, reversed(newest)))


def _follow(
    remote: Remote,
    params: dict[str, str],
    args: argparse.Namespace,
    formatter: Formatter,
    out: IO[bytes],
) -> None:
    lines = DEFAULT_FOLLOW_LINES if args.lines is None else args.lines
    notify = _notice if sys.stderr.isatty() else None
    for batch in remote.tail(params, lines=lines, on_retry=notify):
        _write(out, map(formatter.tail_line, batch))


def _notice(wait: float, why: str) -> None:
    print(f"gramlogs: {why}; reconnecting in {wait:.1f} s", file=sys.stderr, flush=True)


def _write(out: IO[bytes], lines: Iterable[bytes]) -> None:
    out.write(b"".join(lines))
    out.flush()
