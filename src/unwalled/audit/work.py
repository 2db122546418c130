"""The work on one item, as a function of (suite, candidate, item) alone.

``run_job`` builds the request, asks a ``ModelCaller`` for the answer, and
grades it. Nothing else is read or written, so an executor may run jobs in
this process (``LocalExecutor``) or ship them to other processes or machines
that have their own ``ModelCaller`` (a Ray executor, for instance): a ``Job``
and an ``ItemResult`` are plain, picklable data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from unwalled.audit.cache import Answer
from unwalled.audit.contract import AnswerCheck, build_check
from unwalled.audit.prompting import build_request, read_answer
from unwalled.audit.scorers import Score, Scorer, build_scorer, normalise
from unwalled.audit.suite import Candidate, Item, Suite
from unwalled.backends.base import ChatRequest


@dataclass(frozen=True, slots=True)
class Job:
    suite: Suite
    candidate: Candidate
    item: Item
    shots: tuple[Item, ...] = ()
    labels: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class ItemResult:
    candidate: str
    index: int
    prediction: Any
    score: Score
    answer: Answer
    violations: tuple[str, ...] | None = None
    """None when the suite has no contract; empty when the answer passed it."""
    label: str | None = None
    predicted_label: str | None = None


class ModelCaller(Protocol):
    """Gets one answer from a target. Failures come back as ``Answer.error``."""

    async def __call__(self, target: str, request: ChatRequest) -> Answer: ...


async def run_job(job: Job, call: ModelCaller) -> ItemResult:
    answer = await call(job.candidate.target or "", request_for(job))
    return grade(job, answer)


def request_for(job: Job) -> ChatRequest:
    """The request a job sends to its candidate's target."""
    labels = list(job.labels) if job.labels is not None else None
    return build_request(job.suite, job.candidate, job.item, list(job.shots), labels)


def grade(job: Job, answer: Answer) -> ItemResult:
    """Score an answer against the item's expected answer, and check its contract."""
    suite, item = job.suite, job.item
    prediction = None if answer.error else read_answer(suite, answer.text)
    score = _scorer(suite)(prediction, item.expected, item.fields)
    if answer.error:
        # A failed call answered nothing, whatever a scorer makes of "nothing"
        # (a pattern that allows the empty answer, a constant): it scores 0,
        # and every expected span is missed.
        score = Score(0.0, 0, 0, score.fn + score.tp)
    check = _check(suite)
    violations = None
    if check is not None:
        violations = tuple(check.check(answer.text)) if not answer.error else (
            "no answer: " + answer.error,)
    return ItemResult(
        candidate=job.candidate.name, index=item.index, prediction=prediction,
        score=score, answer=answer, violations=violations, label=item.label,
        predicted_label=_as_label(prediction, job.labels) if item.label else None)


def _as_label(prediction: Any, labels: tuple[str, ...] | None) -> str:
    """The class a prediction names, folding case and punctuation; else as given."""
    if prediction is None:
        return "(no answer)"
    wanted = normalise(prediction)
    for label in labels or ():
        if normalise(label) == wanted:
            return label
    text = prediction if isinstance(prediction, str) else json.dumps(prediction)
    return text[:60] or "(empty)"


def ready(suite: Suite) -> None:
    """Build the suite's scorer and contract now: their errors (an unknown
    scorer, a contract that does not load) are said before the first model
    call, not after the last."""
    _scorer(suite)
    _check(suite)


def _scorer(suite: Suite) -> Scorer:
    return _scorer_for(json.dumps(suite.scorer, sort_keys=True), suite.folder)


def _check(suite: Suite) -> AnswerCheck | None:
    if suite.contract is None:
        return None
    return _check_for(json.dumps(suite.contract, sort_keys=True), suite.folder)


@lru_cache(maxsize=64)
def _scorer_for(spec: str, folder: str) -> Scorer:
    return build_scorer(json.loads(spec), folder)


@lru_cache(maxsize=64)
def _check_for(contract: str, folder: str) -> AnswerCheck | None:
    return build_check(json.loads(contract), folder)
