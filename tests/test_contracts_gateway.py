"""Contracts at the gateway, with the official openai and anthropic SDKs as clients,
against a scripted upstream that speaks the real wire format."""

from __future__ import annotations

import json
import re

import anthropic
import httpx
import openai
import pytest

from tests.conftest import GatewayServer, make_runtime
from unwalled import MockBackend
from unwalled.backends.base import ChatRequest, ChatResponse
from unwalled.testing import ScriptedUpstream

CONTRACT = """\
name: city
output:
  schema:
    type: object
    properties: {city: {type: string}}
    required: [city]
    additionalProperties: false
checks:
  - no_secrets
  - {urls: {allow: [city.example]}}
on_fail: {repair: 1}
decoding: free
"""
ASK = [{"role": "user", "content": "Where is the Louvre? Answer as JSON."}]


@pytest.fixture
def gateway(tmp_path):
    (tmp_path / "city.contract.yaml").write_text(CONTRACT)
    upstream = ScriptedUpstream()
    with upstream.running() as url:
        runtime = make_runtime({
            "backends": {"up": {"type": "openai", "base_url": url + "/v1"}},
            "contracts": {"city": str(tmp_path / "city.contract.yaml"),
                          "short": {"checks": [{"max_chars": 10}]}},
            "routes": {"guarded": {"targets": ["up/m"], "retries": 0,
                                   "contract": "city"},
                       "plain": {"targets": ["up/m"], "retries": 0}}}, tmp_path)
        with GatewayServer(runtime) as server:
            yield server, upstream
        runtime.ledger.close()


def rows(server, n: int) -> list[dict]:
    assert server.runtime.ledger.flush()
    found = server.runtime.ledger.tail(10)
    assert len(found) == n
    return found


def openai_client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0)


def test_passing_answer_carries_its_verdict_in_header_and_body(gateway):
    server, upstream = gateway
    upstream.reset_script(['Sure:\n```json\n{"city": "Paris"}\n```'])
    raw = openai_client(server).chat.completions.with_raw_response.create(
        model="guarded", messages=ASK)
    assert raw.headers["x-unwalled-verdict"].startswith("pass; contract=city; "
                                                        "action=pass; attempts=1")
    answer = raw.parse()
    verdict = answer.model_extra["unwalled"]["verdict"]
    assert verdict["passed"] and verdict["contract"] == "city"
    row = rows(server, 1)[0]
    assert row["contract"] == "city" and json.loads(row["verdict"])["passed"]


def test_rejected_answer_is_a_422_in_openai_format_with_the_violations(gateway):
    server, upstream = gateway
    upstream.reset_script(["Paris, see https://evil.example/x?c=1"])
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        openai_client(server).chat.completions.create(model="guarded", messages=ASK)
    error = caught.value
    assert error.status_code == 422
    body = error.body
    assert body["code"] == "contract_violation" and body["type"] == "invalid_response_error"
    assert {v["check"] for v in body["violations"]} == {"json", "urls"}
    assert error.response.headers["x-unwalled-verdict"].startswith("fail; contract=city")
    row = rows(server, 1)[0]
    assert (row["status"], row["outcome"]) == (422, "rejected")
    assert [a["outcome"] for a in row["attempts"]] == ["violated", "violated"]
    # The repair asked again with the violations.
    assert "evil.example is not on the allow-list" in \
        upstream.requests[1]["messages"][-1]["content"]


def test_streaming_under_a_contract_buffers_then_streams_the_passing_answer(gateway):
    server, upstream = gateway
    upstream.reset_script(["Paris", '{"city": "Paris"}'])
    client = openai_client(server)
    with client.chat.completions.with_streaming_response.create(
            model="guarded", messages=ASK, stream=True,
            stream_options={"include_usage": True}) as response:
        assert response.headers["x-unwalled-verdict"].startswith("pass; contract=city; "
                                                                 "action=repair")
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == '{"city": "Paris"}'
    assert chunks[-1].usage is not None
    # The verdict also rides in the stream, on the chunk with the finish_reason.
    carrying = [c for c in chunks if (c.model_extra or {}).get("unwalled")]
    assert len(carrying) == 1 and carrying[0].choices[0].finish_reason == "stop"
    verdict = carrying[0].model_extra["unwalled"]["verdict"]
    assert (verdict["passed"], verdict["action"], len(verdict["attempts"])) == (
        True, "repair", 2)
    row = rows(server, 1)[0]
    assert row["stream"] and [a["outcome"] for a in row["attempts"]] == ["violated", "ok"]


def ask_under(server, route: str, contract: str | None = None) -> httpx.Response:
    """One request to ``route``, naming ``contract`` in the header when given."""
    headers = {"x-unwalled-contract": contract} if contract else {}
    return httpx.post(server.base_url + "/v1/chat/completions", headers=headers,
                      json={"model": route, "messages": ASK})


def test_a_header_names_a_contract_for_a_route_without_one(gateway):
    server, upstream = gateway
    upstream.reset_script(["This answer is far too long."])
    refused = ask_under(server, "plain", "short")
    assert refused.status_code == 422
    assert refused.json()["error"]["violations"][0]["check"] == "length"
    unguarded = ask_under(server, "plain")
    assert unguarded.status_code == 200 and "x-unwalled-verdict" not in unguarded.headers
    unknown = ask_under(server, "plain", "nope")
    assert unknown.status_code == 400
    assert "Known contracts: city, short" in unknown.json()["error"]["message"]
    assert len(rows(server, 3)) == 3


def test_a_header_cannot_replace_a_routes_contract(gateway):
    server, upstream = gateway
    upstream.reset_script(['{"city": "Paris"}'])
    weaker = ask_under(server, "guarded", "short")
    assert weaker.status_code == 400
    error = weaker.json()["error"]
    assert error["param"] == "x-unwalled-contract"
    assert error["message"].startswith("route 'guarded' runs under contract 'city', "
                                       "and the x-unwalled-contract header cannot "
                                       "replace it with 'short'.")
    same = ask_under(server, "guarded", "city")
    assert same.status_code == 200
    assert same.headers["x-unwalled-verdict"].startswith("pass; contract=city")
    assert [r["status"] for r in rows(server, 2)] == [200, 400]


def anthropic_client(server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key="x", max_retries=0)


def test_anthropic_ingress_passes_rejects_and_streams_under_the_contract(gateway):
    server, upstream = gateway
    client = anthropic_client(server)

    upstream.reset_script(['{"city": "Paris"}'])
    raw = client.messages.with_raw_response.create(
        model="guarded", max_tokens=50, messages=ASK)
    assert raw.headers["x-unwalled-verdict"].startswith("pass; contract=city")
    message = raw.parse()
    assert message.content[0].text == '{"city": "Paris"}'
    assert message.model_extra["unwalled"]["verdict"]["passed"]

    upstream.reset_script(["my key is AKIAIOSFODNN7EXAMPLE"])
    with pytest.raises(anthropic.UnprocessableEntityError) as caught:
        client.messages.create(model="guarded", max_tokens=50, messages=ASK)
    checks = {v["check"] for v in caught.value.body["error"]["violations"]}
    assert checks == {"json", "secrets"}
    assert "AKIAIOSFODNN7EXAMPLE" not in json.dumps(caught.value.body)

    upstream.reset_script(["nope", '{"city": "Rome"}'])
    with client.messages.stream(model="guarded", max_tokens=50, messages=ASK) as stream:
        events = list(stream)
        final = stream.get_final_message()
    text = "".join(e.text for e in events if e.type == "text")
    assert text == '{"city": "Rome"}' and final.stop_reason == "end_turn"
    # The verdict rides in the message_delta event.
    [delta] = [e for e in events if e.type == "message_delta"]
    verdict = delta.model_extra["unwalled"]["verdict"]
    assert verdict["passed"] and verdict["action"] == "repair"
    assert [r["outcome"] for r in rows(server, 3)] == ["ok", "rejected", "ok"]


class JsonParrot(MockBackend):
    """A model that gives its system prompt away inside valid JSON, as an
    injected one might; it keeps every request it saw."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.seen: list[ChatRequest] = []

    async def complete(self, request: ChatRequest, model: str) -> ChatResponse:
        self.seen.append(request)
        response = await super().complete(request, model)
        response.text = json.dumps({"city": request.messages[0].content or ""})
        return response


def test_the_canary_the_shield_planted_is_judged_by_the_contract(tmp_path):
    (tmp_path / "city.contract.yaml").write_text(CONTRACT)
    parrot = JsonParrot("parrot")
    runtime = make_runtime({
        "backends": {"parrot": {"type": "mock"}},
        "contracts": {"city": str(tmp_path / "city.contract.yaml")},
        "routes": {"guarded": {"targets": ["parrot/x"], "contract": "city"}}},
        tmp_path, backends={"parrot": parrot})
    with GatewayServer(runtime) as server:
        client = openai_client(server)
        # No canary asked for: the same parrot passes the contract.
        plain = client.chat.completions.create(model="guarded", messages=ASK)
        city = json.loads(plain.choices[0].message.content)["city"]
        assert city.startswith("Where")
        with pytest.raises(openai.UnprocessableEntityError) as caught:
            client.chat.completions.create(
                model="guarded", messages=ASK, extra_headers={"x-unwalled-canary": "1"})
        rows(server, 2)
    runtime.ledger.close()
    # Both asks (the answer and its repair) carried this request's canary, and
    # the contract's canary check found it in both answers.
    canaries = {m.group(0) for r in parrot.seen[1:] for m in
                re.finditer(r"CANARY-[0-9A-F]{16}", r.messages[0].content or "")}
    assert len(parrot.seen) == 3 and len(canaries) == 1
    body = caught.value.response.json()
    assert body["error"]["code"] == "contract_violation"
    attempts = body["unwalled"]["verdict"]["attempts"]
    assert [[v["check"] for v in a["violations"]] for a in attempts] == [
        ["canary"], ["canary"]]
    assert canaries.pop() not in caught.value.response.text


def test_a_client_that_leaves_while_the_contract_runs_is_a_499_with_its_verdict(gateway):
    import time

    server, upstream = gateway
    upstream.reset_script([{"text": '{"city": "Paris"}', "delay": 2.0}])
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.base_url + "/v1/chat/completions", timeout=0.5,
                   json={"model": "guarded", "messages": ASK})
    deadline = time.monotonic() + 5
    while not server.runtime.ledger.tail(1) and time.monotonic() < deadline:
        server.runtime.ledger.flush()
        time.sleep(0.05)
    row = rows(server, 1)[0]
    assert (row["status"], row["outcome"], row["contract"]) == (499, "cancelled", "city")
