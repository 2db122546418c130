"""The gateway's OpenAPI description, served at GET /openapi.json, and a short
schemathesis fuzz of a real gateway on the mock backend against it: no 5xx and
no response outside the description. The long run (thousands of cases) is
``benchmarks/fuzz_gateway.py``; this one keeps the suite fast."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance, response_headers_conformance,
    response_schema_conformance, status_code_conformance,
)

from tests.conftest import GatewayServer, make_runtime

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def mock_gateway(tmp_path_factory):
    runtime = make_runtime({"routes": {
        "default": {"targets": ["mock/echo"], "max_tokens": 512},
        "other": {"targets": ["mock/echo"]}}}, tmp_path_factory.mktemp("openapi"))
    with GatewayServer(runtime) as server:
        yield server
    runtime.ledger.close()


@pytest.fixture(scope="module")
def api_schema(mock_gateway):
    return schemathesis.openapi.from_url(mock_gateway.base_url + "/openapi.json")


def test_the_description_names_every_endpoint_and_this_gateways_routes(mock_gateway):
    document = httpx.get(mock_gateway.base_url + "/openapi.json").json()
    assert set(document["paths"]) == {"/v1/chat/completions", "/v1/messages",
                                      "/v1/models", "/v1/models/{model_id}",
                                      "/healthz", "/metrics"}
    schemas = document["components"]["schemas"]
    assert schemas["ChatRequest"]["properties"]["model"]["enum"] == ["default",
                                                                     "other"]
    assert schemas["MessagesRequest"]["required"] == ["model", "max_tokens",
                                                      "messages"]


# schemathesis's own pytest plugin does not run under this pytest, so each
# operation's strategy is drawn with hypothesis directly.
OPERATIONS = ["POST /v1/chat/completions", "POST /v1/messages", "GET /v1/models",
              "GET /healthz", "GET /metrics"]


@pytest.mark.parametrize("label", OPERATIONS)
def test_fuzzed_requests_get_documented_answers(api_schema, label):
    [operation] = [result.ok() for result in api_schema.get_all_operations()
                   if result.ok().label == label]

    @given(case=operation.as_strategy())
    @settings(max_examples=15, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def answer_is_documented(case):
        case.call_and_validate(checks=CHECKS)

    answer_is_documented()


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", {"model": "default", "messages": [{"role": {}}]}),
    ("/v1/chat/completions", {"model": "default", "tool_choice": {"type": []},
                              "messages": [{"role": "user", "content": "x"}]}),
    ("/v1/chat/completions", {"model": "default", "response_format": {
        "type": "json_schema", "json_schema": []},
        "messages": [{"role": "user", "content": "x"}]}),
    ("/v1/chat/completions", {"model": "default", "messages": [
        {"role": "assistant", "tool_calls": 5}]}),
    ("/v1/messages", {"model": "default", "max_tokens": 5, "tool_choice": {"type": {}},
                      "messages": [{"role": "user", "content": "x"}]}),
    ("/v1/messages", {"model": "default", "max_tokens": 5,
                      "system": [{"type": "text", "text": 1.5}],
                      "messages": [{"role": "user", "content": "x"}]}),
    ("/v1/messages", {"model": "default", "max_tokens": 5, "stop_sequences": "x",
                      "messages": [{"role": "user", "content": "x"}]}),
])
def test_inputs_the_fuzzer_found_are_clean_400s(mock_gateway, path, body):
    # Each of these once raised inside a parser and came back as a bare 500.
    response = httpx.post(mock_gateway.base_url + path, json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] and error["type"] in ("invalid_request_error",)
