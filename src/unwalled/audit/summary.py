"""From raw results to the audit's findings: per-candidate figures, tests, verdict.

The summary is plain JSON-ready data; the terminal table, the JSON file and the
HTML page are all drawn from it.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from unwalled.audit.runner import AuditRun
from unwalled.audit.statistics import ALPHA, below_target, compare, interval, percentile
from unwalled.audit.suite import Candidate
from unwalled.audit.work import ItemResult
from unwalled.backends.base import Usage
from unwalled.config import Config
from unwalled.routing import cost


def summarise(run: AuditRun, config: Config) -> dict[str, Any]:
    suite = run.suite
    seed = suite.sample.seed
    rows = [candidate_figures(c, run, config) for c in suite.candidates]
    best = max(rows, key=lambda r: (r["accuracy"], -r["cost_per_1000"]))
    for row in rows:
        row["vs_best"] = None if row is best else _versus(run, best, row, seed)
    summary: dict[str, Any] = {
        "suite": suite.name, "description": suite.description,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "items": len(run.dataset.items), "items_in_data": run.dataset.total,
        "sample_seed": seed, "target_accuracy": suite.target_accuracy,
        "scorer": suite.scorer, "alpha": ALPHA,
        "model_calls": run.model_calls, "cache_hits": run.cache_hits,
        "seconds": round(run.seconds, 3), "best": best["name"],
        "candidates": rows,
        "recommendation": recommend(rows, suite.target_accuracy),
        "pareto_front": pareto_front(rows),
    }
    if run.dataset.labels is not None:
        summary["confusion"] = {name: confusion(results)
                                for name, results in run.results.items()}
    return summary


def candidate_figures(candidate: Candidate, run: AuditRun,
                      config: Config) -> dict[str, Any]:
    results = run.results[candidate.name]
    scores = [r.score.value for r in results]
    seed = run.suite.sample.seed
    ci = interval(scores, seed)
    latencies = [r.answer.latency_ms for r in results]
    n = max(1, len(results))
    dollars = sum(_cost(candidate, r, config) for r in results)
    p_below = below_target(scores, run.suite.target_accuracy, seed)
    errors = sum(1 for r in results if r.answer.error)
    # A candidate none of whose calls answered has shown nothing, however few
    # the items that cannot prove it below the target: it never "meets" it.
    answered = errors < len(results)
    figures: dict[str, Any] = {
        "name": candidate.name, "kind": "baseline" if candidate.baseline else "model",
        "describe": candidate.describe(), "target": candidate.target,
        "items": len(results), "accuracy": sum(scores) / n,
        "ci_low": ci.low, "ci_high": ci.high, "ci_method": ci.method,
        "p_below_target": p_below, "meets_target": p_below >= ALPHA and answered,
        "contract_pass_rate": _pass_rate(results),
        "errors": errors,
        "cached": sum(1 for r in results if r.answer.cached),
        "prompt_tokens_per_item": sum(r.answer.prompt_tokens for r in results) / n,
        "completion_tokens_per_item":
            sum(r.answer.completion_tokens for r in results) / n,
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p95_ms": percentile(latencies, 95),
        "compute_seconds": sum(latencies) / 1000,
        "cost_per_1000": dollars / n * 1000,
        "train_seconds": run.train_seconds.get(candidate.name),
    }
    figures.update(_span_figures(results))
    figures["results"] = [_item(r) for r in results]
    return figures


def _cost(candidate: Candidate, result: ItemResult, config: Config) -> float:
    """Tokens times the price table, or compute seconds times the hourly price.

    A baseline runs on this machine, so it is charged at the ``local`` price
    unless the table has a ``baseline`` entry of its own.
    """
    if candidate.baseline:
        priced = f"baseline/{candidate.baseline}"
        if priced not in config.prices and "baseline" not in config.prices:
            priced = f"local/{candidate.baseline}"
    else:
        priced = _priced_target(candidate.target or "", config)
    usage = Usage(result.answer.prompt_tokens, result.answer.completion_tokens)
    return cost(config, priced, usage, result.answer.latency_ms / 1000)


def _priced_target(target: str, config: Config) -> str:
    """A route candidate is priced at its first target (what normally answers)."""
    route = config.routes.get(target)
    return route.targets[0].target if route is not None else target


def _pass_rate(results: list[ItemResult]) -> float | None:
    checked = [r for r in results if r.violations is not None]
    if not checked:
        return None
    return sum(1 for r in checked if not r.violations) / len(checked)


def _span_figures(results: list[ItemResult]) -> dict[str, Any]:
    """Pooled precision, recall and F1 when the scorer counts spans."""
    tp = sum(r.score.tp for r in results)
    fp = sum(r.score.fp for r in results)
    fn = sum(r.score.fn for r in results)
    if tp + fp + fn == 0:
        return {}
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"micro_precision": precision, "micro_recall": recall, "micro_f1": f1}


def _item(result: ItemResult) -> dict[str, Any]:
    return {"index": result.index, "prediction": result.prediction,
            "score": result.score.value, "answer": result.answer.text,
            "error": result.answer.error, "cached": result.answer.cached,
            "latency_ms": round(result.answer.latency_ms, 2),
            "violations": list(result.violations) if result.violations else []}


def _versus(run: AuditRun, best: dict[str, Any], row: dict[str, Any],
            seed: int) -> dict[str, Any]:
    best_scores = [r.score.value for r in run.results[best["name"]]]
    other = [r.score.value for r in run.results[row["name"]]]
    test = compare(best_scores, other, seed)
    return {"best": best["name"], "method": test.method, "p_value": test.p_value,
            "difference": test.difference, "significant": test.significant,
            "only_best_right": test.only_best_right,
            "only_other_right": test.only_other_right}


def recommend(rows: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """The cheapest candidate not significantly below the target, if any."""
    passing = [r for r in rows if r["meets_target"]]
    if not passing:
        top = max(rows, key=lambda r: r["accuracy"])
        return {"candidate": None, "text": (
            f"No candidate meets the accuracy target of {target:.0%}: every one is "
            f"significantly below it (p < {ALPHA}) or failed every call. The most accurate, "
            f"{top['name']}, scored {top['accuracy']:.1%} "
            f"(95% CI {top['ci_low']:.1%} to {top['ci_high']:.1%}).")}
    choice = min(passing, key=lambda r: (r["cost_per_1000"], -r["accuracy"]))
    return {"candidate": choice["name"], "text": (
        f"Use {choice['name']} ({choice['describe']}): the cheapest candidate not "
        f"significantly below the {target:.0%} target, at "
        f"${choice['cost_per_1000']:.4g} per 1,000 items and {choice['accuracy']:.1%} "
        f"accuracy (95% CI {choice['ci_low']:.1%} to {choice['ci_high']:.1%}).")}


def pareto_front(rows: list[dict[str, Any]]) -> list[str]:
    """Candidates no other beats on both cost and accuracy."""
    front = []
    for row in rows:
        dominated = any(
            o["cost_per_1000"] <= row["cost_per_1000"] and o["accuracy"] >= row["accuracy"]
            and (o["cost_per_1000"] < row["cost_per_1000"]
                 or o["accuracy"] > row["accuracy"])
            for o in rows if o is not row)
        if not dominated:
            front.append(row["name"])
    return front


def confusion(results: list[ItemResult], top: int = 10) -> dict[str, Any]:
    """Per class: support, recall, precision; and the most frequent mix-ups."""
    support = Counter(r.label for r in results)
    predicted = Counter(r.predicted_label for r in results)
    right = Counter(r.label for r in results if r.label == r.predicted_label)
    mixups = Counter((r.label, r.predicted_label) for r in results
                     if r.label != r.predicted_label)
    classes = [{"label": label, "support": count, "correct": right[label],
                "recall": right[label] / count,
                "precision": right[label] / predicted[label] if predicted[label] else None}
               for label, count in sorted(support.items(), key=lambda kv: str(kv[0]))]
    return {"classes": classes,
            "mixups": [{"expected": e, "predicted": p, "count": c}
                       for (e, p), c in mixups.most_common(top)]}
