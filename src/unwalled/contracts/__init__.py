"""Contracts: what a valid answer is, checked by deterministic code, and what
happens when an answer is not valid (reject, repair by re-asking, fall back).

    model.py      the contract (YAML or Python), with errors naming file and place
    checks/       one module per kind of check; each returns violations
    verifier.py   a contract made ready: checks built once, run per answer
    repair.py     the repair loop as a sans-I/O state machine, sync and async drivers
    grammar.py    whether a schema can constrain decoding on the local backend
    runner.py     a route completed under a contract, recorded in the ledger
    book.py       the contracts a config names, and each route's
"""

from unwalled.contracts.model import Contract, OnFail, Output, load_contract, \
    parse_contract
from unwalled.contracts.verdict import AttemptVerdict, CheckResult, Verdict, Violation
from unwalled.contracts.verifier import Verifier


def verify(contract: Contract, text: str) -> CheckResult:
    """Check one answer against a contract, offline (builds the checks each call;
    keep a ``Verifier`` to check many answers)."""
    return Verifier(contract).verify(text)


__all__ = ["AttemptVerdict", "CheckResult", "Contract", "OnFail", "Output", "Verdict",
           "Verifier", "Violation", "load_contract", "parse_contract", "verify"]
