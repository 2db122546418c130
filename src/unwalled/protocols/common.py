"""Checks both ingresses apply once a request is in the internal type."""

from __future__ import annotations

import functools
import re
from typing import Any

import orjson

from unwalled.backends.base import ChatRequest, Tool
from unwalled.errors import RequestError

TOOL_CHOICE_WORDS = ("auto", "none", "required")
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_tool_choice(request: ChatRequest, param: str = "tool_choice") -> None:
    """``tool_choice`` (OpenAI vocabulary inside) must name a tool that exists."""
    choice: Any = request.tool_choice
    if choice is None or choice in TOOL_CHOICE_WORDS:
        return
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        raise RequestError(f"'{param}' must be one of {', '.join(TOOL_CHOICE_WORDS)} "
                           "or name a function.", param=param)
    known = [tool.name for tool in request.tools or ()]
    if name not in known:
        raise RequestError(f"'{param}' names the tool {name!r}, which is not in "
                           f"'tools' ({', '.join(known) or 'none given'}). Name one "
                           "of the tools you send.", param=param)


def checked_tool(name: str, description: Any, schema: Any, where: str,
                 schema_key: str) -> Tool:
    """A ``Tool``, or a 400 naming the field when a client sent the wrong types."""
    if not TOOL_NAME.fullmatch(name):
        raise RequestError(f"{where}: the tool name {name[:80]!r} is not allowed; use "
                           "1 to 64 letters, digits, '_' or '-' (as OpenAI and "
                           "Anthropic require).", param=where)
    description = description or ""
    schema = {} if schema is None else schema
    if not isinstance(description, str) or not isinstance(schema, dict):
        raise RequestError(f"{where}: 'description' must be a string and "
                           f"'{schema_key}' a JSON Schema object.", param=where)
    checked_schema(schema, f"{where}.{schema_key}")
    return Tool(name=name, description=description, parameters=schema)


def checked_schema(schema: dict[str, Any], where: str) -> None:
    """A client's JSON Schema, valid as JSON Schema (the draft its ``$schema``
    names, else 2020-12), or a 400 saying where it is not: ``{"type": 5}`` once
    passed and constrained nothing."""
    problem = _schema_problem(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    if problem is not None:
        raise RequestError(f"{where} is not a valid JSON Schema: {problem}",
                           param=where)


@functools.lru_cache(maxsize=512)
def _schema_problem(schema_json: bytes) -> str | None:
    from jsonschema import Draft202012Validator, validators
    from jsonschema.exceptions import SchemaError

    schema = orjson.loads(schema_json)
    try:  # against the draft its "$schema" names (draft-07 and others), else 2020-12
        validators.validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as exc:
        place = "/" + "/".join(str(p) for p in exc.absolute_path)
        return f"at {place}: {exc.message[:200]}"
    return None


MAX_TOKEN_COUNT = 2**31 - 1


def token_count(value: Any) -> int:
    """A token count from an upstream's usage: a whole number from 0 to
    ``MAX_TOKEN_COUNT``, or ValueError (the router then takes the answer for one
    that does not fit its wire format). A count of -5 or 10**30 once failed
    the metrics, the ledger and the answer's own JSON."""
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) \
            or not 0 <= value <= MAX_TOKEN_COUNT:
        raise ValueError(f"usage holds {str(value)[:40]!r}, not a token count")
    return value


def bad(message: str, param: str) -> RequestError:
    """A 400 that names the parameter at fault."""
    return RequestError(message, param=param)


def route_of(body: Any) -> str:
    """The route a request names as its ``model``; a 400 when the body has none."""
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object.", "body")
    route = body.get("model")
    if not isinstance(route, str) or not route:
        raise bad("'model' is required: name a route (see GET /v1/models).", "model")
    return route


def upstream_text(value: Any, where: str) -> str:
    """A string field of an upstream's answer ('' when absent), or TypeError
    (the router then takes the answer for one that does not fit its wire
    format). A list or an object where the wire format has text once passed
    through to the client and killed the ledger's writer."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"{where} is {type(value).__name__}, not a string")
    return value


def upstream_name(value: Any, where: str) -> str | None:
    """An optional string field (a finish reason, a tool call's id or name)."""
    return None if value is None else upstream_text(value, where)
