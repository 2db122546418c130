"""The CLI, run as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def unwalled(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unwalled", *args], cwd=cwd,
                          input=stdin, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(
                              Path(__file__).parents[1] / "src")})


def test_init_then_models_then_ask_then_ledger(tmp_path):
    made = unwalled("init", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "unwalled.yaml").read_text().startswith("# unwalled.yaml")
    again = unwalled("init", cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr

    models = unwalled("models", cwd=tmp_path)
    assert "triage" in models.stdout and "local/smollm2-135m" in models.stdout

    asked = unwalled("ask", "--route", "triage", "--max-tokens", "12",
                     "--temperature", "0", "What is 2+2?", cwd=tmp_path)
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.strip()

    piped = unwalled("ask", "--no-stream", "--max-tokens", "8", cwd=tmp_path,
                     stdin="Say hi.")
    assert piped.returncode == 0 and piped.stdout.strip()

    tail = unwalled("ledger", "tail", "--json", cwd=tmp_path)
    rows = [json.loads(line) for line in tail.stdout.splitlines()]
    assert [r["ingress"] for r in rows] == ["cli", "cli"]
    assert {r["route"] for r in rows} == {"triage", "default"}

    stats = unwalled("ledger", "stats", "--json", cwd=tmp_path)
    assert json.loads(stats.stdout)["total"] == 2


def test_config_error_is_one_clear_line_and_exit_2(tmp_path):
    (tmp_path / "unwalled.yaml").write_text("routes:\n  r:\n    targets: [nowhere/x]\n")
    result = unwalled("models", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: unwalled.yaml: routes.r.targets[0]")
    assert "Traceback" not in result.stderr


def test_unknown_route_in_ask_names_the_known_ones(tmp_path):
    result = unwalled("ask", "--route", "nope", "hi", cwd=tmp_path)
    assert result.returncode == 2 and "Known routes: default" in result.stderr


def test_drift_on_an_unknown_route_says_so_rather_than_no_snapshot(tmp_path):
    for args in (("drift", "check", "nope"),
                 ("drift", "snapshot", "nope", "--probes", str(
                     Path(__file__).parents[1] / "examples/drift/probes.jsonl"))):
        result = unwalled(*args, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "no route named 'nope'. Known routes: default" in result.stderr


def test_a_config_path_that_is_a_folder_or_a_device(tmp_path):
    folder = unwalled("models", "-c", str(tmp_path), cwd=tmp_path)
    assert folder.returncode == 2 and "is a folder, not a config file" in folder.stderr
    empty = unwalled("models", "-c", "/dev/null", cwd=tmp_path)  # an empty config
    assert empty.returncode == 0 and "default" in empty.stdout


def test_tables_print_ledger_text_as_written_and_name_route_contracts(tmp_path):
    from unwalled.ledger import AttemptRecord, Ledger, Record

    url = f"sqlite:///{tmp_path / 'l.db'}"
    (tmp_path / "unwalled.yaml").write_text(
        f'ledger: {{url: "{url}"}}\n'
        "routes:\n  strict:\n    targets: [local/smollm2-135m]\n"
        "    contract: {checks: [{max_chars: 5}]}\n"
        "  plain: {targets: [local/smollm2-135m]}\n")
    ledger = Ledger(url)
    ledger.record(Record(id="x", ingress="openai", route="strict", status=422,
                         outcome="rejected", latency_ms=5.0, target="local/[m]",
                         error="broke contract: [length] /: 9 characters",
                         attempts=[AttemptRecord("local/[m]", "violated")]))
    ledger.close()
    tail = unwalled("ledger", "tail", cwd=tmp_path)
    assert tail.returncode == 0, tail.stderr
    assert "[length] /: 9 characters" in tail.stdout and "local/[m]" in tail.stdout
    models = unwalled("models", cwd=tmp_path)
    assert [line.split("│")[-2].strip() for line in models.stdout.splitlines()
            if line.startswith("│")] == ["-", "(inline)", "-"]  # default, strict, plain
