"""What the gateway checks before a request reaches the runtime.

In order, each step a clear 4xx when it fails:

1. the API key (when ``auth.required``): 401 missing or unknown,
2. the body: its size, then its nesting depth and message count: 413 naming
   the limit,
3. the key's scope: 403 for a route or contract outside it,
4. the key's rate limits and budget: 429 with Retry-After, or 402.

A request that passes holds its worst case against the key's limits; the
gateway settles the hold with what the ledger recorded once the answer is done.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from unwalled.backends.base import ChatRequest, Message
from unwalled.config import Config, RouteConfig
from unwalled.errors import LimitExceededError, RequestError, UnwalledError
from unwalled.gateway.front import Incoming
from unwalled.gateway.keys import ApiKey, KeyStore
from unwalled.gateway.quotas import Quotas, Reservation, build_quotas
from unwalled.ledger import Record
from unwalled.runtime import CallInfo, Runtime

__all__ = ["Guard", "worst_case", "json_depth"]

log = logging.getLogger("unwalled.guard")

CONTRACT_HEADER = "x-unwalled-contract"
CANARY_HEADER = "x-unwalled-canary"
DEFAULT_MAX_TOKENS = 4096
"""The completion bound held for a key with limits when neither the request nor
the route sets max_tokens; the request is then capped at it."""
_PROMPT_SLACK = 256
"""Tokens for chat templates and the shield's own instructions."""
PARSER_MAX_DEPTH = 1024
PARSER_TOO_DEEP = "depth limit exceeded"
"""orjson refuses a body nested deeper than ``PARSER_MAX_DEPTH`` with this
message, before ``limits.max_depth`` is checked; it is the same refusal."""


class Guard:
    def __init__(self, runtime: Runtime) -> None:
        self.config = runtime.config
        self.limits = runtime.config.limits
        self.keys: KeyStore | None = None
        self.quotas: Quotas | None = None
        self.pending: dict[str, Reservation] = {}
        if runtime.config.auth.required:
            self.keys = KeyStore(_engine(runtime), runtime.config.auth.cache_seconds)
            self.quotas = build_quotas(runtime.config.state.redis_url, self.keys.spent)
            runtime.listeners.append(self.observe)

    # ---- 1. the key ----

    def authenticate(self, http: Incoming) -> ApiKey | None:
        if self.keys is None:
            return None
        try:
            key = self.keys.lookup(presented_key(http))
        except UnwalledError as error:
            # The presented value is never logged: it may be a live key mistyped.
            log.debug("refused a request on %s: %s", http.path, error.code)
            raise
        log.debug("key %s (%s) presented on %s", key.id, key.name, http.path)
        return key

    # ---- 2. the body ----

    async def read_body(self, http: Incoming) -> Any:
        raw = await http.body(self.limits.max_body_bytes)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if str(exc).startswith(PARSER_TOO_DEEP):
                raise self.too_deep(f"more than {PARSER_MAX_DEPTH}") from None
            raise RequestError(f"the request body is not valid JSON ({exc}). "
                               "Send a JSON object.", param="body") from None
        self.check_shape(body, raw)
        return body

    def too_deep(self, depth: int | str) -> LimitExceededError:
        return LimitExceededError(
            f"the request body nests {depth} levels deep, over the limit "
            f"limits.max_depth of {self.limits.max_depth}. Flatten it.", param="body")

    def check_shape(self, body: Any, raw: bytes) -> None:
        # A body cannot nest deeper than it has brackets: most bodies are
        # cleared by two byte counts, without walking the parsed value.
        shallow = raw.count(b"{") + raw.count(b"[") <= self.limits.max_depth
        depth = 0 if shallow else json_depth(body)
        if depth > self.limits.max_depth:
            raise self.too_deep(depth)
        messages = body.get("messages") if isinstance(body, dict) else None
        if isinstance(messages, list) and len(messages) > self.limits.max_messages:
            raise LimitExceededError(
                f"the request has {len(messages)} messages, over the limit "
                f"limits.max_messages of {self.limits.max_messages}. Send fewer or "
                "summarise older turns.", param="messages")

    # ---- 3 and 4. scope, limits and budget ----

    def check_scope(self, key: ApiKey | None, http: Incoming, info: CallInfo,
                    route_name: str) -> None:
        """The request's key may call this route (and the contract it names)."""
        info.canary = http.headers.get(CANARY_HEADER, "").lower() in ("1", "true", "on")
        if key is None:
            return
        info.key_id = key.id
        key.check_scope(route_name, http.headers.get(CONTRACT_HEADER))

    async def admit(self, key: ApiKey | None, info: CallInfo, route: RouteConfig,
                    request: ChatRequest, contract: Any = None) -> Reservation | None:
        """Hold the most the request could spend against its key's limits.
        ``contract``: the one the request runs under, whose repairs and
        fallbacks are answers too."""
        if key is None or not (key.rpm or key.tpm or key.budget):
            return None
        if request.max_tokens is None:
            request.max_tokens = route.max_tokens or DEFAULT_MAX_TOKENS
        tokens, cost = worst_case(self.config, route, request, contract)
        if key.tpm and tokens > key.tpm:
            raise LimitExceededError(
                f"this request could use {tokens} tokens (prompt plus max_tokens"
                f"{', for each answer its contract may ask for' if contract else ''}), "
                f"more than key {key.name!r} may use in a minute ({key.tpm}). Ask for "
                "fewer max_tokens or send a shorter prompt.", param="max_tokens")
        assert self.quotas is not None
        reservation = await self.quotas.reserve(key, info.request_id, tokens, cost)
        self.pending[info.request_id] = reservation
        log.debug("key %s holds %d tokens and $%.6f for %s", key.id, tokens, cost,
                  info.request_id)
        return reservation

    def observe(self, record: Record) -> None:
        """Listener on every ledger record: note what a held request really used."""
        reservation = self.pending.get(record.id)
        if reservation is not None:
            reservation.record(record.prompt_tokens + record.completion_tokens,
                               record.cost)

    async def settle(self, reservation: Reservation | None) -> None:
        if reservation is None or self.quotas is None:
            return
        self.pending.pop(reservation.request_id, None)
        await self.quotas.settle(reservation)

    async def close(self) -> None:
        if self.quotas is not None:
            await self.quotas.close()


def presented_key(http: Incoming) -> str | None:
    """The key from ``Authorization: Bearer`` (OpenAI) or ``x-api-key`` (Anthropic)."""
    header = http.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return http.headers.get("x-api-key") or None


def worst_case(config: Config, route: RouteConfig, request: ChatRequest,
               contract: Any = None) -> tuple[int, float]:
    """Upper bounds on tokens and dollars for one request on a route.

    A token is at least one byte of text, so the prompt's UTF-8 length bounds
    its token count; the completion is bounded by max_tokens. The dollar bound
    is that of the dearest target, with time-priced targets charged for the
    route's timeouts. Under a contract every answer it may ask for counts: the
    first, each repair (a re-ask also carries the bad answer and a note), and
    as many again on each further target when it falls back.
    """
    if contract is not None and contract.contract.system:
        # The contract's system prompt goes out with every answer it asks for.
        request = request.replace(messages=[Message("system", contract.contract.system),
                                            *request.messages])
    tokens, dollars = _one_answer(config, route, request)
    if contract is None:
        return tokens, dollars
    on_fail = contract.contract.on_fail
    answers = (1 + on_fail.repair) * (len(route.targets) if on_fail.fallback else 1)
    if answers == 1:
        return tokens, dollars
    completion = request.max_tokens or DEFAULT_MAX_TOKENS
    # A re-ask is the request plus the bad answer, read back as prompt (at most
    # max_tokens tokens when written, twice that as a margin for a tokenizer
    # that splits it differently on the way in), plus the note: the violations
    # and the schema, whose bytes bound its tokens.
    extra = _ANSWER_READ_BACK * completion + _REPAIR_NOTE_SLACK \
        + len(orjson.dumps(contract.contract.schema or {}))
    reask_tokens, reask_dollars = _one_answer(config, route, request, extra)
    return tokens + (answers - 1) * reask_tokens, dollars + (answers - 1) * reask_dollars


_REPAIR_NOTE_SLACK = 1024
_ANSWER_READ_BACK = 2


def _one_answer(config: Config, route: RouteConfig, request: ChatRequest,
                extra_prompt: int = 0) -> tuple[int, float]:
    prompt = _PROMPT_SLACK + extra_prompt
    for message in request.messages:
        prompt += 8 + len((message.content or "").encode())
        for call in message.tool_calls or ():
            prompt += len(call.name) + len(call.arguments.encode())
    if request.tools:
        prompt += sum(len(orjson.dumps(t.parameters)) + len(t.name) + len(t.description)
                      for t in request.tools)
    completion = request.max_tokens or DEFAULT_MAX_TOKENS
    worst_seconds = sum((t.timeout or route.timeout)
                        * (1 + (route.retries if t.retries is None else t.retries))
                        for t in route.targets)
    dearest = 0.0
    for target in route.targets:
        price = config.price_for(target.target)
        dearest = max(dearest, (prompt * price.input_per_mtok
                                + completion * price.output_per_mtok) / 1_000_000
                      + worst_seconds * price.hourly / 3600)
    return prompt + completion, dearest


def json_depth(value: Any) -> int:
    """How deeply objects and lists nest (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else \
            item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _engine(runtime: Runtime):  # noqa: ANN202 - an SQLAlchemy Engine
    if runtime.ledger is not None:
        return runtime.ledger.engine
    from unwalled.ledger.store import engine_for, migrate

    engine = engine_for(runtime.config.ledger.url)
    migrate(engine)
    return engine
