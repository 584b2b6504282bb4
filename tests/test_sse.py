"""The server-sent events parser of ``gramlogs logs -f`` (gramlogs/client/sse.py), on the
standard's tricky inputs, and on any split of a stream into chunks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gramlogs.client.sse import Event, EventParser


def parse(*chunks: bytes, last_event_id: str = "") -> tuple[list[Event], EventParser]:
    parser = EventParser(last_event_id)
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    return events, parser


def test_an_event_is_dispatched_by_a_blank_line():
    events, parser = parse(b"id: 1\ndata: hello\n\n")
    assert events == [Event("message", "hello", "1")]
    assert parser.last_event_id == "1"


def test_an_event_without_its_blank_line_is_not_dispatched_and_its_id_not_taken():
    events, parser = parse(b"id: 1\ndata: hello\n", last_event_id="0")
    assert events == []
    assert parser.last_event_id == "0"


def test_crlf_cr_and_lf_all_end_lines():
    events, _ = parse(b"data: a\r\n\r\ndata: b\r\rdata: c\n\n")
    assert [e.data for e in events] == ["a", "b", "c"]


def test_a_crlf_split_between_chunks_is_one_line_end():
    events, _ = parse(b"data: a\r", b"\n", b"data: b\r", b"\ndata: c\r\n\r", b"\n")
    assert [e.data for e in events] == ["a\nb\nc"]


def test_a_cr_inside_a_chunk_does_not_swallow_the_next_chunks_lf():
    # The chunk holds the CR and the start of the next line; the LF that starts the next chunk
    # ends that line, it is not the second half of a CRLF.
    events, parser = parse(b"data: a\rid: 7", b"\n\n")
    assert events == [Event("message", "a", "7")]
    assert parser.last_event_id == "7"


def test_an_empty_chunk_between_a_cr_and_its_lf_changes_nothing():
    events, _ = parse(b"data: a\r", b"", b"\n\r\n")
    assert [e.data for e in events] == ["a"]


def test_a_cr_at_the_end_of_a_chunk_ends_its_line_at_once():
    events, _ = parse(b"data: a\r\r")
    assert [e.data for e in events] == ["a"]


def test_a_chunk_may_end_anywhere_even_inside_a_utf8_character():
    stream = "id: é\ndata: naïve ✓\n\n".encode()
    events, _ = parse(*(stream[i : i + 1] for i in range(len(stream))))
    assert events == [Event("message", "naïve ✓", "é")]


def test_comments_are_ignored_heartbeats_included():
    events, _ = parse(b": keep-alive\n\n:another\ndata: x\n: in the middle\n\n")
    assert events == [Event("message", "x", "")]


def test_an_id_only_event_sets_the_last_event_id_and_dispatches_nothing():
    events, parser = parse(b"retry: 1000\nid: start\n\n")
    assert events == []
    assert parser.last_event_id == "start"
    assert parser.retry == 1000


def test_data_without_a_space_after_the_colon_and_only_one_space_removed():
    events, _ = parse(b"data:tight\ndata:  two spaces\ndata\ndata:\n\n")
    assert events == [Event("message", "tight\n two spaces\n\n", "")]


def test_multi_line_data_is_joined_with_lf():
    events, _ = parse(b'data: {"a":\ndata: 1}\n\n')
    assert events == [Event("message", '{"a":\n1}', "")]


def test_event_type_applies_to_one_event():
    events, _ = parse(b'event: end\nid: e\ndata: {"reason": "slow"}\n\ndata: next\n\n')
    assert events == [Event("end", '{"reason": "slow"}', "e"), Event("message", "next", "e")]


def test_an_id_holds_until_the_next_one():
    events, parser = parse(b"id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\n")
    assert [(e.data, e.id) for e in events] == [("a", "1"), ("b", "1"), ("c", "")]
    assert parser.last_event_id == ""


def test_an_id_with_nul_is_ignored():
    events, parser = parse(b"id: 1\n\nid: a\x00b\ndata: x\n\n")
    assert events == [Event("message", "x", "1")]
    assert parser.last_event_id == "1"


def test_retry_takes_digits_only_and_unknown_fields_are_ignored():
    _, parser = parse(b"retry: 2000\nretry: soon\nretry: 1.5\nfoo: bar\n\n")
    assert parser.retry == 2000


def test_a_leading_bom_is_skipped_even_when_split():
    events, _ = parse(b"\xef\xbb", b"\xbfdata: x\n\n")
    assert events == [Event("message", "x", "")]


def test_no_data_no_event_even_with_a_type():
    events, _ = parse(b"event: end\n\n")
    assert events == []


# -- any split of a stream parses to the same events ---------------------------------------------

_text = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n\x00"), max_size=12
)
_field_line = st.one_of(
    st.tuples(st.just("data"), _text),
    st.tuples(st.just("id"), _text),
    st.tuples(st.just("event"), _text),
    st.tuples(st.just("retry"), st.integers(0, 10**6).map(str)),
    st.tuples(st.just(""), _text),  # a comment
)
_stream = st.lists(st.lists(_field_line, max_size=4), max_size=8)


def _render(events: list[list[tuple[str, str]]], ends: list[bytes], spaces: list[bool]) -> bytes:
    """The stream of ``events``, line ends drawn from ``ends`` (a CR is never followed by a
    blank line's LF, which would make one CRLF of them)."""
    out: list[bytes] = []
    i = 0
    for event in events:
        for name, value in [*event, ("", None)]:
            end = ends[i % len(ends)]
            space = spaces[i % len(spaces)] or (value or "").startswith(" ")
            i += 1
            if value is None:
                after_cr = bool(out) and out[-1].endswith(b"\r")
                out.append(b"\r" if after_cr and end == b"\n" else end)
            else:
                out.append(name.encode() + (b": " if space else b":") + value.encode() + end)
    return b"".join(out)


@given(
    events=_stream,
    ends=st.lists(st.sampled_from([b"\n", b"\r\n", b"\r"]), min_size=1, max_size=4),
    spaces=st.lists(st.booleans(), min_size=1, max_size=4),
    sizes=st.lists(st.integers(0, 6), min_size=1, max_size=8),
)
def test_any_split_into_chunks_parses_to_the_same_events(events, ends, spaces, sizes):
    stream = _render(events, ends, spaces)
    whole, whole_parser = parse(stream)
    # Chunks of the sizes drawn, over and over (empty ones too): small, so that they cut the
    # stream everywhere, between a CR and its LF included.
    chunks: list[bytes] = []
    at = 0
    while at < len(stream):
        size = sizes[len(chunks) % len(sizes)]
        chunks.append(stream[at : at + size])
        at += size
        if not any(sizes):
            chunks.append(stream[at:])
            break
    split, split_parser = parse(*chunks)
    assert split == whole
    assert split_parser.last_event_id == whole_parser.last_event_id
    assert split_parser.retry == whole_parser.retry
    # And the events are those written: every event with data, its lines joined by LF.
    expected = []
    last_id, for_type = "", ""
    for event in events:
        data = [v for n, v in event if n == "data"]
        for name, value in event:
            if name == "id":
                last_id = value
            elif name == "event":
                for_type = value
        if data:
            expected.append(Event(for_type or "message", "\n".join(data), last_id))
        for_type = ""
    assert whole == expected
