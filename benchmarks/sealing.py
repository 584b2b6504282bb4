"""Sealed blocks (gramlogs/storage/codec.py): bytes per line and the time to encode and decode,
by block size, granule and zstd level, on the lines of benchmarks/scale_data.py. No database.

Two sets of lines: the busiest function of the busiest project (full blocks), and every function
of every project ("mixed": what sealing a whole store makes, small functions in small blocks).
scale_data's ids end in a counter; a production id ends in 62 random bits, which no codec
compresses, so the "random ids" column gives the keys of the same lines with such ids.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import struct
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg.pgproto.pgproto as pgproto
import msgspec
import zstandard

from benchmarks import runner
from benchmarks import scale_data as sd
from benchmarks.results import machine, print_machine, publish, table
from gramlogs.storage import codec

Row = tuple[Any, ...]
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
BLOCKS = (1024, 2048, 4096, 8192)
GRANULES = (256, 512, 1024, 0)  # 0: the whole block in one frame
LEVELS = (1, 3, 6, 9)
POSITIONS = 21  # a page's rows, all in one granule


def _rows(data: sd.Data) -> list[Row]:
    """Every line as asyncpg reads it (pages.COLUMNS order, asyncpg's uuid type, jsonb as the
    text PostgreSQL prints), parsed from the binary COPY payloads."""
    out: list[Row] = []
    as_json = msgspec.json.Decoder()
    for _, payload in data.rows():
        at = 19  # signature, flags, header extension
        while True:
            (fields,) = struct.unpack_from("!h", payload, at)
            at += 2
            if fields == -1:
                break
            values: list[bytes | None] = []
            for _ in range(fields):
                (size,) = struct.unpack_from("!i", payload, at)
                at += 4
                values.append(None if size == -1 else payload[at : at + size])
                at += max(size, 0)
            project, id_, ts, inst, level, source, raw, msg, attrs, dep, fn, ex = values
            assert project and id_ and ts and attrs and dep and fn and raw is not None
            (micros,) = struct.unpack("!q", ts)
            out.append((
                pgproto.UUID(id_), _PG_EPOCH + timedelta(microseconds=micros),
                (inst or b"").decode(), (level or b"").decode(), (source or b"").decode(),
                raw.decode(), None if msg is None else msg.decode(),
                _jsonb_text(as_json.decode(attrs[1:])),
                pgproto.UUID(project), pgproto.UUID(dep), pgproto.UUID(fn),
                None if ex is None else ex.decode(),
            ))  # fmt: skip
    return out


def _jsonb_text(value: dict[str, Any]) -> str:
    # PostgreSQL prints jsonb as '{"key": value, ...}' (a space after each colon and comma).
    return (
        "{" + ", ".join(f'"{k}": {msgspec.json.encode(v).decode()}' for k, v in value.items()) + "}"
    )


def _random_ids(rows: list[Row], seed: int) -> list[Row]:
    """The same lines with production ids: the same first 64 bits, 62 random bits after."""
    rng = random.Random(seed)
    out = []
    for r in rows:
        value = (r[0].int >> 64 << 64) | (0b10 << 62) | rng.getrandbits(62)
        out.append((pgproto.UUID(value.to_bytes(16, "big")), *r[1:]))
    return out


def _groups(rows: list[Row]) -> dict[tuple[Any, Any], list[Row]]:
    groups: dict[tuple[Any, Any], list[Row]] = {}
    for r in rows:
        groups.setdefault((r[8], r[10]), []).append(r)
    for g in groups.values():
        g.sort(key=lambda r: r[0].bytes)
    return groups


def _blocks(groups: Sequence[list[Row]], size: int) -> list[list[Row]]:
    return [g[i : i + size] for g in groups for i in range(0, len(g), size)]


def _timed_s(run: Callable[[], object], repeats: int) -> tuple[float, float]:
    """The median and the least of ``repeats`` runs after a warm-up, each after a collection.
    On a shared machine the least is the better estimate of the code's own cost; both are kept."""
    run()
    times = []
    for _ in range(repeats):
        gc.collect()
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times)


def _measure(
    blocks: list[list[Row]], granule: int, level: int, repeats: int, random_ids: list[list[Row]]
) -> dict[str, Any]:
    lines = sum(map(len, blocks))
    biggest = max(len(b) for b in blocks)
    granule = granule or biggest
    sealed = [codec.encode(b, granule=granule, level=level) for b in blocks]
    keys = sum(len(s.keys) for s in sealed)
    texts = sum(sum(map(len, s.texts)) for s in sealed)
    grams = sum(4 * len(s.grams) for s in sealed)
    random_keys = sum(len(codec.encode(b, granule=granule, level=level).keys) for b in random_ids)
    encode_s = _timed_s(
        lambda: [codec.encode(b, granule=granule, level=level) for b in blocks], repeats
    )
    full = next(s for s in sealed if s.lines == biggest)
    decode_s = _timed_s(lambda: codec.decode_keys(full.keys, full.function_id), repeats * 5)
    keys_of = codec.decode_keys(full.keys, full.function_id)
    g = (full.lines // granule) // 2  # a granule in the middle
    start = g * granule + max(0, min(granule, full.lines - g * granule) - POSITIONS) // 2
    positions = range(start, min(start + POSITIONS, full.lines))
    rows_s = _timed_s(
        lambda: codec.decode_rows(
            full.project_id, full.function_id, keys_of, full.texts, positions
        ),
        repeats * 5,
    )
    return {
        "blocks": len(blocks),
        "lines": lines,
        "bytes_per_line": {
            "keys": round(keys / lines, 2),
            "texts": round(texts / lines, 2),
            "grams": round(grams / lines, 2),
            "total": round((keys + texts + grams) / lines, 2),
            "keys_random_ids": round(random_keys / lines, 2),
            "total_random_ids": round((random_keys + texts + grams) / lines, 2),
        },
        "encode_us_per_line": [round(x / lines * 1e6, 2) for x in encode_s],
        "decode_keys_ms": [round(x * 1e3, 3) for x in decode_s],
        "decode_keys_lines": full.lines,
        "decode_granule_ms": [round(x * 1e3, 3) for x in rows_s],
    }


def _grams_us(blocks: list[list[Row]], repeats: int) -> list[float]:
    """The part of encode that is trigrams.block_codes, for reading encode's figure."""
    from gramlogs.storage import trigrams

    lines = sum(map(len, blocks))

    def run() -> None:
        for b in blocks:
            trigrams.block_codes([trigrams.text_of(r[6], r[5]) for r in b])

    return [round(x / lines * 1e6, 2) for x in _timed_s(run, repeats)]


def _dictionary(
    train: list[list[Row]], test: list[list[Row]], granule: int, level: int
) -> dict[str, float]:
    """Texts bytes per line with a zstd dictionary trained on other lines' granules."""
    samples: list[bytes | bytearray | memoryview[int]] = [
        codec._texts_frame([r[5] for r in b[i : i + granule]], [r[6] for r in b[i : i + granule]],
                           [r[7] for r in b[i : i + granule]])
        for b in train for i in range(0, len(b), granule)
    ]  # fmt: skip
    out = {}
    for size in (16_384, 65_536):
        trained = zstandard.train_dictionary(size, samples, level=level)
        compressor = zstandard.ZstdCompressor(level=level, dict_data=trained)
        total = 0
        for b in test:
            for i in range(0, len(b), granule):
                part = b[i : i + granule]
                total += len(compressor.compress(codec._texts_frame(
                    [r[5] for r in part], [r[6] for r in part], [r[7] for r in part])))  # fmt: skip
        out[f"texts_dict_{size // 1024}k"] = round(total / sum(map(len, test)), 2)
    return out


async def main(args: argparse.Namespace) -> None:
    data = sd.load(sd.Spec(args.lines, args.projects, args.batch, args.seed))
    print(f"parsing {args.lines:,} lines ...", file=sys.stderr)
    rows = _rows(data)
    groups = _groups(rows)
    random_groups = _groups(_random_ids(rows, args.seed))
    gc.freeze()  # the lines stay: a collection before each timed run then costs nothing
    hot_project = uuid.UUID(data.hot.id)
    hot = max((g for (p, _), g in groups.items() if p == hot_project), key=len)
    hot_key = (hot[0][8], hot[0][10])
    sets = {"hot function": ([hot], [random_groups[hot_key]]),
            "mixed": (list(groups.values()), list(random_groups.values()))}  # fmt: skip
    configs: list[tuple[str, int, int, int]] = []
    configs += [("block", b, codec.GRANULE_ROWS, codec.LEVEL) for b in BLOCKS]
    configs += [("granule", 4096, g, codec.LEVEL) for g in GRANULES]
    configs += [("level", 4096, codec.GRANULE_ROWS, lv) for lv in LEVELS]
    measured: list[dict[str, Any]] = []
    for name, (chosen, random_chosen) in sets.items():
        for vary, size, granule, level in configs:
            print(f"  {name}: {vary} block={size} granule={granule} level={level}", file=sys.stderr)
            m = _measure(
                _blocks(chosen, size), granule, level, args.repeats, _blocks(random_chosen, size)
            )
            measured.append({"set": name, "vary": vary, "block": size, "granule": granule,
                             "level": level} | m)  # fmt: skip
    grams_us = {n: _grams_us(_blocks(c, 4096), args.repeats) for n, (c, _) in sets.items()}
    train, test = [g for g in groups.values() if g is not hot], [hot]
    dictionary = _dictionary(
        _blocks(train, 4096), _blocks(test, 4096), codec.GRANULE_ROWS, codec.LEVEL
    )
    info = machine("none", "zstandard", "numpy") | {
        "load_avg_at_end": [round(x, 2) for x in os.getloadavg()]
    }
    print_machine(info)
    rows_out = [
        (m["set"], m["vary"], m["block"], m["granule"] or "whole", m["level"], m["blocks"],
         m["bytes_per_line"]["keys"], m["bytes_per_line"]["keys_random_ids"],
         m["bytes_per_line"]["texts"], m["bytes_per_line"]["grams"],
         m["bytes_per_line"]["total_random_ids"], "{} ({})".format(*m["encode_us_per_line"]),
         "{} ({}) [{}]".format(*m["decode_keys_ms"], m["decode_keys_lines"]),
         "{} ({})".format(*m["decode_granule_ms"]))
        for m in measured
    ]  # fmt: skip
    report = (
        f"## {info['date']}\n\n`{args.command}`: {args.lines:,} lines of {args.projects} projects"
        f" (scale_data seed {args.seed}); hot function {len(hot):,} lines; median of"
        f" {args.repeats} runs.\n\n"
        + table(
            [
                "set",
                "varies",
                "block",
                "granule",
                "zstd",
                "blocks",
                "keys B/line",
                "keys, random ids",
                "texts B/line",
                "grams B/line",
                "total, random ids",
                "encode µs/line p50 (min)",
                "decode_keys ms p50 (min) [lines]",
                f"decode {POSITIONS} rows ms p50 (min)",
            ],
            rows_out,
        )
        + f"\ntrigrams.block_codes alone (inside encode), µs/line p50, min at 4096: {grams_us}\n"
        + f"\ntexts B/line of the hot function with a zstd dictionary trained on the other"
        f" functions' granules (granule {codec.GRANULE_ROWS}, level {codec.LEVEL}): {dictionary}\n"
    )
    result = {
        "benchmark": "sealing",
        "lines": args.lines,
        "projects": args.projects,
        "hot_lines": len(hot),
        "machine": info,
        "configs": measured,
        "grams_us_per_line": grams_us,
        "dictionary": dictionary,
    }
    publish("sealing", result, report, write_to=args.write_to)


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lines", type=int, default=200_000)
    p.add_argument("--projects", type=int, default=10)
    p.add_argument("--batch", type=int, default=5000, help="lines per scale_data batch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=9, help="timed runs of each measurement")


def _smoke(args: argparse.Namespace) -> None:
    args.lines, args.projects, args.batch, args.repeats = 20_000, 3, 1000, 1


if __name__ == "__main__":
    runner.run(
        "sealing",
        __doc__,
        main,
        options=_options,
        smoke=_smoke,
        smoke_help="20k lines, one run each",
        results=runner.results_file("sealing"),
    )
