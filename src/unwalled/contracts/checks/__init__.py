"""The checks, one module per kind, and how a contract names them.

In a contract, a check is written as its kind with options, or a shorthand::

    checks:
      - no_secrets                       # a kind (or shorthand) with defaults
      - {urls: {allow: [bank.example]}}  # a kind with options
      - {max_chars: 500}                 # a shorthand with its one value

In Python, the same: ``"no_secrets"``, ``{"urls": {...}}``, or the options
model itself, e.g. ``UrlOptions(allow=["bank.example"])``.
"""

from __future__ import annotations

from typing import Annotated, Any, Callable, Union

from pydantic import BeforeValidator, Field

from unwalled.contracts.checks import (
    canary, exfiltration, json_extract, length, pii, regex, schema, secrets, sql,
    tool_calls, urls,
)
from unwalled.contracts.checks.base import Answer, Check, Options

MODULES = {
    "json": json_extract, "schema": schema, "regex": regex, "length": length,
    "urls": urls, "exfiltration": exfiltration, "secrets": secrets, "pii": pii,
    "sql": sql, "canary": canary, "tool_calls": tool_calls,
}
OPTIONS: dict[str, type[Options]] = {
    "json": json_extract.JsonOptions, "schema": schema.SchemaOptions,
    "regex": regex.RegexOptions, "length": length.LengthOptions,
    "urls": urls.UrlOptions, "exfiltration": exfiltration.ExfiltrationOptions,
    "secrets": secrets.SecretsOptions, "pii": pii.PiiOptions, "sql": sql.SqlOptions,
    "canary": canary.CanaryOptions, "tool_calls": tool_calls.ToolCallOptions,
}
# Shorthands: a name alone, or a name with the value of one option.
ALIASES: dict[str, tuple[str, str | None]] = {
    "no_secrets": ("secrets", None), "no_pii": ("pii", None),
    "no_exfiltration": ("exfiltration", None), "max_chars": ("length", "max_chars"),
    "min_chars": ("length", "min_chars"), "max_words": ("length", "max_words"),
    "max_lines": ("length", "max_lines"), "require": ("regex", "require"),
    "forbid": ("regex", "forbid"), "canary_markers": ("canary", "markers"),
    "allow_urls": ("urls", "allow"),
}

def normalise(raw: Any) -> Any:
    """A check as written in a contract, as ``{"kind": ..., **options}``."""
    if isinstance(raw, Options):
        return raw
    if isinstance(raw, str):
        kind, option = ALIASES.get(raw, (raw, None))
        if option is not None:
            raise ValueError(f"check {raw!r} needs a value, e.g. '{{{raw}: ...}}'")
        return {"kind": _known(kind)}
    if isinstance(raw, dict) and "kind" not in raw:
        if len(raw) != 1:
            raise ValueError(f"a check is one kind with its options, e.g. "
                             f"'{{urls: {{allow: [example.com]}}}}'; got the keys "
                             f"{', '.join(map(str, raw))}")
        (name, value), = raw.items()
        kind, option = ALIASES.get(name, (name, None))
        _known(kind)
        if option is not None:
            return {"kind": kind, option: value}
        if value is None:
            return {"kind": kind}
        if not isinstance(value, dict):
            raise ValueError(f"the options of check {name!r} must be a mapping")
        return {"kind": kind, **value}
    return raw


CheckSpec = Annotated[
    Annotated[Union[tuple(OPTIONS.values())], Field(discriminator="kind")],
    BeforeValidator(normalise)]
"""Any check's options, in any of the written forms; ``kind`` says which."""


def _known(kind: str) -> str:
    if kind not in OPTIONS:
        names = sorted(set(OPTIONS) | set(ALIASES))
        raise ValueError(f"unknown check {kind!r}; known checks: {', '.join(names)}")
    return kind


def build(options: Options) -> Check:
    """A ready check from its options. Raises ``ValueError`` naming what is wrong."""
    kind = getattr(options, "kind")
    builder: Callable[[Any], Check] = MODULES[kind].build
    return builder(options)


__all__ = ["ALIASES", "Answer", "Check", "CheckSpec", "OPTIONS", "Options", "build",
           "normalise"]
