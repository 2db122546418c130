"""Circuit breaker: stop sending to a target that keeps failing, try it again later.

States per target: closed (calls flow), open (calls skipped until ``reset_after``
has passed), half-open (one trial call; success closes, failure re-opens).
The state lives in a ``BreakerState`` so replicas can share it (Redis).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable


@dataclass(slots=True)
class TargetState:
    failures: int = 0
    opened_at: float | None = None
    trial_running: bool = False


class CircuitBreaker:
    """In-memory breaker for one process."""

    def __init__(self, failures: int, reset_after: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = failures
        self.reset_after = reset_after
        self.clock = clock
        self.states: dict[str, TargetState] = {}

    def allow(self, target: str) -> bool:
        state = self.states.get(target)
        if state is None or state.opened_at is None:
            return True
        if self.clock() - state.opened_at < self.reset_after or state.trial_running:
            return False
        state.trial_running = True  # half-open: this caller is the one trial
        return True

    def success(self, target: str) -> None:
        self.states.pop(target, None)

    def failure(self, target: str) -> None:
        state = self.states.setdefault(target, TargetState())
        state.failures += 1
        state.trial_running = False
        if state.failures >= self.threshold:
            state.opened_at = self.clock()

    def state(self, target: str) -> str:
        state = self.states.get(target)
        if state is None or state.opened_at is None:
            return "closed"
        if self.clock() - state.opened_at >= self.reset_after:
            return "half-open"
        return "open"
