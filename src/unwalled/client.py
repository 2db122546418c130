"""The Python API: complete a route under a contract, async or sync.

    from unwalled import Client, Contract

    contract = Contract(name="city", output={"schema": {...}}, on_fail="repair")
    with Client() as client:                       # the config's routes and ledger
        result = client.complete("Where is the Louvre?", contract=contract)
    result.parsed                                  # the validated JSON value
    result.verdict                                 # passed, attempts, violations

``AsyncClient`` has the same methods as coroutines. A rejected answer raises
``ContractError``, whose ``verdict`` holds every attempt and its violations.
Both clients record every request in the ledger, like the gateway does.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, Awaitable, TypeVar

from unwalled.backends.base import ChatRequest, Message
from unwalled.config import DEFAULT_ROUTE
from unwalled.contracts.model import Contract, load_contract, parse_contract
from unwalled.contracts.runner import Outcome, complete_async, complete_sync
from unwalled.contracts.verifier import Verifier
from unwalled.errors import RequestError
from unwalled.protocols import openai as openai_wire
from unwalled.runtime import CallInfo, Runtime

T = TypeVar("T")
ContractLike = Contract | Verifier | dict[str, Any] | str | Path


class _Base:
    def __init__(self, runtime: Runtime | None = None, *, config: str | None = None,
                 ledger: bool = True) -> None:
        self.owns_runtime = runtime is None
        """A runtime passed in belongs to the caller, who closes it."""
        self.runtime = runtime or Runtime.from_config(config, ledger=ledger)
        self._verifiers: dict[int, tuple[Contract, Verifier]] = {}
        """Verifiers built for Contract objects, keyed by identity (kept alive)."""

    def verifier(self, contract: ContractLike) -> Verifier:
        """A ready contract: given, named in the config, or loaded from a file."""
        if isinstance(contract, dict):  # a contract written as a mapping, as in YAML
            return Verifier(parse_contract(contract, source="contract="))
        if not isinstance(contract, (Contract, Verifier, str, Path)):
            raise RequestError(f"contract= takes a Contract, a mapping, a file path or "
                               f"the name of a contract in the config, not "
                               f"{type(contract).__name__}.", param="contract")
        if isinstance(contract, Verifier):
            return contract
        if isinstance(contract, Contract):
            known = self._verifiers.get(id(contract))
            if known is None or known[0] is not contract:
                known = self._verifiers[id(contract)] = (contract, Verifier(contract))
            return known[1]
        named = self.runtime.contracts.named.get(str(contract))
        if named is not None:
            return named
        return Verifier(load_contract(contract))

    def prepare(self, verifier: Verifier, input: str | None,
                messages: list[Message | dict[str, Any]] | None, route: str | None,
                options: dict[str, Any]) -> tuple[str, ChatRequest]:
        if (input is None) == (messages is None):
            raise RequestError("give either input text or messages, not both or neither.")
        if input is not None and not isinstance(input, str):
            raise RequestError(f"the input must be text (a str), not "
                               f"{type(input).__name__}.", param="input")
        contract = verifier.contract
        if messages is None:
            turns = [Message("user", contract.user_message(input or ""))]
        else:
            turns = checked_messages(messages)
        return route or contract.route or DEFAULT_ROUTE, ChatRequest(
            turns, **checked_options(options))


OPTIONS = ("max_tokens", "temperature", "top_p", "stop", "seed", "json_schema",
           "json_mode", "logprobs")
"""What ``complete`` passes on to the request, besides the input or messages."""


def checked_options(options: dict[str, Any]) -> dict[str, Any]:
    """``complete``'s options, checked as the gateway checks a request's: a
    wrong name or type is the caller's error, said as such, never taken for a
    fault of the backend it would have reached."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise RequestError(f"complete() got unknown option(s) {', '.join(unknown)}; it "
                           f"takes {', '.join(OPTIONS)}.", param=unknown[0])
    checked = dict(options)
    checked["max_tokens"] = openai_wire.whole_number(options, "max_tokens", 1)
    checked["seed"] = openai_wire.whole_number(options, "seed")
    checked["temperature"] = openai_wire.number_within(options, "temperature", 0, 2)
    checked["top_p"] = openai_wire.number_within(options, "top_p", 0, 1)
    checked["stop"] = openai_wire.stop_list(options.get("stop"))
    schema = options.get("json_schema")
    if schema is not None and not isinstance(schema, dict):
        raise RequestError("json_schema must be a JSON Schema (a dict).",
                           param="json_schema")
    for flag in ("json_mode", "logprobs"):
        if not isinstance(options.get(flag, False), bool):
            raise RequestError(f"{flag} must be True or False.", param=flag)
    return {name: value for name, value in checked.items() if value is not None}


def checked_messages(messages: Any) -> list[Message]:
    """Messages given as ``Message`` objects or OpenAI-style dicts, checked as
    the gateway's OpenAI ingress checks them."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list.", param="messages")
    raw = [_as_dict(m) for m in messages]
    return openai_wire.parse_request({"model": DEFAULT_ROUTE,
                                      "messages": raw}).request.messages


def _as_dict(message: Any) -> Any:
    if not isinstance(message, Message):
        return message
    body: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        body["tool_calls"] = [{"id": c.id, "type": "function", "function": {
            "name": c.name, "arguments": c.arguments}} for c in message.tool_calls]
    if message.tool_call_id:
        body["tool_call_id"] = message.tool_call_id
    return body


def _canaries(canaries: Any) -> tuple[str, ...]:
    """One marker may be given as a string (not read as one per letter)."""
    if isinstance(canaries, str):
        return (canaries,)
    if not isinstance(canaries, (list, tuple, set, frozenset)) \
            or not all(isinstance(c, str) for c in canaries):
        raise RequestError("canaries must be a string or a list of strings.",
                           param="canaries")
    return tuple(canaries)


class AsyncClient(_Base):
    async def complete(self, input: str | None = None, *, contract: ContractLike,
                       route: str | None = None,
                       messages: list[Message | dict[str, Any]] | None = None,
                       canaries: tuple[str, ...] = (), **options: Any) -> Outcome:
        """The route's answer under the contract: ``.parsed``, ``.verdict``, ``.text``.

        ``options`` are ``ChatRequest`` fields (``max_tokens``, ``temperature``, ...).
        """
        verifier = self.verifier(contract)
        route, request = self.prepare(verifier, input, messages, route, options)
        return await complete_async(self.runtime, route, request, verifier,
                                    CallInfo(ingress="python"),
                                    canaries=_canaries(canaries))

    async def aclose(self) -> None:
        if self.owns_runtime:
            await self.runtime.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


class Client(_Base):
    """The synchronous client. Backend calls run on one event-loop thread that
    the client owns, so connections and the local model are reused across calls."""

    def __init__(self, runtime: Runtime | None = None, *, config: str | None = None,
                 ledger: bool = True) -> None:
        super().__init__(runtime, config=config, ledger=ledger)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="unwalled-client", daemon=True)
        self._thread.start()

    def _portal(self, work: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    def complete(self, input: str | None = None, *, contract: ContractLike,
                 route: str | None = None,
                 messages: list[Message | dict[str, Any]] | None = None,
                 canaries: tuple[str, ...] = (), **options: Any) -> Outcome:
        """As ``AsyncClient.complete``, blocking until the verdict."""
        verifier = self.verifier(contract)
        route, request = self.prepare(verifier, input, messages, route, options)
        return complete_sync(self.runtime, route, request, verifier, self._portal,
                             CallInfo(ingress="python"), canaries=_canaries(canaries))

    def close(self) -> None:
        if self._loop.is_running():
            if self.owns_runtime:
                self._portal(self.runtime.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
