"""The gateway: OpenAI and Anthropic ingress over HTTP, SSE, metrics."""

from unwalled.gateway.app import Gateway, create_app
from unwalled.gateway.server import serve

__all__ = ["Gateway", "create_app", "serve"]
