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
