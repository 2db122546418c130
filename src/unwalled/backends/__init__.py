"""Backends: one wire adapter each, all speaking ``unwalled.backends.base`` types.

``build_backend`` is the one place that maps a config ``type`` to an adapter;
adapters import their optional dependencies lazily.
"""

from __future__ import annotations

from unwalled.backends.base import (
    Backend, ChatRequest, ChatResponse, Delta, Message, Tool, ToolCall, ToolCallDelta,
    Usage,
)
from unwalled.config import BackendConfig, is_remote


def build_backend(name: str, config: BackendConfig) -> Backend:
    remote = is_remote(config)
    if config.type == "local":
        from unwalled.backends.local import LocalBackend

        return LocalBackend(name, config)
    if config.type == "openai":
        from unwalled.backends.openai import OpenAIBackend

        return OpenAIBackend(name, config, remote)
    if config.type == "anthropic":
        from unwalled.backends.anthropic import AnthropicBackend

        return AnthropicBackend(name, config, remote)
    from unwalled.backends.mock import MockBackend

    return MockBackend(name, config)


__all__ = ["Backend", "ChatRequest", "ChatResponse", "Delta", "Message", "Tool",
           "ToolCall", "ToolCallDelta", "Usage", "build_backend"]
