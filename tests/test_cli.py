"""The ``gramlogs`` command, run as a user runs it: as a subprocess, with real servers."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest

from gramlogs.core.config import SETTINGS
from gramlogs.local.demo import DEMO_FUNCTION
from gramlogs.storage import schema
from testkit.ports import free_port

URL = "/rpc/logs.listToolExecutionLogs"


def gramlogs(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gramlogs", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ok_json(*args: str, env: dict[str, str]) -> Any:
    done = gramlogs(*args, "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def wait_for(
    proc: subprocess.Popen[str], pattern: str, lines: list[str], timeout: float = 90
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline() if proc.stdout else ""
        if line:
            lines.append(line)
            if re.search(pattern, line):
                return
        elif proc.poll() is not None:
            break
    raise AssertionError(f"no {pattern!r} in output: {''.join(lines)}")


def wait_listening(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("server did not start listening")


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    return {**os.environ, "GRAMLOGS_DATABASE_URL": database_url}


def test_admin_commands_seed_and_serve(env: dict[str, str]) -> None:
    org = ok_json("orgs", "create", "acme-cli", env=env)
    project = ok_json("projects", "create", "shop", "--org", "acme-cli", env=env)
    assert project["organization_id"] == org["id"]
    key = ok_json("keys", "create", "--org", "acme-cli", "--project", "shop", env=env)
    assert key["scope"] == "consumer" and key["key"].startswith("glk_")
    seeded = ok_json(
        "seed",
        "--org",
        "acme-cli",
        "--project",
        "shop",
        "--rows",
        "300",
        "--seed",
        "4",
        "--end",
        "2025-06-01T00:00:00Z",
        env=env,
    )
    assert seeded == {"project_id": project["id"], "rows": 300}
    listed = ok_json("keys", "list", "--org", "acme-cli", env=env)
    assert [k["id"] for k in listed] == [key["id"]]
    assert key["key"] not in json.dumps(listed)
    assert ok_json("migrate", env=env) == {"version": len(schema.steps())}

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gramlogs", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port)
        headers = {"Gram-Key": key["key"], "Gram-Project": "shop"}
        r = httpx.get(f"http://127.0.0.1:{port}{URL}?per_page=100&sort=asc", headers=headers)
        assert r.status_code == 200
        assert len(r.json()["logs"]) == 100
        assert r.json()["logs"][0]["timestamp"] < r.json()["logs"][-1]["timestamp"]

        revoked = ok_json("keys", "revoke", key["id"], env=env)
        assert revoked == {"id": key["id"], "revoked": True}
        # The server reuses a key's answer for at most GRAMLOGS_KEY_CACHE_S (the default, 1 s).
        time.sleep(1.0)
        r = httpx.get(f"http://127.0.0.1:{port}{URL}", headers=headers)
        assert r.status_code == 401
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0


def test_keys_create_makes_keys_of_every_scope_bound_or_org_wide(env: dict[str, str]) -> None:
    org = ok_json("orgs", "create", "acme-scopes", env=env)
    project = ok_json("projects", "create", "shop", "--org", "acme-scopes", env=env)
    made = {}
    for scope in ("consumer", "ingest", "admin", "producer"):
        for bound in (False, True):
            where = ("--project", "shop") if bound else ()
            args = ("keys", "create", "--org", "acme-scopes", "--scope", scope, *where)
            key = ok_json(*args, "--name", f"{scope} {bound}", env=env)
            assert (key["scope"], key["project_id"], key["organization_id"]) == (
                scope,
                project["id"] if bound else None,
                org["id"],
            )
            made[key["id"]] = (scope, "shop" if bound else None)
    listed = ok_json("keys", "list", "--org", "acme-scopes", env=env)
    assert {k["id"]: (k["scope"], k["project_slug"]) for k in listed} == made
    done = gramlogs("keys", "create", "--org", "acme-scopes", "--scope", "reader", env=env)
    assert done.returncode == 2
    assert "invalid choice: 'reader'" in done.stderr


def test_seed_is_deterministic(env: dict[str, str], database_url: str) -> None:
    ok_json("orgs", "create", "acme-seed", env=env)
    for slug in ("one", "two"):
        ok_json("projects", "create", slug, "--org", "acme-seed", env=env)
        ok_json(
            "seed",
            "--org",
            "acme-seed",
            "--project",
            slug,
            "--rows",
            "200",
            "--seed",
            "9",
            "--end",
            "2025-06-01T00:00:00Z",
            env=env,
        )
    import asyncio

    import asyncpg

    async def contents() -> list[list[tuple]]:
        conn = await asyncpg.connect(database_url)
        try:
            out = []
            for slug in ("one", "two"):
                rows = await conn.fetch(
                    "SELECT l.id, l.timestamp, l.raw_log, l.level, l.function_id FROM logs l"
                    " JOIN projects p ON p.id = l.project_id WHERE p.slug = $1 ORDER BY l.id",
                    slug,
                )
                out.append([tuple(r) for r in rows])
            return out
        finally:
            await conn.close()

    one, two = asyncio.run(contents())
    assert len(one) == 200 and one == two


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("projects", "create", "Bad Slug", "--org", "nobody"), "no single organization"),
        (("keys", "revoke", "00000000-0000-0000-0000-000000000000"), "no active key"),
    ],
)
def test_command_errors_are_one_line_and_exit_1(env, args, message) -> None:
    done = gramlogs(*args, env=env)
    assert done.returncode == 1
    assert done.stderr.startswith("gramlogs: ") and message in done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("migrate",),
        ("orgs", "create", "acme"),
        ("keys", "list"),
        ("seed", "--org", "a", "--project", "b"),
        ("serve", "--port", "0"),
    ],
    ids=lambda args: " ".join(args),
)
def test_a_command_against_a_database_that_is_down_says_so_in_one_line(args) -> None:
    """Nothing listens on port 1: one line naming the database (without its password), exit 1."""
    down = "postgresql://gramlogs:s3cret@127.0.0.1:1/logs?password=s3cret"
    done = gramlogs(*args, env={**os.environ, "GRAMLOGS_DATABASE_URL": down})
    assert done.returncode == 1
    assert done.stderr.startswith(
        "gramlogs: cannot connect to the database postgresql://gramlogs@127.0.0.1:1/logs: "
    )
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "s3cret" not in done.stderr and done.stdout == ""


def test_every_command_has_help(env: dict[str, str]) -> None:
    for args in (
        ("serve",),
        ("migrate",),
        ("orgs", "create"),
        ("projects", "create"),
        ("keys", "create"),
        ("keys", "list"),
        ("keys", "revoke"),
        ("seed",),
    ):
        done = gramlogs(*args, "--help", env=env)
        assert done.returncode == 0 and "usage: gramlogs" in done.stdout


async def test_reading_commands_run_no_ddl(empty_database: str) -> None:
    """`keys list` on a database without the schema says what to do and creates nothing."""
    done = gramlogs("keys", "list", env={**os.environ, "GRAMLOGS_DATABASE_URL": empty_database})
    assert done.returncode == 1
    assert "run `gramlogs migrate` first" in done.stderr
    conn = await asyncpg.connect(empty_database)
    try:
        assert await schema.current_version(conn) == 0
        assert await conn.fetchval("SELECT to_regclass('logs')") is None
    finally:
        await conn.close()


def test_every_setting_is_a_serve_flag_with_its_default_and_variable(env: dict[str, str]) -> None:
    done = gramlogs("serve", "--help", env={**env, "COLUMNS": "200"})
    assert done.returncode == 0
    for setting in SETTINGS:
        assert "--" + setting.name.replace("_", "-") in done.stdout, setting.name
        assert setting.env in done.stdout, setting.env


def test_a_serve_flag_overrides_the_environment(env: dict[str, str]) -> None:
    port = free_port()
    done = gramlogs("serve", "--pool-min", "5", "--pool-max", "2", "--port", str(port), env=env)
    assert done.returncode == 1
    assert "GRAMLOGS_POOL_MIN must not exceed GRAMLOGS_POOL_MAX" in done.stderr


def test_first_run_on_embedded_database_prints_a_working_curl_line() -> None:
    """What `make run` does: embedded PostgreSQL, demo data, keys and a curl line; then reuse."""
    data_dir = Path(tempfile.mkdtemp(prefix="gramlogs-cli-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAMLOGS_")}
    port = free_port()
    try:
        for run in ("first", "second"):
            lines: list[str] = []
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gramlogs",
                    "serve",
                    "--data-dir",
                    str(data_dir),
                    "--port",
                    str(port),
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:
                wait_for(proc, r"^Serving on", lines)
                banner = "".join(lines)
                if run == "first":
                    assert "Created a demo project 'demo' with 5,000 log lines." in banner
                else:
                    assert "Reusing the existing data" in banner
                list_curl, send_curl, tail_curl = [shlex.split(x) for x in lines if "curl -s" in x]
                wait_listening(port)
                headers = headers_of(list_curl)
                r = httpx.get(list_curl[2], headers=headers)
                assert r.status_code == 200
                assert len(r.json()["logs"]) == 5
                # The third line tails; the second sends one log with the ingest key, as
                # pasted, and the tail shows it.
                assert tail_curl[:2] == ["curl", "-sN"]
                tail_headers = dict(h.split(": ", 1) for h in tail_curl[4::2])
                with httpx.stream("GET", tail_curl[2], headers=tail_headers) as tail:
                    assert tail.status_code == 200
                    assert send_curl[:5] == ["curl", "-s", "-X", "POST", send_curl[4]]
                    headers = dict(h.split(": ", 1) for h in send_curl[6:-2:2])
                    r = httpx.post(send_curl[4], headers=headers, content=send_curl[-1])
                    assert (r.status_code, r.json()) == (200, {"stored": 1, "duplicates": 0})
                    tailed = _data(tail, 6)
                # The 5 newest lines first, then the line just sent.
                assert json.loads(tailed[-1])["raw_log"] == "hello from curl"
                # The shipping key only writes; the admin key may also delete.
                r = httpx.get(list_curl[2], headers=headers)
                assert (r.status_code, r.json()["message"]) == (
                    403,
                    "this key has scope 'ingest', which lacks the 'read' permission",
                )
                (admin,) = [x.split(": ", 1)[1] for x in lines if x.startswith("  admin key: ")]
                r = httpx.delete(
                    f"http://127.0.0.1:{port}/functions/server/{DEMO_FUNCTION}/logs",
                    headers={"Authorization": f"Bearer {admin.strip()}"},
                )
                assert (r.status_code, r.json()) == (200, {"deleted": 1})
                # The viewer's link: the page, with the consumer key where only the browser
                # reads it (the fragment, never sent).
                (link,) = [x.strip() for x in lines if "/#key=" in x]
                page, fragment = link.split("#")
                assert page == f"http://127.0.0.1:{port}/"
                assert fragment == f"key={headers_of(list_curl)['Gram-Key']}&project=demo"
                r = httpx.get(page)
                assert r.status_code == 200
                assert r.headers["content-type"] == "text/html; charset=utf-8"
            finally:
                proc.send_signal(signal.SIGINT)
                assert proc.wait(timeout=60) == 0
                assert proc.stdout is not None
                proc.stdout.close()
            # Ctrl-C stops the embedded PostgreSQL too.
            assert not _postgres_running(data_dir)
    finally:
        subprocess.run(["rm", "-rf", str(data_dir)], check=False)


def headers_of(curl: list[str]) -> dict[str, str]:
    """The headers of a ``curl -s URL -H ... -H ...`` line."""
    return dict(h.split(": ", 1) for h in curl[4::2])


def _data(response: httpx.Response, count: int) -> list[str]:
    """The data of the stream's first ``count`` events."""
    data = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data.append(line.removeprefix("data: "))
            if len(data) == count:
                return data
    raise AssertionError(f"the stream ended after {len(data)} events")


def _postgres_running(data_dir: Path) -> bool:
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        if proc.info["name"] == "postgres" and str(data_dir) in " ".join(
            proc.info["cmdline"] or []
        ):
            return True
    return False
