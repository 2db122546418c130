"""Routes, retries, fallback, circuit breaking and prices."""

from unwalled.routing.breaker import CircuitBreaker
from unwalled.routing.prices import cost
from unwalled.routing.router import Attempt, Router

__all__ = ["Attempt", "CircuitBreaker", "Router", "cost"]
