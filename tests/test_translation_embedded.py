"""Translation against real models: the embedded model in process (``local``
backend, tools by constrained decoding) and llama-cpp-python's own
OpenAI-compatible server (``openai`` backend), with the official SDKs as clients.

The 135M model's choice of arguments may be silly, so these tests assert
structure (a well-formed call to an allowed tool, arguments that match its
schema), never wisdom.
"""

from __future__ import annotations

import orjson
import pytest

from tests.conftest import GatewayServer, make_runtime
from tests.sdk_clients import call_pieces, claude, event_shape, gpt, last_row

WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}},
                  "required": ["city"]}
TOOLS_ANTHROPIC = [
    {"name": "get_weather", "description": "Current weather for a city.",
     "input_schema": WEATHER_SCHEMA},
    {"name": "add", "description": "Add two numbers.", "input_schema": {
        "type": "object", "properties": {"a": {"type": "number"},
                                         "b": {"type": "number"}},
        "required": ["a", "b"]}},
]
TOOLS_OPENAI = [{"type": "function", "function": {
    "name": t["name"], "description": t["description"],
    "parameters": t["input_schema"]}} for t in TOOLS_ANTHROPIC]
ALLOWED = {"get_weather", "add"}
# The anthropic SDK no longer takes temperature as an argument; the wire still does.
GREEDY = {"temperature": 0}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def assert_matches_schema(name: str, arguments: dict) -> None:
    """The call's arguments have the keys and types its tool's schema requires."""
    schema = next(t["input_schema"] for t in TOOLS_ANTHROPIC if t["name"] == name)
    kinds = {"string": str, "number": (int, float)}
    assert set(arguments) == set(schema["required"])
    for key, value in arguments.items():
        assert isinstance(value, kinds[schema["properties"][key]["type"]])


# ---- Anthropic ingress -> local backend (the embedded model) ----

def test_anthropic_stream_of_text_from_the_embedded_model(embedded_gateway):
    events = list(claude(embedded_gateway).messages.create(
        model="default", max_tokens=12, extra_body=GREEDY, stream=True,
        system="Answer in one short sentence.",
        messages=[{"role": "user", "content": "Say hello."}]))
    assert event_shape(events) == ["message_start", "start:text", "delta:text_delta",
                             "content_block_stop", "message_delta", "message_stop"]
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text.strip()
    final = events[-2]
    assert final.delta.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 10
    row = last_row(embedded_gateway)
    assert (row["ingress"], row["target"]) == ("anthropic", "local/smollm2-135m")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        final.usage.input_tokens, final.usage.output_tokens)
    assert not row["usage_estimated"]
    assert row["prompt"].startswith("system: Answer in one short sentence.")


def test_anthropic_tool_use_from_the_embedded_model(embedded_gateway):
    message = claude(embedded_gateway).messages.create(
        model="default", max_tokens=40, extra_body=GREEDY, tools=TOOLS_ANTHROPIC,
        tool_choice={"type": "any"}, messages=ASK)
    assert message.stop_reason == "tool_use"
    calls = [b for b in message.content if b.type == "tool_use"]
    assert len(calls) == 1 and calls[0].name in ALLOWED
    assert calls[0].id.startswith("call_")
    assert_matches_schema(calls[0].name, calls[0].input)
    assert message.usage.input_tokens > 50 and message.usage.output_tokens > 0


def test_anthropic_streamed_tool_use_from_the_embedded_model(embedded_gateway):
    events = list(claude(embedded_gateway).messages.create(
        model="default", max_tokens=40, extra_body=GREEDY, tools=TOOLS_ANTHROPIC,
        tool_choice={"type": "tool", "name": "get_weather"}, stream=True,
        messages=ASK))
    assert event_shape(events) == ["message_start", "start:tool_use",
                             "delta:input_json_delta", "content_block_stop",
                             "message_delta", "message_stop"]
    assert events[1].content_block.name == "get_weather"
    arguments = "".join(e.delta.partial_json for e in events
                        if e.type == "content_block_delta")
    assert_matches_schema("get_weather", orjson.loads(arguments))
    assert events[-2].delta.stop_reason == "tool_use"
    assert events[-2].usage.output_tokens > 0


def test_anthropic_tool_result_goes_back_to_the_embedded_model(embedded_gateway):
    message = claude(embedded_gateway).messages.create(
        model="default", max_tokens=8, extra_body=GREEDY, tools=TOOLS_ANTHROPIC,
        tool_choice={"type": "none"}, messages=[
            *ASK,
            {"role": "assistant", "content": [{"type": "tool_use", "id": "call_1",
                                               "name": "get_weather",
                                               "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result",
                                          "tool_use_id": "call_1",
                                          "content": "Sunny, 24 C"}]}])
    assert [b.type for b in message.content] == ["text"]  # tools were switched off
    assert message.content[0].text.strip()
    assert last_row(embedded_gateway)["prompt"].endswith("\ntool: Sunny, 24 C")


# ---- OpenAI ingress -> local backend ----

def test_openai_streamed_tool_call_from_the_embedded_model(embedded_gateway):
    chunks = list(gpt(embedded_gateway).chat.completions.create(
        model="default", max_tokens=40, temperature=0, tools=TOOLS_OPENAI,
        tool_choice="required", stream=True, stream_options={"include_usage": True},
        messages=ASK))
    pieces = call_pieces(chunks)
    assert {p.index for p in pieces} == {0}
    assert pieces[0].id.startswith("call_") and pieces[0].function.name in ALLOWED
    assert all(p.function.name is None for p in pieces[1:])
    arguments = orjson.loads("".join(p.function.arguments or "" for p in pieces))
    assert_matches_schema(pieces[0].function.name, arguments)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage.completion_tokens > 0


def test_openai_auto_tool_choice_gives_text_or_one_well_formed_call(embedded_gateway):
    answer = gpt(embedded_gateway).chat.completions.create(
        model="default", max_tokens=40, temperature=0, tools=TOOLS_OPENAI,
        messages=[{"role": "user", "content": "Add 2 and 3."}])
    choice = answer.choices[0]
    if choice.message.tool_calls:
        call = choice.message.tool_calls[0]
        assert choice.finish_reason == "tool_calls" and call.function.name in ALLOWED
        assert_matches_schema(call.function.name, orjson.loads(call.function.arguments))
    else:
        assert choice.message.content and not choice.message.content.startswith("{")


# ---- Anthropic and OpenAI ingress -> llama-cpp-python's OpenAI-compatible server ----

@pytest.fixture(scope="module")
def llama_gateway(llama_server, tmp_path_factory):
    runtime = make_runtime({
        "backends": {"llama": {"type": "openai", "base_url": llama_server}},
        "routes": {"llama": {"targets": ["llama/smollm2"], "retries": 0,
                             "timeout": 120}}}, tmp_path_factory.mktemp("llama"))
    with GatewayServer(runtime) as server:
        yield server
    runtime.ledger.close()


def test_anthropic_stream_of_text_through_llama_server(llama_gateway):
    events = list(claude(llama_gateway).messages.create(
        model="llama", max_tokens=10, extra_body=GREEDY, stream=True,
        system="Be brief.", messages=[{"role": "user", "content": "Say hello."}]))
    assert event_shape(events) == ["message_start", "start:text", "delta:text_delta",
                             "content_block_stop", "message_delta", "message_stop"]
    final = events[-2]
    assert final.delta.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0
    row = last_row(llama_gateway)
    assert row["target"] == "llama/smollm2"
    # llama-cpp-python's server sends no usage in a stream (it ignores
    # stream_options), so the gateway counts it and says so.
    assert final.usage.model_extra == {"estimated": True}
    assert row["usage_estimated"]


def test_anthropic_tool_use_through_llama_server(llama_gateway):
    client = claude(llama_gateway)
    with client.messages.stream(
            model="llama", max_tokens=40, extra_body=GREEDY, tools=TOOLS_ANTHROPIC,
            tool_choice={"type": "tool", "name": "get_weather"},
            messages=ASK) as stream:
        streamed = stream.get_final_message()
    whole = client.messages.create(
        model="llama", max_tokens=40, extra_body=GREEDY, tools=TOOLS_ANTHROPIC,
        tool_choice={"type": "tool", "name": "get_weather"}, messages=ASK)
    for message in (streamed, whole):
        calls = [b for b in message.content if b.type == "tool_use"]
        assert [c.name for c in calls] == ["get_weather"]  # whole, not repeated
        assert_matches_schema("get_weather", calls[0].input)
        assert message.stop_reason == "tool_use" and message.usage.output_tokens > 0
    assert streamed.content[-1].input == whole.content[-1].input  # temperature 0
    assert not whole.usage.model_extra  # a whole answer from it carries usage


def test_openai_stream_helper_through_llama_server_sees_names_once(llama_gateway):
    strict = [{"type": "function", "function": {**t["function"], "strict": True}}
              for t in TOOLS_OPENAI]
    with gpt(llama_gateway).chat.completions.stream(
            model="llama", max_tokens=40, temperature=0, tools=strict,
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            messages=ASK) as stream:
        completion = stream.get_final_completion()
    calls = completion.choices[0].message.tool_calls
    # llama-cpp-python repeats id and name in every chunk; the gateway sends them once.
    assert [c.function.name for c in calls] == ["get_weather"]
    assert_matches_schema("get_weather", orjson.loads(calls[0].function.arguments))
    assert completion.choices[0].finish_reason == "tool_calls"
