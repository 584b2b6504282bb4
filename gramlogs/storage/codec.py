"""Sealed blocks: up to 65,536 lines of one (project, function), in id order, as a few zstd frames.

A block is one ``log_sealed`` row (:class:`Sealed`): postings a query can test without
decompressing anything (counts by level and source, the distinct instances, deployments and
executions, the trigram codes of trigrams.py), one frame of every key column (``keys``), and
the text columns (raw_log, message, attributes) cut into frames of :data:`GRANULE_ROWS` lines
(``texts``), so that reading a page decompresses only the granules that hold its lines.

The keys frame, msgpack of :class:`_KeysFrame`, decodes alone (it holds its distinct values):

- ids: their first 64 bits are milliseconds, the version and microseconds (ids.py), so they are
  stored as the deltas of the milliseconds and the raw 16 bits below; the last 64 bits as
  deltas modulo 2^64 (random in production: 8 bytes a line that nothing compresses).
- timestamp: its microseconds minus those its id encodes, almost always 0; exact whatever the
  id (tests seed arbitrary ones).
- level, source: codes into LEVELS, SOURCES; instance, deployment, execution: indexes into the
  block's sorted distinct values (execution 0 is NULL).

Every integer array is stored at the narrowest width (1, 2, 4 or 8 bytes) holding its largest
value, its bytes transposed (all first bytes, then all second bytes...): zstd then sees runs of
zeros and near-constant bytes instead of interleaved noise.

A texts frame, msgpack of (lengths, blob): the UTF-8 lengths of every raw_log, then every
message (length + 1; 0 is NULL), then every attributes, and the three columns' text one after
the other: like with like, which compresses better than line by line.

Defaults, from ``python -m benchmarks.sealing`` (benchmarks/sealing.md, 2026-12-07: 200k lines
of scale_data, its busiest function in blocks of 4096, ids given 62 random bits as production's
have): keys 13.1 B/line (8 of them the ids' random bits), texts 11.9, grams 5.9 (4 B a code),
30.9 B/line in all; encode 3.5-3.9 µs/line (trigrams.block_codes ~0.8 of it), decode_keys
0.19-0.21 ms, 21 rows of one granule 0.15 ms, on a shared 2-core machine. Blocks of 8192 would
save 2.4 B/line of grams but double decode_keys (0.40 ms); a zstd dictionary trained on other
functions saves 0.8 B/line of texts (7%), not worth a dictionary to store and version.

zstd objects are not thread-safe and encode may run in a worker thread: each thread makes its
own compressor and decompressor once (:data:`_local`); a fresh ZstdCompressor costs ~20 µs,
more than compressing a granule's keys.
"""

from __future__ import annotations

import array
import bisect
import operator
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import repeat
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import zstandard
from asyncpg.pgproto import pgproto

from gramlogs.storage import trigrams
from gramlogs.storage.rows import COLUMNS, StoredRow

__all__ = [
    "GRANULE_ROWS",
    "LEVEL",
    "LEVELS",
    "MAX_LINES",
    "SOURCES",
    "Granule",
    "Keys",
    "Sealed",
    "SealedRow",
    "decode_granule",
    "decode_keys",
    "decode_rows",
    "encode",
    "encode_batch",
    "find",
    "id_words",
    "merge",
    "rows_at",
]

# A line's level and source are stored as their place in these: never reorder them (the blocks
# on disk keep the codes), only append.
LEVELS = ("debug", "info", "warn", "error")
SOURCES = ("server", "function", "stdout", "stderr")
# Lines per texts frame. A page decompresses the granules it shows: 21 rows of one granule take
# 0.12 ms at 256, 0.15 at 512, 0.19 at 1024, 0.54 for a whole 4096 block; texts cost 13.0, 11.9,
# 11.3, 11.1 B/line. 512 keeps a page read well under 0.3 ms for 1 B/line over the whole block.
GRANULE_ROWS = 512
# zstd level of every frame. Level 1/3/6/9: 31.3/30.9/29.6/29.1 B/line in all, encode
# 3.7/3.8/4.8/4.6 µs/line p50 (compressing a 4096 block's texts alone: 0.13/0.20/0.50/0.75
# µs/line). 6 and 9 save ~1.5 B/line (5%) for ~1 µs/line, a third of the encode budget.
LEVEL = 3
MAX_LINES = 65_536

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# asyncpg's own UUID (a uuid.UUID, made in C from 16 bytes at a tenth of the cost): what a
# row read from ``logs`` holds too.
_UUID: Callable[[bytes], uuid.UUID] = pgproto.UUID
_ONE_US = timedelta(microseconds=1)
_LEVEL_CODE = {name: i for i, name in enumerate(LEVELS)}
_SOURCE_CODE = {name: i for i, name in enumerate(SOURCES)}
_INDEX = {name: i for i, name in enumerate(COLUMNS)}
_U64 = np.uint64
_ZERO = _U64(0)
_MASK_64 = (1 << 64) - 1

# A row as writer.NewRow holds it (storage/writer.py imports this module, so not that type).
NewRowLike = Sequence[Any]
U64Array = npt.NDArray[np.uint64]
I64Array = npt.NDArray[np.int64]


class SealedRow(tuple):  # type: ignore[type-arg]
    """One line in pages.COLUMNS order, a plain tuple that also answers ``row["name"]`` and
    ``row.get(name)`` as an asyncpg Record does."""

    __slots__ = ()

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, _INDEX[key])
        return tuple.__getitem__(self, key)

    def get(self, name: str, default: Any = None) -> Any:
        index = _INDEX.get(name)
        return default if index is None else tuple.__getitem__(self, index)

    def keys(self) -> tuple[str, ...]:
        return COLUMNS


@dataclass(frozen=True, slots=True)
class Sealed:
    """An encoded block: one log_sealed row."""

    project_id: uuid.UUID
    function_id: uuid.UUID
    lo: uuid.UUID  # lowest id
    hi: uuid.UUID  # highest id
    lines: int
    levels: list[int]  # lines per level, LEVELS order
    sources: list[int]  # lines per source, SOURCES order
    instances: list[str]  # distinct values, sorted
    deployments: list[uuid.UUID]  # distinct, sorted
    executions: list[str]  # distinct non-null values, sorted
    grams: list[int]  # trigrams.block_codes of the lines' texts
    keys: bytes  # one zstd frame of every key column
    texts: list[bytes]  # a zstd frame per GRANULE_ROWS lines: raw_log, message, attributes


class _KeysFrame(msgspec.Struct, array_like=True):
    lines: int
    granule: int
    first_ms: int  # the first id's milliseconds
    ms: bytes  # ids' milliseconds, deltas (the first 0)
    sub: bytes  # ids' bits 48-63: version and microseconds
    low: bytes  # ids' last 64 bits, first value then deltas modulo 2^64
    shift: bytes  # timestamp µs - the µs the id encodes, zigzag
    level: bytes
    source: bytes
    instance: bytes
    deployment: bytes
    execution: bytes  # 0: NULL, else 1 + index into executions
    instances: list[str]
    deployments: bytes  # 16 bytes each
    executions: list[str]


_keys_encoder = msgspec.msgpack.Encoder()
_keys_decoder = msgspec.msgpack.Decoder(_KeysFrame)
_texts_decoder = msgspec.msgpack.Decoder(tuple[bytes, bytes])


class _Zstd(threading.local):
    def __init__(self) -> None:
        self.compressors: dict[int, zstandard.ZstdCompressor] = {}
        self.decompressor = zstandard.ZstdDecompressor()

    def compressor(self, level: int) -> zstandard.ZstdCompressor:
        found = self.compressors.get(level)
        if found is None:
            found = self.compressors[level] = zstandard.ZstdCompressor(level=level)
        return found


_local = _Zstd()


# ---- integer arrays ---------------------------------------------------------------------------


def _pack(values: npt.NDArray[Any]) -> bytes:
    """``values`` (unsigned) at the narrowest width, bytes transposed; the width first."""
    top = int(values.max()) if len(values) else 0
    width = 1 if top < 1 << 8 else 2 if top < 1 << 16 else 4 if top < 1 << 32 else 8
    planes = values.astype(f"<u{width}").view(np.uint8).reshape(-1, width).T
    return bytes((width,)) + planes.tobytes()


def _unpack(data: bytes, n: int) -> U64Array:
    width = data[0]
    if width == 1:  # codes and indexes mostly: nothing to transpose
        return np.frombuffer(data, np.uint8, offset=1).astype(np.uint64)
    planes = np.frombuffer(data, np.uint8, offset=1).reshape(width, n)
    values = np.ascontiguousarray(planes.T).view(f"<u{width}").reshape(n)
    return values.astype(np.uint64)


def _deltas(values: U64Array, first: np.uint64 = _ZERO) -> U64Array:
    out = values.copy()
    out[0] -= first
    out[1:] -= values[:-1]  # wraps modulo 2^64, which cumsum undoes
    return out


def _zigzag(values: I64Array) -> U64Array:
    return ((values << 1) ^ (values >> 63)).view(np.uint64)


def _unzigzag(values: U64Array) -> I64Array:
    out: I64Array = (values >> _U64(1)).view(np.int64) ^ -((values & _U64(1)).view(np.int64))
    return out


# ---- encoding ---------------------------------------------------------------------------------


def encode(rows: Sequence[StoredRow], *, granule: int = GRANULE_ROWS, level: int = LEVEL) -> Sealed:
    """The block of ``rows``: in pages.COLUMNS order, of one project and one function, ids
    distinct and ascending, 1 to MAX_LINES of them. ValueError otherwise."""
    n = len(rows)
    if not 1 <= n <= MAX_LINES:
        raise ValueError(f"a block holds 1 to {MAX_LINES} lines, not {n}")
    cols = list(zip(*rows, strict=True))
    ids, projects, functions = cols[0], cols[8], cols[10]
    project, function = projects[0], functions[0]
    # list.count compares in C, and asyncpg's uuids compare in C too.
    if projects.count(project) != n or functions.count(function) != n:
        raise ValueError("a block holds the lines of one project and one function")
    return _encode(
        b"".join([i.bytes for i in ids]),
        cols,
        uuid.UUID(bytes=project.bytes),
        uuid.UUID(bytes=function.bytes),
        lambda d: uuid.UUID(bytes=d.bytes),
        granule,
        level,
    )


def encode_batch(rows: Sequence[NewRowLike], *, max_lines: int = 4096) -> list[Sealed]:
    """The blocks of a batch as writer.NewRow holds it (ids as 32 hex digits, uuids as text),
    sorted by function then id: a block per ``max_lines`` lines of each function."""
    out: list[Sealed] = []
    start = 0
    n = len(rows)
    while start < n:
        function = rows[start][10]
        end = start + 1
        while end < n and end - start < max_lines and rows[end][10] == function:
            end += 1
        part = rows[start:end]
        cols = list(zip(*part, strict=True))
        out.append(
            _encode(
                bytes.fromhex("".join(cols[0])),
                cols,
                uuid.UUID(part[0][8]),
                uuid.UUID(function),
                uuid.UUID,
                GRANULE_ROWS,
                LEVEL,
            )
        )
        start = end
    return out


def _encode(
    id_bytes: bytes,
    cols: list[tuple[Any, ...]],
    project: uuid.UUID,
    function: uuid.UUID,
    as_uuid: Any,
    granule: int,
    level: int,
) -> Sealed:
    """A block of the columns ``cols`` (pages.COLUMNS order; ids given as their 16-byte forms
    one after the other); ``as_uuid`` turns a deployment value into a uuid.UUID."""
    (_, stamps, instances, levels, sources, raws, messages, attributes) = cols[:8]
    deployments, executions = cols[9], cols[11]
    n = len(stamps)
    words = np.frombuffer(id_bytes, dtype=">u8").reshape(n, 2)
    high = words[:, 0].astype(np.uint64)
    low = words[:, 1].astype(np.uint64)
    if n > 1 and not np.all(
        (high[1:] > high[:-1]) | ((high[1:] == high[:-1]) & (low[1:] > low[:-1]))
    ):
        raise ValueError("a block's ids must be distinct and ascending")
    try:
        level_codes = np.fromiter(map(_LEVEL_CODE.__getitem__, levels), np.uint8, n)
        source_codes = np.fromiter(map(_SOURCE_CODE.__getitem__, sources), np.uint8, n)
    except KeyError as exc:
        raise ValueError(f"unknown level or source {exc.args[0]!r}") from None
    # Exact µs (a float timestamp() is not, past 2255); map() spares a comprehension's frame.
    since = map(operator.sub, stamps, repeat(_EPOCH))
    micros = np.fromiter(map(operator.floordiv, since, repeat(_ONE_US)), np.int64, n)
    deployment_values, deployment_codes = _distinct(deployments)
    columns = _Columns(
        high=high,
        low=low,
        micros=micros,
        level=level_codes,
        source=source_codes,
        instances=instances,
        deployments=(
            [as_uuid(d) for d in deployment_values],
            deployment_codes,
        ),
        executions=executions,
        raws=raws,
        messages=messages,
        attributes=attributes,
        grams=trigrams.block_codes(list(map(trigrams.text_of, messages, raws))),
    )
    return _encode_columns(columns, project, function, granule, level)


@dataclass(slots=True)
class _Columns:
    """A block's lines as columns, in id order: what :func:`_encode_columns` writes."""

    high: U64Array
    low: U64Array
    micros: I64Array
    level: npt.NDArray[Any]
    source: npt.NDArray[Any]
    instances: Sequence[str]
    deployments: tuple[list[uuid.UUID], npt.NDArray[np.uint32]]  # distinct values, codes
    executions: Sequence[str | None]
    raws: Sequence[str]
    messages: Sequence[str | None]
    attributes: Sequence[str]
    grams: list[int]


def _encode_columns(
    c: _Columns, project: uuid.UUID, function: uuid.UUID, granule: int, level: int
) -> Sealed:
    n = len(c.high)
    high, low = c.high, c.low
    instance_values, instance_codes = _distinct(c.instances)
    execution_values, execution_codes = _distinct_nullable(c.executions)
    deployment_ids, deployment_codes = c.deployments
    frame = _KeysFrame(
        lines=n,
        granule=granule,
        first_ms=int(high[0] >> _U64(16)),
        ms=_pack(_deltas(high >> _U64(16), first=high[0] >> _U64(16))),
        sub=_pack(high & _U64(0xFFFF)),
        low=_pack(_deltas(low)),
        shift=_pack(_zigzag(c.micros - _id_micros(high))),
        level=_pack(c.level),
        source=_pack(c.source),
        instance=_pack(instance_codes),
        deployment=_pack(deployment_codes),
        execution=_pack(execution_codes),
        instances=instance_values,
        deployments=b"".join(d.bytes for d in deployment_ids),
        executions=execution_values,
    )
    compressor = _local.compressor(level)
    raws, messages, attributes = c.raws, c.messages, c.attributes
    texts = [
        compressor.compress(
            _texts_frame(
                raws[g : g + granule], messages[g : g + granule], attributes[g : g + granule]
            )
        )
        for g in range(0, n, granule)
    ]
    first = (int(high[0]) << 64) | int(low[0])
    last = (int(high[-1]) << 64) | int(low[-1])
    return Sealed(
        project_id=project,
        function_id=function,
        lo=uuid.UUID(int=first),
        hi=uuid.UUID(int=last),
        lines=n,
        levels=np.bincount(c.level, minlength=len(LEVELS)).tolist(),
        sources=np.bincount(c.source, minlength=len(SOURCES)).tolist(),
        instances=instance_values,
        deployments=deployment_ids,
        executions=execution_values,
        grams=c.grams,
        keys=compressor.compress(_keys_encoder.encode(frame)),
        texts=texts,
    )


def merge(
    project_id: uuid.UUID,
    function_id: uuid.UUID,
    blocks: Sequence[tuple[bytes, Sequence[bytes], Sequence[int]]],
) -> Sealed:
    """One block of the lines of ``blocks`` (each its keys, texts and grams; of one project
    and one function, no line in two), column by column: no line is made into a row on the
    way, and the trigram codes are the union of the blocks' (a trigram never spans lines)."""
    parts = [decode_keys(keys, function_id) for keys, _, _ in blocks]
    high = np.concatenate([k.high for k in parts])
    low = np.concatenate([k.low for k in parts])
    order = np.lexsort((low, high))
    raws: list[str] = []
    messages: list[str | None] = []
    attributes: list[str] = []
    instances: list[str] = []
    deployments: list[uuid.UUID] = []
    executions: list[str | None] = []
    for k, (_, texts, _) in zip(parts, blocks, strict=True):
        for g, frame in enumerate(texts):
            start = g * k.granule
            r, m, a = Granule(frame, min(k.granule, k.lines - start), start).columns()
            raws += r
            messages += m
            attributes += a
        instances += map(k.instances.__getitem__, k.instance.tolist())
        deployments += map(k.deployments.__getitem__, k.deployment.tolist())
        nullable = [None, *k.executions]
        executions += map(nullable.__getitem__, k.execution.tolist())
    at = order.tolist()
    deployment_values, deployment_codes = _distinct([deployments[i] for i in at])
    grams = np.unique(np.concatenate([np.asarray(g, dtype=np.int64) for _, _, g in blocks]))
    columns = _Columns(
        high=high[order],
        low=low[order],
        micros=np.concatenate([k.micros for k in parts])[order],
        level=np.concatenate([k.level for k in parts])[order].astype(np.uint8),
        source=np.concatenate([k.source for k in parts])[order].astype(np.uint8),
        instances=[instances[i] for i in at],
        deployments=(deployment_values, deployment_codes),
        executions=[executions[i] for i in at],
        raws=[raws[i] for i in at],
        messages=[messages[i] for i in at],
        attributes=[attributes[i] for i in at],
        grams=grams.tolist(),
    )
    return _encode_columns(columns, project_id, function_id, GRANULE_ROWS, LEVEL)


def _id_micros(high: U64Array) -> I64Array:
    """The µs since 1970 that ids' first 64 bits encode (ids.timestamp_of, vectorised)."""
    ms = (high >> _U64(16)).astype(np.int64)
    sub = np.minimum(high & _U64(0xFFF), _U64(999)).astype(np.int64)
    out: I64Array = ms * 1000 + sub
    return out


def _distinct(values: Sequence[Any]) -> tuple[list[Any], npt.NDArray[np.uint32]]:
    ordered = sorted(set(values))
    index = {v: i for i, v in enumerate(ordered)}
    return ordered, np.fromiter(map(index.__getitem__, values), np.uint32, len(values))


def _distinct_nullable(values: Sequence[Any]) -> tuple[list[Any], npt.NDArray[np.uint32]]:
    distinct = set(values)
    distinct.discard(None)
    ordered = sorted(distinct)
    index: dict[Any, int] = {v: i + 1 for i, v in enumerate(ordered)}
    index[None] = 0
    return ordered, np.fromiter(map(index.__getitem__, values), np.uint32, len(values))


def _utf8_lengths(values: Sequence[str], joined: str) -> list[int]:
    # Byte lengths: for ASCII text (most log lines) those of the strings, without encoding each.
    if joined.isascii():
        return list(map(len, values))
    return [len(v.encode()) for v in values]


def _texts_frame(
    raws: Sequence[str], messages: Sequence[str | None], attributes: Sequence[str]
) -> bytes:
    n = len(raws)
    present = [m for m in messages if m is not None]
    raw_text, message_text, attribute_text = "".join(raws), "".join(present), "".join(attributes)
    lengths = np.zeros(3 * n, dtype=np.uint64)
    lengths[:n] = _utf8_lengths(raws, raw_text)
    if len(present) == n:
        lengths[n : 2 * n] = _utf8_lengths(present, message_text)
        lengths[n : 2 * n] += _U64(1)
    elif present:
        null = np.fromiter(map(operator.is_, messages, repeat(None)), np.bool_, n)
        lengths[n : 2 * n][~null] = np.array(_utf8_lengths(present, message_text)) + 1
    lengths[2 * n :] = _utf8_lengths(attributes, attribute_text)
    blob = (raw_text + message_text + attribute_text).encode()
    return _keys_encoder.encode((_pack(lengths), blob))


# ---- decoding ---------------------------------------------------------------------------------


class Keys:
    """A decoded keys frame: the key columns of a block's lines, position by position."""

    __slots__ = (
        "deployment",
        "deployments",
        "execution",
        "executions",
        "first",
        "function_id",
        "granule",
        "high",
        "instance",
        "instances",
        "last",
        "level",
        "lines",
        "low",
        "micros",
        "source",
    )

    def __init__(self, frame: _KeysFrame, function_id: uuid.UUID) -> None:
        n = self.lines = frame.lines
        self.granule = frame.granule
        self.function_id = function_id
        ms = np.cumsum(_unpack(frame.ms, n), dtype=np.uint64) + _U64(frame.first_ms)
        self.high: U64Array = (ms << _U64(16)) | _unpack(frame.sub, n)
        self.low: U64Array = np.cumsum(_unpack(frame.low, n), dtype=np.uint64)
        # The first and last ids as ints.
        self.first = (int(self.high[0]) << 64) | int(self.low[0])
        self.last = (int(self.high[-1]) << 64) | int(self.low[-1])
        self.micros: I64Array = _id_micros(self.high) + _unzigzag(_unpack(frame.shift, n))
        # Narrow types: decoded keys are kept for a while (sealed.py's cache), ~38 bytes a line.
        self.level = _unpack(frame.level, n).astype(np.uint8)
        self.source = _unpack(frame.source, n).astype(np.uint8)
        self.instance = _unpack(frame.instance, n).astype(np.uint32)
        self.deployment = _unpack(frame.deployment, n).astype(np.uint32)
        self.execution = _unpack(frame.execution, n).astype(np.uint32)
        self.instances = frame.instances
        raw = frame.deployments
        self.deployments = [uuid.UUID(bytes=raw[i : i + 16]) for i in range(0, len(raw), 16)]
        self.executions = frame.executions

    @property
    def ids(self) -> tuple[U64Array, U64Array]:
        """The ids, ascending, as their first and last 64 bits."""
        return self.high, self.low

    def id(self, i: int) -> uuid.UUID:
        return uuid.UUID(int=(int(self.high[i]) << 64) | int(self.low[i]))

    def timestamp(self, i: int) -> datetime:
        return _EPOCH + timedelta(microseconds=int(self.micros[i]))

    def _first_at_least(self, value: int) -> int:
        """The first position whose id (as int) is ``value`` or more."""
        if value <= 0:
            return 0
        if value >> 128:
            return self.lines
        high = _U64(value >> 64)
        at = int(self.high.searchsorted(high, side="left"))
        if at == self.lines or self.high[at] != high:
            return at  # no id shares the first 64 bits: one search
        # Ids that share their first 64 bits (one millisecond and the same random bits: a
        # batch of identical lines has thousands) are ordered by their last 64.
        end = int(self.high.searchsorted(high, side="right"))
        return at + int(self.low[at:end].searchsorted(_U64(value & _MASK_64), side="left"))

    def span(self, lo: int, hi: int) -> range:
        """The positions whose id (as int) is in [lo, hi]."""
        if hi < lo:
            return range(0)
        if lo <= self.first and hi >= self.last:
            return range(self.lines)  # the whole block, as a first page has most of them
        return range(self._first_at_least(lo), self._first_at_least(hi + 1))

    def has_id(self, value: int) -> bool:
        return len(self.span(value, value)) > 0

    def has_ids(self, high: U64Array, low: U64Array) -> npt.NDArray[np.bool_]:
        """Which of the ids given by their first and last 64 bits the block holds: a 64-bit
        mix of both compared at once, the few that agree checked exactly."""
        maybe = np.isin(_mix(high, low), _mix(self.high, self.low))
        for i in np.flatnonzero(maybe).tolist():
            maybe[i] = self.has_id((int(high[i]) << 64) | int(low[i]))
        return maybe

    def matching(
        self, positions: range, equals: Mapping[str, object], sources: Sequence[str]
    ) -> list[int]:
        """The positions (ascending) of ``positions`` whose line has every value of ``equals``
        (NULL equals nothing, as in SQL) and, unless ``sources`` is empty, one of ``sources``."""
        found: list[int] = self.matching_array(positions, equals, sources).tolist()
        return found

    def matching_array(
        self, positions: range, equals: Mapping[str, object], sources: Sequence[str]
    ) -> npt.NDArray[np.intp]:
        """:meth:`matching` as an array (a page takes a few of thousands)."""
        start, stop = positions.start, positions.stop
        none = np.empty(0, dtype=np.intp)
        if positions.step != 1 or stop <= start:
            kept = [p for p in positions if p in self.matching(range(p, p + 1), equals, sources)]
            return np.asarray(kept, dtype=np.intp)
        if not equals and not sources:
            return np.arange(start, stop, dtype=np.intp)
        mask = np.ones(stop - start, dtype=np.bool_)
        for name, value in equals.items():
            if value is None:
                return none
            if name == "function_id":
                if _as_uuid(value) != self.function_id:
                    return none
                continue
            column, code = self._code(name, value)
            if code is None:
                return none
            mask &= column[start:stop] == code
        if sources:
            codes = [_SOURCE_CODE[s] for s in sources if s in _SOURCE_CODE]
            mask &= np.isin(self.source[start:stop], codes)
        return np.flatnonzero(mask) + start

    def id_ints(self, positions: npt.NDArray[np.intp]) -> list[int]:
        """The ids at ``positions`` as ints (no UUID made: what a walk compares and sorts)."""
        return [
            (high << 64) | low
            for high, low in zip(
                self.high[positions].tolist(), self.low[positions].tolist(), strict=True
            )
        ]

    def _code(self, name: str, value: object) -> tuple[npt.NDArray[Any], int | None]:
        if name == "level":
            return self.level, _LEVEL_CODE.get(str(value))
        if name == "source":
            return self.source, _SOURCE_CODE.get(str(value))
        if name == "instance":
            return self.instance, _find(self.instances, value)
        if name == "deployment_id":
            return self.deployment, _find(self.deployments, _as_uuid(value))
        if name == "execution_id":
            found = _find(self.executions, value)
            return self.execution, None if found is None else found + 1
        raise ValueError(f"{name!r} is not an equality filter")


def _mix(high: U64Array, low: U64Array) -> U64Array:
    # Odd multiplier (Fibonacci hashing's): distinct (high, low) pairs rarely meet.
    mixed: U64Array = high ^ (low * _U64(0x9E3779B97F4A7C15))
    return mixed


def id_words(ids: Sequence[object]) -> tuple[U64Array, U64Array]:
    """Ids (32 hex digits, uuid text or UUIDs) as their first and last 64 bits."""
    if ids and isinstance(ids[0], uuid.UUID):
        raw = b"".join(i.bytes for i in ids)  # type: ignore[attr-defined]
    else:
        raw = bytes.fromhex("".join(ids).replace("-", ""))  # type: ignore[arg-type]
    words = np.frombuffer(raw, dtype=">u8").reshape(len(ids), 2).astype(np.uint64)
    return words[:, 0].copy(), words[:, 1].copy()


def _as_uuid(value: object) -> uuid.UUID:
    return uuid.UUID(value) if isinstance(value, str) else uuid.UUID(int=value.int)  # type: ignore[attr-defined]


def _find(ordered: Sequence[Any], value: object) -> int | None:
    i = bisect.bisect_left(ordered, value)
    return i if i < len(ordered) and ordered[i] == value else None


def decode_keys(keys: bytes, function_id: uuid.UUID) -> Keys:
    """The key columns of a block whose keys frame is ``keys``."""
    return Keys(_keys_decoder.decode(_local.decompressor.decompress(keys)), function_id)


def decode_rows(
    project_id: uuid.UUID,
    function_id: uuid.UUID,
    keys: Keys,
    texts: Sequence[bytes],
    positions: Sequence[int],
) -> list[SealedRow]:
    """The lines at ``positions`` (ascending) as asyncpg would have read them, decompressing
    only the granules that hold them."""
    granule = keys.granule
    decoded = {
        g: decode_granule(keys, texts[g], g) for g in dict.fromkeys(p // granule for p in positions)
    }
    return rows_at(project_id, function_id, keys, decoded, positions)


def decode_granule(keys: Keys, frame: bytes, g: int) -> Granule:
    """The ``g``-th texts frame (from 0) of the block whose keys are ``keys``, decoded."""
    start = g * keys.granule
    return Granule(frame, min(keys.granule, keys.lines - start), start)


def rows_at(
    project_id: uuid.UUID,
    function_id: uuid.UUID,
    keys: Keys,
    granules: Mapping[int, Granule],
    positions: Sequence[int],
) -> list[SealedRow]:
    """The lines at ``positions`` as asyncpg would have read them, their texts from
    ``granules`` (by granule number, holding every one the positions fall in)."""
    if not positions:
        return []
    at = np.asarray(positions, dtype=np.intp)
    # Column by column, each in one comprehension: a line costs a tuple, its id, its timestamp.
    words = np.empty((len(at), 2), dtype=">u8")
    words[:, 0], words[:, 1] = keys.high[at], keys.low[at]
    raw = words.tobytes()
    line_ids = [_UUID(raw[i : i + 16]) for i in range(0, len(raw), 16)]
    stamps = [_EPOCH + timedelta(microseconds=m) for m in keys.micros[at].tolist()]
    instances = list(map(keys.instances.__getitem__, keys.instance[at].tolist()))
    levels = list(map(LEVELS.__getitem__, keys.level[at].tolist()))
    sources = list(map(SOURCES.__getitem__, keys.source[at].tolist()))
    deployments = list(map(keys.deployments.__getitem__, keys.deployment[at].tolist()))
    executions = list(map((None, *keys.executions).__getitem__, keys.execution[at].tolist()))
    granule = keys.granule
    texts = [granules[p // granule].texts(p) for p in positions]
    new = tuple.__new__
    return [
        new(SealedRow, (i, t, n, lv, sr, r, m, a, project_id, d, function_id, e))
        for i, t, n, lv, sr, (r, m, a), d, e in zip(
            line_ids,
            stamps,
            instances,
            levels,
            sources,
            texts,
            deployments,
            executions,
            strict=True,
        )
    ]


# UTF-8 of the two characters outside ASCII whose lower case is ASCII (trigrams.TO_ASCII).
_FOLDS_TO_ASCII = tuple(chr(c).encode() for c in (0x130, 0x212A))


def find(
    keys: Keys,
    texts: Sequence[bytes],
    positions: Sequence[int],
    keyword: str,
    *,
    ascending: bool = True,
    limit: int | None = None,
) -> tuple[list[int], list[int]]:
    """Which of ``positions`` (ascending) hold ``keyword`` in raw_log or message, case aside:
    the lines that surely do, and the lines only PostgreSQL's ILIKE can decide.

    An ASCII keyword is looked for in a granule's text at once, ASCII letters folded (what
    any locale does to them); a line holding one of the two characters whose lower case is
    ASCII is left to PostgreSQL unless found already. Any other keyword: every line is.
    Granules are read in scan order (``ascending`` or not) until ``limit`` lines are sure.
    """
    if not keyword.isascii():
        return [], list(positions)
    needle = keyword.lower().encode()
    sure: list[int] = []
    unsure: list[int] = []
    granule = keys.granule
    groups = _by_granule(positions, granule)
    for g, group in groups if ascending else reversed(groups):
        start = g * granule
        columns = Granule(texts[g], min(granule, keys.lines - start), start)
        wanted = set(group)
        found = {start + i for i in columns.holding(needle)} & wanted
        folds = {start + i for c in _FOLDS_TO_ASCII for i in columns.holding(c)} & wanted
        sure += found
        unsure += folds - found
        if limit is not None and len(sure) >= limit:
            break
    return sorted(sure), sorted(unsure)


def _by_granule(positions: Sequence[int], granule: int) -> list[tuple[int, Sequence[int]]]:
    """``positions`` (ascending) cut at granule boundaries."""
    out: list[tuple[int, Sequence[int]]] = []
    i = 0
    while i < len(positions):
        g = positions[i] // granule
        j = bisect.bisect_left(positions, (g + 1) * granule, lo=i)
        out.append((g, positions[i:j]))
        i = j
    return out


class Granule:
    """A decompressed texts frame: each line's raw_log, message and attributes.

    Offsets and NULLs are kept compact (an ``array`` and ``bytes``, ~8 bytes a text), so that
    decoded granules can be kept for a while (sealed.py's cache) at little more than their text.
    """

    __slots__ = ("_lowered", "blob", "ends", "n", "null", "start")

    def __init__(self, frame: bytes, n: int, start: int) -> None:
        packed, self.blob = _texts_decoder.decode(_local.decompressor.decompress(frame))
        lengths = _unpack(packed, 3 * n).astype(np.int64)
        messages = lengths[n : 2 * n]
        self.null: bytes = (messages == 0).tobytes()
        messages[messages > 0] -= 1  # stored + 1, 0 being NULL
        ends = np.zeros(3 * n + 1, dtype=np.int64)
        np.cumsum(lengths, out=ends[1:])
        self.ends = array.array("q", ends.tobytes())
        self.n, self.start = n, start
        self._lowered: bytes | None = None

    @property
    def size(self) -> int:
        """About the bytes it holds."""
        return len(self.blob) + 8 * len(self.ends) + len(self.null)

    def _text(self, k: int) -> str:
        return self.blob[self.ends[k] : self.ends[k + 1]].decode()

    def columns(self) -> tuple[list[str], list[str | None], list[str]]:
        """Every line's raw_log, message and attributes."""
        n, blob, ends = self.n, self.blob, self.ends
        texts = [blob[ends[k] : ends[k + 1]].decode() for k in range(3 * n)]
        messages: list[str | None] = [
            None if null else text for null, text in zip(self.null, texts[n : 2 * n], strict=True)
        ]
        return texts[:n], messages, texts[2 * n :]

    def holding(self, needle: bytes) -> set[int]:
        """The lines (from 0) whose raw_log or message holds ``needle`` (lower-case ASCII),
        ASCII letters folded."""
        n = self.n
        if self._lowered is None:
            self._lowered = self.blob[: self.ends[2 * n]].lower()
        text = self._lowered
        found: set[int] = set()
        at = text.find(needle)
        while at >= 0:
            k = bisect.bisect_right(self.ends, at) - 1
            if at + len(needle) <= self.ends[k + 1]:
                found.add(k % n)
                # The next line's text: one match a line is enough.
                at = text.find(needle, self.ends[k + 1])
            else:
                at = text.find(needle, at + 1)
        return found

    def texts(self, p: int) -> tuple[str, str | None, str]:
        i, n, blob, ends = p - self.start, self.n, self.blob, self.ends
        m, a = n + i, 2 * n + i
        message = None if self.null[i] else blob[ends[m] : ends[m + 1]].decode()
        return blob[ends[i] : ends[i + 1]].decode(), message, blob[ends[a] : ends[a + 1]].decode()
