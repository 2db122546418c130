"""Drift watch end to end: probe files, verdicts, the comparison, snapshots in
the ledger, the CLI's exit codes and the gateway's schedule. The embedded
model really answers; statistics are checked on synthetic data in
test_drift_stats.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import GatewayServer, make_runtime
from tests.test_cli import unwalled
from unwalled.backends.base import ChatRequest, Message
from unwalled.drift import (
    CheckOptions, DriftStore, Sample, check_route, compare, parse_probes, take_snapshot,
)
from unwalled.drift.verdicts import judge
from unwalled.errors import ConfigError, DriftError

# Two cheap probes: a greedy one whose answer a changed system prompt moves on
# the embedded model, and a sampled one.
TINY = [
    '{"id": "sum", "prompt": "What is 12 + 7? Reply with the number only.", '
    '"temperature": 0, "max_tokens": 8, "samples": 3}',
    '{"id": "colour", "prompt": "Name a colour.", "temperature": 0.7, '
    '"max_tokens": 6, "samples": 3}',
]


# ---- probe files ----

@pytest.mark.parametrize("line, says", [
    ('{"id": "a", "prompt": "x"', "line 1: is not valid JSON"),
    ('{"id": "a"}', "give exactly one of 'prompt' (text) or 'messages'"),
    ('{"id": "a", "prompt": "x", "messages": [{"role": "user", "content": "y"}]}',
     "exactly one of"),
    ('{"id": "a", "prompt": "x", "temprature": 0}', "allowed: id, prompt, messages"),
    ('{"id": "a", "prompt": "x", "contract": {"schema": {"type": "nope"}}}',
     "not a valid JSON Schema"),
    ('{"id": "a", "prompt": "x", "samples": 0}', "samples"),
])
def test_bad_probe_lines_name_the_line_and_the_fix(line, says):
    with pytest.raises(ConfigError) as caught:
        parse_probes([line], source="p.jsonl")
    assert caught.value.message.startswith("p.jsonl: line 1: ")
    assert says in caught.value.message and "Fix:" in caught.value.message


def test_probe_set_parses_comments_defaults_and_rejects_duplicates():
    probes = parse_probes(["// comment", "", TINY[0], '{"prompt": "hi"}'])
    assert [p.id for p in probes] == ["sum", "probe-4"]
    assert probes.by_id["sum"].deterministic and not probes.by_id["probe-4"].deterministic
    assert probes.by_id["sum"].request(seed=9).seed is None  # greedy needs no seed
    assert probes.by_id["probe-4"].request(seed=9).seed == 9
    with pytest.raises(ConfigError, match="already used on line 1"):
        parse_probes([TINY[0], TINY[0]])


def test_shipped_example_probe_set_loads():
    from unwalled.drift import load_probes

    probes = load_probes(Path(__file__).parents[1] / "examples/drift/probes.jsonl")
    assert len(probes) == 10
    assert sum(p.deterministic for p in probes) == 3
    assert sum(p.contract is not None for p in probes) == 2


def test_verdicts_take_json_from_messy_text():
    contract = parse_probes(['{"prompt": "x", "contract": {"schema": {"type": "object", '
                             '"required": ["intent"]}}}']).probes[0].contract
    assert judge('Sure! ```json\n{"intent": "lost_card"}\n```', contract).passed
    missing = judge('{"topic": 1}', contract)
    assert not missing.passed and "'intent' is a required property" in missing.violations[0]
    assert judge("no json here", contract).violations == ["the answer is not JSON"]


def test_a_probe_takes_a_contract_file_and_runs_all_its_checks(tmp_path):
    (tmp_path / "intent.schema.json").write_text(
        '{"type": "object", "properties": {"intent": {"enum": ["lost_card", "other"]}},'
        ' "required": ["intent"]}')
    (tmp_path / "intent.contract.yaml").write_text(
        "name: intent\noutput: {schema: intent.schema.json}\n"
        "checks: [no_secrets, {max_chars: 40}]\n")
    (tmp_path / "probes.jsonl").write_text(
        '{"id": "file", "prompt": "x", "contract": "intent.contract.yaml"}\n'
        '{"id": "inline", "prompt": "y", "contract": {"output": {"schema": '
        '{"type": "object"}}, "checks": [{"max_chars": 5}]}}\n')
    from unwalled.drift import load_probes

    probes = load_probes(tmp_path / "probes.jsonl")
    read_in = probes.by_id["file"].contract
    # The file is read in, schema file and all: the snapshot keeps it whole.
    assert read_in["output"]["schema"]["required"] == ["intent"]
    assert _round_trip(probes).by_id["file"].contract == read_in
    assert judge('{"intent": "lost_card"}', read_in).passed
    wrong = judge('{"intent": "lost_card", "note": "AKIAIOSFODNN7EXAMPLE key"}', read_in)
    assert not wrong.passed
    assert {v.split(" ")[0] for v in wrong.violations} == {"secrets", "length"}
    assert judge('{"intent": "refund"}', read_in).violations[0].startswith("schema")
    assert judge("{}", probes.by_id["inline"].contract).passed
    assert judge('{"a": 12345}', probes.by_id["inline"].contract).violations[0] \
        .startswith("length")
    # Editing the contract file changes the set's digest.
    before = probes.digest
    (tmp_path / "intent.contract.yaml").write_text(
        "name: intent\noutput: {schema: intent.schema.json}\ncheck: [no_secrets]\n")
    with pytest.raises(ConfigError) as caught:
        load_probes(tmp_path / "probes.jsonl")
    assert caught.value.message.startswith(f"{tmp_path / 'probes.jsonl'}: line 1: contract: ")
    assert "intent.contract.yaml" in caught.value.message and "Fix:" in caught.value.message
    (tmp_path / "intent.contract.yaml").write_text(
        "name: intent\noutput: {schema: intent.schema.json}\nchecks: [no_secrets]\n")
    assert load_probes(tmp_path / "probes.jsonl").digest != before


def test_a_missing_contract_file_names_the_line():
    with pytest.raises(ConfigError) as caught:
        parse_probes(['{"prompt": "x", "contract": "nowhere.contract.yaml"}'],
                     source="p.jsonl")
    assert caught.value.message.startswith("p.jsonl: line 1: contract: ")
    assert "no such contract file" in caught.value.message


def _round_trip(probes):
    from unwalled.drift.probes import ProbeSet

    return ProbeSet.from_json(probes.to_json(), probes.name)


# ---- the comparison, on samples whose answer is known ----

CONTRACT_PROBES = parse_probes([
    '{"id": "greedy", "prompt": "x", "temperature": 0}',
    '{"id": "json", "prompt": "y", "contract": {"schema": {"type": "object"}}}',
    '{"id": "free", "prompt": "z"}',
])


def _samples(greedy: str, json_passes: int, free: list[str]) -> list[Sample]:
    samples = [Sample("greedy", greedy, completion_tokens=3) for _ in range(6)]
    samples += [Sample("json", "{}" if i < json_passes else "oops", completion_tokens=2,
                       passed=i < json_passes) for i in range(12)]
    samples += [Sample("free", text, completion_tokens=len(text) // 4) for text in free]
    return samples


FREE = ["a red rose", "a blue sky", "green grass", "a red car", "blue sea", "red wine"]


def test_unchanged_behaviour_is_no_drift_and_names_no_probe():
    report = compare(CONTRACT_PROBES, _samples("Paris.", 11, FREE),
                     _samples("Paris.", 10, FREE[::-1]), CheckOptions(seed=1))
    assert not report.drifted and report.moved == []
    assert {t.name for t in report.tests} == {"mmd", "spread", "flip", "pass_rate",
                                              "length", "tokens"}
    assert report.p_value == min(t.adjusted for t in report.tests) > 0.05


def test_flips_and_a_falling_pass_rate_are_drift_and_name_their_probes():
    report = compare(CONTRACT_PROBES, _samples("Paris.", 12, FREE),
                     _samples("Lyon.", 2, FREE), CheckOptions(seed=1))
    assert report.drifted
    moved = {p.probe: p.changes for p in report.moved}
    assert set(moved) == {"greedy", "json"}
    assert any("answer changed: 'Paris.' -> 'Lyon.' (6 of 6 differ)" in c
               for c in moved["greedy"])
    assert any("contract pass rate 1.00 -> 0.17" in c for c in moved["json"])
    flip = next(t for t in report.tests if t.name == "flip")
    # No instability in the snapshot: chance rate (0 + 0.5) / (6 + 1).
    assert flip.p_value == pytest.approx((0.5 / 7) ** 6)


def test_answers_that_vary_more_are_drift_in_spread_and_name_their_probe():
    settled = ["a red rose", "a red rose", "a red rose", "a red car"] * 3
    scattered = ["a red rose", "one blue sky", "the green sea", "some old wine",
                 "a new car", "two red cups", "a red rose", "his tall tree",
                 "a red car", "our warm sun", "her gold ring", "my soft hat"]
    report = compare(CONTRACT_PROBES, _samples("Paris.", 12, settled),
                     _samples("Paris.", 12, scattered), CheckOptions(seed=1))
    spread = next(t for t in report.tests if t.name == "spread")
    # Jaccard similarity of word sets. Snapshot: of 66 pairs, 39 are identical
    # and 27 (rose, car) share 2 of 4 words: 52.5 / 66. Fresh: 3.5 / 66.
    assert spread.statistic == pytest.approx((52.5 - 3.5) / 66)
    assert spread.adjusted < 0.05
    assert "answers vary more than the snapshot's" in spread.detail
    assert report.drifted
    assert [p.probe for p in report.moved] == ["free"]


def test_samples_must_cover_every_probe_on_both_sides():
    half = [s for s in _samples("Paris.", 12, FREE) if s.probe != "free"]
    with pytest.raises(DriftError, match="without samples on one side: free"):
        compare(CONTRACT_PROBES, _samples("Paris.", 12, FREE), half)


# ---- the embedded model: snapshot, check, and a changed provider ----

class HiddenSystemPrompt:
    """The same model, behind a provider that adds its own system prompt."""

    remote = False

    def __init__(self, inner) -> None:
        self.inner, self.name = inner, inner.name

    async def complete(self, request: ChatRequest, model: str):
        changed = [Message("system", "You are a helpful assistant."), *request.messages]
        return await self.inner.complete(request.replace(messages=changed), model)

    async def close(self) -> None:
        return None


async def test_snapshot_and_checks_on_the_embedded_model(tmp_path, local_backend):
    runtime = make_runtime({}, tmp_path, backends={"local": local_backend})
    store = DriftStore(runtime.ledger)
    probes = parse_probes(TINY)

    snapshot = await take_snapshot(runtime, "default", probes, seed=1)
    store.save_snapshot(snapshot)
    stored = store.latest_snapshot("default")
    assert stored.id == snapshot.id and stored.probes.digest == probes.digest
    assert [s.text for s in stored.samples] == [s.text for s in snapshot.samples]
    assert all(s.completion_tokens > 0 and s.prompt_tokens > 0 for s in stored.samples)
    assert len({s.text for s in stored.samples if s.probe == "sum"}) == 1  # greedy
    assert stored.targets == ["local/smollm2-135m"]

    same = await check_route(runtime, store, "default",
                             CheckOptions(seed=2, permutations=199))
    assert not same.drifted and same.moved == []

    runtime.backends["local"] = HiddenSystemPrompt(local_backend)
    changed = await check_route(runtime, store, "default",
                                CheckOptions(seed=3, permutations=199))
    assert changed.drifted
    assert "sum" in [p.probe for p in changed.moved]

    assert [c["status"] for c in store.checks("default")] == ["drift", "ok"]
    assert runtime.ledger.flush()
    drawn = runtime.ledger.execute(
        "select count(*) as n from requests where ingress = 'drift'")[0]["n"]
    assert drawn == 18  # 6 samples for the snapshot and for each check
    runtime.ledger.close()


async def test_check_without_a_snapshot_is_recorded_as_an_error(tmp_path):
    runtime = make_runtime({}, tmp_path)
    store = DriftStore(runtime.ledger)
    with pytest.raises(DriftError, match="unwalled drift snapshot default --probes"):
        await check_route(runtime, store, "default")
    [row] = store.checks("default")
    assert row["status"] == "error" and "no drift snapshot" in row["error"]
    runtime.ledger.close()


def test_migration_adds_the_drift_tables(tmp_path):
    url = f"sqlite:///{tmp_path / 'l.db'}"
    from unwalled.ledger import Ledger

    Ledger(url).close()
    with sa.create_engine(url).connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    assert {"drift_snapshots", "drift_samples", "drift_checks"} <= tables


# ---- the command line: exit codes 0, 1 and 2 ----

def test_cli_snapshot_then_check_exit_codes(tmp_path):
    (tmp_path / "probes.jsonl").write_text("\n".join(TINY) + "\n")
    config = tmp_path / "unwalled.yaml"
    config.write_text("routes:\n  triage: {targets: [local/smollm2-135m]}\n")

    missing = unwalled("drift", "check", "triage", cwd=tmp_path)
    assert missing.returncode == 2
    assert "has no drift snapshot" in missing.stderr and "Traceback" not in missing.stderr

    taken = unwalled("drift", "snapshot", "triage", "--probes", "probes.jsonl",
                     "--seed", "1", cwd=tmp_path)
    assert taken.returncode == 0, taken.stderr
    assert "2 probes, 6 samples from local/smollm2-135m" in taken.stdout

    same = unwalled("drift", "check", "triage", "--seed", "2", "--json", cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    report = json.loads(same.stdout)
    assert report["drifted"] is False and report["fresh_samples"] == 6

    # The provider swaps the model behind the route for a canned one.
    config.write_text("backends:\n  swapped: {type: mock, script: ['I cannot help.']}\n"
                      "routes:\n  triage: {targets: [swapped/any]}\n")
    swapped = unwalled("drift", "check", "triage", "--seed", "3", cwd=tmp_path)
    assert swapped.returncode == 1, swapped.stderr
    assert "DRIFT" in swapped.stdout and "sum:" in swapped.stdout

    listed = unwalled("drift", "list", cwd=tmp_path)
    assert listed.returncode == 0 and "drift" in listed.stdout and "ok" in listed.stdout


# ---- the gateway's schedule ----

def test_gateway_runs_scheduled_checks_and_exposes_them(tmp_path):
    (tmp_path / "probes.jsonl").write_text("\n".join(TINY) + "\n")
    config = tmp_path / "unwalled.yaml"
    config.write_text("drift:\n  permutations: 199\n  routes:\n"
                      "    default: {probes: probes.jsonl, every: 0.5}\n")
    from unwalled.config import load_config

    loaded = load_config(config)
    assert loaded.drift.routes["default"].probes == str(tmp_path / "probes.jsonl")
    runtime = make_runtime({"drift": loaded.drift.model_dump()}, tmp_path)
    with GatewayServer(runtime) as server:
        metrics = _wait_for_metric(server.base_url, 'unwalled_drift_p_value{route="default"}')
    store = DriftStore(runtime.ledger)
    [snapshot] = store.snapshots("default")  # taken by the first run
    checks = store.checks("default")
    assert checks and {c["status"] for c in checks} <= {"ok", "drift"}
    p_value = _metric(metrics, 'unwalled_drift_p_value{route="default"}')
    assert 0 < p_value <= 1
    assert _metric(metrics, 'unwalled_drift_detected{route="default"}') in (0.0, 1.0)
    checked_at = _metric(metrics,
                         'unwalled_drift_last_check_timestamp_seconds{route="default"}')
    assert snapshot["ts"] < checked_at <= time.time()
    runtime.ledger.close()


def test_watching_an_unknown_route_is_a_config_error():
    from unwalled.config import parse_config

    with pytest.raises(ConfigError, match="drift.routes.nope: route 'nope' is watched"):
        parse_config({"drift": {"routes": {"nope": {"probes": "p.jsonl"}}}})


def _wait_for_metric(base_url: str, name: str, timeout: float = 240) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = httpx.get(f"{base_url}/metrics").text
        if name in text:
            return text
        time.sleep(0.5)
    raise AssertionError(f"{name} did not appear in /metrics within {timeout} s")


def _metric(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name))
    return float(line.rsplit(" ", 1)[1])
