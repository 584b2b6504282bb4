"""``gramlogs logs``, run as a user runs it: a subprocess against a live server (the ``serve``
fixture) holding lines with fixed timestamps, or against a scripted stand-in server where the
answer must be exact (the parameters sent, the live tail's reconnections).

No test depends on the date or the clock: windows are given with --from and --to, and --since
is tested with an injected "now".
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import pty
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gramlogs import cli
from gramlogs.client import command
from gramlogs.client.output import Formatter, escape, use_color
from gramlogs.client.remote import Backoff
from gramlogs.core import ids
from gramlogs.storage import writer
from testkit.ports import HOST, free_port

LIST = "/rpc/logs.listToolExecutionLogs"
BASE = datetime(2025, 3, 1, tzinfo=UTC)
WINDOW = ("--from", "2025-03-01T00:00:00Z", "--to", "2025-03-01T01:00:00Z")
IN_WINDOW = 250
LEVELS = ("debug", "info", "warn", "error")
SOURCES = ("server", "function", "stdout", "stderr")


# -- running the command -------------------------------------------------------------------------


def client_env(url: str, key: str | None, project: str | None, **extra: str) -> dict[str, str]:
    """The environment of a user with only these settings (none of the test run's own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAMLOGS_")}
    env.pop("NO_COLOR", None)
    env["GRAMLOGS_URL"] = url
    if key is not None:
        env["GRAMLOGS_KEY"] = key
    if project is not None:
        env["GRAMLOGS_PROJECT"] = project
    return {**env, **extra}


def gramlogs_logs(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gramlogs", "logs", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class Running:
    """``gramlogs logs`` in the background (``with Running(...) as run:``), its lines read in a
    thread so that a test can wait for them; killed, if still running, on the way out."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gramlogs", "logs", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)

    def take(self, count: int, timeout: float = 30) -> list[str]:
        deadline = time.monotonic() + timeout
        got: list[str] = []
        while len(got) < count:
            try:
                got.append(self._lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"{count} lines expected, got {got}") from None
        return got

    def interrupt(self) -> tuple[int, str, list[str]]:
        """SIGINT, as Ctrl-C sends it: the exit status, stderr, and the lines not yet taken."""
        self.proc.send_signal(signal.SIGINT)
        status = self.proc.wait(timeout=10)
        self._reader.join(timeout=10)
        assert self.proc.stderr is not None
        rest = []
        while not self._lines.empty():
            rest.append(self._lines.get())
        return status, self.proc.stderr.read(), rest

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def wait_until(condition: Callable[[], object], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


# -- a live server with lines of fixed timestamps ------------------------------------------------


@dataclass
class World:
    url: str
    key: str
    producer_key: str
    slug: str
    rows: list[dict[str, Any]]  # oldest first, every line of the project
    functions: tuple[str, str]
    deployments: tuple[str, str]

    def env(self, **extra: str) -> dict[str, str]:
        return client_env(self.url, self.key, self.slug, **extra)

    @property
    def windowed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["window"]]


@pytest.fixture(scope="module")
def server(serve):
    with serve() as live:
        yield live


@pytest.fixture(scope="module")
async def world(server, make_tenant, pool) -> World:
    """A project with 250 lines a second apart from 2025-03-01T00:00:00Z (the window), and 5
    lines a day before and 5 a day after it; levels, sources, instances, functions and
    deployments vary independently."""
    tenant = await make_tenant()
    functions = (str(uuid.uuid4()), str(uuid.uuid4()))
    deployments = (str(uuid.uuid4()), str(uuid.uuid4()))
    rows: list[dict[str, Any]] = []
    stamps = [(BASE - timedelta(days=1) + timedelta(seconds=i), False) for i in range(5)]
    stamps += [
        (BASE + timedelta(seconds=i, microseconds=(i * 7919) % 1000), True) for i in range(250)
    ]
    stamps += [(BASE + timedelta(days=1, seconds=i), False) for i in range(5)]
    for i, (ts, window) in enumerate(stamps):
        message = None if i % 5 == 0 else f"message {i}"
        if i == 6:
            message = "first line\nsecond line\x1b[31m red\u2028end"
        rows.append(
            {
                "i": i,
                "id": str(ids.new_id(ts, rand_b=i)),
                "ts": ts,
                "instance": f"inst-{i % 3}",
                "level": LEVELS[i % 4],
                "source": SOURCES[(i // 4) % 4],
                "raw_log": f"raw line {i}" + (" NeedLe" if i % 9 == 0 else ""),
                "message": message,
                "function_id": functions[i % 2],
                "deployment_id": deployments[(i // 2) % 2],
                "window": window,
            }
        )
    records = [
        (
            uuid.UUID(r["id"]),
            r["ts"],
            r["instance"],
            r["level"],
            r["source"],
            r["raw_log"],
            r["message"],
            json.dumps({"i": r["i"]}),
            tenant.project_id,
            uuid.UUID(r["deployment_id"]),
            uuid.UUID(r["function_id"]),
            None,
        )
        for r in rows
    ]
    async with pool.acquire() as conn:
        await writer.copy_lines(conn, records)
    return World(
        server.url,
        tenant.consumer_key,
        tenant.producer_key,
        tenant.slug,
        rows,
        functions,
        deployments,
    )


def printed_ids(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    # Split on LF only: JSON may hold U+2028 unescaped, which str.splitlines() splits on.
    assert done.stdout == "" or done.stdout.endswith("\n")
    return [json.loads(line)["id"] for line in done.stdout.split("\n")[:-1]]


def server_entries(world: World, **params: str) -> list[dict[str, Any]]:
    """The entries the server lists, oldest first, as it sends them (keys in order)."""
    r = httpx.get(
        world.url + LIST,
        params={"sort": "asc", "per_page": "100", **params},
        headers={"Gram-Key": world.key, "Gram-Project": world.slug},
    )
    assert r.status_code == 200, r.text
    return r.json()["logs"]


# -- which lines ---------------------------------------------------------------------------------


def test_a_window_prints_every_line_of_it_once_oldest_first_across_pages(world):
    done = gramlogs_logs(*WINDOW, "--output", "jsonl", env=world.env())
    assert printed_ids(done) == [r["id"] for r in world.windowed]
    assert len(world.windowed) == IN_WINDOW > 2 * 100


def test_a_window_open_on_one_side_reaches_the_end_of_the_project(world):
    done = gramlogs_logs("--from", "2025-03-01T00:04:00Z", "--output", "jsonl", env=world.env())
    assert printed_ids(done) == [
        r["id"] for r in world.rows if r["ts"] >= BASE + timedelta(minutes=4)
    ]


def test_lines_prints_the_newest_n_of_the_window_oldest_first(world):
    done = gramlogs_logs(
        "-n", "130", "--to", "2025-03-01T00:03:20Z", "--output", "jsonl", env=world.env()
    )
    upto = [r["id"] for r in world.rows if r["ts"] <= BASE + timedelta(seconds=200)]
    assert printed_ids(done) == upto[-130:]


def test_lines_larger_than_what_matches_prints_all_of_it(world):
    done = gramlogs_logs(
        "-n", "1000", *WINDOW, "--level", "warn", "--output", "jsonl", env=world.env()
    )
    assert printed_ids(done) == [r["id"] for r in world.windowed if r["level"] == "warn"]


def test_zero_lines_prints_nothing(world):
    assert printed_ids(gramlogs_logs("-n", "0", "--output", "jsonl", env=world.env())) == []


def test_without_lines_or_window_prints_the_newest_100_oldest_first(world):
    done = gramlogs_logs("--output", "jsonl", env=world.env())
    assert printed_ids(done) == [r["id"] for r in world.rows][-100:]


FILTERS: dict[str, tuple[Callable[[World], str], Callable[[World, dict[str, Any]], bool]]] = {
    "--level": (lambda w: "warn", lambda w, r: r["level"] == "warn"),
    "--source": (lambda w: "stdout", lambda w, r: r["source"] == "stdout"),
    "--instance": (lambda w: "inst-1", lambda w, r: r["instance"] == "inst-1"),
    "--function": (lambda w: w.functions[1], lambda w, r: r["function_id"] == w.functions[1]),
    "--deployment": (
        lambda w: w.deployments[0],
        lambda w, r: r["deployment_id"] == w.deployments[0],
    ),
    "--grep": (lambda w: "needle", lambda w, r: "needle" in r["raw_log"].lower()),
}


@pytest.mark.parametrize("flag", FILTERS)
def test_each_filter_selects_its_lines(world, flag):
    value, keep = FILTERS[flag]
    done = gramlogs_logs(*WINDOW, flag, value(world), "--output", "jsonl", env=world.env())
    expected = [r["id"] for r in world.windowed if keep(world, r)]
    assert 0 < len(expected) < IN_WINDOW
    assert printed_ids(done) == expected


def test_filters_combine(world):
    done = gramlogs_logs(
        *WINDOW,
        "--level",
        "info",
        "--function",
        world.functions[1],
        "--output",
        "jsonl",
        env=world.env(),
    )
    expected = [
        r["id"]
        for r in world.windowed
        if r["level"] == "info" and r["function_id"] == world.functions[1]
    ]
    assert printed_ids(done) == expected and expected


# -- output --------------------------------------------------------------------------------------


def test_jsonl_is_each_entry_as_the_server_sends_it_compact(world):
    window = _window_of(0, 29)
    done = gramlogs_logs(*window, "--output", "jsonl", env=world.env())
    assert done.returncode == 0, done.stderr
    entries = server_entries(world, ts_start=window[1], ts_end=window[3])
    assert len(entries) == 30 and "\n" in entries[1]["message"]
    assert done.stdout == "".join(
        json.dumps(e, separators=(",", ":"), ensure_ascii=False) + "\n" for e in entries
    )


def test_raw_is_each_raw_log(world):
    done = gramlogs_logs(*WINDOW, "--output", "raw", env=world.env())
    assert done.returncode == 0, done.stderr
    assert done.stdout == "".join(r["raw_log"] + "\n" for r in world.windowed)


def _window_of(first: int, last: int) -> tuple[str, ...]:
    """--from/--to around lines first..last of the window (their second, any microseconds)."""
    start, end = BASE + timedelta(seconds=first), BASE + timedelta(seconds=last, microseconds=999)
    return ("--from", f"{start:%Y-%m-%dT%H:%M:%S.%fZ}", "--to", f"{end:%Y-%m-%dT%H:%M:%S.%fZ}")


def test_pretty_is_one_line_per_log_message_or_raw_log_escaped(world):
    done = gramlogs_logs(*_window_of(0, 2), env=world.env())
    assert done.returncode == 0, done.stderr
    f = [r["function_id"][:8] for r in world.rows[5:8]]
    assert done.stdout.splitlines() == [
        f"2025-03-01T00:00:00.000000Z INFO  function inst-2 {f[0]} raw line 5",
        f"2025-03-01T00:00:01.000919Z WARN  function inst-0 {f[1]}"
        " first line\\nsecond line\\x1b[31m red\\u2028end",
        f"2025-03-01T00:00:02.000838Z ERROR function inst-1 {f[2]} message 7",
    ]


def test_pretty_local_prints_local_time(world):
    done = gramlogs_logs(*_window_of(0, 0), "--local", env=world.env(TZ="XST-05:30"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("2025-03-01T05:30:00.000000+05:30 INFO  function inst-2 ")


def test_jsonl_and_raw_ignore_local(world):
    for fmt in ("jsonl", "raw"):
        utc = gramlogs_logs(*_window_of(0, 5), "--output", fmt, env=world.env())
        local = gramlogs_logs(
            *_window_of(0, 5), "--output", fmt, "--local", env=world.env(TZ="XST-05:30")
        )
        assert utc.stdout == local.stdout and utc.stdout


def run_on_a_terminal(world: World, *args: str, **env: str) -> bytes:
    """The command's output when its stdout is a terminal (a pseudo-terminal)."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gramlogs", "logs", *_window_of(0, 3), *args],
            env=world.env(**env),
            stdout=follower,
            stderr=subprocess.PIPE,
        )
        os.close(follower)
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other side closed
                break
            if not chunk:
                break
            out += chunk
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        return out
    finally:
        os.close(leader)


def test_a_terminal_gets_coloured_levels(world):
    out = run_on_a_terminal(world)
    assert b"\x1b[32mINFO \x1b[0m" in out and b"\x1b[1;31mERROR\x1b[0m" in out


@pytest.mark.parametrize(
    ("args", "env"),
    [((), {"NO_COLOR": "1"}), (("--color", "never"), {})],
    ids=["NO_COLOR", "--color never"],
)
def test_no_colour_on_a_terminal_with_no_color_or_never(world, args, env):
    out = run_on_a_terminal(world, *args, **env)
    assert b"INFO " in out and b"\x1b" not in out


def test_an_empty_no_color_does_not_disable_colour(world):
    assert b"\x1b[" in run_on_a_terminal(world, NO_COLOR="")


def test_no_escape_codes_when_stdout_is_not_a_terminal_unless_always(world):
    piped = gramlogs_logs(*_window_of(0, 3), env=world.env())
    assert piped.returncode == 0 and "INFO " in piped.stdout and "\x1b" not in piped.stdout
    forced = gramlogs_logs(*_window_of(0, 3), "--color", "always", env=world.env(NO_COLOR="1"))
    assert "\x1b[32mINFO \x1b[0m" in forced.stdout


def test_use_color_follows_no_color_org():
    assert use_color("auto", isatty=True, no_color=None)
    assert use_color("auto", isatty=True, no_color="")
    assert not use_color("auto", isatty=True, no_color="0")
    assert not use_color("auto", isatty=False, no_color=None)
    assert use_color("always", isatty=False, no_color="1")
    assert not use_color("never", isatty=True, no_color=None)


def test_escape_keeps_a_log_on_one_line_and_away_from_the_terminal():
    assert (
        escape("a\nb\r\x1b[2J\x07\tc\x7f\x85\u2029") == "a\\nb\\r\\x1b[2J\\x07\tc\\x7f\\x85\\u2029"
    )


def test_pretty_of_an_entry_with_missing_or_odd_fields():
    f = Formatter("pretty")
    assert f.line(b'{"raw_log": "x"}') == b"- -     -        - - x\n"
    line = f.line(b'{"timestamp": "yesterday", "level": "fatal", "raw_log": "x", "message": ""}')
    assert line == b"yesterday FATAL -        - - \n"


def test_what_is_not_an_entry_is_shown_as_it_came():
    assert Formatter("pretty").line(b'{"level": 5}') == b'{"level": 5}\n'
    assert Formatter("pretty").tail_line("not json\n!") == b"not json\\n!\n"
    assert Formatter("raw").tail_line("[1, 2]") == b"[1, 2]\n"


def test_the_tails_jsonl_is_its_data_exactly():
    data = '{"id": "x",  "raw_log": "spaced"}'
    assert Formatter("jsonl").tail_line(data) == data.encode() + b"\n"
    assert Formatter("jsonl").line(data) == b'{"id":"x","raw_log":"spaced"}\n'
    assert Formatter("raw").tail_line(data) == b"spaced\n"


# -- errors --------------------------------------------------------------------------------------


def test_a_bad_key_exits_1_with_the_servers_message(world):
    done = gramlogs_logs(env=client_env(world.url, "glk_" + "x" * 43, world.slug))
    r = httpx.get(
        world.url + LIST, headers={"Gram-Key": "glk_" + "x" * 43, "Gram-Project": world.slug}
    )
    assert r.status_code == 401
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        f"gramlogs: {r.json()['message']}\n",
    )


def test_a_bad_parameter_exits_1_with_the_servers_message_naming_it(world):
    done = gramlogs_logs("--level", "nope", env=world.env())
    r = httpx.get(
        world.url + LIST,
        params={"level": "nope"},
        headers={"Gram-Key": world.key, "Gram-Project": world.slug},
    )
    message = r.json()["message"]
    assert r.status_code == 400 and "level" in message
    assert (done.returncode, done.stdout, done.stderr) == (1, "", f"gramlogs: {message}\n")


def test_a_bad_timestamp_exits_1_with_the_servers_message(world):
    done = gramlogs_logs("--from", "yesterday", env=world.env())
    assert done.returncode == 1
    assert (
        done.stderr.startswith("gramlogs: ts_start must be formatted as")
        and done.stderr.count("\n") == 1
    )


def test_a_missing_project_is_the_servers_message_too(world):
    done = gramlogs_logs(env=client_env(world.url, world.key, None))
    assert (done.returncode, done.stderr) == (1, "gramlogs: missing Gram-Project header\n")


def test_a_missing_key_names_the_variable():
    done = gramlogs_logs(env=client_env("http://127.0.0.1:1", None, "demo"))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "gramlogs: no API key: set GRAMLOGS_KEY or pass --key\n"


def test_a_key_that_cannot_be_a_header_is_refused_without_showing_it():
    done = gramlogs_logs(env=client_env("http://127.0.0.1:1", "glk_secret\nX-Evil: 1", "demo"))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "gramlogs: the API key (GRAMLOGS_KEY or --key) holds characters no key has\n"
    )


def test_connection_refused_exits_1_naming_the_url():
    url = f"http://{HOST}:{free_port()}"
    done = gramlogs_logs(env=client_env(url, "glk_secret", "demo"))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"gramlogs: cannot get logs from {url}: connection refused\n"
    assert "glk_secret" not in done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("-f", "--since", "1h"),
        ("-f", "--since", "0s"),
        ("-f", "--from", "2025-03-01T00:00:00Z"),
        ("-f", "--to", "2025-03-01T00:00:00Z"),
        ("--since", "1h", "--from", "2025-03-01T00:00:00Z"),
        ("--since", "1y"),
        ("--since", "-5m"),
        ("-n", "-1"),
        ("-n", "many"),
        ("--output", "xml"),
        ("--color", "sometimes"),
    ],
)
def test_usage_errors_exit_2(args):
    done = gramlogs_logs(*args, env=client_env("http://127.0.0.1:1", "glk_x", "demo"))
    assert done.returncode == 2 and done.stdout == ""
    assert "usage: gramlogs logs" in done.stderr


def test_follow_with_a_window_says_to_use_lines():
    done = gramlogs_logs("-f", "--since", "1h", env=client_env("http://127.0.0.1:1", "glk_x", "d"))
    assert "use -n with --follow" in done.stderr


# -- the parameters sent -------------------------------------------------------------------------


Reply = Callable[["Handler"], None]


@dataclass
class StandIn:
    """A scripted HTTP server in a thread: each request gets the next reply of ``script``
    (the last one holds the connection open until the server stops)."""

    script: list[Reply]
    requests: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    url: str = ""


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def do_GET(self) -> None:
        stand_in: StandIn = self.server.stand_in
        path, _, query = self.path.partition("?")
        stand_in.requests.append(
            (
                path,
                dict(urllib.parse.parse_qsl(query)),
                {k.lower(): v for k, v in self.headers.items()},
            )
        )
        reply = stand_in.script.pop(0) if stand_in.script else hold
        reply(self)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def stand_in() -> Iterator[Callable[..., StandIn]]:
    servers: list[tuple[http.server.ThreadingHTTPServer, StandIn]] = []

    def make(*script: Reply, port: int = 0) -> StandIn:
        httpd = http.server.ThreadingHTTPServer((HOST, port), Handler)
        httpd.daemon_threads = True
        state = StandIn(list(script), url=f"http://{HOST}:{httpd.server_address[1]}")
        httpd.stand_in = state  # type: ignore[attr-defined]
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append((httpd, state))
        return state

    yield make
    for httpd, state in servers:
        state.stopping.set()
        httpd.shutdown()
        httpd.server_close()


def json_reply(status: int, body: object, **headers: str) -> Reply:
    def reply(h: Handler) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            h.send_header(name.replace("_", "-"), value)
        h.end_headers()
        h.wfile.write(data)

    return reply


EMPTY_PAGE = json_reply(200, {"logs": [], "pagination": {"per_page": 100, "has_next_page": False}})


def hold(h: Handler) -> None:
    """No answer at all, until the stand-in stops."""
    h.server.stand_in.stopping.wait(60)
    h.close_connection = True


def stream(*chunks: bytes, then: str = "hold") -> Reply:
    """A 200 event stream of ``chunks`` (chunked, as Starlette sends it); ``then``: ``end``
    finishes the body, ``cut`` drops the connection mid-body, ``hold`` keeps it open."""

    def reply(h: Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for chunk in chunks:
            h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            h.wfile.flush()
        if then == "end":
            h.wfile.write(b"0\r\n\r\n")
        elif then == "hold":
            h.server.stand_in.stopping.wait(60)
        h.close_connection = True

    return reply


def test_every_filter_and_the_headers_are_sent_as_the_servers_parameters(stand_in):
    server = stand_in(EMPTY_PAGE)
    done = gramlogs_logs(
        "--level",
        "error",
        "--function",
        "F",
        "--deployment",
        "D",
        "--instance",
        "I a",
        "--source",
        "stdout",
        "--grep",
        "time out",
        "--from",
        "2025-03-01T00:00:00+02:00",
        "--to",
        "2025-03-02T00:00:00Z",
        env=client_env(server.url, "glk_secret", "shop"),
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    [(path, query, headers)] = server.requests
    assert path == LIST
    assert query == {
        "level": "error",
        "function_id": "F",
        "deployment_id": "D",
        "instance": "I a",
        "source": "stdout",
        "keyword": "time out",
        "ts_start": "2025-03-01T00:00:00+02:00",
        "ts_end": "2025-03-02T00:00:00Z",
        "sort": "asc",
        "per_page": "100",
    }
    assert headers["gram-key"] == "glk_secret" and headers["gram-project"] == "shop"


def test_flags_override_the_environment_and_project_is_sent_only_when_set(stand_in):
    server, other = stand_in(EMPTY_PAGE), stand_in(EMPTY_PAGE)
    done = gramlogs_logs(
        "--url",
        server.url + "/",
        "--key",
        "glk_flag",
        "-n",
        "7",
        env=client_env(other.url, "glk_env", None),
    )
    assert done.returncode == 0, done.stderr
    assert other.requests == []
    [(path, query, headers)] = server.requests
    assert (path, query) == (LIST, {"sort": "desc", "per_page": "7"})
    assert headers["gram-key"] == "glk_flag" and "gram-project" not in headers


def test_a_url_with_a_path_prefix_keeps_it(stand_in):
    server = stand_in(EMPTY_PAGE)
    done = gramlogs_logs(env=client_env(server.url + "/logs/", "glk_x", "p"))
    assert done.returncode == 0, done.stderr
    assert server.requests[0][0] == "/logs" + LIST


def test_since_is_now_minus_the_age_in_utc(stand_in, capsysbinary):
    server = stand_in(EMPTY_PAGE)
    args = cli.build_parser().parse_args(
        [
            "logs",
            "--url",
            server.url,
            "--key",
            "k",
            "--since",
            "90s",
            "--to",
            "2025-03-01T00:00:00Z",
        ]
    )
    command.run(args, now=datetime(2025, 3, 1, 0, 2, tzinfo=UTC))
    [(_, query, _)] = server.requests
    assert query["ts_start"] == "2025-03-01T00:00:30.000000Z"
    assert query["ts_end"] == "2025-03-01T00:00:00Z"
    assert "per_page" in query and query["sort"] == "asc"


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration(text, age):
    assert command.parse_duration(text) == age


@pytest.mark.parametrize("text", ["", "1", "h", "1.5h", "1w", "-1h", "1h30m", "1 h"])
def test_parse_duration_refuses(text):
    with pytest.raises(argparse.ArgumentTypeError):
        command.parse_duration(text)


def test_since_is_never_before_1970():
    now = datetime(2025, 3, 1, tzinfo=UTC)
    assert command.since(command.parse_duration("2d"), now) == "2025-02-27T00:00:00.000000Z"
    assert (
        command.since(command.parse_duration("99999999999999d"), now)
        == "1970-01-01T00:00:00.000000Z"
    )


def test_a_page_answered_429_is_asked_again_after_retry_after(stand_in):
    page = {
        "logs": [{"id": "1", "raw_log": "a"}],
        "pagination": {"has_next_page": True, "next_page_cursor": "c1"},
    }
    server = stand_in(
        json_reply(200, page),
        json_reply(429, {"name": "too_many_requests", "message": "slow down"}, Retry_After="1"),
        json_reply(200, {"logs": [{"id": "2", "raw_log": "b"}], "pagination": {}}),
    )
    started = time.monotonic()
    done = gramlogs_logs("--output", "raw", *WINDOW, env=client_env(server.url, "k", "p"))
    assert (done.returncode, done.stdout, done.stderr) == (0, "a\nb\n", "")
    assert time.monotonic() - started >= 1
    assert [q.get("cursor") for _, q, _ in server.requests] == [None, "c1", "c1"]


def test_a_page_answered_500_exits_1_with_its_message(stand_in):
    server = stand_in(json_reply(500, {"name": "unexpected", "message": "oops\non two lines"}))
    done = gramlogs_logs(env=client_env(server.url, "k", "p"))
    assert (done.returncode, done.stderr) == (1, "gramlogs: oops on two lines\n")


def test_an_answer_that_is_not_json_says_its_status(stand_in):
    def not_json(h: Handler) -> None:
        h.send_response(404)
        h.send_header("Content-Length", "9")
        h.end_headers()
        h.wfile.write(b"not found")

    done = gramlogs_logs(env=client_env(stand_in(not_json).url, "k", "p"))
    assert (done.returncode, done.stderr) == (1, "gramlogs: HTTP 404 Not Found\n")


# -- stopping ------------------------------------------------------------------------------------


@pytest.mark.parametrize("follow", [False, True], ids=["list", "follow"])
def test_sigint_exits_0_at_once_printing_nothing(stand_in, follow):
    server = stand_in()  # holds every request unanswered
    with Running(*(["-f"] if follow else []), env=client_env(server.url, "k", "p")) as run:
        wait_until(lambda: server.requests)
        assert run.interrupt() == (0, "", [])


def test_a_closed_stdout_exits_0_quietly(world):
    proc = subprocess.Popen(
        [sys.executable, "-m", "gramlogs", "logs", *WINDOW],
        env=world.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (0, b"")


def test_head_takes_the_first_lines_and_the_command_exits_0(world):
    done = subprocess.run(
        f"{sys.executable} -m gramlogs logs {' '.join(WINDOW)} --output raw | head -n 3;"
        ' echo "status ${PIPESTATUS[0]}"',
        shell=True,
        executable="/bin/bash",
        env=world.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout == "raw line 5\nraw line 6\nraw line 7\nstatus 0\n"
    assert done.stderr == ""


# -- following, against a stand-in: the reconnection protocol ------------------------------------


def line_event(token: str, n: int) -> bytes:
    return b'id: %s\ndata: {"id":"%d","raw_log":"line %d"}\n\n' % (token.encode(), n, n)


def start_event(token: str) -> bytes:
    return b"retry: 1000\nid: %s\n\n" % token.encode()


def end_event(token: str, reason: str) -> bytes:
    return b'event: end\nid: %s\ndata: {"reason": "%s", "resume": "%s"}\n\n' % (
        token.encode(),
        reason.encode(),
        token.encode(),
    )


def test_follow_resumes_after_the_last_id_through_every_kind_of_break(stand_in):
    server = stand_in(
        # The backlog, then the connection drops in the middle of an event.
        stream(
            start_event("s0"),
            b": keep-alive\n\n",
            line_event("t1", 1) + line_event("t2", 2),
            b"id: t3\nda",
            then="cut",
        ),
        # Its end: "duration", and again at once.
        stream(start_event("s1"), line_event("t3", 3), end_event("e1", "duration"), then="end"),
        json_reply(503, {"name": "unavailable", "message": "busy"}, Retry_After="0"),
        json_reply(429, {"name": "too_many_requests", "message": "wait"}, Retry_After="1"),
        stream(line_event("t4", 4), end_event("e2", "shutdown"), then="end"),
        # The body ends without an end event: a lost server, reconnect after a backoff.
        stream(start_event("s2"), then="end"),
        stream(
            b"\r\n".join([b"id: t5", b'data: {"id":"5",', b'data: "raw_log":"line 5"}', b"", b""])
        ),
    )
    env = client_env(server.url, "k", "p")
    with Running("-f", "-n", "25", "--output", "raw", "--level", "warn", env=env) as run:
        assert run.take(5) == [f"line {n}\n" for n in range(1, 6)]
        assert run.interrupt() == (0, "", [])
    sent = [(path, query, headers.get("last-event-id")) for path, query, headers in server.requests]
    assert sent == [
        ("/rpc/logs.tail", {"level": "warn", "lines": "25"}, None),
        ("/rpc/logs.tail", {"level": "warn"}, "t2"),
        ("/rpc/logs.tail", {"level": "warn"}, "e1"),
        ("/rpc/logs.tail", {"level": "warn"}, "e1"),
        ("/rpc/logs.tail", {"level": "warn"}, "e1"),
        ("/rpc/logs.tail", {"level": "warn"}, "e2"),
        ("/rpc/logs.tail", {"level": "warn"}, "s2"),
    ]
    assert all(
        h["accept"] == "text/event-stream" and h["gram-key"] == "k" for _, _, h in server.requests
    )


def test_follow_prints_the_data_exactly_in_jsonl(stand_in):
    data = b'{"id": "1",  "raw_log": "spaced \\u00e9"}'
    server = stand_in(stream(start_event("s"), b"id: a\ndata: " + data + b"\n\n"))
    with Running("-f", "--output", "jsonl", env=client_env(server.url, "k", "p")) as run:
        assert run.take(1) == [data.decode() + "\n"]
        assert run.interrupt() == (0, "", [])
    assert server.requests[0][1] == {"lines": "10"}


def test_follow_with_zero_lines_asks_for_no_backlog(stand_in):
    server = stand_in(stream(start_event("s")))
    with Running("-f", "-n", "0", env=client_env(server.url, "k", "p")) as run:
        wait_until(lambda: server.requests)
        assert run.interrupt() == (0, "", [])
    assert server.requests[0][1] == {}


@pytest.mark.parametrize("status", [400, 401, 403, 410])
def test_follow_exits_1_on_an_error_answer_with_its_message(stand_in, status):
    server = stand_in(
        stream(start_event("s"), line_event("t1", 1), then="cut"),
        json_reply(status, {"name": "gone", "message": f"resume token too old ({status})"}),
    )
    done = gramlogs_logs("-f", "--output", "raw", env=client_env(server.url, "k", "p"))
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "line 1\n",
        f"gramlogs: resume token too old ({status})\n",
    )


def test_follow_exits_1_when_the_server_ends_the_tail_for_a_revoked_key(stand_in):
    server = stand_in(
        stream(start_event("s"), line_event("t1", 1), end_event("e1", "revoked"), then="end"),
        stream(start_event("s2"), line_event("t2", 2)),  # never asked for
    )
    done = gramlogs_logs("-f", "--output", "raw", env=client_env(server.url, "k", "p"))
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "line 1\n",
        "gramlogs: the API key was revoked; the server ended the tail\n",
    )
    assert len(server.requests) == 1


def test_follow_reconnects_while_the_server_is_away(stand_in):
    # A port with nothing listening, then a server on it.
    port = free_port()
    with Running("-f", "--output", "raw", env=client_env(f"http://{HOST}:{port}", "k", "p")) as run:
        time.sleep(1.5)
        assert run.proc.poll() is None
        server = stand_in(stream(start_event("s"), line_event("t1", 1)), port=port)
        assert run.take(1) == ["line 1\n"]
        assert run.interrupt() == (0, "", [])
    assert server.requests[0][1] == {"lines": "10"}


def test_a_silent_connection_is_given_up_after_the_read_timeout(stand_in, monkeypatch):
    from gramlogs.client import remote

    monkeypatch.setattr(remote, "TAIL_TIMEOUT", 0.3)
    server = stand_in(stream(start_event("s")), stream(line_event("t1", 1)))
    waits: list[float] = []
    tail = remote.Remote(server.url, "k").tail({}, sleep=waits.append)
    assert isinstance(tail, Generator)
    assert next(tail) == ['{"id":"1","raw_log":"line 1"}']
    assert len(waits) == 1 and 0.25 <= waits[0] <= 0.5
    assert server.requests[1][2]["last-event-id"] == "s"
    tail.close()


def test_backoff_doubles_to_ten_seconds_with_jitter_and_resets():
    full = Backoff(rand=lambda: 1.0)
    assert [full.next() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    full.reset()
    assert full.next() == 0.5
    half = Backoff(rand=lambda: 0.0)
    assert [half.next() for _ in range(3)] == [0.25, 0.5, 1.0]


def test_a_socket_that_never_answers_is_a_read_timeout(stand_in, monkeypatch):
    """The stand-in's hold: accepted, never answered; a page gives up after PAGE_TIMEOUT."""
    from gramlogs.client import remote

    monkeypatch.setattr(remote, "PAGE_TIMEOUT", 0.3)
    server = stand_in()
    with pytest.raises(remote.Unreachable, match="timed out"):
        list(remote.Remote(server.url, "k").walk({}, sort="asc"))


def test_the_key_is_never_in_a_message(stand_in):
    secret = "glk_" + "s" * 43
    server = stand_in(
        json_reply(401, {"name": "unauthorized", "message": "invalid or revoked API key"})
    )
    done = gramlogs_logs(env=client_env(server.url, secret, "p"))
    assert done.returncode == 1 and secret not in done.stderr + done.stdout


# -- following a real server ---------------------------------------------------------------------

# Tails that end every 2 s (reason "duration") and read new lines every 20 ms: a test's few
# seconds of lines cross several reconnections.
TAIL_ENV = {"GRAMLOGS_TAIL_POLL_MS": "20", "GRAMLOGS_TAIL_MAX_S": "2"}
LIVE = BASE + timedelta(days=7)


class Producer:
    """Lines sent to POST /rpc/logs.ingest with the producer key, numbered, every third one an
    error, their timestamps fixed and rising; ``matching`` is the errors' raw lines in order."""

    def __init__(self, tenant, fd) -> None:
        self.tenant = tenant
        self.function_id, self.deployment_id = (str(x) for x in fd)
        self.count = 0
        self.matching: list[str] = []

    def send(self, url: str, lines: int) -> list[str]:
        batch, errors = [], []
        for _ in range(lines):
            n, self.count = self.count, self.count + 1
            level = "error" if n % 3 == 0 else ("info", "warn")[n % 2]
            batch.append(
                {
                    "raw_log": f"line {n} {level}",
                    "timestamp": f"{LIVE + timedelta(milliseconds=n):%Y-%m-%dT%H:%M:%S.%fZ}",
                    "level": level,
                    "function_id": self.function_id,
                    "deployment_id": self.deployment_id,
                }
            )
            if level == "error":
                errors.append(f"line {n} {level}")
        r = httpx.post(
            url + "/rpc/logs.ingest", json=batch, headers=self.tenant.headers(producer=True)
        )
        assert r.status_code == 200, r.text
        self.matching += errors
        return errors


def raw_logs(lines: list[str]) -> list[str]:
    return [json.loads(line)["raw_log"] for line in lines]


def test_follow_prints_every_matching_line_once_across_reconnections_and_a_restart(
    serve, tenant, fd
):
    producer = Producer(tenant, fd)
    port = free_port()
    url = f"http://{HOST}:{port}"
    env = client_env(url, tenant.consumer_key, tenant.slug)
    printed: list[str] = []
    # Another server on the same database, to write while the followed one is away.
    with serve(**TAIL_ENV) as elsewhere, serve(port=port, **TAIL_ENV) as first:
        producer.send(first.url, 9)  # errors: lines 0, 3, 6
        with Running("-f", "-n", "2", "--output", "jsonl", "--level", "error", env=env) as run:
            printed += run.take(2)
            assert raw_logs(printed) == ["line 3 error", "line 6 error"]
            for _ in range(12):  # about 3 s: the tail ends ("duration") and resumes
                printed += run.take(len(producer.send(first.url, 7)))
                time.sleep(0.25)
            first.process.send_signal(signal.SIGTERM)  # ends the tail with "shutdown"
            first.process.wait(timeout=30)
            # Committed while nobody serves the followed URL: resumed from the store.
            gap = [e for _ in range(4) for e in producer.send(elsewhere.url, 10)]
            time.sleep(1.5)  # the client finds the port closed, and backs off
            with serve(port=port, **TAIL_ENV) as second:
                printed += run.take(len(gap))
                for _ in range(4):
                    printed += run.take(len(producer.send(second.url, 5)))
                status, stderr, rest = run.interrupt()
                listed = httpx.get(
                    second.url + LIST,
                    params={"level": "error", "per_page": "100"},
                    headers=tenant.headers(),
                ).json()["logs"]
    assert (status, stderr, rest) == (0, "", [])
    assert raw_logs(printed) == ["line 3 error", "line 6 error", *producer.matching[3:]]
    assert len(producer.matching) > 40
    # Each line is the list endpoint's entry: the same keys, in the same order, the same values.
    by_id = {entry["id"]: entry for entry in listed}
    assert [json.loads(line) for line in printed] == [
        by_id[json.loads(line)["id"]] for line in printed
    ]
    assert all(list(json.loads(line)) == list(by_id[json.loads(line)["id"]]) for line in printed)


def test_follow_exits_1_with_the_servers_message_for_a_bad_filter(server, tenant):
    done = gramlogs_logs(
        "-f", "--source", "nowhere", env=client_env(server.url, tenant.consumer_key, tenant.slug)
    )
    r = httpx.get(
        server.url + "/rpc/logs.tail", params={"source": "nowhere"}, headers=tenant.headers()
    )
    assert r.status_code == 400 and "source" in r.json()["message"]
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        f"gramlogs: {r.json()['message']}\n",
    )
