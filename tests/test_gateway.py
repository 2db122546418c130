"""The gateway, with the official openai SDK as the client, on the embedded model
and on scripted upstreams."""

from __future__ import annotations

import httpx
import openai
import orjson
import pytest

from tests.conftest import GatewayServer, make_runtime
from unwalled.testing import ScriptedUpstream


@pytest.fixture(scope="module")
def client(embedded_gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=embedded_gateway.base_url + "/v1", api_key="unused",
                         max_retries=0)


def ledger_rows(server: GatewayServer, n: int = 5) -> list[dict]:
    assert server.runtime.ledger.flush()
    return server.runtime.ledger.tail(n)


def test_sdk_completion_on_the_embedded_model(client, embedded_gateway):
    answer = client.chat.completions.create(
        model="default", max_tokens=20, temperature=0,
        messages=[{"role": "user", "content": "What is 2+2?"}])
    assert "4" in answer.choices[0].message.content
    assert answer.model == "default"
    assert answer.usage.prompt_tokens > 5 and answer.usage.completion_tokens > 0
    row = ledger_rows(embedded_gateway, 1)[0]
    assert row["id"] == answer.id
    assert (row["route"], row["target"], row["status"]) == ("default",
                                                            "local/smollm2-135m", 200)
    assert row["prompt_tokens"] == answer.usage.prompt_tokens
    assert row["attempts"][0]["outcome"] == "ok"


def test_sdk_streaming_with_usage_in_the_last_chunk(client, embedded_gateway):
    chunks = list(client.chat.completions.create(
        model="default", max_tokens=16, temperature=0, stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Say hello."}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    row = ledger_rows(embedded_gateway, 1)[0]
    assert row["stream"] and row["completion_tokens"] == chunks[-1].usage.completion_tokens


def test_sdk_json_schema_response_format_is_constrained(client):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}},
              "required": ["answer"]}
    answer = client.chat.completions.create(
        model="json", temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "a",
                                                                "schema": schema}},
        messages=[{"role": "user", "content": "Capital of France?"}])
    assert isinstance(orjson.loads(answer.choices[0].message.content)["answer"], str)


BAD_GRAMMARS = [
    pytest.param({"enum": []}, id="empty enum"),
    pytest.param({"type": "object", "properties": {"k": {"enum": []}}},
                 id="empty enum inside"),
    pytest.param({"type": "object", "properties": {"a\"b": {"type": "string"}},
                  "required": ["a\"b"]}, id="quote in a property name"),
    pytest.param({"const": 'say "hi"'}, id="quote in a const"),
    # 100,000 nested groups: llama.cpp's parser itself overflows its stack
    pytest.param({"type": "string", "maxLength": 100_000}, id="a huge maxLength"),
    pytest.param({"type": "string", "pattern": "^a{1,30000}$"}, id="a huge repeat"),
]


@pytest.mark.parametrize("schema", BAD_GRAMMARS)
def test_a_schema_llama_cpp_cannot_parse_is_a_400_not_a_crash(client, embedded_gateway,
                                                              schema):
    """These once crashed the whole gateway (llama.cpp's grammar parser fails,
    and decoding under the failed grammar dereferences NULL)."""
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="json", max_tokens=8,
            response_format={"type": "json_schema", "json_schema": {
                "name": "a", "schema": schema}},
            messages=[{"role": "user", "content": "x"}])
    assert err.value.body["code"] == "invalid_schema"
    assert "cannot constrain the local model" in err.value.body["message"]
    tools = [{"type": "function", "function": {"name": "pick", "parameters": {
        "type": "object", "properties": {"x": schema}, "required": ["x"]}}}]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="json", max_tokens=8, tools=tools,
                                       tool_choice="required",
                                       messages=[{"role": "user", "content": "x"}])
    assert "tools' parameter schemas" in err.value.body["message"]
    # still serving, and both refusals are in the ledger
    answer = client.chat.completions.create(model="default", max_tokens=4,
                                            messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content is not None
    rows = ledger_rows(embedded_gateway, 3)
    assert [r["status"] for r in rows] == [200, 400, 400]


def test_tool_schemas_with_refs_into_their_defs_decode_on_the_local_model(client):
    """As pydantic writes a nested model (openai.pydantic_function_tool does):
    the parameters' $ref point at their own $defs, which once failed to resolve
    once the parameters sat inside the call's shape."""
    parameters = {
        "type": "object", "additionalProperties": False,
        "$defs": {"Addr": {"type": "object", "additionalProperties": False,
                           "properties": {"city": {"type": "string", "maxLength": 20}},
                           "required": ["city"]}},
        "properties": {"addr": {"$ref": "#/$defs/Addr"}}, "required": ["addr"]}
    legacy = {"type": "object", "definitions": {"Day": {"enum": ["mon", "tue"]}},
              "properties": {"day": {"$ref": "#/definitions/Day"}}, "required": ["day"]}
    answer = client.chat.completions.create(
        model="json", max_tokens=40, temperature=0,
        tools=[{"type": "function", "function": {"name": "weather",
                                                 "parameters": parameters}},
               {"type": "function", "function": {"name": "plan", "parameters": legacy}}],
        tool_choice={"type": "function", "function": {"name": "weather"}},
        messages=[{"role": "user", "content": "Weather in Paris?"}])
    call = answer.choices[0].message.tool_calls[0]
    assert call.function.name == "weather"
    assert isinstance(orjson.loads(call.function.arguments)["addr"]["city"], str)


def test_tool_names_outside_the_vendors_alphabet_are_refused(embedded_gateway):
    for path, body in [
        ("/v1/chat/completions", {"model": "json", "tool_choice": "required",
                                  "tools": [{"type": "function",
                                             "function": {"name": 'a"b'}}]}),
        ("/v1/messages", {"model": "json", "max_tokens": 8,
                          "tools": [{"name": "x" * 65, "input_schema": {}}]}),
    ]:
        response = httpx.post(embedded_gateway.base_url + path, json={
            **body, "messages": [{"role": "user", "content": "x"}]})
        assert response.status_code == 400, response.text
        assert "1 to 64 letters, digits" in response.text


def test_a_tool_choice_of_the_wrong_shape_is_a_400_naming_it(embedded_gateway):
    response = httpx.post(embedded_gateway.base_url + "/v1/chat/completions", json={
        "model": "json", "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "tool_choice": {"type": "function", "function": "f"}})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "tool_choice"


@pytest.mark.parametrize(("path", "extra", "param"), [
    ("/v1/chat/completions", {"response_format": {"type": "json_schema", "json_schema": {
        "name": "a", "schema": {"type": 5}}}}, "response_format.json_schema.schema"),
    ("/v1/chat/completions", {"response_format": {"type": "json_schema", "json_schema": {
        "name": "a", "schema": {"anyOf": []}}}}, "response_format.json_schema.schema"),
    ("/v1/chat/completions", {"n": 2}, "n"),
    ("/v1/chat/completions", {"stream_options": "x"}, "stream_options"),
    ("/v1/chat/completions", {"tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "objekt"}}}]}, "tools[0].function.parameters"),
    ("/v1/messages", {"max_tokens": 8, "tools": [{"name": "f", "input_schema": []}]},
     "tools[0]"),
    ("/v1/messages", {"max_tokens": 8, "system": [{"type": "text"}]}, "system"),
])
def test_requests_the_gateway_would_answer_wrongly_are_refused(embedded_gateway, path,
                                                               extra, param):
    response = httpx.post(embedded_gateway.base_url + path, json={
        "model": "default", "messages": [{"role": "user", "content": "x"}], **extra})
    assert response.status_code == 400, response.text
    body = response.json()
    error = body["error"]
    assert error.get("param", param) == param and param.split(".")[0] in error["message"]


def test_max_tokens_zero_is_refused_not_taken_as_the_default(embedded_gateway):
    response = httpx.post(embedded_gateway.base_url + "/v1/chat/completions", json={
        "model": "json", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "max_tokens"


def test_a_prompt_longer_than_the_context_is_the_callers_400(embedded_gateway):
    response = httpx.post(embedded_gateway.base_url + "/v1/chat/completions", json={
        "model": "default", "max_tokens": 8,
        "messages": [{"role": "user", "content": "word " * 5000}]})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded" and "n_ctx" in error["message"]
    row = ledger_rows(embedded_gateway, 1)[0]
    assert len(row["attempts"]) == 1  # not retried: a retry cannot help


def test_models_lists_the_routes(client, embedded_gateway):
    ids = {m.id for m in client.models.list()}
    assert {"default", "json"} <= ids
    import anthropic

    listed = list(anthropic.Anthropic(base_url=embedded_gateway.base_url, api_key="x",
                                      max_retries=0).models.list())
    assert {m.id for m in listed} == ids
    assert all(m.type == "model" and m.display_name == m.id for m in listed)
    assert client.models.retrieve("json").id == "json"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")
    claude = anthropic.Anthropic(base_url=embedded_gateway.base_url, api_key="x",
                                 max_retries=0)
    assert claude.models.retrieve("default").display_name == "default"
    with pytest.raises(anthropic.NotFoundError):
        claude.models.retrieve("nope")


def test_unknown_route_is_a_404_in_openai_format_and_reaches_the_ledger(
        client, embedded_gateway):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="nope", messages=[
            {"role": "user", "content": "x"}])
    body = err.value.body
    assert body["code"] == "model_not_found" and "default" in body["message"]
    row = ledger_rows(embedded_gateway, 1)[0]
    assert (row["route"], row["status"], row["outcome"]) == ("nope", 404, "rejected")


def test_malformed_requests_get_400_naming_the_parameter(embedded_gateway):
    url = embedded_gateway.base_url + "/v1/chat/completions"
    bad_json = httpx.post(url, content=b"{not json")
    assert bad_json.status_code == 400
    assert "not valid JSON" in bad_json.json()["error"]["message"]
    no_messages = httpx.post(url, json={"model": "default"})
    assert no_messages.status_code == 400
    assert no_messages.json()["error"]["param"] == "messages"
    bad_role = httpx.post(url, json={"model": "default",
                                     "messages": [{"role": "robot", "content": "x"}]})
    assert "messages[0].role" in bad_role.json()["error"]["message"]
    too_hot = httpx.post(url, json={"model": "default", "temperature": 9,
                                    "messages": [{"role": "user", "content": "x"}]})
    assert too_hot.json()["error"]["param"] == "temperature"
    over = httpx.post(url, json={"model": "default", "max_tokens": 100000,
                                 "messages": [{"role": "user", "content": "x"}]})
    assert over.status_code == 413 and "ceiling" in over.json()["error"]["message"]
    rows = ledger_rows(embedded_gateway, 5)
    assert [r["status"] for r in rows] == [413, 400, 400, 400, 400]


def test_healthz_and_metrics(embedded_gateway, client):
    assert httpx.get(embedded_gateway.base_url + "/healthz").json()["status"] == "ok"
    client.chat.completions.create(model="default", max_tokens=4,
                                   messages=[{"role": "user", "content": "hi"}])
    text = httpx.get(embedded_gateway.base_url + "/metrics").text
    assert 'unwalled_requests_total{ingress="openai",route="default",status="200"}' in text
    assert 'unwalled_tokens_total{kind="completion",route="default"}' in text
    # A made-up route name is one label for all of them, not one each.
    for name in ("made-up-1", "made-up-2"):
        httpx.post(embedded_gateway.base_url + "/v1/chat/completions", json={
            "model": name, "messages": [{"role": "user", "content": "x"}]})
    text = httpx.get(embedded_gateway.base_url + "/metrics").text
    assert "made-up" not in text
    assert 'route="<unknown>",status="404"' in text


def test_unknown_path_is_an_openai_style_404(embedded_gateway):
    response = httpx.get(embedded_gateway.base_url + "/v1/nothing")
    assert response.status_code == 404 and "error" in response.json()


@pytest.fixture
def scripted_gateway(tmp_path):
    primary, backup = ScriptedUpstream(), ScriptedUpstream()
    with primary.running() as url_a, backup.running() as url_b:
        runtime = make_runtime({
            "backends": {"a": {"type": "openai", "base_url": url_a + "/v1"},
                         "b": {"type": "anthropic", "base_url": url_b}},
            "routes": {"main": {"targets": ["a/m1", "b/m2"], "retries": 0}}}, tmp_path)
        with GatewayServer(runtime) as server:
            yield server, primary, backup
        runtime.ledger.close()


def test_tool_calls_pass_through_streamed_with_indexes(scripted_gateway):
    server, primary, _ = scripted_gateway
    primary.reset_script([{"tool_calls": [{"name": "lookup", "arguments": {"q": "a"}},
                                          {"name": "lookup", "arguments": {"q": "b"}}]}])
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0)
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}}}}]
    chunks = list(client.chat.completions.create(
        model="main", tools=tools, stream=True,
        messages=[{"role": "user", "content": "look up a and b"}]))
    calls: dict[int, dict] = {}
    for chunk in chunks:
        for call in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(call.index, {"name": "", "args": ""})
            entry["name"] += call.function.name or ""
            entry["args"] += call.function.arguments or ""
    assert [calls[i]["name"] for i in sorted(calls)] == ["lookup", "lookup"]
    assert [orjson.loads(calls[i]["args"]) for i in sorted(calls)] == [{"q": "a"},
                                                                       {"q": "b"}]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_fallback_from_openai_to_anthropic_backend_recorded(scripted_gateway):
    server, primary, backup = scripted_gateway
    primary.reset_script([{"status": 503}])
    backup.reset_script(["from claude"])
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0)
    answer = client.chat.completions.create(model="main", messages=[
        {"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "from claude"
    row = ledger_rows(server, 1)[0]
    assert row["target"] == "b/m2"
    assert [(a["target"], a["outcome"], a["upstream_status"]) for a in row["attempts"]] \
        == [("a/m1", "error", 503), ("b/m2", "ok", None)]


def test_every_target_failing_is_a_clean_error_and_one_ledger_row(scripted_gateway):
    server, primary, backup = scripted_gateway
    primary.reset_script([{"status": 500}])
    backup.reset_script([{"status": 429, "retry_after": 120}])
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0)
    before = server.runtime.ledger.count() if server.runtime.ledger.flush() else None
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="main", messages=[
            {"role": "user", "content": "hi"}])
    assert err.value.response.headers["retry-after"] == "120"
    assert server.runtime.ledger.flush()
    assert server.runtime.ledger.count() == before + 1
    row = server.runtime.ledger.tail(1)[0]
    assert row["status"] == 429 and len(row["attempts"]) == 2
