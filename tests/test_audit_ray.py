"""Audits on Ray: a local cluster gives the same results as the in-process runner."""

from __future__ import annotations

from pathlib import Path

import pytest

from unwalled.audit import ResponseCache, parse_suite, run_audit, summarise
from unwalled.audit.executor import RuntimeCaller, executor_factory
from unwalled.errors import ConfigError
from tests.conftest import make_runtime
from tests.test_audit import suite_dict, write_classification

ray = pytest.importorskip("ray")

CONFIG = {"backends": {"scripted": {"type": "mock", "script": [
    "card_arrival", "lost_card", "not_a_label", {"error": {"status": 400,
                                                           "message": "bad"}}]}}}
CANDIDATES = [
    {"name": "echo", "target": "mock/echo"},
    # answers by position in its script: only right if calls keep their order
    {"name": "scripted", "target": "scripted/m"},
    {"name": "smol", "target": "local/smollm2-135m"},  # the suite's max_tokens: 8
    {"name": "tfidf", "baseline": "tfidf-logreg"},
]
TIMINGS = {"created", "seconds", "latency_p50_ms", "latency_p95_ms",
           "compute_seconds", "train_seconds", "latency_ms"}


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def per_item(run):
    return {name: [(r.index, r.prediction, r.score, r.violations, r.label,
                    r.predicted_label, r.answer.text, r.answer.error,
                    r.answer.prompt_tokens, r.answer.completion_tokens)
                   for r in results]
            for name, results in run.results.items()}


async def audit_with(executor: str, folder: Path, cache: ResponseCache | None = None):
    suite = parse_suite(suite_dict(candidates=CANDIDATES), folder=folder)
    runtime = make_runtime(CONFIG, folder)
    seen = []
    try:
        run = await run_audit(suite, runtime, cache=cache, concurrency=3,
                              executor=executor_factory(executor),
                              on_result=seen.append)
        runtime.ledger.flush()
        rows = runtime.ledger.execute(
            "SELECT route, target, outcome, prompt_tokens, completion_tokens "
            "FROM requests WHERE ingress = 'audit'")
    finally:
        await runtime.close()
    rows = sorted(tuple(row[k] for k in ("route", "target", "outcome", "prompt_tokens",
                                        "completion_tokens")) for row in rows)
    return run, summarise(run, runtime.config), rows, seen


async def test_ray_gives_the_same_results_and_ledger_as_in_process(tmp_path, cluster):
    local_dir, ray_dir = tmp_path / "local", tmp_path / "ray"
    for folder in (local_dir, ray_dir):
        folder.mkdir()
        write_classification(folder, rows=8)

    here, here_summary, here_rows, _ = await audit_with("local", local_dir)
    there, there_summary, there_rows, seen = await audit_with("ray", ray_dir)

    assert per_item(there) == per_item(here)
    assert without_timings(there_summary) == without_timings(here_summary)
    # every call reached the ledger once, through the driver, with the same figures
    assert len(here_rows) == len(there_rows) == 3 * 8
    assert there_rows == here_rows
    assert len(seen) == 4 * 8

    rows = {row["name"]: row for row in there_summary["candidates"]}
    assert rows["echo"]["accuracy"] == 1.0
    # script cycles right, right, wrong, failure over items cycling 3 labels
    assert [r.prediction for r in there.results["scripted"]][:4] == [
        "card_arrival", "lost_card", "not_a_label", None]
    assert rows["scripted"]["errors"] == 2
    assert all(r.answer.prompt_tokens > 0 for r in there.results["smol"])
    assert {r[2] for r in there_rows if r[1] == "scripted/m"} == {"ok", "rejected"}


async def test_ray_run_answers_from_the_drivers_cache(tmp_path, cluster):
    write_classification(tmp_path, rows=8)
    cache = ResponseCache(tmp_path / "cache.db")
    try:
        first, first_summary, _, _ = await audit_with("ray", tmp_path, cache)
        again, again_summary, rows, _ = await audit_with("ray", tmp_path, cache)
    finally:
        cache.close()
    # failures are not cached, so only the scripted target's two failures rerun
    assert first.model_calls == 24 and first.cache_hits == 0
    assert again.model_calls == 2 and again.cache_hits == 22
    assert len(rows) == 24 + 2
    assert [r.prediction for r in again.results["smol"]] == [
        r.prediction for r in first.results["smol"]]


def test_without_ray_the_error_says_what_to_install(monkeypatch, tmp_path):
    from unwalled.audit import ray_executor

    monkeypatch.setattr(ray_executor, "ray", None)
    runtime = make_runtime({}, tmp_path)
    caller = RuntimeCaller(runtime, {}, None, 2)
    with pytest.raises(ConfigError, match=r"pip install 'unwalled\[ray\]'"):
        executor_factory("ray")(caller, 2)
    runtime.ledger.close()
