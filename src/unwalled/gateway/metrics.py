"""Prometheus metrics for the gateway, in a registry of its own per app."""

from __future__ import annotations

import asyncio
import os
from typing import Any, Callable, Container

from unwalled.ledger import Record
from prometheus_client import (
    CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess,
)

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


UNKNOWN_ROUTE = "<unknown>"
"""The label of requests naming no configured route: a client chooses what it
sends as ``model``, and one label per made-up name would grow without bound."""


class Metrics:
    def __init__(self, routes: Callable[[], Container[str]] | None = None) -> None:
        """``routes``: the configured route names, the only ones used as labels
        (None: every name is)."""
        self.routes = routes
        self.registry = CollectorRegistry()
        self.requests = Counter("unwalled_requests", "Client requests by route and status",
                                ["route", "ingress", "status"], registry=self.registry)
        self.latency = Histogram("unwalled_request_seconds", "Time to a full answer",
                                 ["route"], buckets=BUCKETS, registry=self.registry)
        self.tokens = Counter("unwalled_tokens", "Tokens by route and kind",
                              ["route", "kind"], registry=self.registry)
        self.attempts = Counter("unwalled_attempts", "Tries of each target by outcome",
                                ["target", "outcome"], registry=self.registry)
        self.cost = Counter("unwalled_cost_dollars", "Spend by route", ["route"],
                            registry=self.registry)
        # Label lookups cost more than the increments: keep the children.
        self._children: dict[tuple[str, str, int], tuple[Any, ...]] = {}
        self._attempts: dict[tuple[str, str], Any] = {}
        self._pending: list[Record] = []
        self.in_flight = Gauge("unwalled_in_flight", "Requests being served",
                               registry=self.registry, multiprocess_mode="livesum")

    def observe(self, record: Record) -> None:
        """Count a record once its answer is on its way: within a running loop
        the counting waits for the loop's next turn, off the request's path."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._count(record)
            return
        self._pending.append(record)
        if len(self._pending) == 1:
            loop.call_soon(self._count_pending)

    def _count_pending(self) -> None:
        pending, self._pending = self._pending, []
        for record in pending:
            self._count(record)

    def _count(self, record: Record) -> None:
        route = record.route or "-"
        if self.routes is not None and route != "-" and route not in self.routes():
            route = UNKNOWN_ROUTE
        key = (route, record.ingress, record.status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(route, record.ingress, str(record.status)),
                self.latency.labels(route), self.tokens.labels(route, "prompt"),
                self.tokens.labels(route, "completion"), self.cost.labels(route))
        requests, latency, prompt, completion, cost = children
        requests.inc()
        latency.observe(record.latency_ms / 1000)
        if record.prompt_tokens:
            prompt.inc(record.prompt_tokens)
        if record.completion_tokens:
            completion.inc(record.completion_tokens)
        if record.cost:
            cost.inc(record.cost)
        for attempt in record.attempts:
            child = self._attempts.get((attempt.target, attempt.outcome))
            if child is None:
                child = self._attempts[(attempt.target, attempt.outcome)] = \
                    self.attempts.labels(attempt.target, attempt.outcome)
            child.inc()

    def render(self) -> bytes:
        """This process's metrics; with several workers, all workers' together
        (prometheus_client's multiprocess mode, set up by ``serve``)."""
        self._count_pending()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
