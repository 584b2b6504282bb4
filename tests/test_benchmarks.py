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
    # Measured once the server had sealed all it would (a line younger than SEAL_DELAY_S may
    # stay a row).
    sealing = result["sealing"]
    assert sealing["settled"] and sealing["due"] == 0
    assert sealing["lines"] == 20_000 and sealing["rows"] < 100
    assert set(result["scenarios"]) == {
        "pp20 first",
        "pp20 95% deep",
        "pp100 first",
        "pp100 95% deep",
        "pp100 function_id",
        "pp100 level=error",
        "pp100 sort=asc",
    }
    # The endpoint, the storage read and the plain copy's OFFSET page hold the same lines.
    assert all(r["same_lines"] for r in result["scenarios"].values())
    assert all(
        r["http"]["n"] == r["storage"]["n"] == r["healthz"]["n"] == 30
        for r in result["scenarios"].values()
    )
    assert set(result["bare"]) == {"20", "100"}
    assert len(result["targets"]) == 2


@pytest.mark.timeout(300)
async def test_scale_suite_smoke(server_url, tmp_path):
    result = await _run("benchmarks.suite", server_url, "--out", str(tmp_path / "R.md"), "--no-wrk")
    size = result["sizes"]["smoke"]
    await _drop(server_url, size["dataset"])
    assert size["sealing"]["settled"] and size["sealing"]["due"] == 0
    assert len(size["scenarios"]) == 17
    assert all(r["same_lines"] for r in size["scenarios"].values())
    assert all(
        r["http"]["n"] == r["storage"]["n"] == r["healthz"]["n"] == 20
        for r in size["scenarios"].values()
    )
    report = (tmp_path / "R.md").read_text()
    assert "| first page |" in report and "## Targets" in report
    assert "x /healthz p50" in report and "1.3 x (storage read p50" in report


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
    # Sealing catches up with 20k lines in seconds; every line is in a row or a block, once.
    sealing = gram["sealing"]
    caught = sealing["catch_up"]
    assert caught["caught_up"] and caught["unsealed"] < 1_000
    assert caught["sealed"] + caught["unsealed"] == lines
    assert sealing["unsealed"]["max"] <= lines
    groups = sealing["groups"]
    assert groups["all"] == sealing["bytes"] == sum(groups.values()) - groups["all"]
    assert groups["log_sealed TOAST"] > 0
    assert pages["histogram, whole window"]["rows"] == hot["lines"]
    deep = [name for name in pages if " deep, " in name]
    assert len(deep) == 16
    assert all(pages[name]["rows"] == 20 for name in deep if not name.endswith("level=error"))
    assert len(result["targets"]) == (9 if "skipped" in house else 10)


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
async def test_sealing_smoke(server_url):
    # No database: the codec alone, on scale_data's lines.
    result = await _run("benchmarks.sealing", server_url)
    assert result["lines"] == 20_000
    configs = result["configs"]
    assert len(configs) == 2 * (4 + 4 + 4)
    assert {c["set"] for c in configs} == {"hot function", "mixed"}
    mixed = [c for c in configs if c["set"] == "mixed"]
    assert sum(c["lines"] for c in mixed) == 20_000 * len(mixed)
    assert all(
        c["bytes_per_line"]["keys"] > 0 and c["bytes_per_line"]["texts"] > 0 for c in configs
    )


@pytest.mark.timeout(300)
async def test_render_smoke_times_both_paths_of_every_body_alike(server_url):
    # No database: the read bodies' renderer beside the Struct path it replaced.
    result = await _run("benchmarks.render", server_url)
    bodies = result["bodies"]
    assert len(bodies) == 6 * 2 * 2  # bodies (and the list page's two steps), rows as, sizes
    assert {(b["rows"], b["kind"]) for b in bodies} == {
        (n, kind) for n in (20, 100) for kind in ("record", "sealed")
    }
    assert all(b["same_bytes"] for b in bodies)
    assert all(b["struct"]["p50_us"] > 0 and b["rendered"]["p50_us"] > 0 for b in bodies)


@pytest.mark.timeout(300)
async def test_loki_smoke_answers_alike_and_stores_every_pushed_line(server_url):
    result = await _run("benchmarks.loki", server_url)
    await _drop(server_url, result["dataset"])
    reads = result["reads"]
    assert set(reads) == {
        *(
            f"{api} {s}"
            for api in ("query_range", "list")
            for s in ("function", "level", "level + word")
        ),
        "volume grafana",
        "volume sum",
        "histogram",
    }
    assert all(r["n"] == 5 for r in reads.values())
    # Each Loki query answers as many lines as the Gram page beside it: a full page.
    for selector in ("function", "level", "level + word"):
        assert (
            reads[f"query_range {selector}"]["answered"]
            == reads[f"list {selector}"]["answered"]
            == 100
        )
    # The volume counts the function's lines whichever way it is grouped; the histogram's
    # window starts a step later (a Loki point counts the minute before it), so it may miss a few.
    grafana, plain = reads["volume grafana"]["counted"], reads["volume sum"]["counted"]
    assert grafana == plain > 0
    assert 0 <= plain - reads["histogram"]["counted"] <= plain // 100
    assert reads["histogram"]["answered"] == 721  # 24 h of 2-minute buckets, both ends in
    # Every pushed line stored once, whatever the body.
    assert {kind: p["stored"] for kind, p in result["pushes"].items()} == {
        "logs.ingest NDJSON": [5_000],
        "Loki push JSON": [5_000],
        "Loki push protobuf": [5_000],
    }
    assert len(result["targets"]) == 7


@pytest.mark.timeout(300)
async def test_loki_volume_smoke_counts_every_line_of_the_function_once(server_url):
    result = await _run("benchmarks.loki_volume", server_url)
    await _drop(server_url, result["dataset"])
    counts = result["counts"]
    assert list(counts) == ["all levels", "debug", "info", "warn", "error"]
    levels = sum(counts[level]["lines"] for level in ("debug", "info", "warn", "error"))
    assert counts["all levels"]["lines"] == levels > 0
    assert result["ranges"] == 1441
    assert any(name.startswith("_first_at_least") for name in result["sealed_calls_info"])
