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
from unwalled.contracts.model import Contract, load_contract
from unwalled.contracts.runner import Outcome, complete_async, complete_sync
from unwalled.contracts.verifier import Verifier
from unwalled.errors import RequestError
from unwalled.runtime import CallInfo, Runtime

T = TypeVar("T")
ContractLike = Contract | Verifier | str | Path


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
        contract = verifier.contract
        if messages is None:
            turns = [Message("user", contract.user_message(input or ""))]
        else:
            turns = [m if isinstance(m, Message) else Message(**m) for m in messages]
        return route or contract.route or DEFAULT_ROUTE, ChatRequest(turns, **options)


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
                                    CallInfo(ingress="python"), canaries=canaries)

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
                             CallInfo(ingress="python"), canaries=canaries)

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
