"""OpenAI's chat-completions wire format, both directions.

``parse_request`` and ``response_body``/``chunk_body`` serve the gateway's
ingress; ``request_body``/``parse_response``/``parse_chunk`` serve the ``openai``
backend. Everything else in Unwalled sees only ``unwalled.backends.base`` types.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from unwalled.backends.base import (
    ChatRequest, ChatResponse, Delta, Message, Tool, ToolCall, ToolCallDelta, Usage,
)
from unwalled.errors import BackendProtocolError, UnwalledError
from unwalled.protocols.common import (
    bad, check_tool_choice, checked_schema, checked_tool, route_of, token_count,
    upstream_name, upstream_text,
)
from unwalled.protocols.sse import encode

ROLES = {"system", "developer", "user", "assistant", "tool"}
NO_INDEX = -1
"""A streamed tool-call piece that came without its index (``ToolCallTracker``)."""


@dataclass(slots=True)
class Ingress:
    """A parsed OpenAI request: the route it names and what it asks."""

    route: str
    request: ChatRequest
    stream: bool
    include_usage: bool


def parse_request(body: Any) -> Ingress:
    """Validate an OpenAI chat request; errors name the parameter and the fix."""
    route = route_of(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("'messages' must be a non-empty list of messages.", "messages")
    request = ChatRequest(
        messages=[_parse_message(m, i) for i, m in enumerate(messages)],
        max_tokens=whole_number(body, "max_completion_tokens", 1)
        or whole_number(body, "max_tokens", 1),
        temperature=number_within(body, "temperature", 0, 2),
        top_p=number_within(body, "top_p", 0, 1),
        stop=stop_list(body.get("stop")),
        seed=whole_number(body, "seed"),
        tools=_tools(body.get("tools")),
        tool_choice=body.get("tool_choice"),
        logprobs=bool(body.get("logprobs")),
    )
    _response_format(body.get("response_format"), request)
    check_tool_choice(request)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad("'stream' must be true or false.", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise bad("'stream_options' must be an object, e.g. {\"include_usage\": true}.",
                  "stream_options")
    choices = body.get("n")
    if choices is not None and choices != 1:
        raise bad("'n' must be 1: the gateway gives one answer per request (send "
                  "several requests for several answers).", "n")
    include_usage = bool(options.get("include_usage"))
    return Ingress(route, request, stream, include_usage)


def _parse_message(raw: Any, i: int) -> Message:
    where = f"messages[{i}]"
    if not isinstance(raw, dict):
        raise bad(f"{where} must be an object with 'role' and 'content'.", where)
    role = raw.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise bad(f"{where}.role must be one of {sorted(ROLES)}, not {role!r}.",
                   f"{where}.role")
    calls = None
    if raw.get("tool_calls"):
        if not isinstance(raw["tool_calls"], list):
            raise bad(f"{where}.tool_calls must be a list.", f"{where}.tool_calls")
        calls = [_parse_tool_call(c, f"{where}.tool_calls[{j}]")
                 for j, c in enumerate(raw["tool_calls"])]
    return Message(role="system" if role == "developer" else role,
                   content=_content(raw.get("content"), where), tool_calls=calls,
                   tool_call_id=_text(raw, "tool_call_id", where),
                   name=_text(raw, "name", where))


def _text(raw: dict[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise bad(f"{where}.{key} must be a string.", f"{where}.{key}")
    return value


def _content(content: Any, where: str) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise bad(f"{where}.content[{j}]: only text parts are supported; "
                           "send images to a route whose backend takes them directly.",
                           f"{where}.content")
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    raise bad(f"{where}.content must be a string or a list of text parts.",
               f"{where}.content")


def _parse_tool_call(raw: Any, where: str) -> ToolCall:
    function = raw.get("function") if isinstance(raw, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise bad(f"{where} needs 'function' with a 'name'.", where)
    arguments = function.get("arguments", "")
    return ToolCall(id=str(raw.get("id", "")), name=function["name"],
                    arguments=arguments if isinstance(arguments, str) else "")


def _tools(raw: Any) -> list[Tool] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise bad("'tools' must be a list.", "tools")
    tools = []
    for i, item in enumerate(raw):
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise bad(f"tools[{i}] needs type 'function' and function.name.",
                       f"tools[{i}]")
        tools.append(checked_tool(function["name"], function.get("description"),
                                  function.get("parameters"), f"tools[{i}].function",
                                  "parameters"))
    return tools or None


def _response_format(raw: Any, request: ChatRequest) -> None:
    if raw is None:
        return
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "json_schema":
        wrapper = raw.get("json_schema")
        schema = wrapper.get("schema") if isinstance(wrapper, dict) else None
        if not isinstance(schema, dict):
            raise bad("response_format.json_schema.schema must be an object.",
                       "response_format")
        checked_schema(schema, "response_format.json_schema.schema")
        request.json_schema = schema
    elif kind == "json_object":
        request.json_mode = True
    elif kind != "text":
        raise bad("response_format.type must be text, json_object or json_schema.",
                   "response_format")


def whole_number(body: dict[str, Any], key: str, low: int = 0) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise bad(f"'{key}' must be a whole number of at least {low}.", key)
    return value


def number_within(body: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) \
            or not low <= value <= high:
        raise bad(f"'{key}' must be a number from {low} to {high}.", key)
    return float(value)


def stop_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise bad("'stop' must be a string or a list of strings.", "stop")


# ---- egress: to an OpenAI-compatible upstream ----

def request_body(request: ChatRequest, model: str, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model,
                            "messages": [_message_body(m) for m in request.messages]}
    for key in ("max_tokens", "temperature", "top_p", "stop", "seed"):
        value = getattr(request, key)
        if value is not None:
            body[key] = value
    if request.tools:
        body["tools"] = [{"type": "function", "function": {
            "name": t.name, "description": t.description, "parameters": t.parameters}}
            for t in request.tools]
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
    if request.json_schema is not None:
        body["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "answer", "schema": request.json_schema}}
    elif request.json_mode:
        body["response_format"] = {"type": "json_object"}
    if request.logprobs:
        body["logprobs"] = True
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _message_body(message: Message) -> dict[str, Any]:
    body: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        body["tool_calls"] = [_tool_call_body(c) for c in message.tool_calls]
    if message.tool_call_id:
        body["tool_call_id"] = message.tool_call_id
    if message.name:
        body["name"] = message.name
    return body


def _tool_call_body(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": call.arguments}}


def parse_response(raw: Any, target: str) -> ChatResponse:
    try:
        choice = raw["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError) as exc:
        raise BackendProtocolError(
            "upstream answer has no choices[0].message; it is not an OpenAI "
            "chat completion.", target=target, retryable=True) from exc
    calls = [_upstream_call(c, i) for i, c in
             enumerate(message.get("tool_calls") or [])] or None
    usage = _usage(raw.get("usage"))
    logprobs = None
    if choice.get("logprobs") and choice["logprobs"].get("content"):
        logprobs = [float(item.get("logprob", 0.0))
                    for item in choice["logprobs"]["content"]]
    return ChatResponse(
        text=upstream_text(message.get("content"), "choices[0].message.content"),
        model=target,
        finish_reason=upstream_name(choice.get("finish_reason"),
                                    "choices[0].finish_reason") or "stop",
        tool_calls=calls, usage=usage or Usage(estimated=True), logprobs=logprobs)


def _upstream_call(raw: dict[str, Any], i: int) -> ToolCall:
    where = f"choices[0].message.tool_calls[{i}]"
    function = raw["function"]
    return ToolCall(id=upstream_text(raw.get("id"), f"{where}.id"),
                    name=upstream_text(function["name"], f"{where}.function.name"),
                    arguments=upstream_text(function.get("arguments"),
                                            f"{where}.function.arguments"))


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    return Usage(prompt_tokens=token_count(raw.get("prompt_tokens")),
                 completion_tokens=token_count(raw.get("completion_tokens")))


def parse_chunk(raw: Any) -> Delta:
    delta = Delta(usage=_usage(raw.get("usage")))
    choices = raw.get("choices") or []
    if not choices:
        return delta
    choice = choices[0]
    piece = choice.get("delta") or {}
    delta.text = upstream_text(piece.get("content"), "choices[0].delta.content")
    delta.finish_reason = _finish(upstream_name(choice.get("finish_reason"),
                                                "choices[0].finish_reason"))
    if piece.get("tool_calls"):
        delta.tool_calls = [_upstream_call_piece(c, i)
                            for i, c in enumerate(piece["tool_calls"])]
    return delta


def _upstream_call_piece(raw: dict[str, Any], i: int) -> ToolCallDelta:
    where = f"choices[0].delta.tool_calls[{i}]"
    function = raw.get("function") or {}
    return ToolCallDelta(
        index=raw["index"] if isinstance(raw.get("index"), int) else NO_INDEX,
        id=upstream_name(raw.get("id"), f"{where}.id"),
        name=upstream_name(function.get("name"), f"{where}.function.name"),
        arguments=upstream_text(function.get("arguments"),
                                f"{where}.function.arguments"))


def _finish(reason: str | None) -> str | None:
    # The legacy name some servers still send for a tool call.
    return "tool_calls" if reason == "function_call" else reason


class ToolCallTracker:
    """Gives every streamed call piece its index, and the call's id and name once.

    Some servers (llama-cpp-python's among them) repeat the id and the whole
    name in every chunk; clients that join pieces by concatenation would then
    read ``lookuplookup``, so repeats are dropped. Some send no ``index``: a
    piece with a new id then starts the next call, and one with neither index
    nor id continues the call before it.
    """

    def __init__(self) -> None:
        self._named: set[int] = set()
        self._identified: set[int] = set()
        self._by_id: dict[str, int] = {}
        self._last = self._next = 0

    def clean(self, calls: list[ToolCallDelta]) -> list[ToolCallDelta]:
        for call in calls:
            call.index = self._index(call)
            if call.index in self._identified:
                call.id = None
            elif call.id:
                self._identified.add(call.index)
            if call.index in self._named:
                call.name = None
            elif call.name:
                self._named.add(call.index)
        return calls

    def _index(self, call: ToolCallDelta) -> int:
        if call.index != NO_INDEX:
            index = call.index  # an index, when sent, is trusted
        elif call.id:
            index = self._by_id.get(call.id, self._next)
        else:
            index = self._last
        if call.id:
            self._by_id.setdefault(call.id, index)
        self._last, self._next = index, max(self._next, index + 1)
        return index


# ---- ingress answers: to the application ----

def response_body(response: ChatResponse, route: str, request_id: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": response.text}
    if response.tool_calls:
        message["tool_calls"] = [_tool_call_body(c) for c in response.tool_calls]
        message["content"] = response.text or None
    return {
        "id": request_id, "object": "chat.completion", "created": int(time.time()),
        "model": route,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": response.finish_reason}],
        "usage": usage_body(response.usage),
    }


def usage_body(usage: Usage) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt_tokens": usage.prompt_tokens,
                            "completion_tokens": usage.completion_tokens,
                            "total_tokens": usage.total_tokens}
    if usage.estimated:
        body["estimated"] = True
    return body


def chunk_body(delta: Delta, route: str, request_id: str, created: int,
               first: bool = False) -> dict[str, Any]:
    piece: dict[str, Any] = {}
    if first:
        piece["role"] = "assistant"
    if delta.text:
        piece["content"] = delta.text
    if delta.tool_calls:
        piece["tool_calls"] = [_tool_delta_body(c) for c in delta.tool_calls]
    return {"id": request_id, "object": "chat.completion.chunk", "created": created,
            "model": route, "choices": [{"index": 0, "delta": piece, "logprobs": None,
                                         "finish_reason": delta.finish_reason}]}


def _tool_delta_body(call: ToolCallDelta) -> dict[str, Any]:
    body: dict[str, Any] = {"index": call.index}
    if call.id:
        body["id"] = call.id
        body["type"] = "function"
    function: dict[str, Any] = {"arguments": call.arguments}
    if call.name:
        function["name"] = call.name
    body["function"] = function
    return body


def usage_chunk_body(usage: Usage, route: str, request_id: str,
                     created: int) -> dict[str, Any]:
    return {"id": request_id, "object": "chat.completion.chunk", "created": created,
            "model": route, "choices": [], "usage": usage_body(usage)}


class StreamWriter:
    """``Delta`` pieces in, chat.completion.chunk frames out (as SSE bytes).

    The first chunk carries the role; tool-call pieces keep their index; the
    finish_reason comes in its own last chunk, then the usage chunk when the
    client asked for it (``stream_options.include_usage``), then ``[DONE]``.
    ``extension``, when set, goes in the finish_reason chunk as ``unwalled``.
    """

    def __init__(self, route: str, request_id: str, include_usage: bool) -> None:
        self.route = route
        self.request_id = request_id
        self.include_usage = include_usage
        self.created = int(time.time())
        self.first = True
        self.extension: dict[str, Any] | None = None

    def start(self) -> bytes:
        return b""

    def delta(self, delta: Delta) -> bytes:
        if not (delta.text or delta.tool_calls):
            return b""
        return self._chunk(Delta(text=delta.text, tool_calls=delta.tool_calls))

    def finish(self, finish_reason: str, usage: Usage) -> bytes:
        out = self._chunk(Delta(finish_reason=finish_reason), self.extension)
        if self.include_usage:
            out += _frame(usage_chunk_body(usage, self.route, self.request_id,
                                           self.created))
        return out + b"data: [DONE]\n\n"

    def error(self, error: UnwalledError) -> bytes:
        return _frame(error.to_openai())

    def _chunk(self, delta: Delta, extension: dict[str, Any] | None = None) -> bytes:
        body = chunk_body(delta, self.route, self.request_id, self.created, self.first)
        self.first = False
        if extension is not None:
            body["unwalled"] = extension
        return _frame(body)


def _frame(body: dict[str, Any]) -> bytes:
    return encode(orjson.dumps(body))
