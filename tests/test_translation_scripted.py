"""Translation between wire formats, proved with the official SDKs as clients
against scripted upstreams that speak each format exactly.

Anthropic SDK -> /v1/messages -> ``openai`` backend -> OpenAI-format upstream;
OpenAI SDK -> /v1/chat/completions -> ``anthropic`` backend -> Anthropic-format
upstream. Streaming and not, text and tool calls in one turn, tool results,
system prompts, stop reasons, usage (reported or estimated), SSE quirks, and
streams cut short.
"""

from __future__ import annotations

import anthropic
import openai
import orjson
import pytest

from tests.conftest import gateway_on_two_upstreams
from tests.sdk_clients import call_pieces, claude, event_shape, gpt, last_row

TOOLS_ANTHROPIC = [
    {"name": "lookup", "description": "Find a record.", "input_schema": {
        "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}},
    {"name": "weather", "description": "Weather for a city.", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}},
        "required": ["city"]}},
]
TOOLS_OPENAI = [{"type": "function", "function": {
    "name": t["name"], "description": t["description"],
    "parameters": t["input_schema"]}} for t in TOOLS_ANTHROPIC]
TEXT_AND_TWO_CALLS = {
    "text": "Let me look both up for you.",
    "tool_calls": [{"name": "lookup", "arguments": {"q": "alpha beta gamma"}},
                   {"name": "weather", "arguments": {"city": "Zürich"}}],
    "usage": {"prompt_tokens": 31, "completion_tokens": 17},
}
TEXT_AND_TWO_CALLS_EVENTS = [  # runs of deltas folded into one
    "message_start",
    "start:text", "delta:text_delta", "content_block_stop",
    "start:tool_use", "delta:input_json_delta", "content_block_stop",
    "start:tool_use", "delta:input_json_delta", "content_block_stop",
    "message_delta", "message_stop"]
EXPECTED_CALLS = [("lookup", {"q": "alpha beta gamma"}),
                  ("weather", {"city": "Zürich"})]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """Routes ``oa`` (an OpenAI-format upstream) and ``an`` (an Anthropic one).
    Each test sets the scripts it needs."""
    # These tests compare what reaches the upstream with what was sent, so the
    # input shield's spotlighting (on by default) is turned off here.
    with gateway_on_two_upstreams(tmp_path_factory.mktemp("translation"), {
            "oa": {"targets": ["oa/up-model"], "retries": 0},
            "an": {"targets": ["an/up-model"], "retries": 0}},
            shield={"spotlight": False}) as running:
        yield running


# ---- Anthropic ingress -> OpenAI-format upstream ----

def test_anthropic_stream_from_openai_upstream_has_the_exact_event_sequence(gateway):
    server, oa, _ = gateway
    oa.reset_script([TEXT_AND_TWO_CALLS])
    events = list(claude(server).messages.create(
        model="oa", max_tokens=100, tools=TOOLS_ANTHROPIC, stream=True,
        system="You are terse.",
        messages=[{"role": "user", "content": "look up alpha, and Zürich weather"}]))

    assert event_shape(events) == TEXT_AND_TWO_CALLS_EVENTS
    starts = [e for e in events if e.type == "content_block_start"]
    assert [e.index for e in starts] == [0, 1, 2]
    assert [(b.content_block.name, b.content_block.input) for b in starts[1:]] == [
        ("lookup", {}), ("weather", {})]
    assert all(e.content_block.id for e in starts[1:])
    stops = [e.index for e in events if e.type == "content_block_stop"]
    assert stops == [0, 1, 2]
    arguments = {i: "".join(e.delta.partial_json for e in events
                            if e.type == "content_block_delta" and e.index == i)
                 for i in (1, 2)}
    assert [orjson.loads(arguments[i]) for i in (1, 2)] == \
        [c[1] for c in EXPECTED_CALLS]
    assert events[0].message.usage.output_tokens == 0
    final = events[-2]
    assert final.delta.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (31, 17)

    sent = oa.requests[-1]
    assert sent["messages"][0] == {"role": "system", "content": "You are terse."}
    assert [t["function"]["name"] for t in sent["tools"]] == ["lookup", "weather"]
    assert sent["tools"][0]["function"]["parameters"] == \
        TOOLS_ANTHROPIC[0]["input_schema"]
    assert sent["stream"] and sent["stream_options"] == {"include_usage": True}


def test_anthropic_sdk_accumulates_the_translated_stream(gateway):
    server, oa, _ = gateway
    oa.reset_script([TEXT_AND_TWO_CALLS])
    with claude(server).messages.stream(
            model="oa", max_tokens=100, tools=TOOLS_ANTHROPIC,
            tool_choice={"type": "any"},
            messages=[{"role": "user", "content": "look up alpha"}]) as stream:
        message = stream.get_final_message()
    assert message.content[0].type == "text"
    assert message.content[0].text == TEXT_AND_TWO_CALLS["text"]
    assert [(b.name, b.input) for b in message.content[1:]] == EXPECTED_CALLS
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (31, 17)
    assert oa.requests[-1]["tool_choice"] == "required"
    row = last_row(server)
    assert (row["ingress"], row["stream"], row["status"]) == ("anthropic", 1, 200)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (31, 17)
    assert not row["usage_estimated"]


def test_anthropic_message_from_openai_upstream_keeps_text_and_calls(gateway):
    server, oa, _ = gateway
    oa.reset_script([TEXT_AND_TWO_CALLS])
    message = claude(server).messages.create(
        model="oa", max_tokens=100, tools=TOOLS_ANTHROPIC,
        tool_choice={"type": "tool", "name": "weather"},
        system=[{"type": "text", "text": "Part one."},
                {"type": "text", "text": "Two."}],
        messages=[{"role": "user", "content": "weather?"}])
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[0].text == TEXT_AND_TWO_CALLS["text"]
    assert [(b.name, b.input) for b in message.content[1:]] == EXPECTED_CALLS
    assert message.content[1].id == "call_0"  # the upstream's id, kept for the reply
    assert message.stop_reason == "tool_use" and message.model == "oa"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (31, 17)
    sent = oa.requests[-1]
    assert sent["messages"][0] == {"role": "system", "content": "Part one.\n\nTwo."}
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "weather"}}


def test_tool_results_round_trip_from_anthropic_blocks_to_tool_messages(gateway):
    server, oa, _ = gateway
    oa.reset_script(["It is sunny."])
    message = claude(server).messages.create(
        model="oa", max_tokens=50, tools=TOOLS_ANTHROPIC, messages=[
            {"role": "user", "content": "Weather in Bern and Basel?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather",
                 "input": {"city": "Bern"}},
                {"type": "tool_use", "id": "toolu_2", "name": "weather",
                 "input": {"city": "Basel"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_2",
                 "content": [{"type": "text", "text": "rain"}]},
                {"type": "text", "text": "Summarise."}]}])
    assert message.content[0].text == "It is sunny."
    assert message.stop_reason == "end_turn"
    sent = oa.requests[-1]["messages"]
    assert sent[1] == {"role": "assistant", "content": "Checking.", "tool_calls": [
        {"id": "toolu_1", "type": "function",
         "function": {"name": "weather", "arguments": '{"city":"Bern"}'}},
        {"id": "toolu_2", "type": "function",
         "function": {"name": "weather", "arguments": '{"city":"Basel"}'}}]}
    assert sent[2:] == [
        {"role": "tool", "content": "sunny", "tool_call_id": "toolu_1"},
        {"role": "tool", "content": "rain", "tool_call_id": "toolu_2"},
        {"role": "user", "content": "Summarise."}]


# ---- OpenAI ingress -> Anthropic-format upstream ----

def test_openai_stream_from_anthropic_upstream_carries_indexes_names_and_usage(gateway):
    server, _, an = gateway
    an.reset_script([TEXT_AND_TWO_CALLS])
    chunks = list(gpt(server).chat.completions.create(
        model="an", tools=TOOLS_OPENAI, stream=True, tool_choice="required",
        stream_options={"include_usage": True},
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "look up alpha"}]))

    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TEXT_AND_TWO_CALLS["text"]
    pieces = call_pieces(chunks)
    assert all(p.index in (0, 1) for p in pieces)
    firsts = {}
    for piece in pieces:
        firsts.setdefault(piece.index, piece)
    assert [(firsts[i].function.name, firsts[i].type) for i in (0, 1)] == [
        ("lookup", "function"), ("weather", "function")]
    assert [firsts[i].id for i in (0, 1)] == ["toolu_0", "toolu_1"]  # upstream ids
    named = [p for p in pieces if p.function and p.function.name]
    assert len(named) == 2  # a name is sent once, never repeated
    arguments = ["".join(p.function.arguments or "" for p in pieces if p.index == i)
                 for i in (0, 1)]
    assert [orjson.loads(a) for a in arguments] == [c[1] for c in EXPECTED_CALLS]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "tool_calls" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (31, 17)

    sent = an.requests[-1]
    assert sent["system"] == "Be brief."
    assert [m["role"] for m in sent["messages"]] == ["user"]
    assert sent["tools"][1] == {"name": "weather", "description": "Weather for a city.",
                                "input_schema": TOOLS_ANTHROPIC[1]["input_schema"]}
    assert sent["tool_choice"] == {"type": "any"} and sent["stream"] is True


def test_openai_sdk_stream_helper_accumulates_calls_whole(gateway):
    server, _, an = gateway
    an.reset_script([TEXT_AND_TWO_CALLS])
    strict = [{"type": "function", "function": {**t["function"], "strict": True}}
              for t in TOOLS_OPENAI]
    with gpt(server).chat.completions.stream(
            model="an", tools=strict,
            messages=[{"role": "user", "content": "look up alpha"}]) as stream:
        completion = stream.get_final_completion()
    message = completion.choices[0].message
    assert message.content == TEXT_AND_TWO_CALLS["text"]
    assert [(c.function.name, orjson.loads(c.function.arguments))
            for c in message.tool_calls] == EXPECTED_CALLS
    assert completion.choices[0].finish_reason == "tool_calls"


def test_openai_completion_from_anthropic_upstream(gateway):
    server, _, an = gateway
    an.reset_script([TEXT_AND_TWO_CALLS])
    answer = gpt(server).chat.completions.create(
        model="an", tools=TOOLS_OPENAI,
        tool_choice={"type": "function", "function": {"name": "lookup"}},
        messages=[{"role": "developer", "content": "Be brief."},
                  {"role": "user", "content": "look up alpha"}])
    message = answer.choices[0].message
    assert message.content == TEXT_AND_TWO_CALLS["text"]
    assert [(c.id, c.function.name, orjson.loads(c.function.arguments))
            for c in message.tool_calls] == [
        ("toolu_0", *EXPECTED_CALLS[0]), ("toolu_1", *EXPECTED_CALLS[1])]
    assert answer.choices[0].finish_reason == "tool_calls"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (31, 17)
    assert an.requests[-1]["tool_choice"] == {"type": "tool", "name": "lookup"}
    assert an.requests[-1]["system"] == "Be brief."


def test_tool_results_round_trip_from_tool_messages_to_anthropic_blocks(gateway):
    server, _, an = gateway
    an.reset_script(["Bern is sunny."])
    answer = gpt(server).chat.completions.create(
        model="an", tools=TOOLS_OPENAI, messages=[
            {"role": "user", "content": "Weather in Bern and Basel?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {
                    "name": "weather", "arguments": '{"city": "Bern"}'}},
                {"id": "call_b", "type": "function", "function": {
                    "name": "weather", "arguments": '{"city": "Basel"}'}}]},
            {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_b", "content": "rain"},
            {"role": "user", "content": "Summarise."}])
    assert answer.choices[0].message.content == "Bern is sunny."
    assert an.requests[-1]["messages"] == [
        {"role": "user", "content": [{"type": "text",
                                      "text": "Weather in Bern and Basel?"}]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "call_a", "name": "weather",
             "input": {"city": "Bern"}},
            {"type": "tool_use", "id": "call_b", "name": "weather",
             "input": {"city": "Basel"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_a", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "call_b", "content": "rain"},
            {"type": "text", "text": "Summarise."}]}]


def test_anthropic_ingress_to_anthropic_upstream_keeps_the_stream_whole(gateway):
    server, _, an = gateway
    an.reset_script([{**TEXT_AND_TWO_CALLS, "keepalive": True}])
    events = list(claude(server).messages.create(
        model="an", max_tokens=100, tools=TOOLS_ANTHROPIC, stream=True,
        system="You are terse.", messages=[{"role": "user", "content": "x"}]))
    assert event_shape(events) == TEXT_AND_TWO_CALLS_EVENTS
    starts = [e.content_block for e in events if e.type == "content_block_start"]
    assert [(b.id, b.name) for b in starts[1:]] == [("toolu_0", "lookup"),
                                                    ("toolu_1", "weather")]
    assert (events[-2].usage.input_tokens, events[-2].usage.output_tokens) == (31, 17)
    assert an.requests[-1]["system"] == "You are terse."


# ---- stop reasons, both ways ----

@pytest.mark.parametrize("finish, stop_reason", [
    ("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"),
    ("content_filter", "refusal")])
def test_openai_finish_reasons_become_anthropic_stop_reasons(gateway, finish,
                                                             stop_reason):
    server, oa, _ = gateway
    oa.reset_script([{"text": "partial", "finish": finish}] * 2)
    message = claude(server).messages.create(
        model="oa", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    events = list(claude(server).messages.create(
        model="oa", max_tokens=10, stream=True,
        messages=[{"role": "user", "content": "hi"}]))
    assert message.stop_reason == stop_reason
    assert events[-2].delta.stop_reason == stop_reason


@pytest.mark.parametrize("stop_reason, finish", [
    ("end_turn", "stop"), ("max_tokens", "length"), ("stop_sequence", "stop"),
    ("tool_use", "tool_calls"), ("refusal", "content_filter"),
    ("model_context_window_exceeded", "length")])
def test_anthropic_stop_reasons_become_openai_finish_reasons(gateway, stop_reason,
                                                             finish):
    server, _, an = gateway
    an.reset_script([{"text": "partial", "finish": stop_reason}] * 2)
    answer = gpt(server).chat.completions.create(
        model="an", messages=[{"role": "user", "content": "hi"}])
    chunks = list(gpt(server).chat.completions.create(
        model="an", stream=True, messages=[{"role": "user", "content": "hi"}]))
    assert answer.choices[0].finish_reason == finish
    assert chunks[-1].choices[0].finish_reason == finish


# ---- usage: reported, or counted and marked ----

def test_usage_is_estimated_and_marked_when_an_openai_upstream_omits_it(gateway):
    server, oa, _ = gateway
    oa.reset_script([{**TEXT_AND_TWO_CALLS, "omit_usage": True}] * 2)
    message = claude(server).messages.create(
        model="oa", max_tokens=100, tools=TOOLS_ANTHROPIC,
        messages=[{"role": "user", "content": "look up alpha"}])
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message.usage.model_extra == {"estimated": True}
    assert last_row(server)["usage_estimated"]

    events = list(claude(server).messages.create(
        model="oa", max_tokens=100, tools=TOOLS_ANTHROPIC, stream=True,
        messages=[{"role": "user", "content": "look up alpha"}]))
    usage = events[-2].usage
    # The estimate counts the tool calls too, not only the text.
    assert usage.output_tokens > len(TEXT_AND_TWO_CALLS["text"]) // 4
    assert usage.input_tokens > 0 and usage.model_extra == {"estimated": True}
    row = last_row(server)
    assert row["usage_estimated"] and row["stream"]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        usage.input_tokens, usage.output_tokens)


def test_usage_is_estimated_and_marked_when_an_anthropic_upstream_omits_it(gateway):
    server, _, an = gateway
    an.reset_script([{"text": "Twelve words of answer here.", "omit_usage": True}] * 2)
    answer = gpt(server).chat.completions.create(
        model="an", messages=[{"role": "user", "content": "hi"}])
    assert answer.usage.completion_tokens > 0
    assert answer.usage.model_extra == {"estimated": True}
    chunks = list(gpt(server).chat.completions.create(
        model="an", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "hi"}]))
    assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens
    assert chunks[-1].usage.model_extra == {"estimated": True}
    assert last_row(server)["usage_estimated"]


# ---- what real upstreams send over the wire ----

@pytest.mark.parametrize("quirk", [
    {"keepalive": True}, {"write_size": 3, "chunk_delay": 0.001},
    {"write_size": 1_000_000}, {"keepalive": True, "write_size": 7}],
    ids=["keepalives", "split-across-reads", "all-in-one-read", "both"])
def test_sse_quirks_change_nothing_the_client_sees(gateway, quirk):
    server, oa, an = gateway
    oa.reset_script([{**TEXT_AND_TWO_CALLS, **quirk}])
    an.reset_script([{**TEXT_AND_TWO_CALLS, **quirk}])
    with claude(server).messages.stream(
            model="oa", max_tokens=100, tools=TOOLS_ANTHROPIC,
            messages=[{"role": "user", "content": "x"}]) as stream:
        message = stream.get_final_message()
    assert message.content[0].text == TEXT_AND_TWO_CALLS["text"]
    assert [(b.name, b.input) for b in message.content[1:]] == EXPECTED_CALLS
    assert message.usage.output_tokens == 17

    chunks = list(gpt(server).chat.completions.create(
        model="an", tools=TOOLS_OPENAI, stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "x"}]))
    pieces = call_pieces(chunks)
    arguments = ["".join(p.function.arguments or "" for p in pieces if p.index == i)
                 for i in (0, 1)]
    assert [orjson.loads(a) for a in arguments] == [c[1] for c in EXPECTED_CALLS]
    assert chunks[-1].usage.completion_tokens == 17


def test_a_stream_cut_after_it_began_ends_in_an_anthropic_error_event(gateway):
    server, oa, _ = gateway
    oa.reset_script([{"text": "word " * 30, "truncate": True}])
    seen = []
    with pytest.raises(anthropic.APIStatusError) as err:
        for event in claude(server).messages.create(
                model="oa", max_tokens=100, stream=True,
                messages=[{"role": "user", "content": "x"}]):
            seen.append(event.type)
    assert seen[:2] == ["message_start", "content_block_start"]
    assert "message_stop" not in seen
    assert err.value.body["type"] == "error"
    assert err.value.body["error"]["type"] == "api_error"
    assert "broke off" in err.value.body["error"]["message"]
    row = last_row(server)
    assert (row["status"], row["outcome"], row["stream"]) == (502, "error", 1)
    assert row["error_code"] == "backend_protocol_error"


def test_a_stream_cut_after_it_began_ends_in_an_openai_error(gateway):
    server, _, an = gateway
    an.reset_script([{"text": "word " * 30, "truncate": True}])
    seen = []
    with pytest.raises(openai.APIError) as err:
        for chunk in gpt(server).chat.completions.create(
                model="an", stream=True, messages=[{"role": "user", "content": "x"}]):
            seen.append(chunk.choices[0].delta.content)
    assert seen and "broke off" in err.value.message
    row = last_row(server)
    assert (row["status"], row["outcome"]) == (502, "error")


def test_a_stream_cut_before_anything_was_sent_is_a_clean_http_error(gateway):
    server, oa, _ = gateway
    oa.reset_script([{"text": "hi", "truncate": True}])
    with pytest.raises(anthropic.InternalServerError) as err:
        list(claude(server).messages.create(
            model="oa", max_tokens=10, stream=True,
            messages=[{"role": "user", "content": "x"}]))
    assert err.value.status_code == 502
    assert err.value.body["error"]["type"] == "api_error"
    assert last_row(server)["status"] == 502


# ---- bad requests at the Anthropic ingress ----

def test_anthropic_ingress_refuses_bad_requests_in_its_own_error_format(gateway):
    server, _, _ = gateway
    client = claude(server)
    with pytest.raises(anthropic.NotFoundError) as err:
        client.messages.create(model="nope", max_tokens=5,
                               messages=[{"role": "user", "content": "x"}])
    assert err.value.body["error"]["type"] == "not_found_error"
    assert "oa" in err.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model="oa", max_tokens=5, tools=TOOLS_ANTHROPIC,
                               tool_choice={"type": "tool", "name": "missing"},
                               messages=[{"role": "user", "content": "x"}])
    assert "'missing'" in err.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model="oa", max_tokens=5, messages=[
            {"role": "user", "content": [{"type": "image", "source": {
                "type": "url", "url": "http://example.invalid/a.png"}}]}])
    assert "image" in err.value.body["error"]["message"]
    assert last_row(server)["ingress"] == "anthropic"
