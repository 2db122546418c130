"""Tool calling for models that have no tool-calling template.

The embedded model was never trained to call tools, so the local backend makes
tool use a matter of decoding: the tools are described in the system prompt, and
the answer is constrained (by a grammar built from a JSON Schema) to exactly one
of two shapes::

    {"answer": "plain text for the user"}
    {"tool": "<one of the allowed names>", "arguments": {...that tool's schema...}}

``tool_choice`` narrows the shapes: ``"required"`` drops the answer, a named
function keeps only that tool, ``"none"`` turns the whole mechanism off. The
decoded JSON is parsed back into text or a ``ToolCall`` with a fresh id
(``parse_answer``), or, when streaming, into text or call pieces as it is
decoded (``AnswerStream``). Either way the name is checked against the allowed
list again, because a grammar never replaces validation.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson

from unwalled.backends.base import ChatRequest, Delta, Message, ToolCall, ToolCallDelta

ANSWER_KEY, TOOL_KEY, ARGUMENTS_KEY = "answer", "tool", "arguments"


def uses_tools(request: ChatRequest) -> bool:
    """True when the model may call a tool on this request."""
    return bool(request.tools) and request.tool_choice != "none"


def allowed_tools(request: ChatRequest) -> list[Any]:
    """The tools ``tool_choice`` leaves open, in the order the caller gave."""
    tools = request.tools or []
    named = _named_choice(request.tool_choice)
    if named is None:
        return list(tools)
    return [tool for tool in tools if tool.name == named]


def may_answer_in_text(request: ChatRequest) -> bool:
    return request.tool_choice in (None, "auto")


def decoding_schema(request: ChatRequest) -> dict[str, Any]:
    """The JSON Schema every answer must match: a text answer or one allowed call.

    Each tool's parameters sit under ``arguments`` of its call's shape, so the
    definitions their ``$ref`` point at (``#/$defs/Addr``, as pydantic writes
    them) are moved to the root of the whole schema, each tool's under a name of
    its own, and its references rewritten to match."""
    definitions: dict[str, Any] = {}
    shapes = [_call_shape(tool, i, definitions)
              for i, tool in enumerate(allowed_tools(request))]
    if may_answer_in_text(request):
        shapes.insert(0, {"type": "object", "additionalProperties": False,
                          "properties": {ANSWER_KEY: {"type": "string"}},
                          "required": [ANSWER_KEY]})
    schema = shapes[0] if len(shapes) == 1 else {"oneOf": shapes}
    if definitions:
        schema = {**schema, "$defs": definitions}
    return schema


def _call_shape(tool: Any, number: int, definitions: dict[str, Any]) -> dict[str, Any]:
    parameters = tool.parameters or {"type": "object"}
    if any(key in parameters for key in _DEFINITION_KEYS):
        parameters = _hoisted(parameters, f"t{number}_", definitions)
    return {"type": "object", "additionalProperties": False,
            "properties": {TOOL_KEY: {"const": tool.name}, ARGUMENTS_KEY: parameters},
            "required": [TOOL_KEY, ARGUMENTS_KEY]}


_DEFINITION_KEYS = ("$defs", "definitions")


def _hoisted(parameters: dict[str, Any], prefix: str,
             definitions: dict[str, Any]) -> dict[str, Any]:
    """``parameters`` without its definitions, which go into ``definitions``
    under ``prefix``; every ``#/$defs/X`` or ``#/definitions/X`` in it (and in
    them) now reads ``#/$defs/{prefix}X``."""
    local = {name: body for key in _DEFINITION_KEYS
             for name, body in (parameters.get(key) or {}).items()}

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: rewrite(v) for k, v in node.items() if k not in _DEFINITION_KEYS}
            ref = out.get("$ref")
            if isinstance(ref, str):
                for key in _DEFINITION_KEYS:
                    head = f"#/{key}/"
                    if ref.startswith(head):
                        out["$ref"] = f"#/$defs/{prefix}{ref[len(head):]}"
            return out
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    for name, body in local.items():
        definitions[f"{prefix}{name}"] = rewrite(body)
    return rewrite(parameters)


def instructions(request: ChatRequest) -> str:
    """System-prompt text: which tools exist and how to reply."""
    lines = ["You can call these tools:"]
    for tool in allowed_tools(request):
        schema = orjson.dumps(tool.parameters or {"type": "object"}).decode()
        about = f": {tool.description}" if tool.description else ""
        lines.append(f"- {tool.name}{about} Arguments (JSON Schema): {schema}")
    call = f'{{"{TOOL_KEY}": NAME, "{ARGUMENTS_KEY}": {{...}}}}'
    if may_answer_in_text(request):
        lines.append(f"Reply with JSON only: {call} to call a tool, or "
                     f'{{"{ANSWER_KEY}": "..."}} to answer directly.')
    else:
        lines.append(f"Reply with JSON only: {call}.")
    return "\n".join(lines)


def prepare(request: ChatRequest) -> ChatRequest:
    """The request as the model sees it: tools in the system prompt, output
    constrained by ``decoding_schema``, earlier calls shown in the reply shape."""
    messages = [_as_reply_shape(m) for m in request.messages]
    system = instructions(request)
    if messages and messages[0].role == "system":
        first = messages[0]
        content = f"{first.content or ''}\n\n{system}"
        messages[0] = Message(role="system", content=content)
    else:
        messages.insert(0, Message(role="system", content=system))
    return request.replace(messages=messages, tools=None, tool_choice=None,
                           json_schema=decoding_schema(request), json_mode=False)


def _as_reply_shape(message: Message) -> Message:
    """An earlier assistant call, written the way the model is asked to write one."""
    if message.role != "assistant" or not message.tool_calls:
        return message
    calls = [orjson.dumps({TOOL_KEY: c.name,
                           ARGUMENTS_KEY: _loads_or_text(c.arguments)}).decode()
             for c in message.tool_calls]
    content = "\n".join(([message.content] if message.content else []) + calls)
    return Message(role="assistant", content=content)


def parse_answer(text: str, request: ChatRequest) -> tuple[str, list[ToolCall] | None]:
    """Decoded JSON back into (text, tool calls). Output cut short by
    ``max_tokens`` gives the text of the answer it had begun, or nothing for a
    cut call: never the JSON wrapper, which is the grammar's, not the model's."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _begun_answer(text), None
    if not isinstance(value, dict):
        return text, None
    allowed = {tool.name for tool in allowed_tools(request)}
    name, arguments = value.get(TOOL_KEY), value.get(ARGUMENTS_KEY)
    if name in allowed and isinstance(arguments, dict):
        call = ToolCall(id=new_call_id(), name=name,
                        arguments=orjson.dumps(arguments).decode())
        return "", [call]
    if isinstance(value.get(ANSWER_KEY), str):
        return value[ANSWER_KEY], None
    return text, None


def _begun_answer(text: str) -> str:
    if not ANSWER_START.match(text):
        return "" if text.lstrip().startswith("{") else text  # a call, or no shape yet
    import json_repair

    try:
        value = json_repair.loads(text)  # closes the cut string
    except Exception:  # the repair library gave up: nothing certain to give
        return ""
    answer = value.get(ANSWER_KEY) if isinstance(value, dict) else None
    return answer if isinstance(answer, str) else ""


ANSWER_START = re.compile(r'\s*\{\s*"answer"\s*:\s*"')
CALL_START = re.compile(r'\s*\{\s*"tool"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*'
                        r'"arguments"\s*:\s*')
HELD_BACK = re.compile(r'[\s}]*$')  # may be the end of the arguments or of the answer


class AnswerStream:
    """Decoded JSON pieces in, ``Delta`` pieces out, each as soon as it is certain.

    The grammar fixes the key order, so the opening of the JSON tells which
    shape it is: after ``{"answer": "`` the string's characters stream as text;
    after ``{"tool": NAME, "arguments":`` the call starts (index 0, a fresh id,
    the name) and the arguments stream as they are decoded, less any closing
    braces at the end, which wait until it is clear they belong to the arguments.
    """

    def __init__(self, request: ChatRequest) -> None:
        self.allowed = {tool.name for tool in allowed_tools(request)}
        self.buffer = ""
        self.kind: str | None = None  # "answer", "call" or "raw", once known
        self.start = 0  # where the answer's string or the arguments begin
        self.sent = 0  # how much of the buffer after ``start`` has gone out
        self.call_id = new_call_id()

    def feed(self, piece: str) -> list[Delta]:
        self.buffer += piece
        if self.kind is None:
            return self._open()
        if self.kind == "answer":
            return self._text()
        if self.kind == "raw":
            return [Delta(text=piece)]
        return self._arguments(final=False)

    def _open(self) -> list[Delta]:
        answer = ANSWER_START.match(self.buffer)
        if answer:
            self.kind, self.start = "answer", answer.end()
            return self._text()
        call = CALL_START.match(self.buffer)
        if call is None:
            return []
        name = orjson.loads(call.group(1))
        if name not in self.allowed:  # checked again: a grammar is not validation
            self.kind = "raw"
            return [Delta(text=self.buffer)]
        self.kind, self.start = "call", call.end()
        start = Delta(tool_calls=[ToolCallDelta(index=0, id=self.call_id, name=name)])
        return [start, *self._arguments(final=False)]

    def _text(self) -> list[Delta]:
        """The answer string's characters decoded so far, escapes whole."""
        body = self.buffer[self.start:]
        i = self.sent
        while i < len(body) and body[i] != '"':
            if body[i] != "\\":
                i += 1
                continue
            width = 6 if body[i + 1:i + 2] == "u" else 2
            if i + width > len(body):
                break  # an escape cut in two: wait for its rest
            i += width
        return self._send_text(body[self.sent:i], i)

    def _send_text(self, raw: str, upto: int) -> list[Delta]:
        try:
            text = orjson.loads(f'"{raw}"')
        except orjson.JSONDecodeError:
            return []  # half a surrogate pair: the next piece completes it
        self.sent = upto
        return [Delta(text=text)] if text else []

    def _arguments(self, final: bool) -> list[Delta]:
        body = self.buffer[self.start:]
        if self.sent == 0:  # the arguments start at their first non-blank
            self.start += len(body) - len(body.lstrip())
            body = body.lstrip()
        if final:
            body = body.rstrip()
            body = body[:-1].rstrip() if body.endswith("}") else body  # the outer }
            upto = len(body)
        else:
            upto = HELD_BACK.search(body).start()
        if upto <= self.sent:
            return []
        piece, self.sent = body[self.sent:upto], upto
        return [Delta(tool_calls=[ToolCallDelta(index=0, arguments=piece)])]

    def finish(self, finish_reason: str) -> list[Delta]:
        """What is left once decoding ends, then the finish reason: a whole
        call ends in ``tool_calls``; one cut by ``max_tokens`` in ``length``."""
        out: list[Delta] = []
        if self.kind == "call":
            out = self._arguments(final=True)
            finish_reason = "length" if finish_reason == "length" else "tool_calls"
        # Cut before its shape was known: what was decoded is the wrapper's
        # opening, not an answer, so nothing of it is sent.
        return [*out, Delta(finish_reason=finish_reason)]


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _named_choice(choice: Any) -> str | None:
    if isinstance(choice, dict):
        function = choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return function["name"]
    return None


def _loads_or_text(arguments: str) -> Any:
    try:
        return orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return arguments
