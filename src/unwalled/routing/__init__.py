"""Routes, retries, fallback, circuit breaking and prices."""

from unwalled.routing.breaker import CircuitBreaker, RedisCircuitBreaker
from unwalled.routing.prices import cost
from unwalled.routing.router import Attempt, Router

__all__ = ["Attempt", "CircuitBreaker", "RedisCircuitBreaker", "Router", "cost"]
