"""The official SDKs pointed at a test gateway, and readers for what they return."""

from __future__ import annotations

import itertools

import anthropic
import openai

from tests.conftest import GatewayServer


def claude(server: GatewayServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key="x", max_retries=0)


def gpt(server: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0)


def call_pieces(chunks: list) -> list:
    """Every streamed OpenAI tool-call piece, in order."""
    return [p for c in chunks if c.choices for p in c.choices[0].delta.tool_calls or []]


def last_row(server: GatewayServer) -> dict:
    assert server.runtime.ledger.flush()
    return server.runtime.ledger.tail(1)[0]


def event_shape(events: list) -> list[str]:
    """Anthropic event types with runs of deltas folded, block and delta kinds shown."""
    names = []
    for event in events:
        if event.type == "content_block_start":
            names.append(f"start:{event.content_block.type}")
        elif event.type == "content_block_delta":
            names.append(f"delta:{event.delta.type}")
        else:
            names.append(event.type)
    return [name for name, _ in itertools.groupby(names)]
