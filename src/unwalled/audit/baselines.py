"""Classical baselines: no model call at all, for classification suites.

``tfidf-logreg`` is word and character n-gram TF-IDF features with logistic
regression, fitted on the suite's train split. It runs on this machine's CPU, so
it is costed like a local model: measured compute seconds times the hourly
price. Training is timed and reported apart, as a one-off cost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from unwalled.audit.cache import Answer
from unwalled.audit.prompting import shown_answer
from unwalled.audit.suite import Candidate, Item, Suite, render
from unwalled.errors import ConfigError


@dataclass(slots=True)
class FittedBaseline:
    model: Any
    train_seconds: float


def fit_baseline(suite: Suite, candidate: Candidate, train: list[Item]) -> FittedBaseline:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    labels = [item.label for item in train]
    if any(label is None for label in labels):
        raise ConfigError(f"candidate {candidate.name!r}: the TF-IDF baseline is for "
                          "classification suites.", key="labels",
                          fix="give the suite's 'labels', or drop the baseline.")
    if len(set(labels)) < 2:
        raise ConfigError("the train split has fewer than two classes.",
                          key="data.train", fix="give a train split with every class.")
    features = make_union(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True))
    model = make_pipeline(features, LogisticRegression(C=10.0, max_iter=2000))
    texts = [render(suite.input, item.fields) for item in train]
    started = time.perf_counter()
    model.fit(texts, labels)
    return FittedBaseline(model, time.perf_counter() - started)


def predict_baseline(suite: Suite, fitted: FittedBaseline, item: Item) -> Answer:
    """One item at a time, so its latency is comparable with a model call's."""
    text = render(suite.input, item.fields)
    started = time.perf_counter()
    label = fitted.model.predict([text])[0]
    seconds = time.perf_counter() - started
    # Shown the way a correct model answer looks, so the contract applies alike.
    return Answer(text=shown_answer(suite, str(label)), latency_ms=seconds * 1000)
