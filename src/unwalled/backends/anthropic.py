"""The ``anthropic`` backend: Anthropic's Messages API, streaming included."""

from __future__ import annotations

from typing import AsyncIterator

from unwalled.backends.base import (
    ChatRequest, ChatResponse, Delta, estimate_usage, output_text,
)
from unwalled.backends.http import HTTPBackend
from unwalled.config import BackendConfig
from unwalled.errors import BackendProtocolError
from unwalled.protocols import anthropic as wire
from unwalled.protocols.sse import SSEDecoder

API_VERSION = "2023-06-01"


class AnthropicBackend(HTTPBackend):
    def __init__(self, name: str, config: BackendConfig, remote: bool) -> None:
        super().__init__(name, config, remote)
        self.api_key = config.key()

    def headers(self) -> dict[str, str]:
        headers = super().headers()
        headers["anthropic-version"] = API_VERSION
        if self.api_key:
            headers["x-api-key"] = self.api_key
        return headers

    async def complete(self, request: ChatRequest, model: str) -> ChatResponse:
        target = f"{self.name}/{model}"
        raw = await self.post_json("/v1/messages",
                                   wire.request_body(request, model, stream=False), target)
        response = wire.parse_response(raw, target)
        if response.usage.estimated:
            response.usage = estimate_usage(request, output_text(response))
        return response

    async def stream(self, request: ChatRequest, model: str) -> AsyncIterator[Delta]:
        target = f"{self.name}/{model}"
        reader = wire.StreamReader(target)
        decoder = SSEDecoder()
        written: list[str] = []
        async for chunk in self.post_stream(
                "/v1/messages", wire.request_body(request, model, stream=True), target):
            for event in decoder.feed(chunk):
                for delta in reader.event(event.event, event.data):
                    written.append(output_text(delta))
                    yield delta
        if not reader.stopped or decoder.pending:
            raise BackendProtocolError("upstream stream ended before message_stop.",
                                       target=target)
        usage = reader.usage if reader.saw_usage else \
            estimate_usage(request, "".join(written))
        yield Delta(usage=usage)
