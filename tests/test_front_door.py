"""The front door: the completion endpoints as plain ASGI, in front of Starlette.

Bodies arrive in one piece or in many (chunked); either way they are read
within the size limit, refused with a 413 in the ingress's format, and every
request reaches the ledger. Other methods and paths still get Starlette's
405 and 404, in OpenAI's error format."""

from __future__ import annotations

from typing import Iterator

import httpx
import orjson
import pytest

from tests.conftest import GatewayServer, make_runtime

BODY = orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[GatewayServer]:
    runtime = make_runtime({"limits": {"max_body_bytes": 2048},
                            "routes": {"chat": {"targets": ["mock/echo"]}}},
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
