"""Drift watch: catch a silent change of the model behind a route.

A *probe set* (``probes``) is sent through a route; a *snapshot* (``store``)
keeps the answers as the route's reference behaviour; a *check* (``check``)
draws fresh answers and runs two-sample tests (``stats``) against the
snapshot; ``report`` prints the outcome and ``watch`` runs checks on a
schedule inside the gateway.
"""

from unwalled.drift.check import (
    CheckOptions, DriftReport, ProbeResult, TestResult, compare, run_check, take_snapshot,
)
from unwalled.drift.probes import Probe, ProbeSet, load_probes, parse_probes
from unwalled.drift.sampling import Sample, draw_samples
from unwalled.drift.store import CheckRecord, DriftStore, Snapshot
from unwalled.drift.watch import DriftWatch, check_route

__all__ = [
    "CheckOptions", "CheckRecord", "DriftReport", "DriftStore", "DriftWatch", "Probe",
    "ProbeResult", "ProbeSet", "Sample", "Snapshot", "TestResult", "check_route",
    "compare", "draw_samples", "load_probes", "parse_probes", "run_check",
    "take_snapshot",
]
