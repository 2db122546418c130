"""Unwalled: LLM infrastructure a company runs and owns.

Applications call a *route*, never a vendor model; every call is recorded in a
*ledger*. The public API is what ``__all__`` lists; everything else may change.
"""

from unwalled.backends.base import ChatRequest, ChatResponse, Delta, Message, Tool, Usage
from unwalled.backends.mock import MockBackend
from unwalled.client import AsyncClient, Client
from unwalled.config import Config, load_config, parse_config
from unwalled.contracts import Contract, Verdict, Verifier, Violation, load_contract
from unwalled.errors import (
    BackendError, ConfigError, ContractError, RequestError, RoutingError, UnwalledError,
)
from unwalled.ledger import Ledger
from unwalled.runtime import CallInfo, Runtime

__version__ = "0.1.0"

__all__ = [
    "AsyncClient", "Client", "Contract", "Verdict", "Verifier", "Violation",
    "load_contract",
    "BackendError", "CallInfo", "ChatRequest", "ChatResponse", "Config", "ConfigError",
    "ContractError", "Delta", "Ledger", "Message", "MockBackend", "RequestError",
    "RoutingError", "Runtime", "Tool", "UnwalledError", "Usage", "load_config",
    "parse_config", "__version__",
]
