"""How many samples drift watch needs to catch a real change, and how often it
cries wolf on an unchanged model.

The reference is the embedded SmolLM2-135M (Q4_1). Three real changed variants
answer the same probe set (examples/drift/probes.jsonl):

- ``requantised``: the same weights re-quantised to Q4_0 with llama.cpp's
  quantize API (a provider serving a cheaper quantisation);
- ``system-prompt``: the provider's hidden system prompt changes from the
  model's default to "You are a helpful assistant." (prepended to a probe's
  own system message when it has one);
- ``temperature``: the provider samples at temperature 1.0 where the probe
  asks for 0.7 (greedy probes stay greedy).

Each variant's answers are generated once into a pool (cached in
benchmarks/.work/drift/); trials then resample from the pools. Power is the
share of trials in which ``compare`` declares drift at alpha 0.05; the false
positive rate is the same with both sides drawn, disjointly, from the
reference pool. Every trial runs the check twice on the same draws: once with
the answers' per-token log-probabilities, as the local backend and
OpenAI-style providers return them, and once without, as for a provider that
returns none.

    .venv/bin/python benchmarks/drift_power.py               # full run
    .venv/bin/python benchmarks/drift_power.py --quick       # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import math
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from unwalled.backends.base import Backend, ChatRequest, Message  # noqa: E402
from unwalled.backends.local import embedded_model_path  # noqa: E402
from unwalled.config import parse_config  # noqa: E402
from unwalled.drift import CheckOptions, ProbeSet, Sample, compare, load_probes  # noqa: E402
from unwalled.drift.sampling import draw_samples  # noqa: E402
from unwalled.runtime import Runtime  # noqa: E402

WORK = ROOT / "benchmarks" / ".work" / "drift"
PROBES = ROOT / "examples" / "drift" / "probes.jsonl"
HIDDEN_SYSTEM = "You are a helpful assistant."
CHANGED_TEMPERATURE = 1.0
ALPHA = 0.05
MODES = ("logprobs", "no logprobs")
"""With the answers' log-probabilities, and as from a provider that gives none."""
GREEDY_POOL = 5
"""Answers generated per greedy (temperature 0) probe. They are checked to be
identical and then drawn with replacement; sampled probes are drawn without."""


# ---- the changed variants ----

def requantise(source: Path, target: Path) -> Path:
    """Re-quantise a GGUF file with llama.cpp's own quantize API."""
    import llama_cpp

    if target.is_file():
        return target
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0
    params.allow_requantize = True
    params.nthread = 1
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(),
                                            ctypes.byref(params))
    if status != 0 or not target.is_file():
        raise RuntimeError(f"llama_model_quantize returned {status}")
    return target


class ChangedProvider:
    """A backend whose provider alters each request before the model sees it."""

    remote = False

    def __init__(self, name: str, inner: Backend, model: str,
                 change: Callable[[ChatRequest], ChatRequest]) -> None:
        self.name, self.inner, self.model, self.change = name, inner, model, change

    async def complete(self, request: ChatRequest, model: str) -> Any:
        return await self.inner.complete(self.change(request), self.model)

    def stream(self, request: ChatRequest, model: str) -> Any:
        return self.inner.stream(self.change(request), self.model)

    async def close(self) -> None:
        return None


def hidden_system_prompt(request: ChatRequest) -> ChatRequest:
    messages = list(request.messages)
    if messages and messages[0].role == "system":
        own = messages[0].content or ""
        messages[0] = Message("system", f"{HIDDEN_SYSTEM}\n\n{own}")
    else:
        messages.insert(0, Message("system", HIDDEN_SYSTEM))
    return request.replace(messages=messages)


def hotter(request: ChatRequest) -> ChatRequest:
    if not request.temperature:
        return request
    return request.replace(temperature=CHANGED_TEMPERATURE)


def build_runtime(quantised: Path) -> Runtime:
    config = parse_config({
        "backends": {"local": {"type": "local", "models": {
            "smollm2-135m": {}, "q4_0": {"path": str(quantised)}}},
            "system": {"type": "mock"}, "hot": {"type": "mock"}},
        "routes": {
            "reference": {"targets": ["local/smollm2-135m"], "retries": 0},
            "requantised": {"targets": ["local/q4_0"], "retries": 0},
            "system-prompt": {"targets": ["system/smollm2-135m"], "retries": 0},
            "temperature": {"targets": ["hot/smollm2-135m"], "retries": 0}}})
    runtime = Runtime(config, ledger=None)
    local = runtime.backends["local"]
    runtime.backends["system"] = ChangedProvider("system", local, "smollm2-135m",
                                                 hidden_system_prompt)
    runtime.backends["hot"] = ChangedProvider("hot", local, "smollm2-135m", hotter)
    return runtime


# ---- pools of answers, generated once ----

async def pool(runtime: Runtime, route: str, probes: ProbeSet, per_probe: int,
               seed: int) -> tuple[list[Sample], float]:
    """``per_probe`` answers to every sampled probe from ``route`` and
    ``GREEDY_POOL`` to every greedy one; cached on disk."""
    path = WORK / f"pool-{route}-{probes.digest}-{per_probe}-{seed}.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        return [Sample(**s) for s in cached["samples"]], cached["seconds"]
    sized = ProbeSet([p.model_copy(update={
        "samples": GREEDY_POOL if p.deterministic else per_probe}) for p in probes],
        probes.name)
    started = time.perf_counter()
    samples = await draw_samples(runtime, route, sized, seed=seed, concurrency=1,
                                 ingress="benchmark")
    seconds = time.perf_counter() - started
    path.write_text(json.dumps({"seconds": seconds,
                                "samples": [asdict(s) for s in samples]}))
    return samples, seconds


def by_probe(samples: list[Sample]) -> dict[str, list[Sample]]:
    grouped: dict[str, list[Sample]] = {}
    for sample in samples:
        grouped.setdefault(sample.probe, []).append(sample)
    return grouped


# ---- trials ----

def draw(pools: dict[str, list[Sample]], count: int,
         rng: np.random.Generator) -> list[list[Sample]]:
    """``count`` samples of each probe: without replacement, except for greedy
    probes whose pool holds one answer repeated (see ``check_greedy``)."""
    drawn = []
    for samples in pools.values():
        repeat = len({s.text for s in samples}) == 1 and len(samples) < count
        picks = rng.choice(len(samples), count, replace=repeat)
        drawn.append([samples[i] for i in picks])
    return drawn


def check_greedy(probes: ProbeSet, pools: dict[str, dict[str, list[Sample]]]) -> None:
    """Greedy answers must repeat exactly, or resampling them would be wrong."""
    for route, grouped in pools.items():
        for probe in probes:
            if probe.deterministic and len({s.text for s in grouped[probe.id]}) != 1:
                raise SystemExit(f"{route}: greedy probe {probe.id} gave different "
                                 "answers; it cannot be resampled with replacement")


def one_trial(probes: ProbeSet, reference: dict[str, list[Sample]],
              fresh: dict[str, list[Sample]] | None, per_probe: int,
              rng: np.random.Generator, permutations: int) -> dict[str, Any]:
    if fresh is None:  # an unchanged model: split one draw of the reference pool
        both = draw(reference, 2 * per_probe, rng)
        before = [s for group in both for s in group[:per_probe]]
        after = [s for group in both for s in group[per_probe:]]
    else:
        before = [s for group in draw(reference, per_probe, rng) for s in group]
        after = [s for group in draw(fresh, per_probe, rng) for s in group]
    # Both modes see the same draws and permutations. Naming the probes that
    # moved does not change the verdict, so it is skipped here.
    seed = int(rng.integers(2**31))
    outcome: dict[str, Any] = {"raw": {}}
    for mode in MODES:
        options = CheckOptions(alpha=ALPHA, permutations=permutations, seed=seed,
                               localise=False)
        if mode == "no logprobs":
            before, after = without_logprobs(before), without_logprobs(after)
        report = compare(probes, before, after, options)
        outcome[mode] = report.drifted
        for test in report.tests:
            outcome["raw"][test.name] = test.p_value < ALPHA
    return outcome


def without_logprobs(samples: list[Sample]) -> list[Sample]:
    return [replace(sample, logprobs=None) for sample in samples]


def run_trials(probes: ProbeSet, pools: dict[str, dict[str, list[Sample]]],
               sizes: list[int], trials: int, permutations: int) -> dict[str, Any]:
    rng = np.random.default_rng(20261203)
    results: dict[str, Any] = {}
    for name in ["unchanged", *[v for v in pools if v != "reference"]]:
        fresh = None if name == "unchanged" else pools[name]
        for per_probe in sizes:
            if fresh is None and 2 * per_probe > _sampled_pool(probes, pools["reference"]):
                continue
            outcomes = [one_trial(probes, pools["reference"], fresh, per_probe, rng,
                                  permutations) for _ in range(trials)]
            cell = summarise(outcomes, per_probe * len(probes))
            results[f"{name}/{per_probe}"] = cell
            print(f"  {name:14s} n/side={cell['per_side']:4d}  drift declared: "
                  + ", ".join(f"{m} {cell['rate'][m]:.3f}" for m in MODES), flush=True)
    return results


def _sampled_pool(probes: ProbeSet, pools: dict[str, list[Sample]]) -> int:
    return min(len(pools[p.id]) for p in probes if not p.deterministic)


def summarise(outcomes: list[dict[str, Any]], per_side: int) -> dict[str, Any]:
    count = len(outcomes)
    hits = {mode: sum(o[mode] for o in outcomes) for mode in MODES}
    tests = sorted({name for o in outcomes for name in o["raw"]})
    return {"per_side": per_side, "trials": count,
            "rate": {mode: hits[mode] / count for mode in MODES},
            "ci95": {mode: wilson(hits[mode], count) for mode in MODES},
            "tests": {name: sum(o["raw"].get(name, False) for o in outcomes) / count
                      for name in tests}}


def wilson(hits: int, count: int, z: float = 1.96) -> tuple[float, float]:
    if count == 0:
        return (math.nan, math.nan)
    rate = hits / count
    centre = (rate + z * z / (2 * count)) / (1 + z * z / count)
    half = z * math.sqrt(rate * (1 - rate) / count + z * z / (4 * count * count)) \
        / (1 + z * z / count)
    return (max(0.0, centre - half), min(1.0, centre + half))


# ---- the report ----

def markdown(results: dict[str, Any], sizes: list[int], probes: ProbeSet) -> str:
    per_side = [s * len(probes) for s in sizes]
    rows = ["Share of trials in which the whole check declared drift (alpha 0.05, "
            "Holm), with a 95% Wilson interval; n is samples per side:", "",
            "| variant | check | " + " | ".join(f"n={n}" for n in per_side) + " |",
            "|---|---|" + "---|" * len(per_side)]
    for name in sorted({key.split("/")[0] for key in results}, key=_order):
        for mode in MODES:
            cells = []
            for size in sizes:
                cell = results.get(f"{name}/{size}")
                low, high = cell["ci95"][mode] if cell else (0, 0)
                cells.append("-" if cell is None else
                             f"{cell['rate'][mode]:.2f} [{low:.2f}, {high:.2f}]")
            rows.append(f"| {name} | {mode} | " + " | ".join(cells) + " |")
    tests = ["mmd", "spread", "flip", "pass_rate", "length", "tokens", "logprob"]
    detail = ["", "Share of trials in which each test alone had p < 0.05 (before "
              "correction):", "", "| variant | n/side | " + " | ".join(tests) + " |",
              "|---|---|" + "---|" * len(tests)]
    for key, cell in sorted(results.items(), key=lambda kv: (_order(kv[0].split("/")[0]),
                                                               kv[1]["per_side"])):
        detail.append(f"| {key.split('/')[0]} | {cell['per_side']} | " + " | ".join(
            f"{cell['tests'].get(t, math.nan):.2f}" for t in tests) + " |")
    return "\n".join(rows + detail)


def _order(name: str) -> tuple[int, str]:
    return (0 if name == "unchanged" else 1, name)


# ---- main ----

async def generate(probes: ProbeSet, reference_pool: int,
                   variant_pool: int) -> tuple[dict[str, dict[str, list[Sample]]],
                                               dict[str, float]]:
    quantised = requantise(embedded_model_path(),
                           WORK / "SmolLM2-135M-Instruct.requantised-Q4_0.gguf")
    runtime = build_runtime(quantised)
    pools, seconds = {}, {}
    try:
        # The spread test's kernel was chosen on pools drawn with seeds 1 (the
        # reference) and 4 (temperature); these are fresh ones, so the figures
        # reported do not rest on the answers that choice was made on.
        plan = [("reference", reference_pool, 5), ("requantised", variant_pool, 2),
                ("system-prompt", variant_pool, 3), ("temperature", variant_pool, 6)]
        for route, per_probe, seed in plan:
            samples, took = await pool(runtime, route, probes, per_probe, seed)
            pools[route], seconds[route] = by_probe(samples), took
            tokens = sum(s.completion_tokens for s in samples)
            print(f"pool {route}: {len(samples)} answers, {tokens} tokens, "
                  f"{took:.0f} s generating", flush=True)
    finally:
        await runtime.close()
    return pools, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--permutations", type=int, default=300)
    parser.add_argument("--reference-pool", type=int, default=48,
                        help="answers per sampled probe in the reference pool")
    parser.add_argument("--variant-pool", type=int, default=24,
                        help="answers per sampled probe in each variant's pool")
    parser.add_argument("--sizes", default="1,2,5,10,20",
                        help="samples per probe per side to try")
    parser.add_argument("--quick", action="store_true",
                        help="tiny pools and few trials: checks that the script runs")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.reference_pool, args.variant_pool = 20, 4, 2
        args.sizes, args.permutations = "1,2", 200
    sizes = [int(s) for s in args.sizes.split(",")]
    WORK.mkdir(parents=True, exist_ok=True)

    probes = load_probes(PROBES)
    pools, seconds = asyncio.run(generate(probes, args.reference_pool,
                                          args.variant_pool))
    check_greedy(probes, pools)
    started = time.perf_counter()
    results = run_trials(probes, pools, sizes, args.trials, args.permutations)
    analysis = time.perf_counter() - started
    table = markdown(results, sizes, probes)
    print(f"\n{table}\n\ngeneration seconds: {seconds}; analysis {analysis:.0f} s")
    out = WORK / ("results-quick.json" if args.quick else "results.json")
    out.write_text(json.dumps({"results": results, "generation_seconds": seconds,
                               "analysis_seconds": analysis, "args": vars(args),
                               "table": table}, indent=1))


if __name__ == "__main__":
    main()
