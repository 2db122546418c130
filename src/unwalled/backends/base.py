"""The one internal request/response type every backend speaks.

Ingress formats (OpenAI, Anthropic) translate into ``ChatRequest`` at the edge;
backends translate ``ChatRequest`` into their vendor's wire format and vendor
answers back into ``ChatResponse`` or a stream of ``Delta``. Nothing between
those two boundaries knows a vendor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Protocol, runtime_checkable


@dataclass(slots=True)
class ToolCall:
    """A call the model asks for. ``arguments`` is the raw JSON text."""

    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class Message:
    """One chat message. ``content`` is text; images and other parts are not carried."""

    role: str
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(slots=True)
class Tool:
    """A function the model may call, with a JSON Schema for its arguments."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ChatRequest:
    """What an application asks for, independent of any vendor."""

    messages: list[Message]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    seed: int | None = None
    tools: list[Tool] | None = None
    tool_choice: Any = None
    json_schema: dict[str, Any] | None = None
    """When set, the backend should constrain its output to this schema."""
    json_mode: bool = False
    logprobs: bool = False

    def replace(self, **changes: Any) -> "ChatRequest":
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return ChatRequest(**values)


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False
    """True when the upstream did not report usage and Unwalled counted it."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class ChatResponse:
    """A finished answer."""

    text: str
    model: str
    finish_reason: str = "stop"
    tool_calls: list[ToolCall] | None = None
    usage: Usage = field(default_factory=Usage)
    logprobs: list[float] | None = None
    constrained: bool = False
    """True when the backend enforced ``json_schema`` while decoding."""


@dataclass(slots=True)
class ToolCallDelta:
    """A piece of a streamed tool call. ``index`` is always set."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class Delta:
    """One piece of a streamed answer."""

    text: str = ""
    tool_calls: list[ToolCallDelta] | None = None
    finish_reason: str | None = None
    usage: Usage | None = None


@runtime_checkable
class Backend(Protocol):
    """What every backend adapter provides.

    Adapters raise only ``unwalled.errors.BackendError`` subclasses; a vendor
    error is mapped in the adapter with ``raise ... from exc``.
    """

    name: str
    remote: bool

    async def complete(self, request: ChatRequest, model: str) -> ChatResponse: ...

    def stream(self, request: ChatRequest, model: str) -> AsyncIterator[Delta]: ...

    async def close(self) -> None: ...


def collect(deltas: list[Delta], model: str) -> ChatResponse:
    """Fold streamed pieces into one finished answer."""
    text: list[str] = []
    calls: dict[int, ToolCall] = {}
    finish, usage = "stop", Usage()
    for delta in deltas:
        text.append(delta.text)
        for piece in delta.tool_calls or ():
            call = calls.setdefault(piece.index, ToolCall(id="", name="", arguments=""))
            call.id = piece.id or call.id
            call.name = piece.name or call.name
            call.arguments += piece.arguments
        finish = delta.finish_reason or finish
        usage = delta.usage or usage
    tool_calls = [calls[i] for i in sorted(calls)] or None
    return ChatResponse(text="".join(text), model=model, finish_reason=finish,
                        tool_calls=tool_calls, usage=usage)


def estimate_tokens(text: str) -> int:
    """A rough token count for upstreams that report none (about 4 chars a token)."""
    return max(1, (len(text) + 3) // 4) if text else 0


def output_text(answer: "ChatResponse | Delta") -> str:
    """Everything the model wrote, tool-call names and arguments included, so an
    estimate counts a tool-calling answer too."""
    calls = "".join((c.name or "") + c.arguments for c in answer.tool_calls or ())
    return answer.text + calls


def estimate_usage(request: ChatRequest, text: str) -> Usage:
    """Usage counted by Unwalled, marked as estimated."""
    prompt = sum(estimate_tokens(m.content or "") + 4 for m in request.messages)
    prompt += sum(estimate_tokens(t.name + t.description + str(t.parameters))
                  for t in request.tools or ())
    return Usage(prompt_tokens=prompt, completion_tokens=estimate_tokens(text),
                 estimated=True)
