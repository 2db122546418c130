"""The response cache: a rerun of an unchanged audit makes no new model calls.

An answer is keyed on the target and everything in the request that can change
it (messages, schema, sampling settings, seed). The cache is a SQLite file; by
default it sits next to a SQLite ledger, so it stays with the record of the
calls it saves. A cached answer keeps the latency and tokens measured when it
was made, so the report of a rerun shows the same costs.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from unwalled.backends.base import ChatRequest

CACHE_FILE = "unwalled-audit-cache.db"


@dataclass(frozen=True, slots=True)
class Answer:
    """What a candidate said about one item, and what it took."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    error: str | None = None
    cached: bool = False


def cache_key(target: str, request: ChatRequest,
              answered_by: tuple[str, ...] = ()) -> str:
    """The key of an answer: the candidate's target, the request, and the
    targets that answer it (``answered_by``): a route whose model was swapped
    is a new candidate, not one to answer from the old model's cache."""
    payload = {name: getattr(request, name) for name in request.__slots__}
    payload["messages"] = [asdict(m) for m in request.messages]
    payload["tools"] = [asdict(t) for t in request.tools or []]
    blob = orjson.dumps({"target": target, "request": payload,
                         "answered_by": list(answered_by)},
                        option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()


def default_cache_path(ledger_url: str) -> Path:
    """Beside a SQLite ledger file; in the working directory for any other ledger."""
    prefix = "sqlite:///"
    if ledger_url.startswith(prefix) and ledger_url != prefix + ":memory:":
        return Path(ledger_url[len(prefix):]).parent / CACHE_FILE
    return Path(CACHE_FILE)


class ResponseCache:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, target TEXT, "
            "text TEXT, prompt_tokens INT, completion_tokens INT, latency_ms REAL, "
            "created REAL)")
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Answer | None:
        row = self.db.execute(
            "SELECT text, prompt_tokens, completion_tokens, latency_ms FROM answers "
            "WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return Answer(row[0], row[1], row[2], row[3], cached=True)

    def put(self, key: str, target: str, answer: Answer) -> None:
        """Keep a good answer. Failures are not kept: a rerun should try again."""
        if answer.error is not None:
            return
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, target, answer.text, answer.prompt_tokens,
                 answer.completion_tokens, answer.latency_ms, time.time()))

    def close(self) -> None:
        self.db.close()
