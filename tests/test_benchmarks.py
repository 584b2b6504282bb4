"""The benchmarks still run: each in its --smoke size (seconds), against the test server.

Timings are printed, never asserted. wrk is used when it is installed (``make bench`` installs
it).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import asyncpg
import pytest

ROOT = Path(__file__).parent.parent


async def _run(module: str, server_url: str, *args: str) -> dict:
    env = os.environ | {"GRAMLOGS_BENCH_DATABASE_URL": server_url}
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", module, "--smoke", *args),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=240)
    assert proc.returncode == 0, err.decode()[-3000:]
    (line,) = [x for x in out.decode().splitlines() if x.startswith("RESULT ")]
    return json.loads(line.split(" ", 2)[2])


async def _drop(server_url: str, name: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.mark.timeout(300)
async def test_paging_benchmark_smoke(server_url):
    result = await _run("benchmarks.paging", server_url)
    await _drop(server_url, result["dataset"])
    assert set(result["scenarios"]) == {
        "pp20 first",
        "pp20 95% deep",
        "pp100 first",
        "pp100 95% deep",
    }
    assert all(r["http"]["n"] == r["sql"]["n"] == 30 for r in result["scenarios"].values())


@pytest.mark.timeout(300)
async def test_plans_benchmark_smoke(server_url):
    result = await _run("benchmarks.plans", server_url)
    await _drop(server_url, result["dataset"])
    scenarios = result["scenarios"]
    assert len(scenarios) == 12
    assert all(r[s]["n"] == 20 for r in scenarios.values() for s in ("shipped", "generic_sorts"))
    # Under the server's settings no page sorts: each is an ordered scan that stops at a page.
    assert all(r["shipped"]["sorted_rows"] == 0 for r in scenarios.values())


@pytest.mark.timeout(300)
async def test_scale_suite_smoke(server_url, tmp_path):
    result = await _run("benchmarks.suite", server_url, "--out", str(tmp_path / "R.md"), "--no-wrk")
    size = result["sizes"]["smoke"]
    await _drop(server_url, size["dataset"])
    assert len(size["scenarios"]) == 17
    assert all(r["http"]["n"] == 20 for r in size["scenarios"].values())
    report = (tmp_path / "R.md").read_text()
    assert "| first page |" in report and "## Targets" in report


@pytest.mark.timeout(300)
async def test_soak_smoke_loses_no_acknowledged_line_across_a_database_restart(server_url):
    # The soak runs its own embedded PostgreSQL (it restarts it), whatever server_url is.
    result = await _run("benchmarks.soak", server_url)
    window = result["window"]
    assert window["stop_called"] < window["stopped"] < window["start_called"] < window["started"]
    assert result["lines_acknowledged"] > 0
    assert result["lines_verified"] == result["lines_acknowledged"]
    assert result["lines_lost"] == result["lines_doubled"] == 0
    assert result["batches_unacknowledged"] == 0
    # Nothing but 2xx, except 503 while the database was away (and the server saw it go).
    assert result["failures"] == {}
    assert {k.split()[1] for k in result["statuses"]} <= {"200", "503"}
    assert sum(n for k, n in result["statuses"].items() if k.endswith(" 503")) > 0
    assert all(result["pass"][k] for k in ("no_error_outside_window", "no_line_lost"))


@pytest.mark.timeout(300)
async def test_scale_ingest_smoke(server_url):
    # The ClickHouse part needs chdb (a bench extra, not a dev dependency): without it the
    # benchmark says why and runs the rest.
    result = await _run("benchmarks.scale_ingest", server_url)
    lines = result["data"]["lines"]
    gram, floor = result["gramlogs"], result["copy"]
    assert gram["stored"] == floor["lines"] == lines == 20_000
    assert gram["duplicates"] == 0
    assert [s["to"] for s in gram["slices"]] == [s["to"] for s in floor["slices"]]
    assert gram["slices"][-1]["to"] == lines
    assert gram["bytes"] > floor["bytes"] > 0
    pages = gram["pages"]
    hot = result["data"]["hot"]
    assert pages["keyword, absent"]["rows"] == 0
    assert pages["keyword, rare (0.1%)"]["rows"] == min(20, hot["rare"])
    assert pages["keyword, frequent (30%)"]["rows"] == pages["no filter"]["rows"] == 20
    assert all(p["n"] == 10 for p in pages.values())
    house = result["clickhouse"]
    if "skipped" not in house:
        assert house["lines"] == lines and house["bytes"] > 0
        assert house["pages"]["keyword, absent"]["rows"] == 0
        assert house["pages"]["keyword, rare (0.1%)"]["rows"] == min(20, hot["rare"])
    assert len(result["targets"]) == 5


@pytest.mark.timeout(300)
async def test_tail_smoke_every_tail_gets_every_line_exactly_once(server_url):
    # The tail benchmark runs its own embedded PostgreSQL (with pg_stat_statements loaded),
    # whatever server_url is.
    result = await _run("benchmarks.tail", server_url)
    configs = result["configs"]
    assert [(c["tails"], c["mixed"]) for c in configs] == [
        (0, False),
        (1, False),
        (3, False),
        (4, True),
    ]
    assert configs[-1]["filters"] == {
        "all": 1,
        "level=error": 1,
        "function_id": 1,
        "keyword=timeout": 1,
    }
    for c in configs[1:]:
        d = c["delivery"]
        assert d["events"] == d["expected"] > 0
        assert d["missing"] == d["duplicates"] == d["unexpected"] == d["foreign"] == 0
        assert d["ended_early"] == 0 and d["problems"] == []
    # A delay for every line after the warm-up at every unfiltered tail.
    assert all(c["delay_ms"]["n"] == c["lines_counted"] * c["tails"] for c in configs[1:3])
    # The journal is read only while someone tails; the writer alone writes it.
    assert result["options"]["statements_source"] == "pg_stat_statements"
    assert configs[0]["queries"]["tail_reads_per_s"] == 0
    assert all(c["queries"]["tail_reads_per_s"] > 0 for c in configs[1:])
    assert set(result["rss_mib"]) >= {"start", "idle_before_tails", "end"}
    # Delays and flat reads; exactly once is tests/test_tail_fan_out.py's.
    assert len(result["targets"]) == 3


@pytest.mark.timeout(300)
async def test_viewer_benchmark_smoke(server_url):
    from testkit.browser import chromium_path

    if chromium_path() is None and os.environ.get("GRAMLOGS_REQUIRE_BROWSER") != "1":
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    result = await _run("benchmarks.viewer", server_url)
    assert result["rows"] == 600 and result["runs"] == 1
    assert result["sign_in_to_100_rows_ms"]["n"] == result["same_page_fetched_alone_ms"]["n"] == 1
    # 100 rows a page: the walk ends at the oldest line, never holding more than five pages.
    assert result["scroll"]["pages"] >= 5
    assert result["scroll"]["max_rows_in_dom"] == 500


async def test_histogram_benchmark_smoke(server_url):
    result = await _run("benchmarks.histogram", server_url)
    await _drop(server_url, result["dataset"])
    scenarios = result["scenarios"]
    assert len(scenarios) == 6
    assert all(r["http"]["n"] == r["sql"]["n"] > 0 for r in scenarios.values())
    # Without a filter the histogram counts every line of the window.
    assert scenarios["no filter, 60 buckets"]["lines"] == result["window_lines"] == 20_000
    assert scenarios["keyword, in no line"]["lines"] == 0


async def test_catch_up_benchmark_smoke(server_url):
    result = await _run("benchmarks.catch_up", server_url)
    assert set(result["catch_up"]) == {
        f"{regime}, {statement}"
        for regime in ("new", "analyzed")
        for statement in ("journal read", "plain join (before)")
    }
    assert all(r["lines"] == 2_001 for r in result["catch_up"].values())
    tail = result["burst"]["resuming_tail"]
    assert (tail["duplicates"], tail["missing"]) == (0, 0)


@pytest.mark.timeout(300)
async def test_abusive_bodies_smoke(server_url):
    result = await _run("benchmarks.abusive_bodies", server_url)
    runs = result["runs"]["this checkout"]
    assert runs["otlp-empty"]["statuses"] == {"413": 1}
    assert runs["ingest-zeros"]["statuses"] == {"413": 1}
    assert runs["invalid-keys"]["statuses"] == {"401": 3}
    tail = runs["batch-with-tail"]
    assert (tail["statuses"], tail["tail_got"], tail["tail_end"]) == ({"200": 1}, 5_000, None)
    assert all(r["probes"] > 0 and r["rss_mib"]["peak"] > 0 for r in runs.values())
