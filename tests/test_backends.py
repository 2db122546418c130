"""Backends: local (the embedded model), openai (against llama.cpp's own server and
a scripted one), anthropic (a scripted server speaking the real wire format) and mock."""

from __future__ import annotations

import orjson
import pytest

from unwalled.backends import build_backend
from unwalled.backends.base import ChatRequest, Message, Tool, collect
from unwalled.config import BackendConfig
from unwalled.errors import (
    BackendError, BackendProtocolError, BackendRateLimited, BackendUnavailable,
)

HELLO = ChatRequest(messages=[Message("user", "What is 2+2?")],
                    max_tokens=24, temperature=0.0)
WEATHER = Tool(name="get_weather", description="Weather for a city",
               parameters={"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]})


# ---- local ----

async def test_local_answers_with_exact_usage(local_backend):
    answer = await local_backend.complete(HELLO, "smollm2-135m")
    assert answer.text.strip()
    assert "4" in answer.text
    assert answer.model == "local/smollm2-135m"
    assert 10 < answer.usage.prompt_tokens < 60
    assert 0 < answer.usage.completion_tokens <= 24
    assert not answer.usage.estimated


async def test_local_stream_matches_the_plain_answer(local_backend):
    plain = await local_backend.complete(HELLO, "smollm2-135m")
    pieces = [d async for d in local_backend.stream(HELLO, "smollm2-135m")]
    streamed = collect(pieces, "local/smollm2-135m")
    assert streamed.text == plain.text  # temperature 0: the same tokens
    assert streamed.usage.completion_tokens == plain.usage.completion_tokens
    assert streamed.usage.prompt_tokens == plain.usage.prompt_tokens
    assert len([p for p in pieces if p.text]) > 1


async def test_local_constrained_decoding_gives_schema_valid_json(local_backend):
    schema = {"type": "object", "properties": {"city": {"type": "string"},
                                               "country": {"enum": ["France", "Spain"]}},
              "required": ["city", "country"]}
    request = HELLO.replace(json_schema=schema, max_tokens=60)
    answer = await local_backend.complete(request, "smollm2-135m")
    value = orjson.loads(answer.text)
    assert set(value) == {"city", "country"} and value["country"] in ("France", "Spain")
    assert answer.constrained


async def test_local_logprobs_match_llama_cpps_own_from_a_logits_all_model(
        local_backend):
    """The backend reads each chosen token's log-probability off the row it was
    sampled from; llama-cpp-python computes the same numbers only from a model
    that keeps every row (``logits_all``). Both must agree."""
    from llama_cpp import Llama

    from unwalled.backends.local import embedded_model_path

    request = HELLO.replace(logprobs=True, max_tokens=12)
    answer = await local_backend.complete(request, "smollm2-135m")
    keeping_all = Llama(model_path=str(embedded_model_path()), n_ctx=512, verbose=False,
                        logits_all=True, seed=0)
    try:
        raw = keeping_all.create_chat_completion(
            messages=[{"role": "user", "content": "What is 2+2?"}], max_tokens=12,
            temperature=0.0, logprobs=True, top_logprobs=1)
    finally:
        keeping_all.close()
    theirs = [item["logprob"] for item in raw["choices"][0]["logprobs"]["content"]]
    assert answer.text == raw["choices"][0]["message"]["content"]
    assert len(answer.logprobs) == answer.usage.completion_tokens == len(theirs)
    assert answer.logprobs == pytest.approx(theirs, abs=1e-4)
    assert all(value <= 0.0 for value in answer.logprobs)
    plain = await local_backend.complete(HELLO, "smollm2-135m")
    assert plain.logprobs is None


# ---- openai, against llama-cpp-python's own OpenAI-compatible server ----

async def test_openai_backend_against_a_real_openai_compatible_server(llama_server):
    backend = build_backend("llamacpp", BackendConfig(type="openai", base_url=llama_server))
    try:
        answer = await backend.complete(HELLO, "smollm2")
        pieces = [d async for d in backend.stream(HELLO, "smollm2")]
    finally:
        await backend.close()
    assert "4" in answer.text
    assert answer.usage.prompt_tokens > 10 and not answer.usage.estimated
    streamed = collect(pieces, "x")
    assert streamed.text == answer.text
    assert streamed.finish_reason in ("stop", "length")
    assert streamed.usage.completion_tokens > 0


async def test_openai_backend_tool_calls_arrive_whole(upstream):
    scripted, url = upstream
    scripted.reset_script([{"tool_calls": [{"name": "get_weather",
                                            "arguments": {"city": "Paris"}}]}])
    backend = build_backend("s", BackendConfig(type="openai", base_url=url + "/v1"))
    request = HELLO.replace(tools=[WEATHER])
    pieces = [d async for d in backend.stream(request, "m")]
    await backend.close()
    answer = collect(pieces, "s/m")
    assert answer.tool_calls and answer.tool_calls[0].name == "get_weather"
    assert orjson.loads(answer.tool_calls[0].arguments) == {"city": "Paris"}
    assert answer.finish_reason == "tool_calls"
    sent = scripted.requests[0]
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["stream_options"] == {"include_usage": True}


async def test_openai_backend_maps_upstream_faults(upstream):
    scripted, url = upstream
    backend = build_backend("s", BackendConfig(type="openai", base_url=url + "/v1"))
    try:
        await _check_faults(scripted, backend)
    finally:
        await backend.close()


async def _check_faults(scripted, backend):
    scripted.reset_script([{"status": 429, "retry_after": 7}])
    with pytest.raises(BackendRateLimited) as err:
        await backend.complete(HELLO, "m")
    assert err.value.retry_after == 7 and err.value.retryable
    scripted.reset_script([{"malformed": True}])
    with pytest.raises(BackendProtocolError):
        await backend.complete(HELLO, "m")
    scripted.reset_script([{"text": "a long answer cut short", "truncate": True}])
    with pytest.raises((BackendProtocolError, BackendUnavailable)):
        [d async for d in backend.stream(HELLO, "m")]
    scripted.reset_script([{"text": "keep alive", "keepalive": True}])
    assert collect([d async for d in backend.stream(HELLO, "m")], "x").text == "keep alive"
    scripted.reset_script([{"text": "no usage here", "omit_usage": True}])
    usage = collect([d async for d in backend.stream(HELLO, "m")], "x").usage
    assert usage.estimated and usage.completion_tokens > 0


async def test_an_unset_key_variable_is_named_when_the_upstream_refuses(
        upstream, monkeypatch, caplog):
    scripted, url = upstream
    monkeypatch.delenv("UNWALLED_TEST_ABSENT_KEY", raising=False)
    with caplog.at_level("WARNING", logger="unwalled.backends"):
        backend = build_backend("vendor", BackendConfig(
            type="anthropic", base_url=url, api_key_env="UNWALLED_TEST_ABSENT_KEY"))
    assert "UNWALLED_TEST_ABSENT_KEY, which is not set" in caplog.text
    scripted.reset_script([{"status": 401}])
    try:
        with pytest.raises(BackendError) as err:
            await backend.complete(HELLO, "claude-x")
    finally:
        await backend.close()
    assert err.value.upstream_status == 401
    assert ("UNWALLED_TEST_ABSENT_KEY, named by backends.vendor.api_key_env, is not "
            "set") in err.value.message
    assert "x-api-key" not in scripted.headers[0]


# ---- anthropic, against a scripted server speaking the Messages wire format ----

async def test_anthropic_backend_plain_and_streamed(upstream):
    scripted, url = upstream
    scripted.reset_script([{"text": "Bonjour", "usage": {"prompt_tokens": 12,
                                                         "completion_tokens": 3}}])
    backend = build_backend("claude", BackendConfig(type="anthropic", base_url=url,
                                                    api_key="test-key"))
    request = HELLO.replace(messages=[Message("system", "Be brief."), *HELLO.messages])
    answer = await backend.complete(request, "claude-x")
    pieces = [d async for d in backend.stream(request, "claude-x")]
    await backend.close()
    assert answer.text == "Bonjour" and answer.usage.prompt_tokens == 12
    streamed = collect(pieces, "x")
    assert streamed.text == "Bonjour" and streamed.usage.completion_tokens == 3
    sent = scripted.requests[0]
    assert sent["system"] == "Be brief."
    assert sent["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "What is 2+2?"}]}]
    assert scripted.headers[0]["x-api-key"] == "test-key"
    assert scripted.headers[0]["anthropic-version"] == "2023-06-01"


async def test_anthropic_backend_streams_text_and_tool_use_with_indexes(upstream):
    scripted, url = upstream
    scripted.reset_script([{"text": "Checking.", "tool_calls": [
        {"name": "get_weather", "arguments": {"city": "Paris"}},
        {"name": "get_weather", "arguments": {"city": "Rome"}}]}])
    backend = build_backend("claude", BackendConfig(type="anthropic", base_url=url))
    pieces = [d async for d in backend.stream(HELLO.replace(tools=[WEATHER]), "c")]
    await backend.close()
    answer = collect(pieces, "x")
    assert answer.text == "Checking."
    assert [orjson.loads(c.arguments)["city"] for c in answer.tool_calls] == ["Paris",
                                                                             "Rome"]
    assert [c.id for c in answer.tool_calls] == ["toolu_0", "toolu_1"]
    assert answer.finish_reason == "tool_calls"
    assert scripted.requests[0]["tools"][0]["input_schema"]["required"] == ["city"]


async def test_anthropic_backend_truncated_stream_fails_cleanly(upstream):
    scripted, url = upstream
    scripted.reset_script([{"text": "this will be cut", "truncate": True}])
    backend = build_backend("claude", BackendConfig(type="anthropic", base_url=url))
    try:
        with pytest.raises((BackendProtocolError, BackendUnavailable)):
            [d async for d in backend.stream(HELLO, "c")]
        scripted.reset_script([{"status": 529}])
        with pytest.raises(BackendUnavailable) as err:
            await backend.complete(HELLO, "c")
        assert err.value.retryable
    finally:
        await backend.close()


# ---- mock ----

async def test_mock_backend_plays_its_script_and_records_requests():
    from unwalled.backends.mock import MockBackend
    from unwalled.errors import BackendError

    mock = MockBackend(script=["one", {"error": {"status": 503}}, {"tool_calls": [
        {"name": "f", "arguments": {"x": 1}}]}])
    assert (await mock.complete(HELLO, "m")).text == "one"
    with pytest.raises(BackendError) as err:
        await mock.complete(HELLO, "m")
    assert err.value.retryable
    streamed = collect([d async for d in mock.stream(HELLO, "m")], "x")
    assert streamed.tool_calls[0].name == "f" and streamed.tool_calls[0].arguments == '{"x":1}'
    assert len(mock.requests) == 3
    assert (await MockBackend().complete(HELLO, "m")).text == HELLO.messages[-1].content
