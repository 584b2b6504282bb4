"""Block summaries: which trigrams occur in a run of a project's lines.

Keyword search is a case-insensitive substring match (ILIKE). Instead of a trigram index entry
per line (a GIN index over every line took ~150 entries a line and halved what a COPY could
do), each stored batch is cut by function into blocks of :data:`BLOCK_ROWS` lines in id order,
and ``log_blocks`` keeps one row per block (blocks.py): its function, its id range and the set
of the trigrams its text holds, as hashed integer codes, under a GIN index. A block of a few
hundred log lines repeats most of its trigrams, so this is ~10 index entries a line. A search
asks which blocks hold every trigram of the keyword and reads only their lines, nearest first
(pages._keyword_rows): the block summary is a filter, the ILIKE on the rows decides.

The filter never loses a match: a line that matches holds each of the keyword's trigrams, so
its block does. Codes are made of bytes, not characters, so that PostgreSQL's and Python's
notions of case cannot disagree: an ASCII letter is folded to lower case, every non-ASCII byte
becomes 0, and only the keyword's trigrams of three ASCII characters are looked up. The two
characters outside ASCII whose lower case is ASCII (KELVIN SIGN, CAPITAL I WITH DOT ABOVE)
are folded to theirs first, so that a line with them holds what ``lower()`` makes of it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["BLOCK_ROWS", "block_codes", "keyword_codes", "text_of"]

# Lines per block. Smaller blocks make a rare word's search read fewer rows beside its
# matches; larger ones make fewer index entries per line (benchmarks/index_costs.py at af8a818).
BLOCK_ROWS = 256

# Byte -> 7-bit code: ASCII letters folded to lower case, non-ASCII bytes to 0. 0 never occurs
# in stored text (NUL is refused at ingestion), so a trigram with a 0 is "not ASCII".
_FOLD = np.arange(256, dtype=np.int32)
_FOLD[ord("A") : ord("Z") + 1] += 32
_FOLD[128:] = 0
# Non-ASCII characters whose lower case (in any of PostgreSQL's locale providers) is ASCII.
# tests/test_trigrams.py checks this against every code point.
TO_ASCII = {0x130: "i", 0x212A: "k"}
# The line separator inside a block: 0, so that no trigram spans two lines.
_SEPARATOR = "\x80"
# Trigram codes (21 bits) are hashed to this many buckets: a block's few thousand distinct
# trigrams then are a bitmap small enough to clear for each block. Two trigrams sharing a
# bucket can only make a block a candidate it is not (the rows' ILIKE decides), never hide one.
BUCKET_BITS = 16


class _Scratch(threading.local):
    """A bitmap of buckets seen, one per thread: sealing computes codes in a worker thread
    (sealing.py) while batches are summarised in the event loop's."""

    def __init__(self) -> None:
        self.seen = np.zeros(1 << BUCKET_BITS, dtype=np.bool_)


_scratch = _Scratch()


def text_of(message: str | None, raw_log: str) -> str:
    """The text a keyword is matched against: message and raw line (store's index expression)."""
    return raw_log if message is None else f"{message}\x01{raw_log}"


def _folded(text: str) -> str:
    return text if text.isascii() else text.translate(TO_ASCII)


def _codes(text: str) -> npt.NDArray[np.int32]:
    data = np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    if len(data) < 3:
        return np.zeros(0, dtype=np.int32)
    folded = _FOLD[data]
    return (folded[:-2] << 14) | (folded[1:-1] << 7) | folded[2:]


def block_codes(texts: Sequence[str]) -> list[int]:
    """The distinct trigram codes of a block's texts (codes with a non-ASCII byte left out)."""
    codes = _codes(_SEPARATOR.join(map(_folded, texts)))
    buckets = _bucket(codes[_ascii_only(codes)])
    seen = _scratch.seen
    seen[buckets] = True
    distinct = np.flatnonzero(seen)
    seen[distinct] = False
    result: list[int] = distinct.tolist()
    return result


def _bucket(codes: npt.NDArray[np.int32]) -> npt.NDArray[np.uint32]:
    # Fibonacci hashing: the top bits of the code times 2^32 / golden ratio.
    hashed = codes.astype(np.uint32) * np.uint32(2654435769)
    return hashed >> np.uint32(32 - BUCKET_BITS)


def _ascii_only(codes: npt.NDArray[np.int32]) -> npt.NDArray[np.bool_]:
    mask: npt.NDArray[np.bool_] = (
        ((codes >> 14) != 0) & (((codes >> 7) & 0x7F) != 0) & ((codes & 0x7F) != 0)
    )
    return mask


def keyword_codes(keyword: str) -> list[int]:
    """The trigram codes every line containing ``keyword`` (case-insensitively) holds.

    Empty when the keyword has no run of three ASCII characters: then every block may hold it.
    A trigram spanning message and raw line (the \\x01 between them) is left out too, because a
    keyword is matched against each column on its own.
    """
    codes = _codes(_folded(keyword))
    within = ((codes >> 14) != 1) & (((codes >> 7) & 0x7F) != 1) & ((codes & 0x7F) != 1)
    found: list[int] = np.unique(_bucket(codes[_ascii_only(codes) & within])).tolist()
    return found
