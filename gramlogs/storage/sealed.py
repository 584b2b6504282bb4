"""``log_sealed``: a project's older lines, a few thousand of one function per row, compressed.

A line is either a row of ``logs`` or a line of exactly one block here (migrations/0007):
sealing (sealing.py) deletes rows and writes their block in one transaction. This module
writes blocks, finds the ones a read needs through their postings, and decodes them
(codec.py): the first matches of a filter in an id range, in either order, as a page needs
them; lines by id, as the tail needs them; counts per id range, as the histogram needs them.

A seal or a merge that commits while a read runs is seen wholly or not at all: either the
read runs in one snapshot (``snapshot=True``: a REPEATABLE READ transaction of the caller's),
or it lists blocks in one statement and fetches them by identity, and says :class:`Moved` when
one has gone (``snapshot=False``: pages.fetch_page's first try).

Writers and sealing serialise per project on an advisory lock: a batch holds it shared, from
before it looks for its ids among the blocks until it commits; sealing, merging and deleting
hold it exclusively. So a resent line is found wherever it is, and never stored twice.
"""

from __future__ import annotations

import bisect
import operator
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, TypeVar

import asyncpg
import numpy as np
import numpy.typing as npt

from gramlogs.storage import codec, trigrams
from gramlogs.storage.codec import Keys, Sealed, SealedRow
from gramlogs.storage.filters import LogFilter, like_pattern

__all__ = [
    "BLOCK_COLUMNS",
    "Moved",
    "any_match",
    "count_in_ranges",
    "count_in_ranges_each",
    "keys_of",
    "keyword_matches",
    "known_ids",
    "lines_by_id",
    "lock_project",
    "lock_writes",
    "page_matches",
    "postings",
    "write",
]

BLOCK_COLUMNS = (
    "project_id",
    "function_id",
    "lo",
    "hi",
    "lines",
    "levels",
    "sources",
    "instances",
    "deployments",
    "executions",
    "grams",
    "keys",
    "texts",
)

_V = TypeVar("_V")
_LOCK_SPACE = 0x67726D73  # "grms": the first key of the two-key advisory locks below
_MAX_ID = (1 << 128) - 1
_MASK_64 = (1 << 64) - 1
_U64 = np.uint64


def _lock_key(project_id: uuid.UUID) -> int:
    # The second key is an int4: the project's last 32 bits, signed. Two projects sharing it
    # only wait for each other now and then.
    low = project_id.int & 0xFFFFFFFF
    return low - (1 << 32) if low >= 1 << 31 else low


async def lock_writes(conn: asyncpg.Connection, project_id: uuid.UUID) -> None:
    """Take the project's lock shared, until the transaction ends (a batch being stored)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock_shared($1, $2)", _LOCK_SPACE, _lock_key(project_id)
    )


async def lock_project(conn: asyncpg.Connection, project_id: uuid.UUID) -> None:
    """Take the project's lock exclusively, until the transaction ends (blocks rewritten)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _LOCK_SPACE, _lock_key(project_id))


def _record(block: Sealed) -> tuple[object, ...]:
    return (
        block.project_id,
        block.function_id,
        block.lo,
        block.hi,
        block.lines,
        block.levels,
        block.sources,
        block.instances,
        block.deployments,
        block.executions,
        block.grams,
        block.keys,
        block.texts,
    )


async def write(conn: asyncpg.Connection, blocks: Iterable[Sealed]) -> None:
    records = [_record(b) for b in blocks]
    if records:
        await conn.copy_records_to_table("log_sealed", records=records, columns=BLOCK_COLUMNS)


# -- Resends ------------------------------------------------------------------------------------


async def known_ids(
    conn: asyncpg.Connection, project_id: uuid.UUID, ids: Sequence[object]
) -> set[object]:
    """Which of ``ids`` (as writer.NewRow holds them: 32 hex digits; uuid text or UUIDs from
    tests) are sealed already.

    Call it holding :func:`lock_writes`: no block can then appear before the batch commits.
    Only the blocks overlapping the batch's id range are read, usually none or the newest.
    """
    if not ids:
        return set()
    # One spelling per batch (hex digits, uuid text or UUIDs): each sorts as the ids do.
    lo, hi = min(ids), max(ids)  # type: ignore[type-var]
    rows = await conn.fetch(
        "SELECT function_id, keys FROM log_sealed WHERE project_id = $1 AND hi >= $2 AND lo <= $3",
        project_id,
        _uuid(_id_int(lo)),
        _uuid(_id_int(hi)),
    )
    if not rows:
        return set()
    high, low = codec.id_words(ids)
    held = np.zeros(len(ids), dtype=np.bool_)
    for r in rows:
        held |= codec.decode_keys(r["keys"], r["function_id"]).has_ids(high, low)
    return {ids[i] for i in np.flatnonzero(held).tolist()}


def _id_int(value: object) -> int:
    return value.int if isinstance(value, uuid.UUID) else int(str(value).replace("-", ""), 16)


# -- Finding blocks -----------------------------------------------------------------------------

# Where a block's count of a level or a source sits in its arrays (from 1, as SQL counts).
_LEVEL_AT = {name: i + 1 for i, name in enumerate(codec.LEVELS)}
_SOURCE_AT = {name: i + 1 for i, name in enumerate(codec.SOURCES)}


def _postings(f: LogFilter, first_param: int) -> tuple[str, list[object]]:
    """The conditions on a block's postings that every block holding a match of ``f`` meets,
    as ``AND`` terms with parameters numbered from ``first_param + 1``, and their values."""
    terms: list[str] = []
    values: list[object] = []

    def param(value: object, cast: str) -> str:
        values.append(value)
        return f"${first_param + len(values)}::{cast}"

    for column, value in sorted(f.equals.items()):
        if column == "function_id":
            terms.append(f" AND function_id = {param(value, 'uuid')}")
        elif column == "deployment_id":
            terms.append(f" AND deployments @> ARRAY[{param(value, 'uuid')}]")
        elif column == "instance":
            terms.append(f" AND instances @> ARRAY[{param(value, 'text')}]")
        elif column == "execution_id":
            terms.append(f" AND executions @> ARRAY[{param(value, 'text')}]")
        elif column == "level":
            # Positions are literals made from the fixed names, never from the value itself.
            at = _LEVEL_AT.get(str(value))
            terms.append(f" AND levels[{at}] > 0" if at else " AND false")
        elif column == "source":
            at = _SOURCE_AT.get(str(value))
            terms.append(f" AND sources[{at}] > 0" if at else " AND false")
    if f.sources:
        known = sorted({_SOURCE_AT[s] for s in f.sources if s in _SOURCE_AT})
        summed = " + ".join(f"sources[{at}]" for at in known) or "0"
        terms.append(f" AND ({summed}) > 0")
    return "".join(terms), values


def postings(f: LogFilter, first_param: int) -> tuple[str, list[object]]:
    """:func:`_postings` for a reader of blocks elsewhere in storage (column_values.py)."""
    return _postings(f, first_param)


# Block ends a walk lists at once (a few bytes each, from an index), and blocks it decodes at
# once (their keys fetched in one statement): the first decode takes every block that reaches
# the range's near end (a page of the newest lines needs each function's newest block).
LIST_ROUND = 64
FIRST_ROUND = 4


def _round_sql(where: str, ascending: bool) -> str:
    if ascending:
        order, after = "lo", "lo >= $4"
    else:
        order, after = "hi DESC", "hi <= $4"
    return (
        "SELECT function_id, lo, hi, lines FROM log_sealed"
        f" WHERE project_id = $1 AND hi >= $2 AND lo <= $3 AND {after}{where}"
        f" ORDER BY {order} LIMIT $5"
    )


def _candidates_sql(where: str) -> str:
    return (
        "SELECT function_id, lo, hi, lines FROM log_sealed"
        f" WHERE project_id = $1 AND hi >= $2 AND lo <= $3{where}"
    )


# Blocks by their identity (_Block.identity): a block merged, rewritten or deleted since it was
# listed is not found, rather than found with other lines (a merge can keep its ``lo``).
_KEYS_SQL = (
    "SELECT b.function_id, b.lo, b.keys"
    " FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::int[]) AS r(fn, lo, hi, lines)"
    " JOIN log_sealed AS b ON b.project_id = $1 AND b.function_id = r.fn AND b.lo = r.lo"
    " AND b.hi = r.hi AND b.lines = r.lines"
)

# Each block's granules r.a to r.b (from 1), by the block's place in the arguments.
_TEXTS_SQL = (
    "SELECT r.n, b.texts[r.a:r.b]"
    " FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::int[], $6::int[], $7::int[])"
    " WITH ORDINALITY AS r(fn, lo, hi, lines, a, b, n)"
    " JOIN log_sealed AS b ON b.project_id = $1 AND b.function_id = r.fn AND b.lo = r.lo"
    " AND b.hi = r.hi AND b.lines = r.lines"
)


class Moved(Exception):
    """A read that runs its statements outside one snapshot (``snapshot=False``) found that a
    block it listed was merged, rewritten or deleted before it fetched it, or needs a second
    listing, which could miss the lines of a merge made in between: the caller reads again in
    one snapshot (pages.fetch_page)."""


def _identities(
    blocks: Sequence[_Block],
) -> tuple[list[uuid.UUID], list[uuid.UUID], list[uuid.UUID], list[int]]:
    """The arguments that name ``blocks`` by identity, for _KEYS_SQL and _TEXTS_SQL."""
    return (
        [b.function_id for b in blocks],
        [_uuid(b.lo) for b in blocks],
        [_uuid(b.hi) for b in blocks],
        [b.lines for b in blocks],
    )


class _Block:
    """A block a walk lists: where it lies, and once decoded, its keys."""

    __slots__ = ("function_id", "hi", "keys", "lines", "lo", "project_id")

    def __init__(self, project_id: uuid.UUID, record: asyncpg.Record) -> None:
        self.project_id = project_id
        self.function_id: uuid.UUID = record["function_id"]
        self.lo: int = record["lo"].int
        self.hi: int = record["hi"].int
        self.lines: int = record["lines"]
        # Listed without its keys, a block looks for them only once it is decoded
        # (_decode_keys): a walk lists 64 blocks at a time and decodes a few.
        self.keys: Keys | None = None
        if "keys" in record:
            self.keys = _cached.get(self.identity)
            if self.keys is None:
                self.keys = codec.decode_keys(record["keys"], self.function_id)
                _cached.put(self.identity, self.keys)

    @property
    def identity(self) -> tuple[object, ...]:
        # A block is never changed in place: one with other lines has another row, whose
        # range or number of lines differs.
        return (self.project_id, self.function_id, self.lo, self.hi, self.lines)

    def near(self, ascending: bool) -> int:
        return self.lo if ascending else self.hi


class _Cache(Generic[_V]):
    """What the reads decoded last, by block identity, up to ``budget`` in all as ``weigh``
    counts it, the least recently used going first. A page and its neighbours, the next page, a
    histogram asked again, a dashboard refreshing the newest lines read the same blocks."""

    def __init__(self, budget: int, weigh: Callable[[_V], int]) -> None:
        self._values: dict[tuple[object, ...], _V] = {}
        self._budget, self._weigh = budget, weigh
        self._held = 0

    def get(self, identity: tuple[object, ...]) -> _V | None:
        value = self._values.pop(identity, None)
        if value is not None:
            self._values[identity] = value  # the most recent last
        return value

    def put(self, identity: tuple[object, ...], value: _V) -> None:
        old = self._values.pop(identity, None)
        self._held += self._weigh(value) - (self._weigh(old) if old is not None else 0)
        self._values[identity] = value
        while self._held > self._budget and len(self._values) > 1:
            oldest = next(iter(self._values))
            self._held -= self._weigh(self._values.pop(oldest))


# Decoded keys, ~38 bytes a line: ~19 MB a process.
_cached: _Cache[Keys] = _Cache(500_000, lambda keys: keys.lines)
# Decoded text granules (codec.Granule.size, about their text): the newest lines' granules,
# which every first page shows, are read once, not on every page.
_granules: _Cache[codec.Granule] = _Cache(32 << 20, lambda granule: granule.size)


async def _decode_keys(conn: asyncpg.Connection, blocks: Sequence[_Block]) -> None:
    """Give each of ``blocks`` its keys: from the cache, else fetched in one statement."""
    missing = []
    for block in blocks:
        if block.keys is None:
            block.keys = _cached.get(block.identity)
            if block.keys is None:
                missing.append(block)
    if not missing:
        return
    records = await conn.fetch(_KEYS_SQL, missing[0].project_id, *_identities(missing))
    if len(records) < len(missing):
        raise Moved
    fetched = {(r["function_id"], r["lo"].int): r["keys"] for r in records}
    for block in missing:
        block.keys = codec.decode_keys(fetched[(block.function_id, block.lo)], block.function_id)
        _cached.put(block.identity, block.keys)


async def keys_of(
    conn: asyncpg.Connection, project_id: uuid.UUID, records: Sequence[asyncpg.Record]
) -> list[Keys]:
    """The decoded keys of blocks listed by records holding their ``function_id``, ``lo``,
    ``hi`` and ``lines``, in their order: from the cache, else fetched in one statement."""
    listed = [_Block(project_id, r) for r in records]
    await _decode_keys(conn, listed)
    return [b.keys for b in listed if b.keys is not None]


async def page_matches(
    conn: asyncpg.Connection,
    f: LogFilter,
    lo: int,
    hi: int,
    ascending: bool,
    limit: int,
    *,
    back: tuple[int, int] = (1, 0),
    snapshot: bool = True,
) -> tuple[list[SealedRow], bool]:
    """The first ``limit`` sealed lines of ``f`` (no keyword: :func:`keyword_matches`) with ids
    in ``[lo, hi]``, in scan order, and whether a block it decoded holds a match with an id in
    ``back`` (a page's ``has_back``: the blocks that straddle a cursor hold lines on both sides
    of it). False says only that none of those blocks does: :func:`any_match` answers for
    every block.

    Blocks are listed by their near end (their lowest id walking up, their highest walking
    down) and decoded in that order: once the first k are decoded, every match before the
    (k+1)-th block's near end is known, since a match beyond lies in a block decoded already.

    ``snapshot``: whether the caller runs this in one snapshot (a REPEATABLE READ
    transaction). Without one, the listing is one statement, and what it lists is fetched by
    identity, so the lines found are those of the blocks as the listing saw them; :class:`Moved`
    when that cannot be kept to (a block gone, a second listing needed).
    """
    if lo > hi or limit <= 0:
        return [], False
    listing = _listing(conn, f, lo, hi, ascending, snapshot)
    found = _Found(ascending)
    done = 0
    # The blocks that reach the near end first: each may hold the very first matches.
    start = lo if ascending else hi
    await listing.extend(LIST_ROUND)
    take = max(FIRST_ROUND, sum(1 for b in listing.blocks if b.lo <= start <= b.hi) + 1)
    while True:
        await listing.extend(done + take + 1)
        batch = listing.blocks[done : done + take]
        if not batch:
            known = found.before(None)
            break
        await _decode_keys(conn, batch)
        # Once ``limit`` are found, only a match before the last of them can take a place.
        edge = (lo, hi)
        if found.count == limit:
            last = found.last()
            edge = (lo, min(hi, last - 1)) if ascending else (max(lo, last + 1), hi)
        found.add([(block, _chosen(block, f, *edge, ascending, limit)) for block in batch], limit)
        done += len(batch)
        frontier = None
        if done < len(listing.blocks):
            frontier = listing.blocks[done].near(ascending)
        known = found.before(frontier)
        if frontier is None or len(known) >= limit:
            break
        take *= 2
    behind = _any_in(listing.blocks[:done], f, *back, not ascending)
    return await _rows(conn, f.project_id, known[:limit]), behind


class _Found:
    """A walk's first matches so far, in scan order, as arrays: each id's first and last 64
    bits, and where it lies (its block, its position there). Thousands of candidates (a
    hundred from each of the blocks that straddle a page's start) are ranked without a Python
    object each; only the page's own become (block, position) pairs."""

    def __init__(self, ascending: bool) -> None:
        self._ascending = ascending
        self._blocks: list[_Block] = []
        empty = np.empty(0, dtype=np.uint64)
        self._high, self._low = empty, empty
        self._owner = self._position = np.empty(0, dtype=np.intp)

    @property
    def count(self) -> int:
        return len(self._high)

    def last(self) -> int:
        """The id of the last match kept, as an int."""
        return (int(self._high[-1]) << 64) | int(self._low[-1])

    def add(self, chosen: Sequence[tuple[_Block, npt.NDArray[np.intp]]], limit: int) -> None:
        """Add each block's chosen positions, and keep the first ``limit`` of all."""
        highs, lows, owners, positions = [self._high], [self._low], [self._owner], [self._position]
        for block, at in chosen:
            if len(at):
                assert block.keys is not None
                highs.append(block.keys.high[at])
                lows.append(block.keys.low[at])
                owners.append(np.full(len(at), len(self._blocks), dtype=np.intp))
                positions.append(at)
                self._blocks.append(block)
        high, low = np.concatenate(highs), np.concatenate(lows)
        order = np.lexsort((low, high))  # ascending by id: the first 64 bits, then the last
        order = (order if self._ascending else order[::-1])[:limit]
        self._high, self._low = high[order], low[order]
        self._owner = np.concatenate(owners)[order]
        self._position = np.concatenate(positions)[order]

    def before(self, frontier: int | None) -> list[tuple[_Block, int]]:
        """The matches before ``frontier`` in scan order (all when it is None), as
        (block, position) pairs."""
        n = self.count
        if frontier is not None and n:
            high, low = _U64(frontier >> 64), _U64(frontier & _MASK_64)
            if self._ascending:
                kept = (self._high < high) | ((self._high == high) & (self._low < low))
            else:
                kept = (self._high > high) | ((self._high == high) & (self._low > low))
            n = int(np.count_nonzero(kept))  # a prefix: the matches are in scan order
        blocks = self._blocks
        return [
            (blocks[b], p)
            for b, p in zip(self._owner[:n].tolist(), self._position[:n].tolist(), strict=True)
        ]


def _any_in(blocks: Sequence[_Block], f: LogFilter, lo: int, hi: int, ascending: bool) -> bool:
    """Whether one of ``blocks`` (decoded) holds a match of ``f`` with an id in [lo, hi]."""
    if lo > hi:
        return False
    return any(
        b.lo <= hi and b.hi >= lo and _matches_in(b, f, lo, hi, ascending, 1) for b in blocks
    )


async def any_match(
    conn: asyncpg.Connection,
    f: LogFilter,
    lo: int,
    hi: int,
    ascending: bool,
    *,
    snapshot: bool = True,
) -> bool:
    """Whether a sealed line of ``f`` has an id in ``[lo, hi]`` (a page's ``has_back``),
    looking from the low end (``ascending``) or the high one: the blocks' keys say it, no text
    is read (but a keyword's)."""
    if lo > hi:
        return False
    if f.keyword is not None:
        return bool(await keyword_matches(conn, f, lo, hi, ascending, 1))
    listing = _listing(conn, f, lo, hi, ascending, snapshot)
    done, take = 0, FIRST_ROUND
    while True:
        await listing.extend(done + take)
        batch = listing.blocks[done : done + take]
        if not batch:
            return False
        await _decode_keys(conn, batch)
        if _any_in(batch, f, lo, hi, ascending):
            return True
        done += len(batch)
        take *= 2


def _listing(
    conn: asyncpg.Connection, f: LogFilter, lo: int, hi: int, ascending: bool, snapshot: bool
) -> _Listing:
    where, values = _postings(f, first_param=5)
    listing = _Listing(conn, _round_sql(where, ascending), f, lo, hi, ascending, values)
    listing.once = not snapshot
    return listing


class _Listing:
    """A filter's blocks in a range, by near end, listed a round at a time as a walk needs."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        sql: str,
        f: LogFilter,
        lo: int,
        hi: int,
        ascending: bool,
        values: list[object],
    ) -> None:
        self._conn, self._sql, self._f = conn, sql, f
        self._args = (_uuid(lo), _uuid(hi))
        self._ascending = ascending
        self._values = values
        # Not the range's own ends: a block that straddles the near end holds matches too.
        self._after = 0 if ascending else _MAX_ID
        self._ended = False
        self.blocks: list[_Block] = []
        self.once = False  # a second listing is Moved (page_matches without a snapshot)

    async def extend(self, wanted: int) -> None:
        """List blocks until ``wanted`` are listed or there are no more."""
        while not self._ended and len(self.blocks) < wanted:
            if self.once and self.blocks:
                raise Moved
            take = max(LIST_ROUND, wanted - len(self.blocks))
            records = await self._conn.fetch(
                self._sql, self._f.project_id, *self._args, _uuid(self._after), take, *self._values
            )
            self.blocks += [_Block(self._f.project_id, r) for r in records]
            self._ended = len(records) < take
            if records:
                # Block ends are line ids, unique in a project: the next round starts past.
                near = self.blocks[-1].near(self._ascending)
                self._after = near + 1 if self._ascending else near - 1


def _chosen(
    block: _Block, f: LogFilter, lo: int, hi: int, ascending: bool, limit: int
) -> npt.NDArray[np.intp]:
    """The positions of the block's first ``limit`` matches in scan order (ascending)."""
    keys = block.keys
    assert keys is not None
    positions = keys.matching_array(keys.span(lo, hi), f.equals, f.sources)
    return positions[:limit] if ascending else positions[-limit:]


def _matches_in(
    block: _Block, f: LogFilter, lo: int, hi: int, ascending: bool, limit: int
) -> list[tuple[int, _Block, int]]:
    """The block's first ``limit`` matches in scan order (the page's first ``limit`` are
    among them), each as (id, block, position)."""
    keys = block.keys
    assert keys is not None
    chosen = _chosen(block, f, lo, hi, ascending, limit)
    return [(i, block, p) for i, p in zip(keys.id_ints(chosen), chosen.tolist(), strict=True)]


_first = operator.itemgetter(0)


def _known(
    found: list[tuple[int, _Block, int]], frontier: int | None, ascending: bool
) -> list[tuple[int, _Block, int]]:
    """``found`` in scan order, only those before the frontier (all when it is None)."""
    ordered = sorted(found, key=_first, reverse=not ascending)
    if frontier is None:
        return ordered
    if ascending:
        return [m for m in ordered if m[0] < frontier]
    return [m for m in ordered if m[0] > frontier]


async def _rows(
    conn: asyncpg.Connection, project_id: uuid.UUID, matches: Sequence[tuple[_Block, int]]
) -> list[SealedRow]:
    """The lines at ``matches`` (block, position), in their order: the granules that hold them
    fetched in one statement (a slice of each block's texts), and only those decompressed."""
    # A block's positions in the order of ``matches`` (monotonic: ids grow with positions).
    by_block: dict[int, tuple[_Block, list[int]]] = {}
    for block, position in matches:
        by_block.setdefault(id(block), (block, []))[1].append(position)
    if not by_block:
        return []
    wanted = list(by_block.values())
    granules: list[dict[int, codec.Granule]] = []
    missing: list[tuple[_Block, int, int]] = []  # a block's granules to fetch, first to last
    for block, positions in wanted:
        assert block.keys is not None
        size = block.keys.granule
        held = {}
        needed = []
        for g in dict.fromkeys(p // size for p in positions):
            if (granule := _granules.get((*block.identity, g))) is not None:
                held[g] = granule
            else:
                needed.append(g)
        if needed:
            missing.append((block, min(needed), max(needed)))
        granules.append(held)
    await _fetch_granules(conn, project_id, missing, granules, [b for b, _ in wanted])
    decoded = {}
    for (block, positions), held in zip(wanted, granules, strict=True):
        assert block.keys is not None
        rows = codec.rows_at(project_id, block.function_id, block.keys, held, positions)
        decoded[id(block)] = iter(rows)
    return [next(decoded[id(block)]) for block, _ in matches]


async def _fetch_granules(
    conn: asyncpg.Connection,
    project_id: uuid.UUID,
    missing: list[tuple[_Block, int, int]],
    granules: list[dict[int, codec.Granule]],
    blocks: list[_Block],
) -> None:
    """Fetch the granules ``missing`` names (a slice of each block's texts, in one statement),
    decode them into ``granules`` (one dict per block of ``blocks``) and keep them."""
    if not missing:
        return
    records = await conn.fetch(
        _TEXTS_SQL,
        project_id,
        *_identities([block for block, _, _ in missing]),
        [first + 1 for _, first, _ in missing],
        [last + 1 for _, _, last in missing],
    )
    if len(records) < len(missing):
        raise Moved
    place = {id(block): n for n, block in enumerate(blocks)}
    for n, frames in records:
        block, first, _ = missing[n - 1]
        assert block.keys is not None
        for g, frame in enumerate(frames, start=first):
            granule = codec.decode_granule(block.keys, frame, g)
            _granules.put((*block.identity, g), granule)
            granules[place[id(block)]][g] = granule


# -- Keywords -----------------------------------------------------------------------------------


async def keyword_matches(
    conn: asyncpg.Connection, f: LogFilter, lo: int, hi: int, ascending: bool, limit: int
) -> list[SealedRow]:
    """As :func:`page_matches`, for a filter with a keyword: the blocks whose codes hold
    every trigram of the word (all blocks in range when it has none), nearest first."""
    assert f.keyword is not None
    if lo > hi or limit <= 0:
        return []
    where, values = _postings(f, first_param=3)
    codes = trigrams.keyword_codes(f.keyword)
    if codes:
        values.append(codes)
        where += f" AND grams @> ${3 + len(values)}::int4[]"
    records = await conn.fetch(_candidates_sql(where), f.project_id, _uuid(lo), _uuid(hi), *values)
    blocks = [_Block(f.project_id, r) for r in records]
    blocks.sort(key=lambda b: b.lo if ascending else -b.hi)
    found: list[tuple[int, _Block, int]] = []
    done, take = 0, FIRST_ROUND
    frontier: int | None = None
    while done < len(blocks):
        batch = blocks[done : done + take]
        done += len(batch)
        await _decode_keys(conn, batch)
        for block in batch:
            found += await _keyword_in(conn, f, block, lo, hi, ascending, limit)
        frontier = blocks[done].near(ascending) if done < len(blocks) else None
        if len(_known(found, frontier, ascending)) >= limit:
            break
        take *= 4
    known = _known(found, frontier, ascending)[:limit]
    return await _rows(conn, f.project_id, [(block, p) for _, block, p in known])


async def _keyword_in(
    conn: asyncpg.Connection,
    f: LogFilter,
    block: _Block,
    lo: int,
    hi: int,
    ascending: bool,
    limit: int,
) -> list[tuple[int, _Block, int]]:
    """The block's first ``limit`` matches of ``f`` in scan order, keyword included."""
    keys = block.keys
    assert keys is not None and f.keyword is not None
    positions = keys.matching(keys.span(lo, hi), f.equals, f.sources)
    if not positions:
        return []
    sure = await _holding(conn, f, block, keys, positions, ascending=ascending, limit=limit)
    chosen = sure[:limit] if ascending else sure[-limit:]
    return [(keys.id(p).int, block, p) for p in chosen]


async def keyword_hits(
    conn: asyncpg.Connection, keyword: str, rows: Sequence[SealedRow]
) -> list[bool]:
    """Whether each row holds ``keyword`` as a page's ILIKE decides.

    An ASCII keyword in an ASCII line is decided here (ASCII case folding is the same
    everywhere); any other line is asked of PostgreSQL, whose locale decides what lower case
    is (trigrams.py says why the two can differ outside ASCII).
    """
    hits: list[bool | None] = []
    folded = keyword.lower()
    plain = keyword.isascii()
    for row in rows:
        message, raw = row[6], row[5]
        if plain and raw.isascii() and (message is None or message.isascii()):
            hits.append(
                folded in raw.lower() or (message is not None and folded in message.lower())
            )
        else:
            hits.append(None)
    asked = [i for i, hit in enumerate(hits) if hit is None]
    if asked:
        answers = await conn.fetch(
            "SELECT coalesce(m ILIKE $1, false) OR r ILIKE $1"
            " FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS t(m, r, n) ORDER BY n",
            like_pattern(keyword),
            [rows[i][6] for i in asked],
            [rows[i][5] for i in asked],
        )
        for i, answer in zip(asked, answers, strict=True):
            hits[i] = bool(answer[0])
    return [bool(h) for h in hits]


# -- Lines by id (the tail) ---------------------------------------------------------------------


async def lines_by_id(
    conn: asyncpg.Connection, project_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, SealedRow]:
    """The sealed lines among ``ids``, by id (ids that are in no block are left out)."""
    if not ids:
        return {}
    wanted = sorted(i.int for i in ids)
    records = await conn.fetch(
        "SELECT function_id, lo, hi, lines, keys, texts FROM log_sealed"
        " WHERE project_id = $1 AND hi >= $2 AND lo <= $3",
        project_id,
        _uuid(wanted[0]),
        _uuid(wanted[-1]),
    )
    found: dict[uuid.UUID, SealedRow] = {}
    for record in records:
        block = _Block(project_id, record)
        keys = block.keys
        assert keys is not None
        positions = sorted(p for i in wanted if block.lo <= i <= block.hi for p in keys.span(i, i))
        if positions:
            rows = codec.decode_rows(
                project_id, block.function_id, keys, record["texts"], positions
            )
            for row in rows:
                found[row[0]] = row
    return found


# -- Counting (the histogram) -------------------------------------------------------------------


async def count_in_ranges(
    conn: asyncpg.Connection, f: LogFilter, bounds: Sequence[int]
) -> list[int]:
    """How many sealed lines of ``f`` lie in each range ``[bounds[i], bounds[i + 1] - 1]``.

    A block within one range whose postings decide the filter for all its lines is counted
    from its counts; any other is decoded (its keys, fetched in one statement unless cached;
    its texts too for a keyword).
    """
    return (await count_in_ranges_each(conn, f, bounds, [f]))[0]


async def count_in_ranges_each(
    conn: asyncpg.Connection, base: LogFilter, bounds: Sequence[int], filters: Sequence[LogFilter]
) -> list[list[int]]:
    """:func:`count_in_ranges` for each of ``filters``, which narrow ``base`` by equalities
    only (a count per level: Grafana's log volume): the blocks are listed and decoded once."""
    counts = [[0] * (len(bounds) - 1) for _ in filters]
    if len(bounds) < 2:
        return counts
    lo, hi = bounds[0], bounds[-1] - 1
    where, values = _postings(base, first_param=3)
    if base.keyword is not None and (codes := trigrams.keyword_codes(base.keyword)):
        values.append(codes)
        where += f" AND grams @> ${3 + len(values)}::int4[]"
    records = await conn.fetch(
        "SELECT function_id, lo, hi, lines, levels, sources, instances, deployments,"
        f" executions FROM log_sealed WHERE project_id = $1 AND hi >= $2 AND lo <= $3{where}",
        base.project_id,
        _uuid(lo),
        _uuid(hi),
        *values,
    )
    decode: list[_Block] = []
    for record in records:
        b_lo, b_hi = record["lo"].int, record["hi"].int
        i = bisect.bisect_right(bounds, b_lo) - 1
        whole = base.keyword is None and 0 <= i < len(counts[0]) and b_hi < bounds[i + 1]
        found = [_whole_count(record, f) for f in filters] if whole else [None]
        if all(n is not None for n in found):
            for k, n in enumerate(found):
                counts[k][i] += n or 0
        else:
            decode.append(_Block(base.project_id, record))
    await _decode_keys(conn, decode)
    for block in decode:
        keys = block.keys
        assert keys is not None
        in_window = keys.span(lo, hi)
        # The ranges the block reaches, and where each begins among the block's lines.
        first_range = max(bisect.bisect_right(bounds, block.lo) - 1, 0)
        last_range = min(bisect.bisect_right(bounds, block.hi) - 1, len(bounds) - 2)
        spans = [
            (j, keys.span(bounds[j], bounds[j + 1] - 1)) for j in range(first_range, last_range + 1)
        ]
        holding: set[int] | None = None
        if base.keyword is not None:
            # The keyword is base's: its lines are found once for every filter.
            candidates = keys.matching(in_window, base.equals, base.sources)
            holding = set(await _holding(conn, base, block, keys, candidates) if candidates else ())
        for k, f in enumerate(filters):
            positions = keys.matching(in_window, f.equals, f.sources)
            if holding is not None:
                positions = [p for p in positions if p in holding]
            for j, span in spans:
                if span:
                    first = bisect.bisect_left(positions, span.start)
                    counts[k][j] += bisect.bisect_left(positions, span.stop, lo=first) - first
    return counts


async def _holding(
    conn: asyncpg.Connection,
    f: LogFilter,
    block: _Block,
    keys: Keys,
    positions: list[int],
    *,
    ascending: bool = True,
    limit: int | None = None,
) -> list[int]:
    """Which of ``positions`` hold ``f``'s keyword (with ``limit``: the first ``limit`` of them
    in scan order at least; codec.find stops there)."""
    assert f.keyword is not None
    texts = await conn.fetchval(
        "SELECT texts FROM log_sealed WHERE project_id = $1 AND function_id = $2 AND lo = $3",
        f.project_id,
        block.function_id,
        _uuid(block.lo),
    )
    sure, unsure = codec.find(keys, texts, positions, f.keyword, ascending=ascending, limit=limit)
    if unsure:
        rows = codec.decode_rows(f.project_id, block.function_id, keys, texts, unsure)
        hits = await keyword_hits(conn, f.keyword, rows)
        sure = sorted(sure + [p for p, hit in zip(unsure, hits, strict=True) if hit])
    return sure


def _whole_count(record: asyncpg.Record, f: LogFilter) -> int | None:
    """The block's matches of ``f``, when its counts and postings decide them (None: they do
    not; decode it)."""
    n: int = record["lines"]
    for column, value in f.equals.items():
        if column == "function_id":
            continue  # the query asked for this function's blocks only
        if column == "level":
            n = min(n, record["levels"][_LEVEL_AT[str(value)] - 1])
        elif column == "source":
            n = min(n, record["sources"][_SOURCE_AT[str(value)] - 1])
        elif column == "execution_id" or len(record[_POSTING[column]]) != 1:
            # Lines without an execution are in no posting: one execution may not be all.
            return None
    if f.sources:
        n = min(n, sum(record["sources"][_SOURCE_AT[s] - 1] for s in f.sources))
    # Two counts together (a level and a source) do not say how many lines have both.
    constrained = sum(1 for c in f.equals if c in ("level", "source")) + bool(f.sources)
    if constrained > 1:
        return None
    return n


_POSTING = {"deployment_id": "deployments", "instance": "instances"}


def _uuid(value: int) -> uuid.UUID:
    return uuid.UUID(int=value)
