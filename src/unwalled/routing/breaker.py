"""Circuit breaker: stop sending to a target that keeps failing, try it again later.

States per target: closed (calls flow), open (calls skipped until ``reset_after``
has passed), half-open (one trial call; success closes, failure re-opens).

Two stores, one behaviour:

- ``CircuitBreaker`` keeps the state in this process (one machine);
- ``RedisCircuitBreaker`` keeps it in Redis, so every replica behind a load
  balancer sees the same open circuit (``state: {redis_url: ...}``).

The methods are coroutines so that the Redis store never blocks the event loop.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from unwalled.config import Config, RouteConfig
from unwalled.errors import ConfigError

log = logging.getLogger("unwalled.breaker")


class Breaker(Protocol):
    async def allow(self, target: str) -> bool: ...

    async def success(self, target: str) -> None: ...

    async def failure(self, target: str) -> None: ...

    async def release(self, target: str) -> None:
        """A call ended neither well nor by the target's fault (a request the
        upstream refused, say): a half-open trial it was is over, nothing else."""

    async def state(self, target: str) -> str: ...


@dataclass(slots=True)
class TargetState:
    failures: int = 0
    opened_at: float | None = None
    trial_started: float | None = None


class CircuitBreaker:
    """In-memory breaker for one process."""

    def __init__(self, failures: int, reset_after: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = failures
        self.reset_after = reset_after
        self.clock = clock
        self.states: dict[str, TargetState] = {}

    async def allow(self, target: str) -> bool:
        state = self.states.get(target)
        if state is None or state.opened_at is None:
            return True
        now = self.clock()
        if now - state.opened_at < self.reset_after:
            return False
        # A trial still running keeps others out, but not for ever: one whose
        # caller vanished without a word must not keep the circuit shut.
        if state.trial_started is not None \
                and now - state.trial_started < self.reset_after:
            return False
        state.trial_started = now  # half-open: this caller is the one trial
        return True

    async def success(self, target: str) -> None:
        self.states.pop(target, None)

    async def failure(self, target: str) -> None:
        state = self.states.setdefault(target, TargetState())
        state.failures += 1
        state.trial_started = None
        if state.failures >= self.threshold:
            state.opened_at = self.clock()

    async def release(self, target: str) -> None:
        state = self.states.get(target)
        if state is not None:
            state.trial_started = None

    async def state(self, target: str) -> str:
        state = self.states.get(target)
        if state is None or state.opened_at is None:
            return "closed"
        if self.clock() - state.opened_at >= self.reset_after:
            return "half-open"
        return "open"


# Each script runs atomically in Redis, so replicas never race on one target's
# state. Times are Redis's own clock (TIME, in ms): replicas' clocks may differ.
_NOW = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)"

# allow: 0 = skip the target, 1 = go (no state kept for it), 2 = go (it has
# recent failures, or this is the half-open trial: a success must clear them).
_ALLOW = _NOW + """
local opened = redis.call('HGET', KEYS[1], 'opened_at')
if not opened then
  if redis.call('EXISTS', KEYS[1]) == 1 then return 2 end
  return 1
end
local reset = tonumber(ARGV[1])
if now - tonumber(opened) < reset then return 0 end
if redis.call('HSETNX', KEYS[1], 'trial', now) == 1 then return 2 end
-- A trial whose replica died must not keep the circuit shut for ever.
if now - tonumber(redis.call('HGET', KEYS[1], 'trial')) >= reset then
  redis.call('HSET', KEYS[1], 'trial', now)
  return 2
end
return 0
"""

_FAILURE = _NOW + """
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('HDEL', KEYS[1], 'trial')
if failures >= tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'opened_at', now) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return failures
"""

_STATE = _NOW + """
local opened = redis.call('HGET', KEYS[1], 'opened_at')
if not opened then return 'closed' end
if now - tonumber(opened) >= tonumber(ARGV[1]) then return 'half-open' end
return 'open'
"""



class RedisCircuitBreaker:
    """Breaker state in Redis, shared by every replica of one route.

    When Redis cannot be reached the breaker lets calls through (and logs it):
    an outage of the shared state must not stop traffic that could succeed.

    A call to a target with no state in Redis costs one round trip: its success
    clears nothing, so it is not sent. (A failure another replica records while
    that call runs is then cleared by the next success seen with state.)
    """

    def __init__(self, redis: Any, route: str, failures: int, reset_after: float,
                 prefix: str = "unwalled:breaker") -> None:
        self.redis = redis
        self.threshold = failures
        self.reset_ms = int(reset_after * 1000)
        # Failures long past are not "in a row" any more: a target's state is
        # dropped after ten reset periods (at least a minute) without a failure.
        self.forget_ms = max(10 * self.reset_ms, 60_000)
        self.prefix = f"{prefix}:{route}"
        self._allow = redis.register_script(_ALLOW)
        self._failure = redis.register_script(_FAILURE)
        self._state = redis.register_script(_STATE)
        self._clean: set[str] = set()
        """Targets whose last ``allow`` found no state: a success is a no-op."""

    def key(self, target: str) -> str:
        return f"{self.prefix}:{target}"

    async def allow(self, target: str) -> bool:
        try:
            verdict = await self._allow(keys=[self.key(target)], args=[self.reset_ms])
        except Exception as exc:
            _unreachable("allow", exc)
            return True
        if verdict == 1:
            self._clean.add(target)
        else:
            self._clean.discard(target)
        return verdict != 0

    async def success(self, target: str) -> None:
        if target in self._clean:
            return
        try:
            await self.redis.delete(self.key(target))
        except Exception as exc:
            _unreachable("success", exc)

    async def failure(self, target: str) -> None:
        self._clean.discard(target)
        try:
            await self._failure(keys=[self.key(target)],
                                args=[self.threshold, self.forget_ms])
        except Exception as exc:
            _unreachable("failure", exc)

    async def release(self, target: str) -> None:
        if target in self._clean:
            return
        try:
            await self.redis.hdel(self.key(target), "trial")
        except Exception as exc:
            _unreachable("release", exc)

    async def state(self, target: str) -> str:
        value = await self._state(keys=[self.key(target)], args=[self.reset_ms])
        return value.decode() if isinstance(value, bytes) else str(value)


def _unreachable(step: str, exc: Exception) -> None:
    log.warning("circuit breaker state in Redis unavailable (%s): %s; letting "
                "calls through", step, type(exc).__name__)


def build_breakers(config: Config) -> tuple[dict[str, Breaker], Any]:
    """One breaker per route, and the Redis client behind them (or None)."""
    client = shared_state(config)
    return {name: breaker_for(name, route, client)
            for name, route in config.routes.items()}, client


def breaker_for(name: str, route: RouteConfig, client: Any) -> Breaker:
    """The breaker of one route: in Redis when there is a client, else in memory."""
    if client is None:
        return CircuitBreaker(route.breaker.failures, route.breaker.reset_after)
    return RedisCircuitBreaker(client, name, route.breaker.failures,
                               route.breaker.reset_after)


def shared_state(config: Config) -> Any:
    """The Redis client for ``state.redis_url``, or None when it is unset."""
    url = config.state.redis_url
    if not url:
        return None
    import redis.asyncio

    try:
        return redis.asyncio.Redis.from_url(url, socket_timeout=2,
                                            socket_connect_timeout=2)
    except ValueError as exc:
        raise ConfigError(f"cannot use Redis URL: {exc}", file=config.source,
                          key="state.redis_url",
                          fix="use e.g. 'redis://127.0.0.1:6379/0'.") from exc
