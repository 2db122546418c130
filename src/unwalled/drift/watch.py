"""Checks on a schedule inside the gateway, and the one place a check is recorded.

The gateway starts a ``DriftWatch`` when ``drift.routes`` names any route. Each
watched route gets its own loop: check, record, wait ``every`` seconds. The
first run takes the reference snapshot when the ledger has none (unless
``snapshot_if_missing`` is off). A failed check is logged, counted and recorded
in the ledger; it never stops the loop or the gateway.
"""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge

from unwalled.config import DriftRouteConfig
from unwalled.drift.check import CheckOptions, DriftReport, run_check, take_snapshot
from unwalled.drift.probes import ProbeSet, load_probes
from unwalled.drift.store import CheckRecord, DriftStore, Snapshot
from unwalled.errors import ConfigError, DriftError, UnwalledError
from unwalled.runtime import Runtime

log = logging.getLogger("unwalled.drift")


async def check_route(runtime: Runtime, store: DriftStore, route: str,
                      options: CheckOptions | None = None,
                      snapshot_id: str | None = None) -> DriftReport:
    """Check a route against its newest snapshot (or the one named) and record
    the outcome in the ledger, failures included."""
    try:
        runtime.router.route(route)  # an unknown route is named as one, not as "no snapshot"
        snapshot = await _snapshot_for(store, route, snapshot_id)
        report = await run_check(runtime, snapshot, options)
    except UnwalledError as exc:
        await asyncio.to_thread(store.save_check,
                                CheckRecord(route, "error", error=exc.message))
        raise
    record = CheckRecord(route, "drift" if report.drifted else "ok",
                         snapshot_id=snapshot.id, p_value=report.p_value,
                         moved=[probe.probe for probe in report.moved],
                         report=report.to_dict())
    await asyncio.to_thread(store.save_check, record)
    return report


async def _snapshot_for(store: DriftStore, route: str,
                        snapshot_id: str | None) -> Snapshot:
    if snapshot_id is None:
        return await asyncio.to_thread(store.latest_snapshot, route)
    snapshot = await asyncio.to_thread(store.snapshot, snapshot_id)
    if snapshot.route != route:
        raise DriftError(f"snapshot {snapshot_id} belongs to route {snapshot.route!r}, "
                         f"not {route!r}. Name a snapshot of {route!r}, or none.")
    return snapshot


class DriftMetrics:
    """The last result per route, for ``/metrics``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def last(name: str, documentation: str) -> Gauge:
            """A per-route gauge of the last check; with several workers, the
            value of the most recent write wins."""
            return Gauge(name, documentation, ["route"], registry=registry,
                         multiprocess_mode="mostrecent")

        self.p_value = last("unwalled_drift_p_value",
                            "Smallest Holm-adjusted p-value of the last drift check")
        self.detected = last("unwalled_drift_detected",
                             "1 when the last drift check found drift, else 0")
        self.last_check = last("unwalled_drift_last_check_timestamp_seconds",
                               "When the last drift check finished (Unix time)")
        self.moved = last("unwalled_drift_probes_moved",
                          "Probes named as moved by the last drift check")
        self.checks = Counter("unwalled_drift_checks",
                              "Drift checks by outcome (ok, drift, error)",
                              ["route", "status"], registry=registry)

    def observe(self, report: DriftReport) -> None:
        route = report.route
        self.p_value.labels(route).set(report.p_value)
        self.detected.labels(route).set(1 if report.drifted else 0)
        self.moved.labels(route).set(len(report.moved))
        self.last_check.labels(route).set(time.time())
        self.checks.labels(route, "drift" if report.drifted else "ok").inc()

    def failed(self, route: str) -> None:
        self.checks.labels(route, "error").inc()


class DriftWatch:
    """One background loop per watched route."""

    def __init__(self, runtime: Runtime, registry: CollectorRegistry) -> None:
        if runtime.ledger is None:
            raise ConfigError("drift watch keeps its snapshots in the ledger, and this "
                              "gateway has none.", key="drift.routes",
                              fix="run with a ledger, or remove 'drift.routes'.")
        self.runtime = runtime
        self.config = runtime.config.drift
        self.store = DriftStore(runtime.ledger)
        self.metrics = DriftMetrics(registry)
        # Read every probe set now, so that a bad file stops the start-up.
        self.probes = {route: load_probes(watched.probes)
                       for route, watched in self.config.routes.items()}
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for route, watched in self.config.routes.items():
            self.tasks.append(asyncio.create_task(self._loop(route, watched),
                                                  name=f"drift-{route}"))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()

    async def _loop(self, route: str, watched: DriftRouteConfig) -> None:
        while True:
            await self.run_once(route, watched)
            await asyncio.sleep(watched.every)

    async def run_once(self, route: str,
                       watched: DriftRouteConfig) -> DriftReport | None:
        """One scheduled step: a snapshot if one is due, else a check."""
        try:
            if await self._needs_snapshot(route, watched):
                await self._snapshot(route, self.probes[route])
                return None
            options = CheckOptions(alpha=self.config.alpha,
                                   permutations=self.config.permutations)
            report = await check_route(self.runtime, self.store, route, options)
        except UnwalledError as exc:
            self.metrics.failed(route)
            log.warning("drift check of route %s could not run: %s", route, exc.message)
            return None
        except Exception:  # a bug must not end the loop: log it and try next time
            self.metrics.failed(route)
            log.exception("drift check of route %s failed", route)
            return None
        self.metrics.observe(report)
        log.info("drift check route=%s drifted=%s p=%.3g moved=%s", route,
                 report.drifted, report.p_value, [p.probe for p in report.moved])
        return report

    async def _needs_snapshot(self, route: str, watched: DriftRouteConfig) -> bool:
        known = await asyncio.to_thread(self.store.snapshots, route)
        if known:
            if known[0]["probe_digest"] != self.probes[route].digest:
                log.warning("route %s: the probe set (a probe, or a contract a probe "
                            "names) changed since snapshot %s; checks keep using the "
                            "snapshot's probes until a new one is taken ('unwalled "
                            "drift snapshot %s --probes %s')", route, known[0]["id"],
                            route, watched.probes)
            return False
        if not watched.snapshot_if_missing:
            raise DriftError(f"route {route!r} has no snapshot and "
                             "snapshot_if_missing is off. Take one with 'unwalled drift "
                             f"snapshot {route} --probes {watched.probes}'.")
        return True

    async def _snapshot(self, route: str, probes: ProbeSet) -> None:
        snapshot = await take_snapshot(self.runtime, route, probes)
        await asyncio.to_thread(self.store.save_snapshot, snapshot)
        log.info("drift snapshot route=%s id=%s samples=%d", route, snapshot.id,
                 len(snapshot.samples))
