"""Suites: a labelled data set, how to ask about each item, and who competes.

A suite is a YAML file. Paths in it are relative to the file::

    name: banking77-intents
    data: {test: data/test.csv, train: data/train.csv}
    input: "Customer message: {text}"
    expected: category            # a column, or a template such as "{category}"
    labels: data/categories.json  # classification: the label set (file or list)
    instructions: Classify the message into one of these intents: {labels}.
    output: {field: intent}       # the answer is JSON; the prediction is this field
    contract: intent.contract.yaml   # optional: a contract file, or {schema: {...}}
    scorer: normalised
    sample: {size: 60, seed: 7}
    target_accuracy: 0.5
    candidates:
      - {name: zero-shot, target: local/smollm2-135m, decoding: constrained}
      - {name: few-shot, target: local/smollm2-135m, prompt: {few_shot: 5}}
      - {name: tfidf, baseline: tfidf-logreg}

Everything here is plain data (pydantic models and dataclasses), so a suite, a
candidate and an item can be shipped to another process as they are.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from unwalled.textfile import load_yaml, read_text
from unwalled.config import _FIXES
from unwalled.errors import ConfigError

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataFiles(_Strict):
    test: str
    """The labelled items the audit scores (CSV with a header row, or JSONL)."""
    train: str | None = None
    """Examples for few-shot prompts and for training the classical baseline."""


class FewShot(_Strict):
    few_shot: int = Field(ge=1, le=64)


class Candidate(_Strict):
    """One competitor: a target, a prompt strategy and a decoding mode, or a baseline."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.:+-]+$")
    target: str | None = None
    """A route name, or ``backend/model`` from unwalled.yaml (``local/smollm2-135m``)."""
    prompt: Literal["zero-shot"] | FewShot = "zero-shot"
    decoding: Literal["free", "constrained"] = "free"
    baseline: Literal["tfidf-logreg"] | None = None
    max_tokens: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_kind(self) -> "Candidate":
        if (self.target is None) == (self.baseline is None):
            raise ValueError("give either 'target' (a model) or 'baseline', not both "
                             "or neither")
        return self

    @property
    def shots(self) -> int:
        return self.prompt.few_shot if isinstance(self.prompt, FewShot) else 0

    def describe(self) -> str:
        if self.baseline:
            return f"baseline {self.baseline}"
        strategy = f"{self.shots}-shot" if self.shots else "zero-shot"
        return f"{self.target}, {strategy}, {self.decoding}"


class Output(_Strict):
    field: str | None = None
    """The answer is a JSON object and the prediction is this field of it."""
    json_answer: bool = Field(False, alias="json")
    """The answer is a JSON value and the prediction is all of it."""
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    """For constrained decoding; built from ``labels`` and ``field`` when absent."""


class Sample(_Strict):
    size: int | None = Field(None, ge=1)
    """Items drawn from the test data; all of them when absent."""
    seed: int = 0


class Suite(_Strict):
    name: str
    description: str = ""
    data: DataFiles
    input: str
    expected: str
    labels: list[str] | str | None = None
    instructions: str = ""
    output: Output = Field(default_factory=Output)
    contract: dict[str, Any] | str | None = None
    scorer: str | dict[str, Any] = "exact"
    sample: Sample = Field(default_factory=Sample)
    target_accuracy: float = Field(ge=0, le=1)
    max_tokens: int = Field(64, ge=1)
    temperature: float = Field(0.0, ge=0)
    candidates: list[Candidate] = Field(min_length=1)
    folder: str = Field(".", exclude=True)
    """Where the suite file is; relative data paths start here."""

    @model_validator(mode="after")
    def _distinct_names(self) -> "Suite":
        names = [c.name for c in self.candidates]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"candidate names must differ; repeated: {', '.join(twice)}")
        return self

    def path(self, relative: str) -> Path:
        return (Path(self.folder) / relative).resolve()


@dataclass(frozen=True, slots=True)
class Item:
    """One labelled example. ``fields`` are its columns; ``index`` its row number."""

    index: int
    fields: dict[str, Any]
    expected: Any
    label: str | None = None
    """The expected answer as a class name, for classification suites."""


@dataclass(slots=True)
class Dataset:
    """A suite's items, loaded and sampled, with the train split and label set."""

    items: list[Item]
    train: list[Item] = field(default_factory=list)
    labels: list[str] | None = None
    total: int = 0
    """Rows in the test data before sampling."""


# ---- loading ----

def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file. Raises ``ConfigError`` naming the fix."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("no such suite file.", file=str(path),
                          fix="give the path of a suite YAML file.")
    try:
        raw = load_yaml(read_text(path))
    except yaml.YAMLError as exc:
        raise ConfigError(f"is not valid YAML: {exc}", file=str(path),
                          fix="correct the YAML syntax.") from exc
    return parse_suite(raw, source=str(path), folder=path.parent)


def parse_suite(raw: Any, *, source: str = "<suite>",
                folder: str | Path = ".") -> Suite:
    if not isinstance(raw, dict):
        raise ConfigError("a suite must be a mapping of keys.", file=source,
                          fix="start with 'name:', 'data:', 'input:' and 'candidates:'.")
    try:
        suite = Suite.model_validate({**raw, "folder": str(folder)})
    except ValidationError as exc:
        raise _explain(exc, source) from exc
    _check_templates(suite, source)
    return suite


def _explain(exc: ValidationError, source: str) -> ConfigError:
    lines = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"]) or "<top level>"
        fix = _FIXES.get(error["type"], "correct the value.")
        lines.append(f"{key}: {error['msg']}. Fix: {fix}")
    more = "" if len(lines) == 1 else "\n  " + "\n  ".join(lines[1:])
    return ConfigError(lines[0] + more, file=source)


def _check_templates(suite: Suite, source: str) -> None:
    if not PLACEHOLDER.search(suite.input):
        raise ConfigError(f"input template {suite.input!r} names no column.",
                          file=source, key="input",
                          fix="put a column in braces, e.g. 'Message: {text}'.")
    uses_baseline = any(c.baseline for c in suite.candidates)
    if uses_baseline and not suite.data.train:
        raise ConfigError("a baseline candidate needs a train split to learn from.",
                          file=source, key="data.train",
                          fix="add 'train: PATH' under 'data:', or drop the baseline.")
    if any(c.shots for c in suite.candidates) and not suite.data.train:
        raise ConfigError("a few-shot candidate draws its examples from the train "
                          "split, and there is none.", file=source, key="data.train",
                          fix="add 'train: PATH' under 'data:', or use zero-shot.")


def load_dataset(suite: Suite) -> Dataset:
    """Load the test rows (sampled) and the train rows of a suite."""
    rows = read_rows(suite.path(suite.data.test))
    if not rows:
        raise ConfigError("the test data has no rows.", key="data.test",
                          fix=f"check {suite.data.test}.")
    _check_columns(suite, rows[0])
    labels = load_labels(suite)
    items = [to_item(suite, i, row, labels) for i, row in enumerate(rows)]
    chosen = sample_items(items, suite.sample)
    train: list[Item] = []
    if suite.data.train:
        train = [to_item(suite, i, row, labels) for i, row in
                 enumerate(read_rows(suite.path(suite.data.train)))]
    return Dataset(items=chosen, train=train, labels=labels, total=len(items))


def _check_columns(suite: Suite, row: dict[str, Any]) -> None:
    """The input template's columns are in the data: said before any call is made."""
    missing = [name for name in PLACEHOLDER.findall(suite.input) if name not in row]
    if missing:
        raise ConfigError(f"the input template names column {missing[0]!r}, which the "
                          f"data lacks (columns: {', '.join(sorted(row))}).",
                          key="input", fix="use one of the data's columns.")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV file (with a header) or a JSONL file (one object a line)."""
    if not path.is_file():
        raise ConfigError(f"data file {path} does not exist.", key="data",
                          fix="correct the path (relative to the suite file).")
    if path.suffix.lower() == ".csv":
        return _csv(path)
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return _jsonl(path)
    raise ConfigError(f"cannot read {path.name}: only .csv and .jsonl data are read.",
                      key="data", fix="convert the file to CSV with a header, or JSONL.")


def _csv(path: Path) -> list[dict[str, Any]]:
    handle = io.StringIO(read_text(path, key="data"), newline="")
    try:
        return list(csv.DictReader(handle))
    except csv.Error as exc:
        raise ConfigError(f"{path.name} is not CSV the reader can take: {exc}.",
                          key="data", fix="write a CSV file with a header line.") from None


def _jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(read_text(path, key="data").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path.name} line {number} is not JSON: {exc.msg}.",
                              key="data", fix="write one JSON object per line.") from exc
        if not isinstance(row, dict):
            raise ConfigError(f"{path.name} line {number} is not a JSON object.",
                              key="data", fix="write one JSON object per line.")
        rows.append(row)
    return rows


def load_labels(suite: Suite) -> list[str] | None:
    if suite.labels is None or isinstance(suite.labels, list):
        return suite.labels
    path = suite.path(suite.labels)
    if not path.is_file():
        raise ConfigError(f"label file {path} does not exist.", key="labels",
                          fix="give a JSON list file, or list the labels inline.")
    try:
        labels = json.loads(read_text(path, key="labels"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path.name} is not JSON ({exc.msg}, line {exc.lineno}).",
                          key="labels", fix='write the labels as ["first", '
                                            '"second", ...].') from None
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ConfigError(f"{path.name} is not a JSON list of strings.", key="labels",
                          fix='write the labels as ["first", "second", ...].')
    return labels


def to_item(suite: Suite, index: int, row: dict[str, Any],
            labels: list[str] | None) -> Item:
    expected = expected_value(suite.expected, row)
    label = None
    if labels is not None:
        label = str(expected)
        if label not in labels:
            raise ConfigError(f"row {index + 1}: expected answer {label!r} is not in "
                              "the label set.", key="labels",
                              fix="add it to the labels, or correct the row.")
    return Item(index=index, fields=row, expected=expected, label=label)


def expected_value(spec: str, row: dict[str, Any]) -> Any:
    """A column's value as it is (it may be a JSON object), or a rendered template."""
    if spec in row:
        return row[spec]
    if not PLACEHOLDER.search(spec):
        # Neither a column nor a template: every row would "expect" the same
        # literal text, and the audit would score nothing real.
        raise ConfigError(f"expected: {spec!r} is not a column of the data "
                          f"(columns: {', '.join(sorted(row))}) and names none in "
                          "braces.", key="expected",
                          fix="give the column that holds the answer, or a template "
                              "such as '{category}'.")
    return render(spec, row, key="expected")


def render(template: str, values: dict[str, Any], *, key: str = "input") -> str:
    """Fill ``{column}`` placeholders; a missing column is an error naming it."""
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ConfigError(f"template names column {name!r}, which the data lacks "
                              f"(columns: {', '.join(sorted(values))}).", key=key,
                              fix="use one of the data's columns.")
        value = values[name]
        return value if isinstance(value, str) else json.dumps(value)
    return PLACEHOLDER.sub(fill, template)


def sample_items(items: list[Item], sample: Sample) -> list[Item]:
    """A seeded random sample, kept in data order so reports read naturally."""
    if sample.size is None or sample.size >= len(items):
        return items
    chosen = random.Random(sample.seed).sample(range(len(items)), sample.size)
    return [items[i] for i in sorted(chosen)]
