"""A new install's first burst: a tail that hangs up every 150 lines and resumes gets every
line exactly once, as does a tail that stays connected, while four writers send late lines too.

On a database of its own, new (no statistics yet), through a real server process: the case a
new user meets first. The statements' plans on such a database: test_plans_without_statistics.
"""

from __future__ import annotations

from collections import Counter

from testkit import tailing
from testkit.serve import live_server


async def test_a_tail_resuming_every_150_lines_gets_every_line_once(fresh_database, tmp_path):
    consumer, producer = await tailing.keys_of_a_new_tenant(fresh_database, "burst")
    env = {"GRAMLOGS_LOG_LEVEL": "warning", "GRAMLOGS_TAIL_POLL_MS": "20"}
    with live_server(fresh_database, tmp_path, settings=env) as server:
        burst = tailing.Burst(server.url, "burst", consumer, producer, lines=2400, lines_per_s=800)
        outcome = await tailing.run(burst)
    assert outcome.errors == []
    assert len(outcome.sent) == 2400
    received = Counter(outcome.reconnecting)
    assert set(received) == set(outcome.sent)
    assert max(received.values()) == 1
    # It hung up after every 150 lines and resumed: 16 times for 2,400 lines, however fast the
    # machine wrote them (the count of lines is fixed, not the seconds).
    assert len(outcome.connections) >= 2400 // 150
    errors = {raw for raw, level in outcome.sent.items() if level == "error"}
    assert Counter(outcome.connected) == Counter(errors)
