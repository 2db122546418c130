"""The front door: the completion endpoints as plain ASGI, in front of Starlette.

Bodies arrive in one piece or in many (chunked); either way they are read
within the size limit, refused with a 413 in the ingress's format, and every
request reaches the ledger. Other methods and paths still get Starlette's
405 and 404, in OpenAI's error format."""

from __future__ import annotations

import socket
import time
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import httpx
import orjson
import pytest

from tests.conftest import GatewayServer, make_runtime

BODY = orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[GatewayServer]:
    runtime = make_runtime({"limits": {"max_body_bytes": 2048},
                            "backends": {"slow": {"type": "mock", "script": [
                                {"text": "late", "delay": 0.8}]}},
                            "routes": {"chat": {"targets": ["mock/echo"]},
                                       "slow": {"targets": ["slow/m"]}}},
                           tmp_path_factory.mktemp("front"))
    with GatewayServer(runtime) as server:
        yield server
    runtime.ledger.close()


def pieces(body: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start:start + size]


def last_row(server: GatewayServer) -> dict:
    assert server.runtime.ledger.flush()
    return server.runtime.ledger.tail(1)[0]


def test_a_chunked_body_in_many_pieces_is_read_whole(gateway):
    response = httpx.post(gateway.base_url + "/v1/chat/completions",
                          content=pieces(BODY, 7),
                          headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "hi"
    row = last_row(gateway)
    assert (row["route"], row["status"], row["prompt"]) == ("chat", 200, "user: hi")


def test_a_chunked_body_over_the_limit_is_a_413_and_a_ledger_row(gateway):
    big = orjson.dumps({"model": "chat", "messages": [
        {"role": "user", "content": "x" * 4000}]})
    response = httpx.post(gateway.base_url + "/v1/chat/completions",
                          content=pieces(big, 500))
    assert response.status_code == 413
    error = response.json()["error"]
    assert "limits.max_body_bytes of 2048" in error["message"]
    assert error["param"] == "body"
    assert last_row(gateway)["status"] == 413


def test_a_declared_length_over_the_limit_is_refused_before_reading(gateway):
    big = b"{" + b" " * 3000 + b"}"
    response = httpx.post(gateway.base_url + "/v1/messages", content=big)
    assert response.status_code == 413
    assert response.json()["type"] == "error"  # Anthropic's format on its ingress
    assert "3002 bytes" in response.json()["error"]["message"]


def test_other_methods_and_paths_still_get_openai_style_errors(gateway):
    wrong_method = httpx.get(gateway.base_url + "/v1/chat/completions")
    assert wrong_method.status_code == 405
    assert "Method Not Allowed" in wrong_method.json()["error"]["message"]
    unknown = httpx.post(gateway.base_url + "/v1/completions", content=BODY)
    assert unknown.status_code == 404
    assert "Not Found" in unknown.json()["error"]["message"]
    assert httpx.get(gateway.base_url + "/healthz").json()["status"] == "ok"


@pytest.fixture(scope="module")
def roomy(tmp_path_factory) -> Iterator[GatewayServer]:
    """The default limits: room for a body nested past the JSON parser's own
    limit of 1024 levels."""
    runtime = make_runtime({"routes": {"chat": {"targets": ["mock/echo"]}}},
                           tmp_path_factory.mktemp("roomy"))
    with GatewayServer(runtime) as server:
        yield server
    runtime.ledger.close()


def test_a_body_nested_past_the_parser_limit_is_the_same_413_as_any_too_deep(roomy):
    """Past 1024 levels the parser refuses the body itself: that was a 400 saying
    the body "is not valid JSON" and to "send a JSON object", which it was."""
    deep = b"[" * 1100 + b"]" * 1100
    openai_body = b'{"model":"chat","messages":[{"role":"user","content":"hi"}],"x":' \
        + deep + b"}"
    anthropic_body = b'{"model":"chat","max_tokens":5,"messages":[{"role":"user",' \
        b'"content":"hi"}],"x":' + deep + b"}"
    ours = httpx.post(roomy.base_url + "/v1/chat/completions", content=openai_body)
    theirs = httpx.post(roomy.base_url + "/v1/messages", content=anthropic_body)
    assert ours.status_code == theirs.status_code == 413
    assert ours.json()["error"]["message"] == (
        "the request body nests more than 1024 levels deep, over the limit "
        "limits.max_depth of 32. Flatten it.")
    assert ours.json()["error"]["code"] == "limit_exceeded"
    assert theirs.json()["type"] == "error"
    assert theirs.json()["error"]["type"] == "request_too_large"
    assert "limits.max_depth of 32" in theirs.json()["error"]["message"]
    rows = roomy.runtime.ledger.flush() and roomy.runtime.ledger.tail(2)
    assert [(r["ingress"], r["status"]) for r in rows] == [("anthropic", 413),
                                                          ("openai", 413)]


def test_a_wrong_method_on_the_anthropic_path_gets_an_anthropic_error(gateway):
    response = httpx.get(gateway.base_url + "/v1/messages")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["message"].startswith("GET /v1/messages: Method Not Allowed.")
    unknown = httpx.post(gateway.base_url + "/v1/messages/count_tokens", content=BODY)
    assert unknown.status_code == 404 and unknown.json()["type"] == "error"
    openai_side = httpx.get(gateway.base_url + "/v1/chat/completions")
    assert openai_side.headers["allow"] == "POST" and "error" in openai_side.json()


def test_a_client_that_leaves_mid_body_is_recorded_as_cancelled(gateway):
    """Nobody asked for anything wrong: the client went away (as when it closes
    a stream), so the row says 499 cancelled, not a 400 the client caused."""
    ledger = gateway.runtime.ledger
    assert ledger.flush()
    before = ledger.count()
    with socket.create_connection(("127.0.0.1", gateway.port)) as cut:
        cut.sendall(b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: 500\r\n"
                    b"content-type: application/json\r\n\r\n" + BODY[:20])
    for _ in range(100):  # the gateway notices the closed socket, then records
        if ledger.flush() and ledger.count() > before:
            break
        time.sleep(0.05)
    row = ledger.tail(1)[0]
    assert (row["ingress"], row["status"], row["outcome"]) == \
        ("anthropic", 499, "cancelled")
    assert row["error"] == "the client went away before sending its body."


def in_flight(server: GatewayServer) -> float:
    text = httpx.get(server.base_url + "/metrics").text
    return float(re.search(r"^unwalled_in_flight (\S+)$", text, re.M).group(1))


def test_in_flight_counts_requests_being_served(gateway):
    assert in_flight(gateway) == 0.0
    slow = orjson.dumps({"model": "slow", "messages": [{"role": "user", "content": "hi"}]})
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(httpx.post, gateway.base_url + "/v1/chat/completions",
                             content=slow)
        seen = [in_flight(gateway) for _ in range(3) if not answer.done()]
        assert answer.result().status_code == 200
    assert seen and max(seen) == 1.0
    assert in_flight(gateway) == 0.0
