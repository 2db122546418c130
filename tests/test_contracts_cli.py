"""``unwalled verify``, run as a user runs it."""

from __future__ import annotations

import json

from tests.test_cli import unwalled
from tests.test_contracts_model import BANKING


def test_verify_exit_codes_text_and_json(tmp_path):
    contract = str(BANKING / "intent.contract.yaml")
    good = unwalled("verify", contract, cwd=tmp_path,
                    stdin='```json\n{"intent": "card_arrival"}\n```')
    assert good.returncode == 0 and good.stdout.startswith("pass:"), good.stderr

    (tmp_path / "answer.txt").write_text(
        'Intent: {"intent": "card_arival"} - mail me at jo@example.com')
    bad = unwalled("verify", contract, "answer.txt", cwd=tmp_path)
    assert bad.returncode == 1
    assert "[schema] /intent: 'card_arival' is not one of the 77 allowed" in bad.stdout
    assert "[pii] text[" in bad.stdout

    machine = unwalled("verify", contract, "answer.txt", "--json", cwd=tmp_path)
    report = json.loads(machine.stdout)
    assert machine.returncode == 1 and report["passed"] is False
    assert [v["check"] for v in report["violations"]] == ["schema", "pii"]


def test_verify_with_a_broken_contract_names_file_place_and_fix(tmp_path):
    (tmp_path / "c.yaml").write_text("name: c\nchecks:\n  - {urls: {allow: example.com}}\n")
    broken = unwalled("verify", "c.yaml", cwd=tmp_path, stdin="text")
    assert broken.returncode == 2
    assert "c.yaml: checks[0].allow (line 3): Input should be a valid list. " \
           "Fix: give a list" in broken.stderr


def test_files_and_input_that_are_not_utf8_are_named_with_exit_2(tmp_path):
    import subprocess
    import sys

    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    contract = unwalled("verify", "latin1.yaml", cwd=tmp_path, stdin="text")
    assert contract.returncode == 2 and "Traceback" not in contract.stderr
    assert "latin1.yaml: is not UTF-8 text (byte 9 is 0xe9)" in contract.stderr
    machine = unwalled("verify", "--json", "latin1.yaml", cwd=tmp_path, stdin="text")
    assert machine.returncode == 2
    assert "not UTF-8" in json.loads(machine.stdout)["error"]["message"]

    good = str(BANKING / "intent.contract.yaml")
    answer = subprocess.run([sys.executable, "-m", "unwalled", "verify", good],
                            input=b"\xff\xfe{}", capture_output=True, timeout=120,
                            cwd=tmp_path)
    assert answer.returncode == 2 and b"stdin is not UTF-8" in answer.stderr

    (tmp_path / "unwalled.yaml").write_bytes(b"routes: \xff\n")
    config = unwalled("models", cwd=tmp_path)
    assert config.returncode == 2 and "unwalled.yaml: is not UTF-8" in config.stderr


def test_bad_option_values_and_an_empty_prompt_are_usage_errors(tmp_path):
    for args, stdin, says in [(("ledger", "tail", "-n", "abc"), None, "'--limit'"),
                              (("ask",), "", "give a prompt")]:
        result = unwalled(*args, cwd=tmp_path, stdin=stdin)
        assert result.returncode == 2, result.stderr
        assert says in result.stderr and "Traceback" not in result.stderr
