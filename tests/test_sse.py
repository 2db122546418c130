"""The SSE reader against what real upstreams send."""

from unwalled.protocols.sse import SSEDecoder


def feed_all(chunks: list[bytes]) -> tuple[list[tuple[str | None, str]], SSEDecoder]:
    decoder = SSEDecoder()
    events = []
    for chunk in chunks:
        events += [(e.event, e.data) for e in decoder.feed(chunk)]
    return events, decoder


def test_event_split_across_reads_is_joined():
    events, decoder = feed_all([b"da", b"ta: {\"a\"", b": 1}\n", b"\n"])
    assert events == [(None, '{"a": 1}')]
    assert not decoder.pending


def test_several_events_in_one_read():
    events, _ = feed_all([b"event: x\ndata: 1\n\nevent: y\ndata: 2\n\ndata: [DONE]\n\n"])
    assert events == [("x", "1"), ("y", "2"), (None, "[DONE]")]


def test_comments_and_keepalives_are_skipped():
    events, _ = feed_all([b": keep-alive\n\n", b"\n\n", b":ping\ndata: a\n\n"])
    assert events == [(None, "a")]


def test_crlf_line_ends_even_when_split_between_cr_and_lf():
    events, _ = feed_all([b"data: a\r", b"\n\r\n", b"data: b\r\n\r\n"])
    assert events == [(None, "a"), (None, "b")]


def test_multiline_data_is_joined_with_newlines():
    events, _ = feed_all([b"data: one\ndata: two\n\n"])
    assert events == [(None, "one\ntwo")]


def test_truncated_stream_is_pending_and_close_keeps_the_tail():
    events, decoder = feed_all([b"data: {\"complete\": 1}\n\ndata: {\"cut"])
    assert events == [(None, '{"complete": 1}')]
    assert decoder.pending
    assert [(e.event, e.data) for e in decoder.close()] == [(None, '{"cut')]
