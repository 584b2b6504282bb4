"""The report of benchmarks/scale_ingest.py: the issue's targets beside the figures, and the
Markdown tables ``--write`` appends to benchmarks/scale_ingest.md."""

from __future__ import annotations

from typing import Any

from benchmarks import scale_data as sd
from benchmarks.results import check, fmt_ms, targets_table

# The issues' targets: sustained lines/s at 10M, the share of COPY's and of ClickHouse's rate,
# keyword and histogram p50, bytes on disk per line once sealing has caught up (issue 25).
TARGET_LINES_PER_S = 60_000
TARGET_COPY_SHARE = 0.5
TARGET_CLICKHOUSE_SHARE = 0.4
TARGET_KEYWORD_MS = 20.0
TARGET_HISTOGRAM_MS = 20.0
TARGET_BYTES_PER_LINE = 60.0
# Unsealed rows are bounded when the load's second half peaks no higher than this times its
# first half's peak: a backlog that grows with the lines loaded would double it.
BOUNDED_GROWTH = 1.5


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    gram, floor = r["gramlogs"], r["copy"]
    at = f"at {r['data']['lines']:,} lines" + (
        "" if r["data"]["lines"] >= 10_000_000 else " (the target is at 10M)"
    )
    share = gram["sustained_lines_per_s"] / floor["sustained_lines_per_s"]
    lines_per_s = gram["sustained_lines_per_s"]
    checks = [
        check(f"sustained ingestion >= {TARGET_LINES_PER_S:,} lines/s {at}",
              lines_per_s >= TARGET_LINES_PER_S, f"{lines_per_s:,.0f} lines/s"),
        check(f"sustained ingestion >= {TARGET_COPY_SHARE} x COPY's {at}",
              share >= TARGET_COPY_SHARE, f"{share:.2f} x"),
    ]  # fmt: skip
    house = r["clickhouse"]
    if "skipped" not in house:
        share = lines_per_s / house["sustained_lines_per_s"]
        checks.append(
            check(f"sustained ingestion >= {TARGET_CLICKHOUSE_SHARE} x ClickHouse's {at}",
                  share >= TARGET_CLICKHOUSE_SHARE, f"{share:.2f} x")
        )  # fmt: skip
    for label in sd.KEYWORDS:
        p50 = gram["pages"][f"keyword, {label}"]["p50"]
        checks.append(
            check(f"keyword {label} first page p50 <= {TARGET_KEYWORD_MS:.0f} ms {at}",
                  p50 <= TARGET_KEYWORD_MS, f"{fmt_ms(p50)} ms")
        )  # fmt: skip
    for name, page in gram["pages"].items():
        if name.startswith("histogram"):
            checks.append(
                check(f"{name} p50 <= {TARGET_HISTOGRAM_MS:.0f} ms {at}",
                      page["p50"] <= TARGET_HISTOGRAM_MS, f"{fmt_ms(page['p50'])} ms")
            )  # fmt: skip
    return checks + _sealing_targets(gram["sealing"], at)


def _sealing_targets(s: dict[str, Any], at: str) -> list[dict[str, Any]]:
    per_line, vacuumed = s["bytes_per_line"], s["bytes_per_line_vacuumed"]
    u = s["unsealed"]
    grew = u["max_second_half"] / max(u["max_first_half"], 1)
    bounded = s["catch_up"]["caught_up"] and grew <= BOUNDED_GROWTH
    return [
        check(f"bytes on disk per line after sealing <= {TARGET_BYTES_PER_LINE:.0f} {at}",
              per_line <= TARGET_BYTES_PER_LINE,
              f"{per_line:,.1f} ({vacuumed:,.1f} after VACUUM)"),
        check(f"unsealed rows bounded at maximum ingest {at}", bounded,
              f"at most {u['max']:,}; 2nd half of the load / 1st: {grew:.2f} x;"
              f" caught up {s['catch_up']['seconds']:,.0f} s after it"),
    ]  # fmt: skip


def _rate(x: float) -> str:
    return f"{x:,.0f}"


def _bytes(b: float) -> str:
    return f"{b / 2**20:,.0f} MiB"


def render(r: dict[str, Any]) -> str:
    d, gram, floor, house = r["data"], r["gramlogs"], r["copy"], r["clickhouse"]
    millions = d["lines"] / 1e6
    lb = d["line_bytes"]
    loads = [("gramlogs (HTTP)", gram), ("COPY floor", floor)]
    if "skipped" not in house:
        loads.append(("ClickHouse (chdb)", house))
    lines = [
        f"## {r['machine']['date']}: {d['lines']:,} lines, {d['projects']} projects,"
        f" {r['clients']} clients, batches of {d['batch']:,}"
        + (f", {r['workers']} server processes" if r.get("workers", 1) > 1 else "")
        + (" (Citus: coordinator and 2 workers)" if r["machine"]["citus"] else ""),
        "",
        f"`{r['command']}`, {r['seconds']:,.0f} s in all.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in r["machine"].items() if k != "date") + ".",
        "",
        f"Lines: NDJSON of {lb['min']}-{lb['max']} bytes (mean {lb['mean']}),"
        f" {_bytes(d['body_bytes'])} in all (made in {d['generated_s']:,.0f} s, once: then read"
        f" from the cache), seed {d['seed']}, over {d['span_hours']:g} hours up to {d['base']}."
        f" The hot project {d['hot']['slug']} holds {d['hot']['lines']:,} lines:"
        f" '{d['words']['rare']}' in {d['hot']['rare']:,} of them,"
        f" '{d['words']['frequent']}' in {d['hot']['frequent']:,},"
        f" '{d['words']['absent']}' in none.",
        "",
        f"| load | seconds | lines/s | sustained (last {gram['sustained_lines']:,}) | bytes on disk"
        " | per 1M lines | CPU s: server / PostgreSQL / clients |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, load in loads:
        cpu = load["cpu_s"]
        cpu_text = (
            f"{cpu['server']:,.1f} / {cpu['postgres']:,.1f} / {cpu['clients']:,.1f}"
            if isinstance(cpu, dict)
            else f"{cpu:,.1f} (in process)"
        )
        lines.append(
            f"| {label} | {load['seconds']:,.1f} | {_rate(load['lines_per_s'])}"
            f" | {_rate(load['sustained_lines_per_s'])}"
            f" | {_bytes(load['bytes'])} | {_bytes(load['bytes'] / millions)} | {cpu_text} |"
        )
    ratio = gram["lines_per_s"] / floor["lines_per_s"]
    sustained = gram["sustained_lines_per_s"] / floor["sustained_lines_per_s"]
    lines += [
        "",
        f"gramlogs / COPY: {ratio:.2f} overall, {sustained:.2f} sustained; bytes"
        f" {gram['bytes'] / floor['bytes']:.2f} x."
        + (
            f" gramlogs / ClickHouse: {gram['lines_per_s'] / house['lines_per_s']:.2f} of its rate,"
            f" {gram['bytes'] / house['bytes']:.1f} x its bytes ({house['parts']} active parts)."
            if "skipped" not in house
            else f" ClickHouse: skipped, {house['skipped']}."
        ),
        f"gramlogs batches: p50 {fmt_ms(gram['batch_ms']['p50'])} ms,"
        f" p99 {fmt_ms(gram['batch_ms']['p99'])} ms; {gram['stored']:,} stored,"
        f" {gram['duplicates']:,} duplicates, {gram['resent']:,} resent.",
        "",
        "Lines/s per slice:",
        "",
        "| lines | " + " | ".join(label for label, _ in loads) + " |",
        "|---|" + "---|" * len(loads),
    ]
    for i, s in enumerate(gram["slices"]):
        cells = [_rate(load["slices"][i]["lines_per_s"]) for _, load in loads]
        lines.append(f"| {s['from']:,}-{s['to']:,} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"First page of 20 of {d['hot']['slug']}, newest first, at {d['lines']:,} lines"
        f" (ms, {gram['pages']['no filter']['n']} requests each, interleaved):",
        "",
        "| page | rows | HTTP p50 | p95 | ClickHouse p50 (in process) |",
        "|---|---|---|---|---|",
    ]
    for name, page in gram["pages"].items():
        other = house.get("pages", {}).get(name)
        ch = fmt_ms(other["p50"]) if other else "—"
        lines.append(
            f"| {name} | {page['rows']} | {fmt_ms(page['p50'])} | {fmt_ms(page['p95'])} | {ch} |"
        )
    lines += _render_sealing(r)
    lines += targets_table(r["targets"])
    return "\n".join(lines) + "\n"


_GROUP_NOTE = {
    "logs": "all partitions: heap, indexes, TOAST",
    "log_blocks": "keyword summaries of the rows",
    "the rest": "projects, keys, partitions' parents, ...",
}


def _render_sealing(r: dict[str, Any]) -> list[str]:
    d, gram, floor, house = r["data"], r["gramlogs"], r["copy"], r["clickhouse"]
    s, n = gram["sealing"], d["lines"]
    u, c = s["unsealed"], s["catch_up"]
    during, after = s["during_load"], s["during_catch_up"]
    cpu_share = s["seal_share_of_server_cpu"]
    lines = [
        "",
        f"Sealing: unsealed rows (count of logs, every second of the load) at most {u['max']:,}"
        f" ({u['max'] / n:.1%} of the lines), {u['last']:,} at its end; peak of the load's"
        f" first half {u['max_first_half']:,}, of its second {u['max_second_half']:,};"
        f" {u['sealed_at_end']:,} lines in blocks at its end."
        f" {'Caught up' if c['caught_up'] else '**Not caught up**'} {c['seconds']:,.1f} s after"
        f" the load ({c['unsealed']:,} rows left).",
        "Sealed lines / seconds in sealing runs (/metrics, counted as each run ends):"
        f" {during['sealed_lines']:,.0f} / {during['seal_s']:,.1f} s during the load"
        f" ({s['seal_share_of_load_s']:.0%} of its seconds), {after['sealed_lines']:,.0f} /"
        f" {after['seal_s']:,.1f} s in the catch-up"
        f" ({s['seal_share_with_catch_up_s']:.0%} of load and catch-up); seconds in sealing runs"
        f" / the server's CPU seconds over both ({s['server_cpu_s']:,.1f} s): "
        + ("—" if cpu_share is None else f"{cpu_share:.0%}")
        + " (wall time, waits on PostgreSQL included).",
        "",
    ]
    per_line = s["bytes"] / n
    floor_pl, rows = floor["bytes"] / n, []
    if s["groups"] is not None:
        lines += [
            "| bytes on disk | after sealing | per line | after VACUUM | per line |",
            "|---|---|---|---|---|",
        ]
        for name, b in s["groups"].items():
            v = s["groups_vacuumed"][name]
            label = f"{name} ({_GROUP_NOTE[name]})" if name in _GROUP_NOTE else name
            rows.append(
                f"| {'**all**' if name == 'all' else label} | {_kib(b)} | {b / n:,.1f}"
                f" | {_kib(v)} | {v / n:,.1f} |"
            )
        lines += [*rows, ""]
    live = s.get("live")
    if live and live["lines"]:
        ln = live["lines"]
        whole = sum(live[k] for k in ("keys", "texts", "grams", "postings")) / ln
        lines += [
            f"The sealed blocks' own values, without the free space merging leaves in the files"
            f" (reused for later blocks): {live['blocks']:,} blocks of {ln / live['blocks']:,.0f}"
            f" lines on average; per line keys {live['keys'] / ln:,.1f}, texts"
            f" {live['texts'] / ln:,.1f}, trigram codes {live['grams'] / ln:,.1f}, the rest of"
            f" the row {live['postings'] / ln:,.1f}: {whole:,.1f} bytes a line.",
            "",
        ]
    lines.append(
        f"Bytes per line: gramlogs {per_line:,.1f} after sealing,"
        f" {s['bytes_per_line_vacuumed']:,.1f} after a plain VACUUM ({s['vacuum_s']:,.1f} s);"
        f" COPY floor {floor_pl:,.1f} (gramlogs / floor {per_line / floor_pl:.2f} x)"
        + (
            f"; ClickHouse {house['bytes'] / n:,.1f} (gramlogs / ClickHouse"
            f" {s['bytes'] / house['bytes']:.2f} x)."
            if "skipped" not in house
            else "."
        )
    )
    return lines


def _kib(b: float) -> str:
    return f"{b / 1024:,.0f} KiB"
