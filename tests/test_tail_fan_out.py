"""Many tails of one project, some filtered, under a steady writer: every tail gets every line
its filter matches exactly once, nothing else, and no stream ends.

The check benchmarks/tail.py measured beside its delays; here it fails a test. Through a real
server process, with the benchmark's own client (testkit/fanout.py).
"""

from __future__ import annotations

import time

from testkit import fanout
from testkit.serve import live_server


async def test_every_tail_gets_every_line_it_matches_exactly_once(fresh_database, tmp_path):
    producer, (key,) = await fanout.tenants_of(fresh_database, 1)
    env = {"GRAMLOGS_LOG_LEVEL": "warning", "GRAMLOGS_TAIL_POLL_MS": "20"}
    with live_server(fresh_database, tmp_path, settings=env) as server:
        arrivals = fanout.Arrivals()
        # Two of each filter: eight tails, within the ten a key may hold.
        filters = [*fanout.MIXED, *fanout.MIXED]
        tails = [fanout.Tail(arrivals, server.port, key, f, "fan.") for f in filters]
        for tail in tails:
            await tail.open()
        writer = fanout.Writer(server.url, producer, "fan.", rate=400.0, batch=10)
        await writer.run(time.monotonic(), seconds=2.0)
        # The limit only bounds a broken run: drain returns once every tail has its lines.
        await arrivals.drain(tails, writer.lines, limit_s=60.0)
        for tail in tails:
            tail.close()
        await arrivals.stop()
    assert writer.lines == 800
    for tail in tails:
        got = fanout.tally(tail, writer.lines)
        assert got.problem is None, f"{tail.filter.label}: {got.problem}"
        matching = [n for n in range(writer.lines) if tail.filter.matches(n)]
        assert sorted(tail.lines) == matching
    # Every filter matched some lines and left others out, so the check covers both.
    assert all(0 < len(t.lines) < writer.lines for t in tails if t.filter is not fanout.UNFILTERED)
