"""The Poly dialect: GET/DELETE /functions/server/{id}/logs and /system-logs."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gramlogs import cli
from gramlogs.core import ids
from gramlogs.core.keys import KeyScope
from gramlogs.storage import functions, tenants, writer
from gramlogs.web import poly
from gramlogs.web.poly import DEFAULT_LIMIT, MAX_LIMIT

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
# The server's clock in this module: lastHours/lastDays windows end here, and lines are aged from
# here, so no window edge moves while a test runs, however slow the machine.
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)

NUL = "must be formatted as UTF-8 text without NUL characters but got value"


@dataclass(frozen=True)
class Line:
    function_id: uuid.UUID
    ts: datetime
    level: str = "info"
    source: str = "function"
    message: str | None = "hello"
    raw_log: str = "raw hello"
    execution_id: str | None = "exec-1"


async def store(pool, project_id: uuid.UUID, lines: list[Line]) -> None:
    """COPY the lines into the project and register their functions, as ingestion does."""
    records = [
        (
            ids.new_id(line.ts),
            line.ts,
            "inst-1",
            line.level,
            line.source,
            line.raw_log,
            line.message,
            "{}",
            project_id,
            uuid.UUID(int=1),
            line.function_id,
            line.execution_id,
        )
        for line in lines
    ]
    async with pool.acquire() as conn:
        await writer.copy_lines(conn, records)
        await functions.register_functions(conn, project_id, {line.function_id for line in lines})


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def error(r: httpx.Response) -> dict[str, object]:
    body = r.json()
    assert isinstance(body.pop("id"), str)
    return body


def bad(name: str, message: str, **flags: bool) -> dict[str, object]:
    return {
        "name": name,
        "message": message,
        "temporary": False,
        "timeout": False,
        "fault": False,
        **flags,
    }


def url(function_id: object, system: bool = False) -> str:
    return f"/functions/server/{function_id}/{'system-logs' if system else 'logs'}"


@pytest.fixture(scope="module", autouse=True)
def fixed_clock() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as m:
        m.setattr(poly, "_now", lambda: NOW)
        yield


@pytest.fixture
async def fn(make_tenant, pool):
    """A tenant with one function: execution lines of every source and two server lines."""
    tenant = await make_tenant()
    f = uuid.uuid4()
    await store(
        pool,
        tenant.project_id,
        [
            Line(f, T0, "info", "function", "started", '{"msg":"started"}', "exec-a"),
            Line(f, T0 + timedelta(seconds=1), "warn", "stdout", None, "raw stdout line", "exec-a"),
            Line(f, T0 + timedelta(seconds=2), "error", "stderr", "", "raw stderr line", None),
            Line(f, T0 + timedelta(seconds=3), "info", "server", "cold start 12ms", "cs", None),
            Line(f, T0 + timedelta(seconds=4), "debug", "server", None, "health ok", None),
            Line(f, T0 + timedelta(seconds=5), "info", "function", "done", "done!", "exec-b"),
        ],
    )
    return tenant, f


EXECUTION = [
    {"timestamp": "2025-03-01T12:00:05.123456Z", "value": "done", "level": "INFO",
     "executionId": "exec-b"},
    {"timestamp": "2025-03-01T12:00:02.123456Z", "value": "raw stderr line", "level": "ERROR",
     "executionId": ""},
    {"timestamp": "2025-03-01T12:00:01.123456Z", "value": "raw stdout line", "level": "WARN",
     "executionId": "exec-a"},
    {"timestamp": "2025-03-01T12:00:00.123456Z", "value": "started", "level": "INFO",
     "executionId": "exec-a"},
]  # fmt: skip
SERVER = [
    {"timestamp": "2025-03-01T12:00:04.123456Z", "value": "health ok", "level": "DEBUG",
     "executionId": ""},
    {"timestamp": "2025-03-01T12:00:03.123456Z", "value": "cold start 12ms", "level": "INFO",
     "executionId": ""},
]  # fmt: skip
SYSTEM = [EXECUTION[0], *SERVER, *EXECUTION[1:]]


# -- the two views ------------------------------------------------------------------------------


async def test_execution_logs_are_the_functions_own_lines_newest_first(client, fn):
    tenant, f = fn
    r = await client.get(url(f), headers=auth(tenant.consumer_key))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"logsEnabled": True, "logs": EXECUTION}


async def test_system_logs_add_the_server_lines(client, fn):
    tenant, f = fn
    r = await client.get(url(f, system=True), headers=auth(tenant.consumer_key))
    assert r.status_code == 200
    assert r.json() == {"logsEnabled": True, "logs": SYSTEM}


async def test_a_function_without_lines_answers_an_empty_list(client, make_tenant, pool):
    tenant = await make_tenant()
    f = uuid.uuid4()
    async with pool.acquire() as conn:
        await functions.register_functions(conn, tenant.project_id, [f])
    r = await client.get(url(f), headers=auth(tenant.consumer_key))
    assert (r.status_code, r.json()) == (200, {"logsEnabled": True, "logs": []})


async def test_other_functions_lines_are_not_shown(client, fn, pool):
    tenant, f = fn
    other = uuid.uuid4()
    await store(pool, tenant.project_id, [Line(other, T0 + timedelta(seconds=9), message="x")])
    r = await client.get(url(f, system=True), headers=auth(tenant.consumer_key))
    assert r.json()["logs"] == SYSTEM


# -- parameters ---------------------------------------------------------------------------------


@pytest.fixture
async def aged(make_tenant, pool):
    """One function with a line at each age: 30 min, 2.5 h, 30 h, 80 h old, and 2 h ahead."""
    tenant = await make_tenant()
    f = uuid.uuid4()
    ages = {"m30": 0.5, "h2": 2.5, "h30": 30.5, "h80": 80.5, "future": -2.0}
    await store(
        pool,
        tenant.project_id,
        [Line(f, NOW - timedelta(hours=h), message=name) for name, h in ages.items()],
    )
    return tenant, f


async def values(client, tenant, f, params=None, system=False) -> list[str]:
    r = await client.get(url(f, system), params=params or {}, headers=auth(tenant.consumer_key))
    assert r.status_code == 200, r.text
    return [log["value"] for log in r.json()["logs"]]


async def test_without_a_window_every_line_is_shown(client, aged):
    assert await values(client, *aged) == ["future", "m30", "h2", "h30", "h80"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"lastHours": "1"}, ["future", "m30"]),
        ({"lastHours": "3"}, ["future", "m30", "h2"]),
        ({"lastDays": "1"}, ["future", "m30", "h2"]),
        ({"lastDays": "2"}, ["future", "m30", "h2", "h30"]),
        ({"lastDays": "4"}, ["future", "m30", "h2", "h30", "h80"]),
        # Both given: the longer window wins, whichever it is.
        ({"lastHours": "1", "lastDays": "2"}, ["future", "m30", "h2", "h30"]),
        ({"lastHours": "72", "lastDays": "1"}, ["future", "m30", "h2", "h30"]),
        # Windows reaching before 1970 cover everything.
        ({"lastHours": "99999999999999999999999"}, ["future", "m30", "h2", "h30", "h80"]),
        ({"lastDays": "1000000"}, ["future", "m30", "h2", "h30", "h80"]),
        # Empty strings are ignored, as PolyAPI documents.
        ({"lastHours": "", "lastDays": "", "limit": "", "keyword": "", "executionId": ""},
         ["future", "m30", "h2", "h30", "h80"]),
        ({"lastHours": "", "lastDays": "1"}, ["future", "m30", "h2"]),
        ({"limit": "2"}, ["future", "m30"]),
        ({"limit": "2", "lastHours": "3"}, ["future", "m30"]),
        ({"limit": str(MAX_LIMIT)}, ["future", "m30", "h2", "h30", "h80"]),
        # A repeated parameter takes its first value.
        ({"lastHours": ["1", "100"]}, ["future", "m30"]),
        # Unknown parameters are ignored.
        ({"ts_start": "nonsense", "per_page": "0"}, ["future", "m30", "h2", "h30", "h80"]),
    ],
)  # fmt: skip
async def test_window_and_limit(client, aged, params, expected):
    tenant, f = aged
    assert await values(client, tenant, f, params) == expected


async def test_limit_defaults_to_its_documented_value(client, make_tenant, pool):
    tenant = await make_tenant()
    f = uuid.uuid4()
    lines = [Line(f, T0 + timedelta(seconds=i), message=f"n{i}") for i in range(DEFAULT_LIMIT + 5)]
    await store(pool, tenant.project_id, lines)
    got = await values(client, tenant, f)
    assert got == [f"n{i}" for i in range(DEFAULT_LIMIT + 4, 4, -1)]


@pytest.mark.parametrize(
    ("params", "name", "message"),
    [
        ({"lastHours": "0"}, "invalid_range",
         "lastHours must be greater or equal than 1 but got value 0"),
        ({"lastHours": "-3"}, "invalid_range",
         "lastHours must be greater or equal than 1 but got value -3"),
        ({"lastDays": "0"}, "invalid_range",
         "lastDays must be greater or equal than 1 but got value 0"),
        ({"limit": "0"}, "invalid_range", "limit must be greater or equal than 1 but got value 0"),
        ({"limit": str(MAX_LIMIT + 1)}, "invalid_range",
         f"limit must be lesser or equal than {MAX_LIMIT} but got value {MAX_LIMIT + 1}"),
        ({"lastHours": "1.5"}, "invalid_field_type",
         'invalid value "1.5" for lastHours, must be a integer'),
        ({"lastDays": "two"}, "invalid_field_type",
         'invalid value "two" for lastDays, must be a integer'),
        ({"limit": "1e3"}, "invalid_field_type",
         'invalid value "1e3" for limit, must be a integer'),
        ({"keyword": "x" * 1025}, "invalid_length",
         "length of keyword must be lesser or equal than 1024 but got 1025"),
        ({"executionId": "a\x00b"}, "invalid_format",
         f'executionId {NUL} "a\ufffdb"'),
        ({"keyword": "\x00"}, "invalid_format", f'keyword {NUL} "\ufffd"'),
    ],
)  # fmt: skip
async def test_malformed_parameters_are_400_naming_them(client, aged, params, name, message):
    tenant, f = aged
    for system in (False, True):
        r = await client.get(url(f, system), params=params, headers=auth(tenant.consumer_key))
        assert r.status_code == 400
        assert error(r) == bad(name, message)


async def test_execution_id_selects_one_run(client, fn):
    tenant, f = fn
    got = await values(client, tenant, f, {"executionId": "exec-a"}, system=True)
    assert got == ["raw stdout line", "started"]
    assert await values(client, tenant, f, {"executionId": "exec-zzz"}) == []


async def test_keyword_matches_message_or_raw_line_case_insensitively(client, fn):
    tenant, f = fn
    # "STDOUT" is only in the raw line (the message is null); "START" in message and raw line;
    # "cold" only in a server line.
    assert await values(client, tenant, f, {"keyword": "STDOUT"}) == ["raw stdout line"]
    assert await values(client, tenant, f, {"keyword": "START"}) == ["started"]
    assert await values(client, tenant, f, {"keyword": "cold"}) == []
    assert await values(client, tenant, f, {"keyword": "cold"}, system=True) == ["cold start 12ms"]
    assert await values(client, tenant, f, {"keyword": '"msg"'}) == ["started"]


async def test_every_filter_combines(client, fn):
    tenant, f = fn
    params = {"keyword": "line", "executionId": "exec-a", "lastDays": "100000", "limit": "5"}
    assert await values(client, tenant, f, params, system=True) == ["raw stdout line"]


# -- auth and the function's identity ------------------------------------------------------------


async def test_missing_or_bad_key_is_401(client, fn):
    _, f = fn
    r = await client.get(url(f))
    assert (r.status_code, error(r)) == (
        401,
        bad("unauthorized", "missing Authorization header (Bearer <key>)"),
    )
    r = await client.get(url(f), headers=auth("glk_nope"))
    assert (r.status_code, error(r)) == (401, bad("unauthorized", "invalid or revoked API key"))
    r = await client.get(url(f), headers={"Authorization": "Bearer "})
    assert r.status_code == 401


async def test_revoked_key_is_401(client, fn, pool):
    tenant, f = fn
    async with pool.acquire() as conn:
        key = await tenants.create_key(conn, tenant.organization_id, KeyScope.PRODUCER)
        assert await tenants.revoke_key(conn, key.id)
    for method in ("GET", "DELETE"):
        r = await client.request(method, url(f), headers=auth(key.key))
        assert (r.status_code, error(r)) == (401, bad("unauthorized", "invalid or revoked API key"))


async def test_unknown_function_is_404(client, fn):
    tenant, _ = fn
    missing = uuid.uuid4()
    for method in ("GET", "DELETE"):
        for system in (False, True):
            r = await client.request(
                method, url(missing, system), headers=auth(tenant.producer_key)
            )
            assert r.status_code == 404
            assert error(r) == bad("not_found", f"no server function '{missing}'")


async def test_another_organizations_function_is_404_like_an_unknown_one(client, fn, make_tenant):
    _, f = fn
    stranger = await make_tenant()
    for method in ("GET", "DELETE"):
        r = await client.request(method, url(f), headers=auth(stranger.producer_key))
        assert (r.status_code, error(r)) == (404, bad("not_found", f"no server function '{f}'"))


async def test_a_key_bound_to_another_project_sees_404(client, fn, pool):
    tenant, f = fn
    async with pool.acquire() as conn:
        other = await tenants.create_project(conn, tenant.organization_id, "other")
        bound_other = await tenants.create_key(
            conn, tenant.organization_id, KeyScope.PRODUCER, project_id=other
        )
        bound_here = await tenants.create_key(
            conn, tenant.organization_id, KeyScope.CONSUMER, project_id=tenant.project_id
        )
    r = await client.get(url(f), headers=auth(bound_other.key))
    assert r.status_code == 404
    r = await client.get(url(f), headers=auth(bound_here.key))
    assert (r.status_code, r.json()["logs"]) == (200, EXECUTION)


async def test_a_function_in_two_projects_is_the_first_registrations_for_an_org_wide_key(
    client, fn, pool
):
    """A key bound to another project ships a line of the function there: the organization's
    other keys still find it where it was first registered; a key bound to the second project
    finds it there."""
    tenant, f = fn
    async with pool.acquire() as conn:
        second = await tenants.create_project(conn, tenant.organization_id, "second")
        ingest = await tenants.create_key(
            conn, tenant.organization_id, KeyScope.INGEST, project_id=second
        )
        bound = await tenants.create_key(
            conn, tenant.organization_id, KeyScope.CONSUMER, project_id=second
        )
    line = {"raw_log": "x", "message": "in second", "function_id": str(f)}
    line["deployment_id"] = str(uuid.UUID(int=1))
    r = await client.post(
        "/rpc/logs.ingest", json=[line], headers={"Gram-Key": ingest.key, "Gram-Project": "second"}
    )
    assert r.status_code == 200, r.text
    for key in (tenant.consumer_key, tenant.producer_key):
        r = await client.get(url(f), headers=auth(key))
        assert (r.status_code, r.json()) == (200, {"logsEnabled": True, "logs": EXECUTION})
    r = await client.get(url(f), headers=auth(bound.key))
    assert [log["value"] for log in r.json()["logs"]] == ["in second"]
    # The org-wide DELETE removes the first project's lines, not the second's.
    r = await client.delete(url(f), headers=auth(tenant.producer_key))
    assert (r.status_code, r.json()) == (200, {"deleted": len(EXECUTION)})
    r = await client.get(url(f), headers=auth(bound.key))
    assert [log["value"] for log in r.json()["logs"]] == ["in second"]


async def test_malformed_function_id_is_400(client, fn):
    tenant, _ = fn
    for method in ("GET", "DELETE"):
        r = await client.request(
            method, "/functions/server/123/logs", headers=auth(tenant.producer_key)
        )
        assert (r.status_code, error(r)) == (
            400,
            bad("invalid_format", 'id must be formatted as a uuid but got value "123"'),
        )


async def test_other_methods_are_405(client, fn):
    tenant, f = fn
    r = await client.post(url(f), headers=auth(tenant.producer_key))
    assert r.status_code == 405
    assert error(r) == bad("method_not_allowed", "method not allowed on this route")
    assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "DELETE"}


# -- logsEnabled --------------------------------------------------------------------------------


async def test_disabled_function_answers_logs_enabled_false_and_no_logs(client, fn, pool):
    tenant, f = fn
    async with pool.acquire() as conn:
        await functions.set_logs_enabled(conn, tenant.project_id, f, False)
    for system in (False, True):
        r = await client.get(url(f, system), headers=auth(tenant.consumer_key))
        assert (r.status_code, r.json()) == (200, {"logsEnabled": False, "logs": []})
    # Parameters are still checked while it is off.
    r = await client.get(url(f), params={"limit": "0"}, headers=auth(tenant.consumer_key))
    assert r.status_code == 400
    async with pool.acquire() as conn:
        await functions.set_logs_enabled(conn, tenant.project_id, f, True)
    r = await client.get(url(f), headers=auth(tenant.consumer_key))
    assert r.json() == {"logsEnabled": True, "logs": EXECUTION}


def run_cli(*argv: str) -> tuple[int, str]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        status = cli.main(list(argv))
    return status, out.getvalue()


async def test_cli_disables_and_enables_a_function(client, fn, database_url):
    tenant, f = fn
    org = str(tenant.organization_id)
    common = ("--org", org, "--database-url", database_url)
    status, out = await asyncio.to_thread(run_cli, "functions", "disable", str(f), *common)
    assert (status, out) == (0, f"logs disabled for function {f} in project proj\n")
    r = await client.get(url(f), headers=auth(tenant.consumer_key))
    assert r.json() == {"logsEnabled": False, "logs": []}
    status, out = await asyncio.to_thread(
        run_cli, "functions", "enable", str(f), "--project", "proj", "--json", *common
    )
    assert status == 0
    assert json.loads(out) == {
        "function_id": str(f),
        "project_id": str(tenant.project_id),
        "project": "proj",
        "logs_enabled": True,
    }
    r = await client.get(url(f), headers=auth(tenant.consumer_key))
    assert r.json() == {"logsEnabled": True, "logs": EXECUTION}


async def test_cli_refuses_unknown_or_ambiguous_functions(fn, pool, database_url):
    tenant, f = fn
    common = ("--org", str(tenant.organization_id), "--database-url", database_url)
    new = uuid.uuid4()
    status, out = await asyncio.to_thread(run_cli, "functions", "disable", str(new), *common)
    assert (status, out) == (
        1,
        f"gramlogs: no project of the organization has function {new};"
        " name one with --project to register it\n",
    )
    status, out = await asyncio.to_thread(run_cli, "functions", "disable", "nope", *common)
    assert (status, out) == (1, "gramlogs: function id 'nope' is not a uuid\n")
    async with pool.acquire() as conn:
        second = await tenants.create_project(conn, tenant.organization_id, "second")
        await functions.register_functions(conn, second, [f])
    status, out = await asyncio.to_thread(run_cli, "functions", "disable", str(f), *common)
    assert (status, out) == (
        1,
        f"gramlogs: function {f} is in several projects (proj, second);"
        " choose one with --project\n",
    )
    # Naming the project registers a function before its first line, already disabled.
    status, _ = await asyncio.to_thread(
        run_cli, "functions", "disable", str(new), "--project", "second", *common
    )
    assert status == 0
    async with pool.acquire() as conn:
        assert await functions.disabled_among(conn, second, [new, f]) == {new}


# -- DELETE -------------------------------------------------------------------------------------


async def test_delete_execution_logs_keeps_server_lines(client, fn):
    tenant, f = fn
    r = await client.delete(url(f), headers=auth(tenant.producer_key))
    assert (r.status_code, r.json()) == (200, {"deleted": 4})
    assert r.headers["content-type"] == "application/json"
    assert await values(client, tenant, f) == []
    r = await client.get(url(f, system=True), headers=auth(tenant.consumer_key))
    assert r.json() == {"logsEnabled": True, "logs": SERVER}
    r = await client.delete(url(f), headers=auth(tenant.producer_key))
    assert (r.status_code, r.json()) == (200, {"deleted": 0})


async def test_delete_system_logs_removes_every_line_of_the_function(client, fn):
    tenant, f = fn
    r = await client.delete(url(f, system=True), headers=auth(tenant.producer_key))
    assert (r.status_code, r.json()) == (200, {"deleted": 6})
    assert await values(client, tenant, f, system=True) == []


async def test_delete_leaves_other_functions_and_projects_alone(client, make_tenant, pool):
    a, b = await make_tenant(), await make_tenant()
    f, g = uuid.uuid4(), uuid.uuid4()
    # The same function id in another organization's project is another function.
    await store(pool, a.project_id, [Line(f, T0, message="a-f"), Line(g, T0, message="a-g")])
    await store(pool, b.project_id, [Line(f, T0, message="b-f")])
    r = await client.delete(url(f, system=True), headers=auth(a.producer_key))
    assert r.json() == {"deleted": 1}
    assert await values(client, a, f) == []
    assert await values(client, a, g) == ["a-g"]
    assert await values(client, b, f) == ["b-f"]


async def test_delete_needs_the_delete_permission(client, fn, pool):
    tenant, f = fn
    async with pool.acquire() as conn:
        ingest = await tenants.create_key(conn, tenant.organization_id, KeyScope.INGEST)
    for key, scope in ((tenant.consumer_key, "consumer"), (ingest.key, "ingest")):
        for system in (False, True):
            r = await client.delete(url(f, system), headers=auth(key))
            assert (r.status_code, error(r)) == (
                403,
                bad(
                    "forbidden",
                    f"this key has scope '{scope}', which lacks the 'delete' permission",
                ),
            )
    assert await values(client, tenant, f, system=True) == [log["value"] for log in SYSTEM]


async def test_delete_refuses_the_get_filters(client, fn):
    tenant, f = fn
    r = await client.delete(url(f), params={"lastHours": "1"}, headers=auth(tenant.producer_key))
    assert (r.status_code, error(r)) == (
        400,
        bad(
            "bad_request",
            "lastHours is not accepted by DELETE: it removes all of the function's execution logs",
        ),
    )
    # Empty ones are ignored, as on GET.
    r = await client.delete(url(f), params={"keyword": ""}, headers=auth(tenant.producer_key))
    assert r.json() == {"deleted": 4}


async def test_delete_works_while_logs_are_disabled(client, fn, pool):
    tenant, f = fn
    async with pool.acquire() as conn:
        await functions.set_logs_enabled(conn, tenant.project_id, f, False)
    r = await client.delete(url(f, system=True), headers=auth(tenant.producer_key))
    assert r.json() == {"deleted": 6}


async def test_delete_walks_many_batches(make_tenant, pool):
    tenant = await make_tenant()
    f = uuid.uuid4()
    lines = [
        Line(f, T0 + timedelta(microseconds=i), source="server" if i % 3 == 0 else "function")
        for i in range(250)
    ]
    await store(pool, tenant.project_id, lines)
    async with pool.acquire() as conn:
        gone = await functions.delete_logs(
            conn, tenant.project_id, f, sources=("function",), batch=7
        )
        assert gone == 166
        left = await conn.fetch(
            "SELECT source FROM logs WHERE project_id = $1 AND function_id = $2",
            tenant.project_id,
            f,
        )
        assert sorted(r["source"] for r in left) == ["server"] * 84
        assert await functions.delete_logs(conn, tenant.project_id, f, batch=10) == 84
        assert await functions.delete_logs(conn, tenant.project_id, f, batch=10) == 0


# -- the Poly answer is the Gram answer, reshaped ------------------------------------------------

WORDS = ("alpha", "Beta", "50%", "a_b", "back\\slash", "")


@dataclass(frozen=True)
class Corpus:
    tenant: object
    functions: list[uuid.UUID]


@pytest.fixture(scope="module")
async def corpus(make_tenant, pool) -> Corpus:
    """Three functions' lines, aged k + 0.5 hours (k = -2 … 100): every window boundary, a whole
    number of hours back from NOW, is half an hour from any line."""
    import random

    rng = random.Random(4)
    tenant = await make_tenant()
    fns = [uuid.uuid4() for _ in range(3)]
    lines = []
    for _ in range(240):
        words = " ".join(rng.sample(WORDS, 2))
        message = rng.choice([f"msg {words}", None, ""])
        lines.append(
            Line(
                rng.choice(fns),
                NOW
                - timedelta(hours=rng.randint(-2, 100) + 0.5, microseconds=rng.randrange(10**6)),
                rng.choice(("debug", "info", "warn", "error")),
                rng.choice(("function", "stdout", "stderr", "server")),
                message,
                f"raw {rng.choice(WORDS)} {rng.randrange(1000)}",
                rng.choice(("e1", "e2", None)),
            )
        )
    await store(pool, tenant.project_id, lines)
    return Corpus(tenant, fns)


async def gram_rows(client, tenant, params: dict[str, str]) -> list[dict[str, Any]]:
    r = await client.get(
        "/rpc/logs.listToolExecutionLogs",
        params=params,
        headers={"Gram-Key": tenant.consumer_key, "Gram-Project": tenant.slug},
    )
    assert r.status_code == 200, r.text
    return r.json()["logs"]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    function=st.integers(0, 2),
    hours=st.none() | st.integers(1, 110),
    days=st.none() | st.integers(1, 5),
    limit=st.integers(1, 100),
    keyword=st.none() | st.sampled_from((*WORDS[:-1], "A", "%", "_", "\\", "msg b")),
    system=st.booleans(),
)
async def test_poly_answer_equals_the_gram_rows(
    client, corpus, function, hours, days, limit, keyword, system
):
    tenant, f = corpus.tenant, corpus.functions[function]
    poly_params = {"limit": str(limit)}
    gram_params = {"function_id": str(f), "per_page": str(limit), "sort": "desc"}
    if hours is not None:
        poly_params["lastHours"] = str(hours)
    if days is not None:
        poly_params["lastDays"] = str(days)
    if hours is not None or days is not None:
        start = NOW - timedelta(hours=max(hours or 0, (days or 0) * 24))
        gram_params["ts_start"] = start.isoformat()
    if keyword is not None:
        poly_params["keyword"] = gram_params["keyword"] = keyword
    r = await client.get(url(f, system), params=poly_params, headers=auth(tenant.consumer_key))
    assert r.status_code == 200
    poly = r.json()

    if system:
        gram = await gram_rows(client, tenant, gram_params)
    else:
        gram = []
        for source in ("function", "stdout", "stderr"):
            gram += await gram_rows(client, tenant, {**gram_params, "source": source})
        gram = sorted(gram, key=lambda log: uuid.UUID(log["id"]), reverse=True)[:limit]
    expected = [
        {
            "timestamp": log["timestamp"],
            "value": log.get("message") or log["raw_log"],
            "level": log["level"].upper(),
        }
        for log in gram
    ]
    assert poly["logsEnabled"] is True
    assert [
        {k: v for k, v in log.items() if k != "executionId"} for log in poly["logs"]
    ] == expected
