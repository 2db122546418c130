"""Anthropic's Messages wire format, both directions.

Egress (the ``anthropic`` backend): ``request_body``, ``parse_response`` and
``StreamReader``, which turns the event sequence into ``Delta`` pieces with
tool-call indexes. Ingress (``POST /v1/messages``): ``parse_request``,
``response_body`` and ``StreamWriter``, which emits the exact event sequence
message_start, content_block_start, deltas, content_block_stop, message_delta,
message_stop.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from unwalled.backends.base import (
    ChatRequest, ChatResponse, Delta, Message, Tool, ToolCall, ToolCallDelta, Usage,
)
from unwalled.errors import BackendProtocolError, UnwalledError
from unwalled.protocols.common import (
    bad, check_tool_choice, checked_tool, route_of, token_count, upstream_name,
    upstream_text,
)
from unwalled.protocols.sse import encode

STOP_TO_FINISH = {"end_turn": "stop", "max_tokens": "length", "stop_sequence": "stop",
                  "tool_use": "tool_calls", "pause_turn": "stop",
                  "refusal": "content_filter",
                  "model_context_window_exceeded": "length"}
FINISH_TO_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                  "content_filter": "refusal"}
DEFAULT_MAX_TOKENS = 1024


# ---- egress: to the Anthropic Messages API ----

def request_body(request: ChatRequest, model: str, stream: bool) -> dict[str, Any]:
    system = [m.content or "" for m in request.messages if m.role == "system"]
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": _turns([m for m in request.messages if m.role != "system"]),
    }
    if system:
        body["system"] = "\n\n".join(system)
    if request.temperature is not None:
        body["temperature"] = min(request.temperature, 1.0)
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = request.stop
    if request.tools:
        body["tools"] = [{"name": t.name, "description": t.description,
                          "input_schema": t.parameters or {"type": "object"}}
                         for t in request.tools]
        choice = _tool_choice(request.tool_choice)
        if choice:
            body["tool_choice"] = choice
    if stream:
        body["stream"] = True
    return body


def _turns(messages: list[Message]) -> list[dict[str, Any]]:
    """OpenAI-style messages as Anthropic turns; tool results become user blocks."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = "user" if message.role in ("user", "tool") else "assistant"
        blocks = _blocks(message)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _blocks(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [{"type": "tool_result", "tool_use_id": message.tool_call_id or "",
                 "content": message.content or ""}]
    blocks: list[dict[str, Any]] = []
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    for call in message.tool_calls or ():
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name,
                       "input": _json_object(call.arguments)})
    return blocks or [{"type": "text", "text": ""}]


def _json_object(text: str) -> Any:
    try:
        value = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return {"_raw": text}
    return value if isinstance(value, dict) else {"value": value}


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice in (None, "auto"):
        return {"type": "auto"} if choice else None
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "tool", "name": choice["function"]["name"]}
    return None


def parse_response(raw: Any, target: str) -> ChatResponse:
    if not isinstance(raw, dict) or not isinstance(raw.get("content"), list):
        raise BackendProtocolError("upstream answer has no 'content' list; it is not "
                                   "an Anthropic message.", target=target)
    text, calls = [], []
    for i, block in enumerate(raw["content"]):
        where = f"content[{i}]"
        if block.get("type") == "text":
            text.append(upstream_text(block.get("text"), f"{where}.text"))
        elif block.get("type") == "tool_use":
            calls.append(ToolCall(id=upstream_text(block.get("id"), f"{where}.id"),
                                  name=upstream_text(block.get("name"), f"{where}.name"),
                                  arguments=_tool_input(block.get("input"), where)))
    usage = raw.get("usage")
    stop = upstream_text(raw.get("stop_reason"), "stop_reason")
    return ChatResponse(
        text="".join(text), model=target,
        finish_reason=STOP_TO_FINISH.get(stop, "stop"),
        tool_calls=calls or None,
        usage=Usage(prompt_tokens=input_tokens(usage),
                    completion_tokens=token_count(usage.get("output_tokens")))
        if isinstance(usage, dict) else Usage(estimated=True))


def _tool_input(given: Any, where: str) -> str:
    """A tool_use block's ``input`` (an object) as JSON text."""
    if given is None:
        return "{}"
    if not isinstance(given, dict):
        raise TypeError(f"{where}.input is {type(given).__name__}, not an object")
    return orjson.dumps(given).decode()


class StreamReader:
    """Anthropic stream events in, ``Delta`` pieces out.

    Each tool_use block becomes one call with its own index (0, 1, ... in block
    order), its id and name in the first piece and its ``input_json_delta``
    pieces after. A call whose block carries no JSON at all gets ``{}``, so the
    arguments are always a whole JSON object.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self.tool_index: dict[int, int] = {}
        self.tool_has_json: dict[int, bool] = {}
        self.prompt_parts: dict[str, int] = {}  # input and cache tokens, apart
        self.usage = Usage()
        self.saw_usage = False
        self.stopped = False

    def event(self, name: str | None, data: str) -> list[Delta]:
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise BackendProtocolError(f"upstream stream sent a malformed event: "
                                       f"{data[:80]!r}", target=self.target) from exc
        kind = raw.get("type", name) if isinstance(raw, dict) else name
        handler = getattr(self, f"_on_{kind}", None)
        delta = handler(raw) if handler else None  # ping and unknown kinds: nothing
        return [delta] if delta is not None else []

    def _on_error(self, raw: dict[str, Any]) -> Delta | None:
        error = raw.get("error")
        error = error if isinstance(error, dict) else {"message": str(error or "")}
        kind = error.get("type")
        raise BackendProtocolError(
            f"upstream stream reported {kind or 'an error'}: "
            f"{error.get('message', '')}", target=self.target,
            retryable=isinstance(kind, str) and kind in ("overloaded_error",
                                                         "api_error"))

    def _on_message_start(self, raw: dict[str, Any]) -> Delta | None:
        usage = (raw.get("message") or {}).get("usage") or {}
        if usage:
            self._prompt(usage)
            self.usage.completion_tokens = token_count(usage.get("output_tokens"))
            self.saw_usage = True
        return None

    def _on_content_block_start(self, raw: dict[str, Any]) -> Delta | None:
        block = raw.get("content_block") or {}
        if block.get("type") == "tool_use":
            index = self._tool(raw)
            given = block.get("input")
            arguments = _tool_input(given, "content_block") if given else ""
            self.tool_has_json[index] = bool(arguments)
            return Delta(tool_calls=[ToolCallDelta(
                index=index, id=upstream_name(block.get("id"), "content_block.id"),
                name=upstream_name(block.get("name"), "content_block.name"),
                arguments=arguments)])
        if block.get("type") == "text" and block.get("text"):
            return Delta(text=upstream_text(block["text"], "content_block.text"))
        return None

    def _on_content_block_delta(self, raw: dict[str, Any]) -> Delta | None:
        delta = raw.get("delta") or {}
        if delta.get("type") == "text_delta":
            return Delta(text=upstream_text(delta.get("text"), "delta.text"))
        if delta.get("type") == "input_json_delta" and delta.get("partial_json"):
            index = self._tool(raw)
            self.tool_has_json[index] = True
            return Delta(tool_calls=[ToolCallDelta(
                index=index,
                arguments=upstream_text(delta["partial_json"], "delta.partial_json"))])
        return None  # thinking, signature and citation deltas carry no answer text

    def _on_content_block_stop(self, raw: dict[str, Any]) -> Delta | None:
        index = self.tool_index.get(raw.get("index", 0))
        if index is None or self.tool_has_json.get(index):
            return None
        self.tool_has_json[index] = True
        return Delta(tool_calls=[ToolCallDelta(index=index, arguments="{}")])

    def _tool(self, raw: dict[str, Any]) -> int:
        return self.tool_index.setdefault(raw.get("index", 0), len(self.tool_index))

    def _on_message_delta(self, raw: dict[str, Any]) -> Delta | None:
        usage = raw.get("usage") or {}
        if "output_tokens" in usage:
            self.usage.completion_tokens = token_count(usage["output_tokens"])
            self.saw_usage = True
        self._prompt(usage)
        stop = upstream_text((raw.get("delta") or {}).get("stop_reason"),
                             "delta.stop_reason")
        return Delta(finish_reason=STOP_TO_FINISH.get(stop, "stop"))

    def _prompt(self, usage: dict[str, Any]) -> None:
        """Counts on message_delta are running totals: a count that is sent
        replaces the one before; one left out keeps its message_start value."""
        for key in PROMPT_KEYS:
            if usage.get(key) is not None:
                self.prompt_parts[key] = token_count(usage[key])
        self.usage.prompt_tokens = sum(self.prompt_parts.values())

    def _on_message_stop(self, raw: dict[str, Any]) -> Delta | None:
        self.stopped = True
        return None


PROMPT_KEYS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def input_tokens(usage: dict[str, Any]) -> int:
    """All prompt tokens: Anthropic counts cache reads and writes apart."""
    return sum(token_count(usage.get(key)) for key in PROMPT_KEYS)


# ---- ingress: POST /v1/messages ----

@dataclass(slots=True)
class Ingress:
    route: str
    request: ChatRequest
    stream: bool


def parse_request(body: Any) -> Ingress:
    """Validate an Anthropic Messages request into the internal type."""
    route = route_of(body)
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise bad("'max_tokens' is required and must be a whole number of at least 1.",
                   "max_tokens")
    turns = body.get("messages")
    if not isinstance(turns, list) or not turns:
        raise bad("'messages' must be a non-empty list.", "messages")
    messages = []
    system = _system_text(body.get("system"))
    if system:
        messages.append(Message(role="system", content=system))
    for i, turn in enumerate(turns):
        messages.extend(_parse_turn(turn, i))
    request = ChatRequest(
        messages=messages, max_tokens=max_tokens,
        temperature=_opt_number(body, "temperature"), top_p=_opt_number(body, "top_p"),
        stop=_stop_sequences(body.get("stop_sequences")),
        tools=_parse_tools(body.get("tools")),
        tool_choice=_openai_tool_choice(body.get("tool_choice")),
    )
    check_tool_choice(request)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad("'stream' must be true or false.", "stream")
    return Ingress(route, request, stream)


def _system_text(system: Any, param: str = "system") -> str:
    if system is None or isinstance(system, str):
        return system or ""
    if isinstance(system, list) and all(
            isinstance(b, dict) and b.get("type") == "text" for b in system):
        texts = [b.get("text") for b in system]
        if all(isinstance(text, str) for text in texts):
            return "\n\n".join(texts)
    raise bad(f"'{param}' must be a string or a list of text blocks "
               "({type: text, text: string}).", param)


def _parse_turn(turn: Any, i: int) -> list[Message]:
    where = f"messages[{i}]"
    role = turn.get("role") if isinstance(turn, dict) else None
    if not isinstance(role, str) or role not in ("user", "assistant"):
        raise bad(f"{where} needs role 'user' or 'assistant'.", f"{where}.role")
    role, content = turn["role"], turn.get("content")
    if isinstance(content, str):
        return [Message(role=role, content=content)]
    if not isinstance(content, list):
        raise bad(f"{where}.content must be a string or a list of blocks.",
                   f"{where}.content")
    text, calls, results = [], [], []
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            text.append(str(block.get("text", "")))
        elif kind == "tool_use":
            calls.append(ToolCall(id=str(block.get("id", "")), name=str(block.get("name")),
                                  arguments=orjson.dumps(block.get("input", {})).decode()))
        elif kind == "tool_result":
            result = _system_text(block.get("content"), f"{where}.content[{j}].content")
            results.append(Message(role="tool", tool_call_id=str(block.get("tool_use_id")),
                                   content=result))
        else:
            raise bad(f"{where}.content[{j}]: block type {kind!r} is not supported; "
                       "use text, tool_use or tool_result.", f"{where}.content")
    messages = results
    if text or calls:
        messages.append(Message(role=role, content="".join(text) or None,
                                tool_calls=calls or None))
    return messages


def _stop_sequences(raw: Any) -> list[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
        raise bad("'stop_sequences' must be a list of strings.", "stop_sequences")
    return raw or None


def _parse_tools(raw: Any) -> list[Tool] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise bad("'tools' must be a list.", "tools")
    tools = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise bad(f"tools[{i}] needs a 'name' and an 'input_schema'.", f"tools[{i}]")
        tools.append(checked_tool(item["name"], item.get("description"),
                                  item.get("input_schema"), f"tools[{i}]",
                                  "input_schema"))
    return tools or None


def _openai_tool_choice(choice: Any) -> Any:
    if choice is None:
        return None
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    if isinstance(kind, str) and kind in ("auto", "any", "none"):
        return {"auto": "auto", "any": "required", "none": "none"}[kind]
    raise bad("'tool_choice' must be {type: auto|any|none} or {type: tool, name}.",
               "tool_choice")


def _opt_number(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
        raise bad(f"'{key}' must be a number from 0 to 1.", key)
    return float(value)


def message_id() -> str:
    return f"msg_{os.urandom(12).hex()}"


def response_body(response: ChatResponse, route: str, request_id: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if response.text or not response.tool_calls:
        content.append({"type": "text", "text": response.text})
    for call in response.tool_calls or ():
        content.append({"type": "tool_use", "id": call.id or f"toolu_{uuid.uuid4().hex[:20]}",
                        "name": call.name, "input": _json_object(call.arguments)})
    return {"id": request_id, "type": "message", "role": "assistant", "model": route,
            "content": content,
            "stop_reason": FINISH_TO_STOP.get(response.finish_reason, "end_turn"),
            "stop_sequence": None, "usage": _usage_body(response.usage)}


def _usage_body(usage: Usage) -> dict[str, Any]:
    body: dict[str, Any] = {"input_tokens": usage.prompt_tokens,
                            "output_tokens": usage.completion_tokens}
    if usage.estimated:
        body["estimated"] = True
    return body


def error_body(status: int, message: str) -> dict[str, Any]:
    kind = {400: "invalid_request_error", 401: "authentication_error",
            402: "billing_error", 403: "permission_error", 404: "not_found_error",
            405: "invalid_request_error", 413: "request_too_large",
            422: "invalid_request_error",
            429: "rate_limit_error", 504: "timeout_error",
            529: "overloaded_error"}.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


class StreamWriter:
    """``Delta`` pieces in, the exact Anthropic event sequence out (as SSE bytes):
    message_start, then per block content_block_start, its deltas and
    content_block_stop, then message_delta (stop_reason and usage), message_stop.

    Blocks never overlap: a new block closes the open one. A tool_use block
    starts only once its name is known (its argument pieces wait until then).
    Calls are expected one after another, as every known upstream sends them; a
    late piece for a call whose block already closed is still sent, with that
    block's index, so index-keyed clients (the official SDK) keep it.
    ``extension``, when set, goes in the message_delta event as ``unwalled``.
    """

    def __init__(self, route: str, request_id: str, prompt_tokens: int = 0) -> None:
        self.route = route
        self.request_id = request_id
        self.prompt_tokens = prompt_tokens
        self.extension: dict[str, Any] | None = None
        self.open_block: tuple[str, int] | None = None  # (kind, tool index)
        self.blocks = 0
        self.tool_blocks: dict[int, int] = {}  # tool index -> block index
        self.waiting: dict[int, ToolCallDelta] = {}  # calls with no name yet

    def start(self) -> bytes:
        message = {"id": self.request_id, "type": "message", "role": "assistant",
                   "model": self.route, "content": [], "stop_reason": None,
                   "stop_sequence": None,
                   "usage": {"input_tokens": self.prompt_tokens, "output_tokens": 0}}
        return _event("message_start", {"type": "message_start", "message": message})

    def delta(self, delta: Delta) -> bytes:
        out = []
        if delta.text:
            out.append(self._ensure("text", -1, {"type": "text", "text": ""}))
            out.append(self._block_delta(self.blocks - 1,
                                         {"type": "text_delta", "text": delta.text}))
        for call in delta.tool_calls or ():
            out.append(self._tool_piece(call))
        return b"".join(out)

    def _tool_piece(self, call: ToolCallDelta) -> bytes:
        if call.index in self.tool_blocks:
            return self._arguments(self.tool_blocks[call.index], call.arguments)
        pending = self.waiting.setdefault(call.index, ToolCallDelta(index=call.index))
        pending.id = pending.id or call.id
        pending.name = pending.name or call.name
        pending.arguments += call.arguments
        if not pending.name:
            return b""
        return self._open_tool(self.waiting.pop(call.index))

    def _open_tool(self, call: ToolCallDelta) -> bytes:
        out = self._ensure("tool", call.index, {
            "type": "tool_use", "id": call.id or f"toolu_{uuid.uuid4().hex[:20]}",
            "name": call.name or "", "input": {}})
        self.tool_blocks[call.index] = self.blocks - 1
        return out + self._arguments(self.blocks - 1, call.arguments)

    def _arguments(self, block: int, partial_json: str) -> bytes:
        if not partial_json:
            return b""
        return self._block_delta(block, {"type": "input_json_delta",
                                         "partial_json": partial_json})

    def _block_delta(self, block: int, delta: dict[str, Any]) -> bytes:
        return _event("content_block_delta", {"type": "content_block_delta",
                                              "index": block, "delta": delta})

    def _ensure(self, kind: str, tool: int, block: dict[str, Any]) -> bytes:
        if self.open_block == (kind, tool):
            return b""
        out = self._close()
        self.open_block = (kind, tool)
        out += _event("content_block_start", {"type": "content_block_start",
                                              "index": self.blocks, "content_block": block})
        self.blocks += 1
        return out

    def _close(self) -> bytes:
        if self.open_block is None:
            return b""
        self.open_block = None
        return _event("content_block_stop", {"type": "content_block_stop",
                                             "index": self.blocks - 1})

    def finish(self, finish_reason: str, usage: Usage) -> bytes:
        out = b"".join(self._open_tool(call) for call in self._drain_waiting())
        if self.blocks == 0:
            out += self._ensure("text", -1, {"type": "text", "text": ""})
        out += self._close()
        last: dict[str, Any] = {
            "type": "message_delta",
            "delta": {"stop_reason": FINISH_TO_STOP.get(finish_reason, "end_turn"),
                      "stop_sequence": None},
            "usage": _usage_body(usage)}
        if self.extension is not None:
            last["unwalled"] = self.extension
        out += _event("message_delta", last)
        return out + _event("message_stop", {"type": "message_stop"})

    def _drain_waiting(self) -> list[ToolCallDelta]:
        calls = [self.waiting[i] for i in sorted(self.waiting)]
        self.waiting.clear()
        return calls

    def error(self, error: UnwalledError) -> bytes:
        return _event("error", error_body(error.status, error.message))


def _event(name: str, data: dict[str, Any]) -> bytes:
    return encode(orjson.dumps(data), event=name)
