"""Fault injection through the real gateway, with the official SDKs as clients.

Each fault is scripted on a real upstream (``ScriptedUpstream``): timeouts,
connection resets, 500/502/503, 429 with Retry-After, malformed JSON, truncated
and slow streams. For each, with the openai and the anthropic SDK, streamed and
not, the client gets either a valid answer (through a retry or the fallback
target) or a clean error in its ingress's format; and the ledger holds exactly
one new record for the client request, with every attempt behind it in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import GatewayServer, gateway_on_two_upstreams

PRIMARY, BACKUP = "oa/m1", "an/m2"
LONG_TEXT = "a long answer that is cut off after its first pieces have gone out " * 3


@dataclass
class Fault:
    name: str
    primary: list[Any]
    expect_text: str
    chain: list[tuple[str, str, int | None]]
    backup: list[Any] = field(default_factory=lambda: ["from the backup"])
    streams: tuple[bool, ...] = (False, True)


RETRY_OK = [(PRIMARY, "error", None), (PRIMARY, "ok", None)]
FALLBACK = [(PRIMARY, "error", None), (PRIMARY, "error", None), (BACKUP, "ok", None)]

ANSWERED = [
    Fault("timeout", [{"delay": 2.5}], "from the backup", FALLBACK),
    Fault("connection reset", [{"reset": True}], "from the backup", FALLBACK),
    Fault("malformed json", [{"malformed": True}], "from the backup", FALLBACK),
    # Counts no tokenizer gives: a negative count failed the metrics (and would
    # refund a key's budget), and past 64 bits one failed the answer's JSON (a
    # 500 in plain text) and its ledger row. In a stream the usage comes last,
    # after the answer has gone out, so only whole answers can be retried.
    Fault("impossible usage counts", [{"text": "miscounted", "usage": {
        "prompt_tokens": -5, "completion_tokens": 2**40}}, "recovered"],
          "recovered", RETRY_OK, streams=(False,)),
    # Fields of the wrong type: a list as the answer's text once passed through
    # to the client and stopped the ledger's writer for good.
    Fault("answer text that is not a string", [{"text": ["not", "text"]}],
          "from the backup", FALLBACK, streams=(False,)),
    Fault("finish reason that is not a string", [{"text": "x", "finish": ["stop"]}],
          "from the backup", FALLBACK, streams=(False,)),
    *[Fault(f"{status} then recovery", [{"status": status}, "recovered"], "recovered",
            [(PRIMARY, "error", status), (PRIMARY, "ok", None)])
      for status in (500, 502, 503)],
    Fault("429 with a short retry-after", [{"status": 429, "retry_after": 1},
                                           "recovered"], "recovered",
          [(PRIMARY, "error", 429), (PRIMARY, "ok", None)]),
    Fault("429 with a retry-after too long to wait", [{"status": 429,
                                                       "retry_after": 120}],
          "from the backup", [(PRIMARY, "error", 429), (BACKUP, "ok", None)]),
    Fault("stream truncated before its first piece", [{"truncate": True, "text": "hi"}],
          "from the backup", FALLBACK, streams=(True,)),
    Fault("slow stream within the timeout", [{"chunk_delay": 0.05,
                                              "text": "slow but steady"}],
          "slow but steady", [(PRIMARY, "ok", None)], streams=(True,)),
    Fault("stream stalled past the timeout", [{"chunk_delay": 2.5, "text": "stalled"}],
          "from the backup", FALLBACK, streams=(True,)),
]

CASES = [pytest.param(fault, sdk, stream, id=f"{fault.name}-{sdk}-"
                      f"{'stream' if stream else 'whole'}")
         for fault in ANSWERED for sdk in ("openai", "anthropic")
         for stream in fault.streams]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    # One gateway for the module; each test scripts the upstreams afresh and
    # counts the ledger from where it stood. The breaker threshold is high so
    # that faults of one test never open a circuit for the next.
    with gateway_on_two_upstreams(tmp_path_factory.mktemp("faults"), {"main": {
            "targets": [PRIMARY, {"target": BACKUP, "retries": 0}],
            # Long enough for a normal answer on a busy machine, short enough
            # that the timeout faults stay quick.
            "retries": 1, "timeout": 1.5,
            "backoff": {"initial": 0.01, "max_retry_after": 5},
            "breaker": {"failures": 100}}}) as running:
        yield running


def ask(server: GatewayServer, sdk: str, stream: bool, text: str = "hi") -> str:
    """One client request through an official SDK (no SDK retries); the answer."""
    if sdk == "openai":
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="k",
                               max_retries=0, timeout=30)
        messages = [{"role": "user", "content": text}]
        if not stream:
            answer = client.chat.completions.create(model="main", messages=messages)
            return answer.choices[0].message.content
        chunks = client.chat.completions.create(model="main", messages=messages,
                                                stream=True)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    client = anthropic.Anthropic(base_url=server.base_url, api_key="k", max_retries=0,
                                 timeout=30)
    messages = [{"role": "user", "content": text}]
    if not stream:
        answer = client.messages.create(model="main", max_tokens=32, messages=messages)
        return "".join(block.text for block in answer.content if block.type == "text")
    with client.messages.stream(model="main", max_tokens=32, messages=messages) as events:
        return "".join(events.text_stream)


def only_new_record(server: GatewayServer, before: int) -> dict[str, Any]:
    ledger = server.runtime.ledger
    assert ledger.flush()
    assert ledger.count() == before + 1, "one client request, one ledger record"
    return ledger.tail(1)[0]


def chain(row: dict[str, Any]) -> list[tuple[str, str, int | None]]:
    return [(a["target"], a["outcome"], a["upstream_status"]) for a in row["attempts"]]


@pytest.mark.parametrize(("fault", "sdk", "stream"), CASES)
def test_fault_is_absorbed_by_retry_or_fallback(gateway, fault, sdk, stream):
    server, primary, backup = gateway
    primary.reset_script(fault.primary)
    backup.reset_script(fault.backup)
    before = server.runtime.ledger.count()

    assert ask(server, sdk, stream) == fault.expect_text

    row = only_new_record(server, before)
    assert (row["status"], row["outcome"], row["stream"]) == (200, "ok", stream)
    assert chain(row) == fault.chain
    assert row["target"] == fault.chain[-1][0]
    assert row["completion"] == fault.expect_text


# ---- faults no retry can absorb: a clean error in the ingress's format ----

def expect_clean_error(server: GatewayServer, sdk: str, stream: bool) -> Exception:
    with pytest.raises((openai.APIError, anthropic.APIError)) as caught:
        ask(server, sdk, stream)
    error = caught.value
    assert isinstance(error, openai.APIError if sdk == "openai" else anthropic.APIError)
    body = error.body
    if sdk == "openai":
        # The SDK unwraps {"error": {...}} into .body.
        assert {"message", "type", "code"} <= set(body)
        assert body["message"]
    else:
        assert body["type"] == "error" and body["error"]["message"]
    return error


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_every_target_down_is_a_clean_error_with_the_whole_chain(gateway, sdk, stream):
    server, primary, backup = gateway
    primary.reset_script([{"status": 500}, {"reset": True}])
    backup.reset_script([{"status": 503, "retry_after": 2}])
    before = server.runtime.ledger.count()

    error = expect_clean_error(server, sdk, stream)

    assert error.status_code == 503
    assert error.response.headers["retry-after"] == "2"
    row = only_new_record(server, before)
    assert (row["status"], row["outcome"]) == (503, "error")
    assert chain(row) == [(PRIMARY, "error", 500), (PRIMARY, "error", None),
                          (BACKUP, "error", 503)]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_a_request_the_upstream_refuses_is_not_retried(gateway, sdk, stream):
    server, primary, backup = gateway
    primary.reset_script([{"status": 400, "message": "bad tool schema"}])
    backup.reset_script(["from the backup"])
    before = server.runtime.ledger.count()

    error = expect_clean_error(server, sdk, stream)

    assert error.status_code == 400 and "bad tool schema" in str(error)
    row = only_new_record(server, before)
    assert chain(row) == [(PRIMARY, "error", 400)]
    assert backup.requests == []


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_a_stream_cut_after_its_first_piece_ends_with_an_in_stream_error(gateway, sdk):
    # Once text has reached the client a fallback would splice two answers, so
    # the stream ends with an error event in the ingress's own format.
    server, primary, backup = gateway
    primary.reset_script([{"truncate": True, "text": LONG_TEXT}])
    backup.reset_script(["from the backup"])
    before = server.runtime.ledger.count()

    if sdk == "openai":
        with pytest.raises(openai.APIError) as caught:
            ask(server, sdk, stream=True)
        assert "broke off" in caught.value.message
    else:
        with pytest.raises(anthropic.APIError) as caught:
            ask(server, sdk, stream=True)
        assert caught.value.body["type"] == "error"
        assert "broke off" in caught.value.body["error"]["message"]

    row = only_new_record(server, before)
    assert (row["status"], row["outcome"], row["stream"]) == (502, "error", True)
    assert chain(row) == [(PRIMARY, "error", None)]
    assert backup.requests == []


def wait_for_a_new_record(server, before: int, seconds: float = 10) -> None:
    import time

    deadline = time.monotonic() + seconds
    while server.runtime.ledger.flush() and server.runtime.ledger.count() == before \
            and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_client_that_leaves_mid_stream_is_recorded_once(gateway):
    import time

    import httpx

    server, primary, backup = gateway
    primary.reset_script([{"text": LONG_TEXT, "chunk_delay": 0.05}])
    backup.reset_script(["from the backup"])
    before = server.runtime.ledger.count()

    with httpx.stream("POST", server.base_url + "/v1/chat/completions", json={
            "model": "main", "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}) as response:
        first = next(response.iter_lines())
        assert first.startswith("data: ")
    wait_for_a_new_record(server, before)  # noticed at the gateway's next write

    row = only_new_record(server, before)
    assert (row["status"], row["outcome"], row["stream"]) == (499, "cancelled", True)
    assert chain(row)[0][0] == PRIMARY
    assert row["attempts"][-1]["outcome"] == "cancelled"
    assert row["completion_tokens"] > 0 and row["usage_estimated"]  # what it got


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_leaves_before_the_answer_is_recorded_once_and_the_call_stopped(
        gateway, stream):
    """Leaving while the upstream still thinks: the request is a 499, not an
    answer nobody got, and the gateway stops waiting for the upstream."""
    import time

    import httpx

    server, primary, backup = gateway
    primary.reset_script([{"text": "too late", "delay": 2.0}])
    backup.reset_script(["from the backup"])
    before = server.runtime.ledger.count()
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.base_url + "/v1/chat/completions", timeout=0.5, json={
            "model": "main", "stream": stream,
            "messages": [{"role": "user", "content": "hi"}]})
    wait_for_a_new_record(server, before)
    row = only_new_record(server, before)
    assert (row["status"], row["outcome"], row["stream"]) == (499, "cancelled", stream)
    assert time.monotonic() - started < 1.8  # recorded before the upstream answered
    assert "went away" in row["error"]
    assert len(primary.requests) == 1 and backup.requests == []
    (attempt,) = row["attempts"]
    assert (attempt["target"], attempt["outcome"]) == (PRIMARY, "cancelled")
    assert attempt["latency_ms"] > 300  # it ran until the client left
