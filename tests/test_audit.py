"""Audits: scorers, statistics, suites, the runner with its cache, reports, the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from xml.etree import ElementTree

import pytest

from unwalled.audit import (
    ResponseCache, load_suite, parse_suite, run_audit, summarise, write_reports,
)
from unwalled.audit.scorers import build_scorer
from unwalled.audit.statistics import below_target, compare, wilson
from unwalled.audit.summary import pareto_front
from unwalled.errors import ConfigError
from tests.conftest import make_runtime
from tests.test_cli import unwalled

LABELS = ["card_arrival", "lost_card", "top_up"]


# ---- scorers ----

def test_exact_and_normalised_scorers():
    exact, loose = build_scorer("exact"), build_scorer("normalised")
    assert exact(" card_arrival\n", "card_arrival", {}).value == 1.0
    assert exact("Card arrival", "card_arrival", {}).value == 0.0
    assert loose("Card-Arrival!", "card_arrival", {}).value == 1.0
    assert loose(None, "card_arrival", {}).value == 0.0


def test_json_field_scorer_counts_matching_fields():
    score = build_scorer({"json_field": ["name", "age"]})
    assert score({"name": "Ann", "age": "3"}, {"name": "ann", "age": 3}, {}).value == 1.0
    assert score('{"name": "Bob", "age": 3}', {"name": "Ann", "age": 3}, {}).value == 0.5
    assert score("not json", {"name": "Ann", "age": 3}, {}).value == 0.0


def test_span_scorer_gives_precision_recall_counts():
    score = build_scorer("span")
    result = score({"people": "4", "time": "7pm", "date": "friday"},
                   {"people": "4", "time": "7 pm", "first_name": "Ann"}, {})
    # people and time match (time after normalising); date is extra; name missed.
    assert (result.tp, result.fp, result.fn) == (2, 1, 1)
    assert result.value == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert score({}, {}, {}).value == 1.0
    assert score(["a", "b"], ["b", "c"], {}).value == pytest.approx(0.5)


def test_numeric_and_regex_scorers():
    close = build_scorer({"numeric": {"tolerance": 0.5}})
    assert close("about 12.3 apples", "12", {}).value == 1.0
    assert close("13", "12", {}).value == 0.0
    assert close("no number", "12", {}).value == 0.0
    relative = build_scorer({"numeric": {"relative": 0.1}})
    assert relative("1,050", 1000, {}).value == 1.0
    pattern = build_scorer({"regex": {"pattern": r"^intent: {expected}$"}})
    assert pattern("intent: lost_card", "lost_card", {}).value == 1.0
    assert pattern("intent: lost_cards", "lost_card", {}).value == 0.0


def test_python_hook_scorer(tmp_path):
    (tmp_path / "grading.py").write_text(
        "def grade(prediction, expected, fields):\n"
        "    return 0.5 if fields['half'] else float(prediction == expected)\n")
    score = build_scorer({"python": "grading.py:grade"}, folder=str(tmp_path))
    assert score("a", "a", {"half": False}).value == 1.0
    assert score("a", "a", {"half": True}).value == 0.5


def test_unknown_scorer_names_the_known_ones():
    with pytest.raises(ConfigError, match="unknown scorer 'fuzzy'.*span"):
        build_scorer("fuzzy")


# ---- statistics ----

def test_wilson_interval_matches_the_textbook_value():
    ci = wilson(8, 10)
    assert ci.low == pytest.approx(0.4902, abs=1e-3)
    assert ci.high == pytest.approx(0.9433, abs=1e-3)


def test_mcnemar_exact_on_discordant_pairs():
    best = [1.0] * 10 + [0.0] * 5
    other = [0.0] * 10 + [0.0] * 5
    result = compare(best, other)
    assert result.method == "mcnemar-exact"
    assert result.p_value == pytest.approx(2 * 0.5 ** 10)
    assert result.significant and result.only_best_right == 10
    assert not compare([1.0, 0.0], [0.0, 1.0]).significant


def test_graded_scores_use_a_paired_bootstrap():
    best = [0.9, 0.8, 1.0, 0.7] * 10
    result = compare(best, [s - 0.5 for s in best])
    assert result.method == "paired-bootstrap" and result.significant
    assert result.difference == pytest.approx(0.5)


def test_below_target_is_one_sided():
    assert below_target([1.0] * 9 + [0.0], 0.95) > 0.05    # 90% of 10: not shown below
    assert below_target([1.0] * 50 + [0.0] * 50, 0.9) < 1e-6


def test_pareto_front():
    rows = [{"name": "cheap", "cost_per_1000": 0.1, "accuracy": 0.5},
            {"name": "dear", "cost_per_1000": 5.0, "accuracy": 0.9},
            {"name": "worse", "cost_per_1000": 6.0, "accuracy": 0.8}]
    assert pareto_front(rows) == ["cheap", "dear"]


# ---- suites ----

def write_classification(folder: Path, rows: int = 12) -> None:
    """Items whose text is their own label, so an echoing model is always right.

    Trailing spaces make every text distinct (scorers strip them): identical
    requests would be answered once and then from the cache.
    """
    for split, count in (("test", rows), ("train", 30)):
        with (folder / f"{split}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "category"])
            for i in range(count):
                writer.writerow([LABELS[i % 3] + " " * (i // 3), LABELS[i % 3]])


def suite_dict(**changes):
    raw = {
        "name": "tiny", "data": {"test": "test.csv", "train": "train.csv"},
        "input": "{text}", "expected": "category", "labels": LABELS,
        "scorer": "exact", "target_accuracy": 0.6, "max_tokens": 8,
        "candidates": [
            {"name": "echo", "target": "mock/echo"},
            {"name": "wrong", "target": "scripted/m"},
            {"name": "tfidf", "baseline": "tfidf-logreg"},
        ],
    }
    raw.update(changes)
    return raw


def test_suite_errors_name_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="candidates.0.*either 'target'"):
        parse_suite(suite_dict(candidates=[{"name": "x"}]))
    with pytest.raises(ConfigError, match="baseline candidate needs a train split.*Fix"):
        parse_suite(suite_dict(data={"test": "test.csv"}))
    with pytest.raises(ConfigError, match="names no column"):
        parse_suite(suite_dict(input="no placeholder"))
    with pytest.raises(ConfigError, match="repeated: echo"):
        parse_suite(suite_dict(candidates=[{"name": "echo", "target": "mock/a"},
                                           {"name": "echo", "target": "mock/b"}]))
    (tmp_path / "s.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_suite(tmp_path / "s.yaml")


def test_missing_column_is_named(tmp_path):
    write_classification(tmp_path)
    from unwalled.audit import load_dataset

    suite = parse_suite(suite_dict(input="{message}"), folder=tmp_path)
    with pytest.raises(ConfigError, match="column 'message'.*columns: category, text"):
        load_dataset(suite)  # before any candidate is called


def test_expected_that_is_neither_a_column_nor_a_template_is_refused(tmp_path):
    write_classification(tmp_path)
    from unwalled.audit import load_dataset

    suite = parse_suite(suite_dict(expected="categroy", labels=None), folder=tmp_path)
    with pytest.raises(ConfigError, match="'categroy' is not a column.*category, text"):
        load_dataset(suite)


# ---- the runner, end to end on the mock backend ----

MOCK_CONFIG = {
    "backends": {"scripted": {"type": "mock", "script": ["not_a_label"]}},
    "prices": {"local": {"hourly": 1.0}, "scripted": {"input_per_mtok": 1000.0,
                                                      "output_per_mtok": 1000.0}},
}


async def test_audit_runs_records_caches_and_recommends(tmp_path):
    write_classification(tmp_path)
    suite = parse_suite(suite_dict(), folder=tmp_path)
    runtime = make_runtime(MOCK_CONFIG, tmp_path)
    cache = ResponseCache(tmp_path / "cache.db")
    seen = []
    try:
        run = await run_audit(suite, runtime, cache=cache, concurrency=3,
                              on_result=seen.append)
        runtime.ledger.flush()
        summary = summarise(run, runtime.config)
        rows = {r["name"]: r for r in summary["candidates"]}
        audit_rows = runtime.ledger.execute(
            "SELECT route, target FROM requests WHERE ingress = 'audit'")

        rerun = await run_audit(suite, runtime, cache=cache, concurrency=3)
        runtime.ledger.flush()
        again = summarise(rerun, runtime.config)
        ledger_after = runtime.ledger.count()
    finally:
        await runtime.close()
        cache.close()

    assert len(seen) == 3 * 12
    assert rows["echo"]["accuracy"] == 1.0 and rows["wrong"]["accuracy"] == 0.0
    assert rows["tfidf"]["accuracy"] == 1.0 and rows["tfidf"]["train_seconds"] > 0
    assert rows["wrong"]["vs_best"]["significant"]
    assert rows["wrong"]["vs_best"]["only_best_right"] == 12
    assert rows["echo"]["meets_target"] is True
    # the scripted target is priced per token, the echo (mock) is free
    assert rows["wrong"]["cost_per_1000"] > 0 and rows["echo"]["cost_per_1000"] == 0
    assert summary["recommendation"]["candidate"] == "echo"
    assert "wrong" not in summary["pareto_front"]
    confusion = summary["confusion"]["wrong"]
    assert confusion["mixups"][0]["predicted"] == "not_a_label"

    # every model call reached the ledger through its own audit route
    assert summary["model_calls"] == 24 and len(audit_rows) == 24
    assert {(r["route"], r["target"]) for r in audit_rows} == {
        ("audit:mock/echo", "mock/echo"), ("audit:scripted/m", "scripted/m")}

    # the rerun asked no model and reported the same figures
    assert again["model_calls"] == 0 and again["cache_hits"] == 24
    assert ledger_after == 24
    for before, after in zip(summary["candidates"], again["candidates"]):
        if before["kind"] == "model":
            assert after["accuracy"] == before["accuracy"]
            assert after["cost_per_1000"] == before["cost_per_1000"]


async def test_none_meets_target_and_failures_are_scored_wrong(tmp_path):
    write_classification(tmp_path, rows=20)
    suite = parse_suite(suite_dict(
        target_accuracy=0.9,
        candidates=[{"name": "broken", "target": "down/m"}]), folder=tmp_path)
    runtime = make_runtime({"backends": {"down": {"type": "mock", "script": [
        {"error": {"status": 400, "message": "bad"}}]}}}, tmp_path)
    try:
        run = await run_audit(suite, runtime, cache=None)
        runtime.ledger.flush()
        failed = runtime.ledger.execute(
            "SELECT count(*) AS n FROM requests WHERE outcome != 'ok'")[0]["n"]
    finally:
        await runtime.close()
    summary = summarise(run, runtime.config)
    row = summary["candidates"][0]
    assert row["errors"] == 20 and row["accuracy"] == 0.0
    assert failed == 20
    assert summary["recommendation"]["candidate"] is None
    assert summary["recommendation"]["text"].startswith("No candidate meets")


async def test_contract_pass_rate_and_reports(tmp_path):
    write_classification(tmp_path, rows=6)
    suite = parse_suite(suite_dict(
        output={"field": "intent"},
        contract={"schema": {"type": "object", "required": ["intent"],
                             "properties": {"intent": {"enum": LABELS}}}},
        candidates=[{"name": "json", "target": "half/m"}]), folder=tmp_path)
    runtime = make_runtime({"backends": {"half": {"type": "mock", "script": [
        '{"intent": "card_arrival"}', "card_arrival"]}}}, tmp_path)
    try:
        run = await run_audit(suite, runtime, cache=None)
    finally:
        await runtime.close()
    summary = summarise(run, runtime.config)
    row = summary["candidates"][0]
    assert row["contract_pass_rate"] == 0.5
    # the bare label is read as the prediction, so two of six items are right
    assert row["accuracy"] == pytest.approx(2 / 6)

    json_path, html_path = write_reports(summary, tmp_path / "out")
    assert json.loads(json_path.read_text())["candidates"][0]["name"] == "json"
    page = html_path.read_text()
    svg = page[page.index("<svg"):page.index("</svg>") + 6]
    drawn = ElementTree.fromstring(svg)  # well-formed, so browsers draw it
    assert len(drawn.findall("{http://www.w3.org/2000/svg}circle")) == 1
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page and "<script" not in page


# ---- the embedded model, for real ----

async def test_embedded_model_constrained_answers_stay_in_the_label_set(
        tmp_path, local_backend):
    write_classification(tmp_path, rows=2)
    suite = parse_suite(suite_dict(
        output={"field": "intent"}, max_tokens=16, instructions="Name the intent.",
        contract={"schema": {"type": "object", "required": ["intent"]}},
        candidates=[{"name": "smol", "target": "local/smollm2-135m",
                     "decoding": "constrained"}]), folder=tmp_path)
    runtime = make_runtime({}, tmp_path, backends={"local": local_backend})
    runtime.backends["local"] = local_backend
    try:
        run = await run_audit(suite, runtime, cache=None)
    finally:
        runtime.ledger.close()
    results = run.results["smol"]
    assert all(r.prediction in LABELS for r in results), [r.answer for r in results]
    assert all(r.violations == () for r in results)
    assert all(r.answer.prompt_tokens > 0 and r.answer.latency_ms > 0 for r in results)


# ---- the command line ----

def test_cli_exit_codes_reports_and_cache(tmp_path):
    import yaml

    write_classification(tmp_path)
    (tmp_path / "unwalled.yaml").write_text(yaml.safe_dump(MOCK_CONFIG))
    passing = suite_dict(candidates=[{"name": "echo", "target": "mock/echo"}])
    (tmp_path / "pass.yaml").write_text(yaml.safe_dump(passing))
    first = unwalled("audit", "pass.yaml", "--out", "rep", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "Use echo" in first.stdout and "model calls 12" in first.stdout
    assert (tmp_path / "rep" / "audit.html").is_file()
    assert (tmp_path / "unwalled-audit-cache.db").is_file()
    second = unwalled("audit", "pass.yaml", "--out", "rep", cwd=tmp_path)
    assert "model calls 0, cached answers 12" in second.stdout

    failing = suite_dict(candidates=[{"name": "wrong", "target": "scripted/m"}])
    (tmp_path / "fail.yaml").write_text(yaml.safe_dump(failing))
    result = unwalled("audit", "fail.yaml", "--out", "rep2", cwd=tmp_path)
    assert result.returncode == 1 and "No candidate meets" in result.stdout


def test_unknown_executor_names_the_known_ones():
    from unwalled.audit.executor import executor_factory

    assert executor_factory("local").__name__ == "LocalExecutor"
    with pytest.raises(ConfigError,
                       match="unknown executor 'dask'.*use one of: local, ray"):
        executor_factory("dask")


async def test_a_full_contract_file_runs_its_checks_on_each_answer(tmp_path):
    write_classification(tmp_path, rows=4)
    (tmp_path / "intent.contract.yaml").write_text(
        "name: intent\n"
        "output:\n  schema: {type: object, required: [intent],\n"
        f"           properties: {{intent: {{enum: {LABELS}}}}}}}\n"
        "checks: [no_secrets, {max_chars: 40}]\n")
    suite = parse_suite(suite_dict(
        output={"field": "intent"}, contract="intent.contract.yaml",
        candidates=[{"name": "json", "target": "mixed/m"}]), folder=tmp_path)
    runtime = make_runtime({"backends": {"mixed": {"type": "mock", "script": [
        '{"intent": "card_arrival"}',
        '{"intent": "card_arrival", "note": "key AKIAIOSFODNN7EXAMPLE"}',
        '{"intent": "top_up"}', '{"intent": "nothing_like_a_label"}']}}}, tmp_path)
    try:
        run = await run_audit(suite, runtime, cache=None)
    finally:
        await runtime.close()
    row = summarise(run, runtime.config)["candidates"][0]
    # the secret (and its length) break the second answer, the enum the fourth
    assert row["contract_pass_rate"] == 0.5


async def audit_of_a_dead_candidate(tmp_path, **suite_changes) -> dict:
    """The summary of a four-item audit of one candidate whose every call fails."""
    write_classification(tmp_path, rows=4)
    suite = parse_suite(suite_dict(
        candidates=[{"name": "dead", "target": "down/m"}], **suite_changes),
        folder=tmp_path)
    runtime = make_runtime({"backends": {"down": {"type": "mock", "script": [
        {"error": {"status": 500}}]}}}, tmp_path)
    try:
        run = await run_audit(suite, runtime, cache=None)
    finally:
        await runtime.close()
    return summarise(run, runtime.config)


async def test_a_candidate_that_failed_every_call_is_never_recommended(tmp_path):
    """Four items cannot prove 0% significantly below a 50% target, but a
    candidate none of whose calls answered has shown nothing at all."""
    summary = await audit_of_a_dead_candidate(tmp_path, target_accuracy=0.5)
    assert summary["candidates"][0]["meets_target"] is False
    assert summary["recommendation"]["candidate"] is None


async def test_a_route_whose_model_changed_is_not_answered_from_the_cache(tmp_path):
    write_classification(tmp_path, rows=4)
    suite = parse_suite(suite_dict(candidates=[{"name": "routed", "target": "triage"}],
                                   labels=None), folder=tmp_path)
    cache = ResponseCache(tmp_path / "cache.db")
    figures = []
    try:
        for model in ("echo", "wrong"):  # the route's model swapped between runs
            runtime = make_runtime({
                "backends": {"scripted": {"type": "mock", "script": ["nope"]}},
                "routes": {"triage": {"targets": [
                    "mock/echo" if model == "echo" else "scripted/m"]}}}, tmp_path)
            try:
                run = await run_audit(suite, runtime, cache=cache)
            finally:
                await runtime.close()
            summary = summarise(run, runtime.config)
            figures.append((summary["model_calls"], summary["candidates"][0]["accuracy"]))
    finally:
        cache.close()
    assert figures == [(4, 1.0), (4, 0.0)]


@pytest.mark.parametrize(("returns", "says"), [
    ("5", "gave 5.0"), ("float('nan')", "gave nan"), ("None", "NoneType"),
    ("1 / 0", "ZeroDivisionError")])
def test_a_python_scorer_must_give_a_score_from_0_to_1(tmp_path, returns, says):
    (tmp_path / "grading.py").write_text(
        f"def grade(prediction, expected, fields):\n    return {returns}\n")
    score = build_scorer({"python": "grading.py:grade"}, folder=str(tmp_path))
    with pytest.raises(ConfigError, match=says):
        score("a", "a", {})


async def test_a_bad_scorer_or_contract_stops_the_audit_before_any_model_call(tmp_path):
    write_classification(tmp_path, rows=4)
    for changes in ({"scorer": "bogus"},
                    {"contract": {"name": "c", "output": {"schema": {"type": "objekt"}}}}):
        suite = parse_suite(suite_dict(**changes), folder=tmp_path)
        folder = tmp_path / next(iter(changes))
        folder.mkdir()
        runtime = make_runtime(MOCK_CONFIG, folder)
        try:
            with pytest.raises(ConfigError):
                await run_audit(suite, runtime, cache=None)
            runtime.ledger.flush()
            assert runtime.ledger.count() == 0
        finally:
            await runtime.close()


async def test_a_failed_call_scores_nothing_whatever_the_scorer_makes_of_nothing(tmp_path):
    summary = await audit_of_a_dead_candidate(
        tmp_path, scorer={"regex": {"pattern": "^(|{expected})$"}},  # allows ""
        labels=None)
    assert summary["candidates"][0]["accuracy"] == 0.0
