"""Rate limits and budgets per API key: reserve before the call, settle after.

Before a request goes to the router, ``reserve`` checks three things at once and
holds what the request could use at most:

- requests per minute: a sliding window of the last 60 seconds,
- tokens per minute: the same window, counting each request's reservation
  (its prompt's upper bound plus ``max_tokens``) until it is settled,
- the budget: spent plus held plus this request's most expensive outcome.

``settle`` swaps the held amounts for what the ledger recorded. Because the
check and the hold are one atomic step (a lock in memory, a Lua script in
Redis), concurrent requests cannot overspend: each one's worst case is held
before it starts.

Two stores, one behaviour: ``MemoryQuotas`` for one process, ``RedisQuotas``
for replicas sharing one Redis (``state: {redis_url: ...}``). Money is kept as
whole nano-dollars so that Redis counts it exactly.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Protocol

from unwalled.errors import (
    BudgetError, ConfigError, RateLimitError, StateUnavailableError,
)
from unwalled.gateway.keys import ApiKey

__all__ = ["Reservation", "Quotas", "MemoryQuotas", "RedisQuotas", "build_quotas",
           "NANO", "WINDOW"]

log = logging.getLogger("unwalled.quotas")

NANO = 1_000_000_000
WINDOW = 60.0

SpentLookup = Callable[[str], float]
"""What the ledger says a key has spent, to start a budget after a restart."""


@dataclass(slots=True)
class Reservation:
    key: ApiKey
    request_id: str
    tokens: int
    cost: int
    """Nano-dollars held."""
    actual_tokens: int | None = None
    actual_cost: int | None = None
    settled: bool = False

    def record(self, tokens: int, cost: float) -> None:
        self.actual_tokens, self.actual_cost = tokens, round(cost * NANO)


class Quotas(Protocol):
    async def reserve(self, key: ApiKey, request_id: str, tokens: int,
                      cost: float) -> Reservation: ...

    async def settle(self, reservation: Reservation) -> None: ...

    async def close(self) -> None: ...


def _over_rpm(key: ApiKey, wait: float) -> RateLimitError:
    wait = max(wait, 0.001)
    return RateLimitError(
        f"key {key.name!r} is over its limit of {key.rpm} requests per minute. "
        f"Retry after {math.ceil(wait)} s.", retry_after=wait, param="rpm")


def _over_tpm(key: ApiKey, wait: float, used: int, tokens: int) -> RateLimitError:
    wait = max(wait, 0.001)
    return RateLimitError(
        f"key {key.name!r} is over its limit of {key.tpm} tokens per minute "
        f"({used} in use in the last minute; this request holds up to {tokens}: "
        f"its prompt plus max_tokens). Retry after {math.ceil(wait)} s, or ask for "
        "fewer max_tokens.", retry_after=wait, param="tpm")


def _over_budget(key: ApiKey, spent: int, held: int, cost: int) -> BudgetError:
    return BudgetError(
        f"key {key.name!r} has used its budget of ${key.budget:.4f}: "
        f"${spent / NANO:.6f} spent and ${held / NANO:.6f} held by requests in "
        f"flight, and this request could cost up to ${cost / NANO:.6f}. Ask for fewer "
        "max_tokens, or use a key with a larger budget.", param="budget")


def _units(dollars: float | None) -> int:
    return round(dollars * NANO) if dollars else 0


@dataclass
class _KeyState:
    requests: deque[tuple[float, str]] = field(default_factory=deque)
    tokens: dict[str, tuple[float, int]] = field(default_factory=dict)
    spent: int | None = None
    held: int = 0


class MemoryQuotas:
    """Limits and budgets for one process."""

    def __init__(self, spent: SpentLookup | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.spent_lookup = spent
        self.clock = clock
        self.lock = threading.Lock()
        self.states: dict[str, _KeyState] = {}

    async def reserve(self, key: ApiKey, request_id: str, tokens: int,
                      cost: float) -> Reservation:
        units = _units(cost) if key.budget else 0
        seeded = self._seed(key)
        with self.lock:
            state = self.states.setdefault(key.id, _KeyState())
            if state.spent is None:
                state.spent = seeded
            now = self.clock()
            self._expire(state, now)
            self._check(key, state, now, tokens, units)
            state.requests.append((now, request_id))
            state.tokens[request_id] = (now, tokens)
            state.held += units
        return Reservation(key, request_id, tokens, units)

    def _seed(self, key: ApiKey) -> int:
        known = self.states.get(key.id)
        if not key.budget or self.spent_lookup is None or (
                known is not None and known.spent is not None):
            return 0
        return _units(self.spent_lookup(key.id))

    @staticmethod
    def _expire(state: _KeyState, now: float) -> None:
        while state.requests and state.requests[0][0] <= now - WINDOW:
            state.requests.popleft()
        for rid in [r for r, (ts, _) in state.tokens.items() if ts <= now - WINDOW]:
            del state.tokens[rid]

    @staticmethod
    def _check(key: ApiKey, state: _KeyState, now: float, tokens: int,
               units: int) -> None:
        if key.rpm and len(state.requests) >= key.rpm:
            raise _over_rpm(key, state.requests[0][0] + WINDOW - now)
        if key.tpm:
            entries = sorted(state.tokens.values())
            used = sum(n for _, n in entries)
            if used + tokens > key.tpm:
                wait, freed = WINDOW, 0
                for ts, n in entries:
                    freed += n
                    if used - freed + tokens <= key.tpm:
                        wait = ts + WINDOW - now
                        break
                raise _over_tpm(key, wait, used, tokens)
        if key.budget and (state.spent or 0) + state.held + units > _units(key.budget):
            raise _over_budget(key, state.spent or 0, state.held, units)

    async def settle(self, reservation: Reservation) -> None:
        if reservation.settled:
            return
        reservation.settled = True
        tokens, cost = _actuals(reservation)
        with self.lock:
            state = self.states.setdefault(reservation.key.id, _KeyState(spent=0))
            entry = state.tokens.get(reservation.request_id)
            if entry is not None:
                state.tokens[reservation.request_id] = (entry[0], tokens)
            state.held -= reservation.cost
            state.spent = (state.spent or 0) + cost

    async def close(self) -> None:
        return None


def _actuals(reservation: Reservation) -> tuple[int, int]:
    """What to charge: the recorded use, or the whole hold if nothing was recorded."""
    tokens = reservation.tokens if reservation.actual_tokens is None \
        else reservation.actual_tokens
    cost = reservation.cost if reservation.actual_cost is None \
        else reservation.actual_cost
    return tokens, cost


_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[7])
local rpm, tpm, budget = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local tokens, cost = tonumber(ARGV[5]), tonumber(ARGV[6])
-- A budget Redis does not know (new, or its data lost) starts from the ledger:
-- say so before anything changes, and the caller seeds it and asks again.
if budget > 0 and redis.call('HEXISTS', KEYS[3], 'spent') == 0 then return {4} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
if rpm > 0 then
  if redis.call('ZCARD', KEYS[1]) >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {1, tostring(tonumber(oldest[2]) + window - now)}
  end
end
if tpm > 0 then
  local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  local used = 0
  for i = 1, #entries, 2 do
    used = used + tonumber(string.match(entries[i], ':(%d+)$'))
  end
  if used + tokens > tpm then
    local freed, wait = 0, window
    for i = 1, #entries, 2 do
      freed = freed + tonumber(string.match(entries[i], ':(%d+)$'))
      if used - freed + tokens <= tpm then
        wait = tonumber(entries[i + 1]) + window - now
        break
      end
    end
    return {2, tostring(wait), tostring(used)}
  end
end
if budget > 0 then
  local spent = tonumber(redis.call('HGET', KEYS[3], 'spent') or '0')
  local held = tonumber(redis.call('HGET', KEYS[3], 'held') or '0')
  if spent + held + cost > budget then
    return {3, tostring(spent), tostring(held)}
  end
  redis.call('HINCRBY', KEYS[3], 'held', ARGV[6])
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZADD', KEYS[2], now, ARGV[1] .. ':' .. tokens)
redis.call('EXPIRE', KEYS[1], math.ceil(window) + 1)
redis.call('EXPIRE', KEYS[2], math.ceil(window) + 1)
return {0}
"""

_SETTLE = """
local member = ARGV[1] .. ':' .. ARGV[2]
local score = redis.call('ZSCORE', KEYS[1], member)
if score then
  redis.call('ZREM', KEYS[1], member)
  redis.call('ZADD', KEYS[1], score, ARGV[1] .. ':' .. ARGV[3])
end
-- A budget Redis has lost is not rebuilt here from this one request: the next
-- reserve finds it gone and reseeds it from the ledger, which has this request.
if redis.call('HEXISTS', KEYS[2], 'spent') == 1 then
  local held = redis.call('HINCRBY', KEYS[2], 'held', ARGV[4])
  if held < 0 then redis.call('HSET', KEYS[2], 'held', 0) end
  redis.call('HINCRBY', KEYS[2], 'spent', ARGV[5])
end
return 1
"""


class RedisQuotas:
    """Limits and budgets shared by every replica on one Redis.

    The clock is Redis's own (``TIME`` inside the script), so replicas whose
    clocks disagree still share one window.
    """

    def __init__(self, url: str, spent: SpentLookup | None = None,
                 prefix: str = "unwalled:quota:") -> None:
        try:
            import redis.asyncio as redis
        except ImportError as exc:  # pragma: no cover - redis is a dependency
            raise ConfigError("the redis package is missing.", key="state.redis_url",
                              fix="pip install redis") from exc
        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.url = url
        self.spent_lookup = spent
        self.prefix = prefix
        self._reserve = self.client.register_script(_RESERVE)
        self._settle = self.client.register_script(_SETTLE)

    def _keys(self, key_id: str) -> tuple[str, str, str]:
        base = f"{self.prefix}{{{key_id}}}"  # one hash slot per key, for Redis Cluster
        return f"{base}:requests", f"{base}:tokens", f"{base}:budget"

    async def reserve(self, key: ApiKey, request_id: str, tokens: int,
                      cost: float) -> Reservation:
        units = _units(cost) if key.budget else 0
        requests, token_log, budget = self._keys(key.id)
        keys = [requests, token_log, budget]
        args = [request_id, key.rpm or 0, key.tpm or 0, _units(key.budget), tokens,
                units, WINDOW]
        try:
            result = await self._reserve(keys=keys, args=args)
            if int(result[0]) == 4:  # Redis has no spend for this budget
                await self._seed(key, budget)
                result = await self._reserve(keys=keys, args=args)
        except Exception as exc:
            raise _unreachable(exc) from exc
        verdict = int(result[0])
        if verdict == 1:
            raise _over_rpm(key, float(result[1]))
        if verdict == 2:
            raise _over_tpm(key, float(result[1]), int(float(result[2])), tokens)
        if verdict == 3:
            raise _over_budget(key, int(float(result[1])), int(float(result[2])), units)
        return Reservation(key, request_id, tokens, units)

    async def _seed(self, key: ApiKey, budget: str) -> None:
        """Start a budget from the ledger: the first time Redis meets it, and
        again whenever Redis has lost it (a flush, a restart without storage).
        Of replicas seeding at once, the first one's value stands."""
        spent = self.spent_lookup(key.id) if self.spent_lookup is not None else 0.0
        await self.client.hsetnx(budget, "spent", _units(spent))

    async def settle(self, reservation: Reservation) -> None:
        if reservation.settled:
            return
        reservation.settled = True
        tokens, cost = _actuals(reservation)
        _, token_log, budget = self._keys(reservation.key.id)
        try:
            await self._settle(keys=[token_log, budget],
                               args=[reservation.request_id, reservation.tokens, tokens,
                                     -reservation.cost, cost])
        except Exception as exc:  # the answer is already on its way: do not fail it
            log.warning("could not settle the hold of key %s in Redis (%s): it stays "
                        "held", reservation.key.id, type(exc).__name__)

    async def close(self) -> None:
        await self.client.aclose()


def _unreachable(exc: Exception) -> StateUnavailableError:
    return StateUnavailableError(
        f"cannot reach Redis for rate limits and budgets ({type(exc).__name__}), so "
        "requests on limited keys are refused. Start Redis or correct "
        "state.redis_url.")


def build_quotas(redis_url: str | None, spent: SpentLookup | None) -> Quotas:
    if redis_url:
        return RedisQuotas(redis_url, spent)
    return MemoryQuotas(spent)
