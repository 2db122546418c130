"""Scorers: how good one prediction is against its expected answer.

A scorer gives each item a ``Score``: ``value`` in [0, 1] (1 is right) and, for
set and span scorers, true/false positive and false negative counts so precision,
recall and F1 can be pooled over items. A suite names its scorer as a string
(``exact``) or a one-key mapping with options (``{numeric: {tolerance: 0.5}}``):

========== ================================================================
exact      the prediction equals the expected answer (surrounding space aside)
normalised equal after lower-casing and folding punctuation and space
json_field the listed fields of a JSON answer equal the expected ones
span       set match of (key, value) pairs or list items, spacing aside: P/R/F1
numeric    the first number in the prediction is within a tolerance
regex      the prediction matches a pattern (``{expected}`` is filled in)
python     ``module:function`` or ``file.py:function`` returns bool, float or dict
========== ================================================================
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from unwalled.errors import ConfigError

_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


@dataclass(frozen=True, slots=True)
class Score:
    value: float
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def correct(self) -> bool:
        return self.value >= 1.0


Scorer = Callable[[Any, Any, dict[str, Any]], Score]
"""(prediction, expected, the item's fields) -> Score."""


def normalise(value: Any) -> str:
    """Lower case, accents folded, punctuation and underscores read as spaces."""
    text = value if isinstance(value, str) else json.dumps(value)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


def _plain(value: Any) -> str:
    return (value if isinstance(value, str) else json.dumps(value)).strip()


def exact(prediction: Any, expected: Any, fields: dict[str, Any]) -> Score:
    return Score(float(prediction is not None and _plain(prediction) == _plain(expected)))


def normalised(prediction: Any, expected: Any, fields: dict[str, Any]) -> Score:
    return Score(float(prediction is not None
                       and normalise(prediction) == normalise(expected)))


def _as_object(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def json_field(fields_to_match: list[str] | None = None) -> Scorer:
    def score(prediction: Any, expected: Any, fields: dict[str, Any]) -> Score:
        want, got = _as_object(expected) or {}, _as_object(prediction) or {}
        names = fields_to_match or sorted(want)
        if not names:
            return Score(1.0 if not got else 0.0)
        hits = sum(1 for n in names if n in got and normalise(got[n]) == normalise(
            want.get(n)))
        return Score(hits / len(names))
    return score


def _squash(value: Any) -> str:
    """Normalised with spaces dropped too: spans "7pm" and "7 pm" are one value."""
    return normalise(value).replace(" ", "")


def _pairs(value: Any) -> set[str]:
    """The parts of an answer a span scorer compares, each normalised."""
    if isinstance(value, str):
        value = _as_object(value) if value.strip().startswith("{") else [value]
    if isinstance(value, dict):
        return {f"{k}={_squash(v)}" for k, v in value.items()
                if v not in (None, "", [])}
    if isinstance(value, list):
        return {_squash(v) for v in value if v not in (None, "")}
    return set()


def span(prediction: Any, expected: Any, fields: dict[str, Any]) -> Score:
    got, want = _pairs(prediction), _pairs(expected)
    tp = len(got & want)
    fp, fn = len(got - want), len(want - got)
    if not got and not want:
        return Score(1.0)
    return Score(2 * tp / (2 * tp + fp + fn), tp=tp, fp=fp, fn=fn)


def numeric(tolerance: float = 0.0, relative: float = 0.0) -> Scorer:
    def score(prediction: Any, expected: Any, fields: dict[str, Any]) -> Score:
        got, want = first_number(prediction), first_number(expected)
        if got is None or want is None:
            return Score(0.0)
        allowed = max(tolerance, relative * abs(want))
        return Score(float(abs(got - want) <= allowed))
    return score


def first_number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    match = _NUMBER.search(str(value if value is not None else ""))
    if not match:
        return None
    try:
        number = float(match.group(0).replace(",", ""))
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def regex(pattern: str | None = None, full: bool = False) -> Scorer:
    def score(prediction: Any, expected: Any, fields: dict[str, Any]) -> Score:
        source = (pattern.replace("{expected}", re.escape(str(expected)))
                  if pattern else str(expected))
        try:
            compiled = re.compile(source, re.IGNORECASE)
        except re.error as exc:
            raise ConfigError(f"scorer regex {source!r} does not compile: {exc}",
                              key="scorer", fix="correct the pattern.") from exc
        text = "" if prediction is None else _plain(prediction)
        found = compiled.fullmatch(text) if full else compiled.search(text)
        return Score(float(found is not None))
    return score


def python(function: str) -> Scorer:
    hook = load_hook(function)

    def score(prediction: Any, expected: Any, fields: dict[str, Any]) -> Score:
        try:
            result = hook(prediction, expected, fields)
            if not isinstance(result, Score):
                result = _as_score(result)
        except Exception as exc:  # the hook's own bug: a bad suite, exit 2
            raise ConfigError(f"python scorer {function!r} failed on an item: "
                              f"{type(exc).__name__}: {exc}", key="scorer.python",
                              fix="make it return a bool, a number from 0 to 1, or "
                                  "{value, tp, fp, fn}, for every answer.") from None
        if not (math.isfinite(result.value) and 0.0 <= result.value <= 1.0):
            raise ConfigError(f"python scorer {function!r} gave {result.value!r} for "
                              "an item; a score is a number from 0 to 1.",
                              key="scorer.python",
                              fix="return a bool or a number from 0 to 1.")
        return result
    return score


def _as_score(result: Any) -> Score:
    if isinstance(result, dict):
        return Score(float(result.get("value", 0.0)), int(result.get("tp", 0)),
                     int(result.get("fp", 0)), int(result.get("fn", 0)))
    if isinstance(result, (bool, int, float)):
        return Score(float(result))
    raise TypeError(f"it returned {type(result).__name__}, not a score")


def load_hook(spec: str) -> Callable[..., Any]:
    """``package.module:function``, or ``path/to/file.py:function``."""
    where, _, name = spec.rpartition(":")
    if not where or not name:
        raise ConfigError(f"python scorer {spec!r} is not 'module:function'.",
                          key="scorer.python", fix="write e.g. 'my_scorers:grade'.")
    if where.endswith(".py"):
        loaded = importlib.util.spec_from_file_location(Path(where).stem, where)
        if loaded is None or not Path(where).is_file():
            raise ConfigError(f"scorer file {where} does not exist.",
                              key="scorer.python", fix="correct the path.")
        module = importlib.util.module_from_spec(loaded)
        loaded.loader.exec_module(module)  # type: ignore[union-attr]
    else:
        module = importlib.import_module(where)
    hook = getattr(module, name, None)
    if not callable(hook):
        raise ConfigError(f"{where} has no function {name!r}.", key="scorer.python",
                          fix="name a function taking (prediction, expected, fields).")
    return hook


_FIXED: dict[str, Scorer] = {"exact": exact, "normalised": normalised,
                             "normalized": normalised, "span": span, "set": span}
_FACTORIES: dict[str, Callable[..., Scorer]] = {
    "json_field": json_field, "numeric": numeric, "regex": regex, "python": python}


def build_scorer(spec: str | dict[str, Any], folder: str = ".") -> Scorer:
    """The scorer a suite names, with its options checked."""
    if isinstance(spec, str):
        if spec in _FIXED:
            return _FIXED[spec]
        if spec in _FACTORIES:
            return _make(spec, {}, folder)
        raise _unknown(spec)
    if len(spec) != 1:
        raise ConfigError("scorer must be one name, or a mapping with one key.",
                          key="scorer", fix="write e.g. 'scorer: {numeric: "
                          "{tolerance: 0.5}}'.")
    name, options = next(iter(spec.items()))
    if name in _FIXED and not options:
        return _FIXED[name]
    if name not in _FACTORIES:
        raise _unknown(name)
    return _make(name, options, folder)


def _make(name: str, options: Any, folder: str) -> Scorer:
    if name == "python":
        function = options if isinstance(options, str) else (options or {}).get(
            "function", "")
        where, _, fn = function.rpartition(":")
        if where.endswith(".py") and not Path(where).is_absolute():
            function = f"{Path(folder) / where}:{fn}"
        return python(function)
    if name == "json_field" and isinstance(options, list):
        options = {"fields_to_match": options}
    if name == "json_field" and isinstance(options, dict) and "fields" in options:
        options = {"fields_to_match": options["fields"]}
    try:
        return _FACTORIES[name](**(options or {}))
    except TypeError as exc:
        raise ConfigError(f"scorer {name!r} got options it does not take: {exc}.",
                          key="scorer", fix="see the scorer table in the README."
                          ) from exc


def _unknown(name: str) -> ConfigError:
    known = ", ".join(sorted({*_FIXED, *_FACTORIES} - {"normalized", "set"}))
    return ConfigError(f"unknown scorer {name!r}.", key="scorer",
                       fix=f"use one of: {known}.")
