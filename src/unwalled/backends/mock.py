"""The ``mock`` backend: scripted answers, shipped for users' own tests.

Each call takes the next item of the script, cycling at the end. An item is a
string (the answer), or an object with any of ``text``, ``tool_calls``
(``[{name, arguments}]``), ``usage`` (``{prompt_tokens, completion_tokens}``,
else counted from the text), ``finish`` (the finish reason, e.g. ``length`` for
an answer cut at max_tokens), ``delay`` (seconds) and ``error`` (``{status,
message, retry_after}``, raised as the matching ``BackendError``). With no
script, the mock echoes the last user message, so it is useful unconfigured.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, AsyncIterator, Iterable

import orjson

from unwalled.backends.base import (
    ChatRequest, ChatResponse, Delta, ToolCall, ToolCallDelta, Usage, estimate_usage,
)
from unwalled.backends.http import status_error
from unwalled.config import BackendConfig


class MockBackend:
    remote = False

    def __init__(self, name: str = "mock", config: BackendConfig | None = None,
                 script: Iterable[Any] | None = None) -> None:
        self.name = name
        items = list(script if script is not None else (config.script if config else []))
        self._script = itertools.cycle(items) if items else None
        self.requests: list[ChatRequest] = []
        """Every request received, for assertions in users' tests."""

    def _next(self, request: ChatRequest) -> dict[str, Any]:
        self.requests.append(request)
        if self._script is None:
            last = next((m.content for m in reversed(request.messages)
                         if m.role == "user"), "")
            return {"text": last or ""}
        item = next(self._script)
        return {"text": item} if isinstance(item, str) else dict(item)

    async def _play(self, item: dict[str, Any], target: str) -> None:
        if item.get("delay"):
            await asyncio.sleep(float(item["delay"]))
        error = item.get("error")
        if error:
            headers = {}
            if error.get("retry_after") is not None:
                headers["retry-after"] = str(error["retry_after"])
            raise status_error(int(error.get("status", 500)),
                               orjson.dumps({"error": {"message": error.get(
                                   "message", "scripted failure")}}), headers, target)

    async def complete(self, request: ChatRequest, model: str) -> ChatResponse:
        item = self._next(request)
        target = f"{self.name}/{model}"
        await self._play(item, target)
        text = str(item.get("text", ""))
        calls = [ToolCall(id=f"call_{i}", name=c["name"],
                          arguments=c["arguments"] if isinstance(c["arguments"], str)
                          else orjson.dumps(c["arguments"]).decode())
                 for i, c in enumerate(item.get("tool_calls") or [])] or None
        return ChatResponse(text=text, model=target, tool_calls=calls,
                            finish_reason=str(item.get("finish") or
                                              ("tool_calls" if calls else "stop")),
                            usage=_usage(item, request, text))

    async def stream(self, request: ChatRequest, model: str) -> AsyncIterator[Delta]:
        response = await self.complete(request, model)
        words = response.text.split(" ")
        for i, word in enumerate(words):
            yield Delta(text=word if i == 0 else " " + word)
        for i, call in enumerate(response.tool_calls or ()):
            yield Delta(tool_calls=[ToolCallDelta(index=i, id=call.id, name=call.name)])
            yield Delta(tool_calls=[ToolCallDelta(index=i, arguments=call.arguments)])
        yield Delta(finish_reason=response.finish_reason)
        yield Delta(usage=response.usage)

    async def close(self) -> None:
        return None


def _usage(item: dict[str, Any], request: ChatRequest, text: str) -> Usage:
    """The scripted token counts, or the text's own count."""
    scripted = item.get("usage")
    if not scripted:
        return estimate_usage(request, text)
    return Usage(int(scripted.get("prompt_tokens", 0)),
                 int(scripted.get("completion_tokens", 0)))
