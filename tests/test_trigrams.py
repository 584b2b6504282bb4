"""Block summaries never hide a match: a block holds every code of every keyword its lines hold.

Checked against PostgreSQL's own ILIKE, on the server's locale, for random text: whenever
PostgreSQL says a line matches a keyword, the keyword's codes are among the line's block's.
"""

from __future__ import annotations

import sys

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gramlogs.storage import trigrams
from gramlogs.storage.pages import like_pattern

# Letters in either case, digits, punctuation, the two non-ASCII letters whose lower case is
# ASCII, other non-ASCII letters, and the message/raw line separator.
ALPHABET = "aAbBkKiIzZ09 _%\\-.\x01" + "\u212a\u0130\u0131\u00e9\u00c9\u03a3\u03c3\u00df\u1e9e"
text = st.text(alphabet=ALPHABET, max_size=40)


def test_the_characters_folded_to_ascii_are_all_there_are():
    computed = {
        c: "".join(ch for ch in chr(c).lower() if ch.isascii())
        for c in range(128, sys.maxunicode + 1)
        if any(ch.isascii() for ch in chr(c).lower())
    }
    assert computed == trigrams.TO_ASCII


def test_codes_of_a_word_are_its_ascii_trigrams():
    assert trigrams.keyword_codes("ab") == []
    assert trigrams.keyword_codes("\u00e9t\u00e9") == []
    assert len(trigrams.keyword_codes("Timeout")) == 5
    assert trigrams.keyword_codes("TIMEOUT") == trigrams.keyword_codes("timeout")
    # A trigram across the separator is not looked up: columns are matched one by one.
    assert trigrams.keyword_codes("ab\x01cd") == []


@pytest.mark.parametrize("word", ["timeout", "TimeOut", "meou", "\u212aey", "key"])
def test_a_block_holds_the_codes_of_its_words(word):
    lines = ["request failed: timeout after 5s", "the \u212aey was found", "x"]
    held = set(trigrams.block_codes(lines))
    assert set(trigrams.keyword_codes(word)) <= held


@settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(before=text, middle=text, after=text, others=st.lists(text, max_size=3), data=st.data())
async def test_whatever_postgresql_matches_the_block_holds(
    pool, before, middle, after, others, data
):
    line = before + middle + after
    # The keyword: the middle of the line in a random mix of cases, as a user types it.
    keyword = "".join(c.swapcase() if data.draw(st.booleans(), label="swap") else c for c in middle)
    assume(len(keyword) >= 3)
    async with pool.acquire() as conn:
        matches = await conn.fetchval("SELECT $1::text ILIKE $2", line, like_pattern(keyword))
    if matches:
        held = set(trigrams.block_codes([*others, line]))
        assert set(trigrams.keyword_codes(keyword)) <= held
