"""The ``openai`` backend: any OpenAI-compatible server (vLLM, Ollama, llama.cpp
server, TGI, hosted APIs), addressed by its base URL."""

from __future__ import annotations

from typing import Any, AsyncIterator

import orjson

from unwalled.backends.base import (
    ChatRequest, ChatResponse, Delta, Usage, estimate_usage, output_text,
)
from unwalled.backends.http import HTTPBackend
from unwalled.config import BackendConfig
from unwalled.errors import BackendProtocolError
from unwalled.protocols import openai as wire
from unwalled.protocols.sse import SSEDecoder


class OpenAIBackend(HTTPBackend):
    def __init__(self, name: str, config: BackendConfig, remote: bool) -> None:
        super().__init__(name, config, remote)
        self.api_key = config.key()

    def headers(self) -> dict[str, str]:
        headers = super().headers()
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        return headers

    async def complete(self, request: ChatRequest, model: str) -> ChatResponse:
        target = f"{self.name}/{model}"
        raw = await self.post_json("/chat/completions",
                                   wire.request_body(request, model, stream=False), target)
        response = wire.parse_response(raw, target)
        if response.usage.estimated:
            response.usage = estimate_usage(request, output_text(response))
        return response

    async def stream(self, request: ChatRequest, model: str) -> AsyncIterator[Delta]:
        target = f"{self.name}/{model}"
        body = wire.request_body(request, model, stream=True)
        decoder = SSEDecoder()
        tracker = wire.ToolCallTracker()
        finished = done = False
        usage: Usage | None = None
        text: list[str] = []
        async for chunk in self.post_stream("/chat/completions", body, target):
            for event in decoder.feed(chunk):
                if event.data == "[DONE]":
                    done = True
                    continue
                delta = _decode(event.data, target)
                usage = delta.usage or usage
                finished = finished or delta.finish_reason is not None
                delta.usage = None
                if delta.tool_calls:
                    delta.tool_calls = tracker.clean(delta.tool_calls)
                text.append(output_text(delta))
                if delta.text or delta.tool_calls or delta.finish_reason:
                    yield delta
        if not (done or finished) or decoder.pending:
            raise BackendProtocolError(
                "upstream stream ended before its last event (no finish_reason "
                "and no [DONE]).", target=target)
        yield Delta(usage=usage or estimate_usage(request, "".join(text)))


def _decode(data: str, target: str) -> Delta:
    try:
        raw: Any = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BackendProtocolError(f"upstream stream sent a malformed event: "
                                   f"{data[:80]!r}", target=target) from exc
    if isinstance(raw, dict) and "error" in raw:
        raise BackendProtocolError(f"upstream stream reported an error: "
                                   f"{str(raw['error'])[:300]}", target=target)
    if not isinstance(raw, dict):
        raise BackendProtocolError("upstream stream event is not an object.",
                                   target=target)
    return wire.parse_chunk(raw)

