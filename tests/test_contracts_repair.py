"""The repair loop: one state machine, two drivers; reject, repair, fallback; the
ledger; constrained decoding on the embedded model and its honest fallback."""

from __future__ import annotations

import json
import re

import orjson
import pytest

from tests.conftest import make_runtime
from unwalled import AsyncClient, Client, Contract, ContractError, MockBackend
from unwalled.backends.base import ChatRequest, ChatResponse, Message
from unwalled.contracts import Verifier, load_contract
from unwalled.contracts.repair import (
    Ask, RepairLoop, drive, drive_async, repair_note, shorten_enums,
)
from unwalled.errors import RoutingError
from unwalled.ledger import Ledger
from unwalled.runtime import Runtime

CITY = {"type": "object", "properties": {"city": {"type": "string"}},
        "required": ["city"], "additionalProperties": False}


def contract(on_fail, **extra) -> Contract:
    return Contract(name="city", output={"schema": CITY}, on_fail=on_fail,
                    decoding="free", **extra)


def request() -> ChatRequest:
    return ChatRequest([Message("user", "Where is the Louvre?")], max_tokens=20)


# ---- the machine itself, with both drivers ----

SCRIPT = [("a/x", "I think Paris."), ("a/x", '{"city": 7}'), ("b/y", '{"city": "Paris"}')]


def scripted_call(asks: list[Ask]):
    answers = iter(SCRIPT)

    def call(ask: Ask) -> tuple[ChatResponse, str]:
        asks.append(ask)
        target, text = next(answers)
        return ChatResponse(text=text, model=target), target
    return call


def test_one_machine_gives_the_same_verdict_through_both_drivers():
    on_fail = {"repair": 1, "then": "fallback"}
    sync_asks: list[Ask] = []
    sync_done = drive(RepairLoop(Verifier(contract(on_fail)), request(), ["a/x", "b/y"]),
                      scripted_call(sync_asks))

    async_asks: list[Ask] = []
    plain = scripted_call(async_asks)

    async def acall(ask: Ask):
        return plain(ask)

    import asyncio

    async_done = asyncio.run(drive_async(
        RepairLoop(Verifier(contract(on_fail)), request(), ["a/x", "b/y"]), acall))
    assert sync_done.verdict.to_dict() == async_done.verdict.to_dict()
    verdict = sync_done.verdict
    assert verdict.passed and verdict.action == "fallback"
    assert [(a.target, a.passed) for a in verdict.attempts] == [
        ("a/x", False), ("a/x", False), ("b/y", True)]
    assert verdict.parsed == {"city": "Paris"}
    # The repair re-asks with the bad answer and the violations; fallback starts over.
    repair = sync_asks[1].request.messages
    assert [m.role for m in repair] == ["user", "assistant", "user"]
    assert repair[1].content == "I think Paris."
    assert "holds no JSON" in repair[2].content and '"city"' in repair[2].content
    assert sync_asks[2].skip == frozenset({"a/x"})
    assert len(sync_asks[2].request.messages) == 1


LABELS = ["card_arrival", "card_linking", "exchange_rate", "pin_blocked",
          "age_limit", "change_pin", "atm_support", "top_up_limits", "card_swallowed",
          "country_support"]
INTENT = {"type": "object", "properties": {"intent": {"enum": LABELS}},
          "required": ["intent"], "additionalProperties": False}


def test_every_repair_is_the_original_request_plus_the_last_answer_and_a_short_note():
    system = "Classify. Answer {\"intent\": label}. Allowed labels: " + ", ".join(LABELS)
    bad = Contract(name="intent", system=system, output={"schema": INTENT},
                   on_fail={"repair": 2}, decoding="free")
    answers = iter(['{"intent": "card_arival"}', '{"intent": "pin"}',
                    '{"intent": "card_arrival"}'])
    asks: list[Ask] = []

    def call(ask: Ask) -> tuple[ChatResponse, str]:
        asks.append(ask)
        return ChatResponse(text=next(answers), model="a/x"), "a/x"

    done = drive(RepairLoop(Verifier(bad), request(), ["a/x"]), call)
    assert done.verdict.action == "repair" and done.verdict.parsed == {
        "intent": "card_arrival"}
    first, second, third = (a.request.messages for a in asks)
    # The same prefix every time (the system prompt and the question), so a local
    # model reuses it from its cache; the prompt does not grow with each repair.
    assert first[0].role == "system" and first[0].content == system
    assert second[:2] == first and third[:2] == first and len(third) == len(second) == 4
    assert third[2].content == '{"intent": "pin"}'
    note = second[3].content
    # The violation names the closest labels, not all ten; the schema in the note
    # points at the system prompt instead of repeating the enum.
    assert "is not one of the 10 allowed values; closest: 'card_arrival'" in note
    assert "one of the 10 values listed in the system prompt" in note
    assert "country_support" not in note and len(note) < 500


def test_a_long_enum_the_system_prompt_does_not_list_is_shown_in_full():
    note = repair_note([], INTENT, system="Classify the message.")
    assert all(label in note for label in LABELS)
    assert shorten_enums(INTENT, ", ".join(LABELS))["properties"]["intent"] == {
        "enum": "one of the 10 values listed in the system prompt"}


def test_reject_stops_at_the_first_bad_answer():
    asks: list[Ask] = []
    done = drive(RepairLoop(Verifier(contract("reject")), request(), ["a/x", "b/y"]),
                 scripted_call(asks))
    assert not done.passed and done.verdict.action == "reject" and len(asks) == 1


def test_a_route_failure_ends_the_loop_with_the_error():
    loop = RepairLoop(Verifier(contract("fallback")), request(), ["a/x"])

    def failing(ask: Ask):
        raise RoutingError("route 'r' failed on every target", attempts=[])

    done = drive(loop, failing)
    assert isinstance(done.error, RoutingError) and done.verdict.action == "error"


# ---- through the runtime: routes, the ledger, the clients ----

@pytest.fixture
def runtime(tmp_path):
    runtime = make_runtime({
        "backends": {"a": {"type": "mock"}, "b": {"type": "mock"}},
        "routes": {"r": {"targets": ["a/x", "b/y"], "retries": 0}}}, tmp_path)
    yield runtime
    runtime.ledger.close()


def script(runtime, a: list, b: list | None = None) -> None:
    runtime.backends["a"] = MockBackend("a", script=a)
    runtime.backends["b"] = MockBackend("b", script=b or ["unused"])
    runtime.router.backends = runtime.backends


def only_row(runtime) -> dict:
    assert runtime.ledger.flush()
    rows = runtime.ledger.tail(5)
    assert len(rows) == 1
    return rows[0]


def test_repair_then_pass_is_one_ledger_row_with_every_attempt(runtime):
    script(runtime, ["Paris!", '```json\n{"city": "Paris"}\n```'])
    with Client(runtime) as client:
        result = client.complete("Where is the Louvre?", route="r",
                                 contract=contract({"repair": 2}))
    assert result.parsed == {"city": "Paris"} and result.verdict.action == "repair"
    row = only_row(runtime)
    assert (row["status"], row["outcome"], row["contract"]) == (200, "ok", "city")
    assert [(a["target"], a["outcome"]) for a in row["attempts"]] == [
        ("a/x", "violated"), ("a/x", "ok")]
    assert "holds no JSON" in row["attempts"][0]["error"]
    stored = json.loads(row["verdict"])
    assert stored["passed"] and stored["action"] == "repair"
    assert [a["passed"] for a in stored["attempts"]] == [False, True]


async def test_async_client_rejects_with_a_422_error_and_records_it(runtime):
    script(runtime, ['{"city": "Paris", "country": "France"}'])
    client = AsyncClient(runtime)
    with pytest.raises(ContractError) as caught:
        await client.complete("Where?", route="r", contract=contract("reject"))
    error = caught.value
    assert error.status == 422 and error.verdict.action == "reject"
    assert [v.path for v in error.verdict.violations] == ["/"]
    row = only_row(runtime)
    assert (row["status"], row["outcome"], row["error_code"]) == (
        422, "rejected", "contract_violation")
    assert json.loads(row["verdict"])["violations"][0]["check"] == "schema"


def test_repair_then_fallback_with_a_backend_failure_in_between(runtime):
    script(runtime, ["no", "still no"], ['{"city": "Paris"}'])
    runtime.backends["b"] = MockBackend("b", script=[
        {"error": {"status": 503, "message": "busy"}}, '{"city": "Paris"}'])
    runtime.config.routes["r"].retries = 1
    runtime.config.routes["r"].backoff.initial = 0.0
    with Client(runtime) as client:
        result = client.complete("Where?", route="r",
                                 contract=contract({"repair": 1, "then": "fallback"}))
    assert result.verdict.action == "fallback"
    row = only_row(runtime)
    assert [(a["target"], a["outcome"]) for a in row["attempts"]] == [
        ("a/x", "violated"), ("a/x", "violated"), ("b/y", "error"), ("b/y", "ok")]


def test_the_row_counts_the_tokens_and_cost_of_every_answer_judged(tmp_path):
    # A dollar a prompt token, two a completion token: costs read as counts.
    price = {"input_per_mtok": 1_000_000, "output_per_mtok": 2_000_000}
    runtime = make_runtime({
        "backends": {"a": {"type": "mock"}, "b": {"type": "mock"}},
        "routes": {"r": {"targets": ["a/x", "b/y"], "retries": 0}},
        "prices": {"a/x": price, "b/y": price}}, tmp_path)

    def said(text, prompt, completion):
        return {"text": text, "usage": {"prompt_tokens": prompt,
                                        "completion_tokens": completion}}

    script(runtime, [said("no", 10, 5), said('{"city": "Paris"}', 12, 6)])
    with Client(runtime) as client:
        client.complete("Where?", route="r", contract=contract({"repair": 1}))
    row = only_row(runtime)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (22, 11)
    assert row["cost"] == pytest.approx(22 * 1 + 11 * 2)

    # Rejected after a repair on each target (b/y answers "nope" twice): what
    # the four answers cost is still spent, and recorded.
    script(runtime, [said("no", 10, 5), said("still no", 11, 5)], [said("nope", 7, 3)])
    with Client(runtime) as client, pytest.raises(ContractError):
        client.complete("Where?", route="r",
                        contract=contract({"repair": 1, "then": "fallback"}))
    assert runtime.ledger.flush()
    rejected = runtime.ledger.tail(1)[0]
    assert (rejected["status"], rejected["prompt_tokens"],
            rejected["completion_tokens"]) == (422, 10 + 11 + 7 + 7, 5 + 5 + 3 + 3)
    assert rejected["cost"] == pytest.approx(35 * 1 + 16 * 2)
    runtime.ledger.close()


def test_an_answer_cut_at_max_tokens_is_said_to_be_cut(runtime):
    cut = {"text": '{"city": "Par', "finish": "length"}
    script(runtime, [cut, cut])
    with Client(runtime) as client, pytest.raises(ContractError) as caught:
        client.complete("Where?", route="r", contract=contract({"repair": 1}))
    error = caught.value
    assert error.message.endswith("[json] text: the answer was cut off at max_tokens "
                                  "before its JSON was complete; raise max_tokens or "
                                  "ask for a shorter answer.")
    assert [a.cut for a in error.verdict.attempts] == [True, True]
    repair = runtime.backends["a"].requests[1].messages[-1].content
    assert "- it was cut off at the length limit: give a shorter answer" in repair
    # json-repair would have closed '{"city": "Par': parsed is not whole.
    # Cut after its JSON was whole: nothing is missing, and it passes.
    script(runtime, [{"text": '{"city": "Paris"} and then', "finish": "length"}])
    with Client(runtime) as client:
        assert client.complete("Where?", route="r",
                               contract=contract("reject")).parsed == {"city": "Paris"}
    # Cut where a check other than the JSON's fails: the summary says it was cut.
    script(runtime, [{"text": '{"city": 7', "finish": "length"}])
    with Client(runtime) as client, pytest.raises(ContractError) as caught:
        client.complete("Where?", route="r", contract=contract("reject"))
    assert caught.value.message.count("cut off at max_tokens") == 1
    # An answer that ends by itself and still breaks the contract says nothing of it.
    script(runtime, ['{"city": 7}'])
    with Client(runtime) as client, pytest.raises(ContractError) as caught:
        client.complete("Where?", route="r", contract=contract("reject"))
    assert "cut off" not in caught.value.message
    assert caught.value.verdict.to_dict()["attempts"][0]["cut"] is False


def test_every_target_breaking_the_contract_exhausts_the_route(runtime):
    script(runtime, ["no"], ["nope"])
    with Client(runtime) as client, pytest.raises(ContractError) as caught:
        client.complete("Where?", route="r", contract=contract("fallback"))
    assert caught.value.verdict.action == "exhausted"
    assert [a.target for a in caught.value.verdict.attempts] == ["a/x", "b/y"]


def test_backend_failure_everywhere_is_the_routing_error(runtime):
    failing = {"error": {"status": 503, "message": "down"}}
    script(runtime, [failing], [failing])
    with Client(runtime) as client, pytest.raises(RoutingError):
        client.complete("Where?", route="r", contract=contract("fallback"))
    row = only_row(runtime)
    assert row["status"] == 503 and json.loads(row["verdict"])["action"] == "error"


# ---- the embedded model: constrained decoding, and its honest fallback ----

@pytest.fixture
def local_runtime(tmp_path, local_backend):
    runtime = make_runtime({"routes": {"intent": {"targets": ["local/smollm2-135m"],
                                                  "max_tokens": 48}}},
                           tmp_path, backends={"local": local_backend})
    runtime.router.backends = runtime.backends
    yield runtime
    runtime.ledger.close()


def test_banking77_contract_is_decoded_under_its_grammar(local_runtime):
    from tests.test_contracts_model import BANKING

    intent = load_contract(BANKING / "intent.contract.yaml")
    with Client(local_runtime) as client:
        result = client.complete("I still have not received my new card.",
                                 contract=intent, route="intent", temperature=0)
    assert result.verdict.passed
    assert result.parsed["intent"] in intent.schema["properties"]["intent"]["enum"]
    assert [a.decoding for a in result.verdict.attempts] == ["constrained"]
    assert orjson.loads(result.text) == result.parsed  # valid JSON by construction


async def test_a_schema_without_a_grammar_decodes_free_and_says_so(local_runtime):
    # "anything but these values": llama.cpp has no grammar for a bare 'not'.
    schema = {"type": "object", "properties": {"answer": {"not": {"enum": ["", "n/a"]}}},
              "required": ["answer"]}
    unconvertible = Contract(name="no-grammar", output={"schema": schema},
                             on_fail="reject", decoding="constrained")
    client = AsyncClient(local_runtime)
    try:
        result = await client.complete("Say yes as JSON.", contract=unconvertible,
                                       route="intent", temperature=0, max_tokens=12)
        verdict = result.verdict
    except ContractError as error:  # the free answer may well break the schema
        verdict = error.verdict
    assert verdict.attempts[0].decoding == "free (schema cannot become a grammar)"
    assert "cannot become a llama.cpp grammar" in verdict.notes[0]
    row = only_row(local_runtime)
    stored = json.loads(row["verdict"])
    assert "cannot become a llama.cpp grammar" in stored["notes"][0]
    assert stored["attempts"][0]["decoding"].startswith("free")


async def test_a_schema_whose_grammar_llama_cpp_cannot_parse_decodes_free(local_runtime):
    """A quote in an enum value converts, but into a grammar llama.cpp cannot
    parse; decoding under it once crashed the process."""
    schema = {"type": "object", "properties": {"say": {"enum": ['"yes"', "no"]}},
              "required": ["say"]}
    quoted = Contract(name="quoted", output={"schema": schema}, on_fail="reject")
    client = AsyncClient(local_runtime)
    try:
        verdict = (await client.complete("Say yes.", contract=quoted, route="intent",
                                         temperature=0, max_tokens=12)).verdict
    except ContractError as error:
        verdict = error.verdict
    assert verdict.attempts[0].decoding == "free (schema cannot become a grammar)"
    assert "cannot parse the grammar" in verdict.notes[0]


def test_grammar_nesting_is_counted_outside_literals_and_classes():
    from unwalled.contracts.grammar import nesting

    assert nesting('root ::= "(((" [(] ("a" ("b\\")" [)\\]]))') == 2


def test_a_schema_bound_too_large_for_a_grammar_is_refused_before_converting():
    from unwalled.contracts.grammar import largest_bound, schema_problem

    huge = {"type": "object", "properties": {
        "a": {"type": "array", "items": {"type": "string", "maxLength": 20_000_000}},
        "b": {"type": "string", "pattern": "^x{2,70000}$"},
        "c": {"enum": [{"maxLength": 10**9}]}}}  # data, not a bound
    assert largest_bound(huge) == 20_000_000
    assert "bounds a length or count at 20000000" in schema_problem(huge)


@pytest.mark.filterwarnings("ignore::ResourceWarning",
                            "ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_async_client_serves_each_asyncio_run_on_an_http_backend(tmp_path):
    """``asyncio.run`` per call (a test per loop) once failed the second call
    with "Event loop is closed", blamed on the upstream and its breaker."""
    import asyncio as aio

    from unwalled.config import parse_config
    from unwalled.testing import ScriptedUpstream

    upstream = ScriptedUpstream(['{"a": 1}'])
    with upstream.running() as url:
        config = parse_config({
            "backends": {"u": {"type": "openai", "base_url": url + "/v1"}},
            "routes": {"r": {"targets": ["u/m"]}},
            "ledger": {"url": f"sqlite:///{tmp_path / 'l.db'}"}})
        runtime = Runtime(config, Ledger(config.ledger.url))
        client = AsyncClient(runtime)
        contract = Contract(name="k", output={"schema": {"type": "object"}})
        answers = [aio.run(client.complete("x", contract=contract, route="r")).parsed
                   for _ in range(3)]
        aio.run(runtime.close())
    assert answers == [{"a": 1}] * 3


def test_the_python_api_names_the_callers_mistakes_and_spares_the_backend(local_runtime):
    from unwalled.errors import RequestError

    contract = Contract(name="k", output={"schema": {"type": "object"}})
    with Client(local_runtime) as client:
        for kwargs, says in [
                ({"input": 5}, "must be text"),
                ({"input": "hi", "max_tokens": "a"}, "'max_tokens' must be a whole"),
                ({"input": "hi", "bogus": 1}, "unknown option(s) bogus"),
                ({"messages": [{"role": "wizard", "content": "x"}]}, "'wizard'"),
                ({"input": "hi", "temperature": "hot"}, "'temperature'"),
                ({"input": "hi", "canaries": 5}, "canaries must be")]:
            for _ in range(3):  # more than the breaker's threshold
                with pytest.raises(RequestError, match=re.escape(says)):
                    client.complete(contract=contract, route="intent", **kwargs)
        with pytest.raises(RequestError, match="contract= takes"):
            client.complete("hi", contract=None)
        result = client.complete("Say {} as JSON.", route="intent", max_tokens=8,
                                 contract={"name": "free", "checks": ["no_secrets"]})
    assert result.verdict.passed
