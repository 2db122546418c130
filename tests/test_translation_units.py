"""The translation pieces on their own: stream reader and writer edge cases that a
scripted upstream does not produce, and the local backend's tool grammar."""

from __future__ import annotations

import orjson
import pytest

from unwalled.backends import tool_grammar
from unwalled.backends.base import (
    ChatRequest, Delta, Message, Tool, ToolCall, ToolCallDelta, Usage, collect,
)
from unwalled.errors import BackendProtocolError
from unwalled.protocols import anthropic as anthropic_wire
from unwalled.protocols import openai as openai_wire
from unwalled.protocols.sse import SSEDecoder

WEATHER = Tool("weather", "Weather for a city.", {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
CLOCK = Tool("clock", "The time now.", {})


def events_of(frames: bytes) -> list[tuple[str, dict]]:
    decoder = SSEDecoder()
    return [(e.event, orjson.loads(e.data)) for e in decoder.feed(frames)]


def test_writer_waits_for_a_name_before_starting_a_tool_block():
    writer = anthropic_wire.StreamWriter("r", "msg_1")
    out = writer.start()
    out += writer.delta(Delta(tool_calls=[ToolCallDelta(index=0, id="c1")]))
    out += writer.delta(Delta(tool_calls=[ToolCallDelta(index=0, arguments='{"ci')]))
    assert [name for name, _ in events_of(out)] == ["message_start"]
    out += writer.delta(Delta(tool_calls=[ToolCallDelta(index=0, name="weather",
                                                        arguments='ty": "Bern"}')]))
    out += writer.finish("tool_calls", Usage(3, 4))
    events = events_of(out)
    assert [name for name, _ in events] == [
        "message_start", "content_block_start", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop"]
    start = events[1][1]["content_block"]
    assert (start["id"], start["name"], start["input"]) == ("c1", "weather", {})
    assert events[2][1]["delta"] == {"type": "input_json_delta",
                                     "partial_json": '{"city": "Bern"}'}
    assert events[4][1]["delta"]["stop_reason"] == "tool_use"
    assert events[4][1]["usage"] == {"input_tokens": 3, "output_tokens": 4}


def test_writer_keeps_a_late_piece_of_an_earlier_call_on_that_calls_block():
    writer = anthropic_wire.StreamWriter("r", "msg_1")
    out = writer.delta(Delta(tool_calls=[ToolCallDelta(0, "a", "clock", "{")]))
    out += writer.delta(Delta(tool_calls=[ToolCallDelta(1, "b", "weather", "{")]))
    out += writer.delta(Delta(tool_calls=[ToolCallDelta(0, arguments="}")]))
    out += writer.delta(Delta(tool_calls=[ToolCallDelta(1, arguments="}")]))
    pieces = [(e["index"], e["delta"]["partial_json"]) for name, e in events_of(out)
              if name == "content_block_delta"]
    assert pieces == [(0, "{"), (1, "{"), (0, "}"), (1, "}")]


def test_writer_gives_an_empty_answer_one_empty_text_block():
    writer = anthropic_wire.StreamWriter("r", "msg_1")
    events = events_of(writer.start() + writer.finish("length", Usage(2, 0, True)))
    assert [name for name, _ in events] == [
        "message_start", "content_block_start", "content_block_stop",
        "message_delta", "message_stop"]
    assert events[3][1]["delta"]["stop_reason"] == "max_tokens"
    assert events[3][1]["usage"]["estimated"] is True


def test_tracker_drops_repeated_ids_and_names_but_keeps_every_argument_piece():
    tracker = openai_wire.ToolCallTracker()
    repeated = [  # what llama-cpp-python's server sends: id and name every time
        [ToolCallDelta(0, "call_x", "weather", '{"city"')],
        [ToolCallDelta(0, "call_x", "weather", ': "Bern"}')],
        [ToolCallDelta(1, "call_y", "clock", "{}")],
    ]
    cleaned = [tracker.clean(calls) for calls in repeated]
    assert [(c[0].index, c[0].id, c[0].name, c[0].arguments) for c in cleaned] == [
        (0, "call_x", "weather", '{"city"'), (0, None, None, ': "Bern"}'),
        (1, "call_y", "clock", "{}")]
    whole = collect([Delta(tool_calls=c) for c in cleaned], "m").tool_calls
    assert [(c.name, orjson.loads(c.arguments)) for c in whole] == [
        ("weather", {"city": "Bern"}), ("clock", {})]


def test_tracker_numbers_calls_that_came_without_an_index():
    tracker = openai_wire.ToolCallTracker()
    chunks = [{"choices": [{"delta": {"tool_calls": [piece]}}]} for piece in (
        {"id": "a", "function": {"name": "clock", "arguments": "{"}},
        {"function": {"arguments": "}"}},
        {"id": "b", "function": {"name": "weather", "arguments": '{"city"'}},
        {"id": "b", "function": {"arguments": ': "Bern"}'}})]
    deltas = [openai_wire.parse_chunk(chunk) for chunk in chunks]
    for delta in deltas:
        delta.tool_calls = tracker.clean(delta.tool_calls)
    assert [c.index for d in deltas for c in d.tool_calls] == [0, 0, 1, 1]
    whole = collect(deltas, "m").tool_calls
    assert [(c.id, c.name, orjson.loads(c.arguments)) for c in whole] == [
        ("a", "clock", {}), ("b", "weather", {"city": "Bern"})]


def anthropic_events(*events: dict) -> list[Delta]:
    reader = anthropic_wire.StreamReader("an/m")
    return [delta for event in events
            for delta in reader.event(event["type"], orjson.dumps(event).decode())]


def test_reader_gives_a_call_without_input_deltas_whole_json():
    deltas = anthropic_events(
        {"type": "message_start", "message": {"usage": {
            "input_tokens": 5, "cache_read_input_tokens": 100, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "tool_use", "id": "t1", "name": "clock",
                           "input": {}}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {
            "type": "tool_use", "id": "t2", "name": "weather",
            "input": {"city": "Bern"}}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
         "usage": {"output_tokens": 9}},
        {"type": "message_stop"})
    answer = collect(deltas, "an/m")
    assert [(c.id, c.name, orjson.loads(c.arguments)) for c in answer.tool_calls] == [
        ("t1", "clock", {}), ("t2", "weather", {"city": "Bern"})]
    assert answer.finish_reason == "tool_calls"


def test_reader_counts_cache_tokens_as_prompt_and_takes_running_totals():
    reader = anthropic_wire.StreamReader("an/m")
    for event in (
            {"type": "message_start", "message": {"usage": {
                "input_tokens": 5, "cache_creation_input_tokens": 7,
                "output_tokens": 1}}},
            {"type": "ping"},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
             "usage": {"output_tokens": 9, "input_tokens": 6}},
            {"type": "message_stop"}):
        reader.event(event["type"], orjson.dumps(event).decode())
    assert (reader.usage.prompt_tokens, reader.usage.completion_tokens) == (13, 9)
    assert reader.stopped and reader.saw_usage


def test_reader_turns_an_error_event_into_a_backend_error():
    reader = anthropic_wire.StreamReader("an/m")
    with pytest.raises(BackendProtocolError) as err:
        reader.event("error", '{"type": "error", "error": {"type": '
                              '"overloaded_error", "message": "busy"}}')
    assert err.value.retryable and "busy" in err.value.message


# ---- the local backend's tool grammar ----

def tool_request(choice=None) -> ChatRequest:
    return ChatRequest(messages=[Message("system", "Be kind."), Message("user", "hi")],
                       tools=[WEATHER, CLOCK], tool_choice=choice)


def test_schema_offers_text_or_each_allowed_call():
    schema = tool_grammar.decoding_schema(tool_request())
    shapes = schema["oneOf"]
    assert shapes[0]["required"] == ["answer"]
    assert [s["properties"]["tool"] for s in shapes[1:]] == [
        {"const": "weather"}, {"const": "clock"}]
    assert shapes[1]["properties"]["arguments"] == WEATHER.parameters
    assert shapes[2]["properties"]["arguments"] == {"type": "object"}
    assert all(s["additionalProperties"] is False for s in shapes)


def test_tool_choice_narrows_the_schema():
    required = tool_grammar.decoding_schema(tool_request("required"))
    assert [s["properties"]["tool"]["const"] for s in required["oneOf"]] == [
        "weather", "clock"]
    named = tool_grammar.decoding_schema(tool_request(
        {"type": "function", "function": {"name": "clock"}}))
    assert named["properties"]["tool"] == {"const": "clock"}
    assert not tool_grammar.uses_tools(tool_request("none"))


def test_prepare_puts_tools_in_the_system_prompt_and_drops_them_from_the_request():
    request = tool_request()
    request.messages.insert(2, Message("assistant", None, tool_calls=[
        ToolCall("c1", "clock", "{}")]))
    prepared = tool_grammar.prepare(request)
    system = prepared.messages[0].content
    assert system.startswith("Be kind.\n\n")
    assert "weather: Weather for a city." in system
    assert prepared.tools is None and prepared.json_schema is not None
    assert prepared.messages[2].content == '{"tool":"clock","arguments":{}}'


def test_parse_answer_gives_text_or_a_call_with_a_fresh_id():
    request = tool_request()
    answer = tool_grammar.parse_answer('{"answer": "Hello."}', request)
    assert answer == ("Hello.", None)
    text, calls = tool_grammar.parse_answer(
        '{"tool": "weather", "arguments": {"city": "Bern"}}', request)
    assert text == "" and calls[0].name == "weather"
    assert orjson.loads(calls[0].arguments) == {"city": "Bern"}
    assert calls[0].id.startswith("call_") and len(calls[0].id) > 10
    # Cut by max_tokens: the answer begun, never the grammar's JSON wrapper.
    assert tool_grammar.parse_answer('{"tool": "weather", "argu', request) == ("", None)
    assert tool_grammar.parse_answer('{"answer": "Hello, wor', request) == (
        "Hello, wor", None)
    assert tool_grammar.parse_answer('{"', request) == ("", None)
    # A name outside tool_choice is not a call, even if the JSON says so.
    named = tool_request({"type": "function", "function": {"name": "clock"}})
    wrong = '{"tool": "weather", "arguments": {}}'
    assert tool_grammar.parse_answer(wrong, named) == (wrong, None)


def stream_answer(text: str, size: int, request: ChatRequest,
                  finish: str = "stop") -> list[Delta]:
    answer = tool_grammar.AnswerStream(request)
    deltas = [delta for i in range(0, len(text), size)
              for delta in answer.feed(text[i:i + size])]
    return deltas + answer.finish(finish)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_answer_stream_turns_json_into_text_or_call_pieces_however_it_is_cut(size):
    request = tool_request()
    text = collect(stream_answer('{"answer": "Say \\"hi\\" \\u00e9\\n}"}', size,
                                 request), "m")
    assert (text.text, text.tool_calls, text.finish_reason) == (
        'Say "hi" é\n}', None, "stop")
    decoded = '{ "tool": "weather", "arguments": {"city": "B}e", "n": {"a": 1}} }'
    deltas = stream_answer(decoded, size, request)
    call = collect(deltas, "m")
    assert call.finish_reason == "tool_calls" and call.text == ""
    assert call.tool_calls[0].name == "weather"
    assert call.tool_calls[0].arguments == '{"city": "B}e", "n": {"a": 1}}'
    starts = [c for d in deltas for c in d.tool_calls or () if c.name]
    assert len(starts) == 1 and starts[0].index == 0
    assert starts[0].id.startswith("call_")


def test_answer_stream_reports_a_cut_call_as_length_and_a_foreign_name_as_text():
    cut = collect(stream_answer('{"tool": "clock", "arguments": {"a"', 4,
                                tool_request(), finish="length"), "m")
    assert (cut.tool_calls[0].arguments, cut.finish_reason) == ('{"a"', "length")
    named = tool_request({"type": "function", "function": {"name": "clock"}})
    foreign = '{"tool": "weather", "arguments": {}}'
    raw = collect(stream_answer(foreign, 5, named), "m")
    assert (raw.text, raw.tool_calls) == (foreign, None)
