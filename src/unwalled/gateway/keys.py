"""API keys: made once, shown once, kept only as a hash in the ledger database.

A key looks like ``uw-`` followed by 43 URL-safe characters (256 random bits).
The database keeps its SHA-256 (a slow password hash buys nothing for a value
with that much entropy), the first characters for recognising it in a list, the
routes and contracts it may use, and its optional limits: requests per minute,
tokens per minute and a spending budget in the ledger's currency (USD).
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Engine, func, insert, select, update

from unwalled.errors import AuthError, ForbiddenError, RequestError
from unwalled.ledger import schema

__all__ = ["ApiKey", "KeyStore", "hash_key", "KEY_PREFIX"]

KEY_PREFIX = "uw-"


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as stored: never the secret itself."""

    id: str
    name: str
    prefix: str
    routes: tuple[str, ...] | None
    """Routes it may call; None means every route."""
    contracts: tuple[str, ...] | None
    rpm: int | None
    tpm: int | None
    budget: float | None
    created: float
    revoked: float | None = None

    def check_scope(self, route: str, contract: str | None) -> None:
        if self.routes is not None and route not in self.routes:
            raise ForbiddenError(
                f"this key ({self.name}) may not call route {route!r}; it may call: "
                f"{', '.join(self.routes) or 'no route'}. Use a key scoped to it, or "
                "make one with 'unwalled keys create --route ...'.", param="model")
        if contract and self.contracts is not None and contract not in self.contracts:
            raise ForbiddenError(
                f"this key ({self.name}) may not use contract {contract!r}; it may "
                f"use: {', '.join(self.contracts) or 'none'}.", param="contract")

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "prefix": self.prefix,
                "routes": list(self.routes) if self.routes is not None else None,
                "contracts": list(self.contracts) if self.contracts is not None
                else None, "rpm": self.rpm, "tpm": self.tpm, "budget": self.budget,
                "created": self.created, "revoked": self.revoked}


class KeyStore:
    """Keys in the ledger database. ``lookup`` caches for ``cache_seconds``."""

    def __init__(self, engine: Engine, cache_seconds: float = 2.0) -> None:
        self.engine = engine
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}

    def create(self, name: str, *, routes: list[str] | None = None,
               contracts: list[str] | None = None, rpm: int | None = None,
               tpm: int | None = None, budget: float | None = None,
               ) -> tuple[ApiKey, str]:
        """A new key and its secret. The secret is not stored: show it once."""
        if not name.strip():
            raise RequestError("a key needs a name: who or what it is for.", param="name")
        _check_limits(rpm, tpm, budget)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(id=f"key_{uuid.uuid4().hex[:12]}", name=name,
                     prefix=secret[:7], routes=_tuple(routes),
                     contracts=_tuple(contracts), rpm=rpm, tpm=tpm, budget=budget,
                     created=time.time())
        row = {**key.public(), "hash": hash_key(secret),
               "routes": _json(key.routes), "contracts": _json(key.contracts)}
        with self.engine.begin() as conn:
            conn.execute(insert(schema.api_keys), [row])
        return key, secret

    def list(self, *, include_revoked: bool = False) -> list[ApiKey]:
        query = select(schema.api_keys).order_by(schema.api_keys.c.created)
        if not include_revoked:
            query = query.where(schema.api_keys.c.revoked.is_(None))
        with self.engine.connect() as conn:
            return [_key(row) for row in conn.execute(query)]

    def revoke(self, key_id_or_prefix: str) -> ApiKey:
        """Revoke by id (``key_...``) or by the shown prefix (``uw-xxxx``)."""
        wanted = key_id_or_prefix
        matches = [k for k in self.list() if wanted in (k.id, k.prefix, k.name)]
        if len(matches) != 1:
            found = (f"{len(matches)} keys match" if matches
                     else "no active key matches")
            raise RequestError(f"{found} {key_id_or_prefix!r}. Give a key id "
                               "from 'unwalled keys list'.", param="key")
        with self.engine.begin() as conn:
            conn.execute(update(schema.api_keys)
                         .where(schema.api_keys.c.id == matches[0].id)
                         .values(revoked=time.time()))
        self._cache.clear()
        return matches[0]

    def lookup(self, secret: str | None) -> ApiKey:
        """The active key for a presented secret, or ``AuthError`` (401)."""
        if not secret:
            raise AuthError("this gateway needs an API key: send it as "
                            "'Authorization: Bearer uw-...' or 'x-api-key: uw-...'. "
                            "Make one with 'unwalled keys create'.")
        digest = hash_key(secret)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is None or now - cached[0] > self.cache_seconds:
            cached = (now, self._fetch(digest))
            self._cache[digest] = cached
        key = cached[1]
        if key is None:
            raise AuthError("the API key is unknown or revoked. Check it, or make a "
                            "new one with 'unwalled keys create'.")
        return key

    def _fetch(self, digest: str) -> ApiKey | None:
        query = select(schema.api_keys).where(schema.api_keys.c.hash == digest,
                                              schema.api_keys.c.revoked.is_(None))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return _key(row) if row is not None else None

    def spent(self, key_id: str) -> float:
        """What the ledger has recorded as spent by a key."""
        requests = schema.requests
        query = select(func.coalesce(func.sum(requests.c.cost), 0.0)).where(
            requests.c.key_id == key_id)
        with self.engine.connect() as conn:
            return float(conn.execute(query).scalar_one())


MAX_BUDGET = 1e9
"""Dollars: a key's spend is counted in nano-dollars, and past this the count
no longer fits (``inf`` once made every request of its key a 500)."""


def _check_limits(rpm: int | None, tpm: int | None, budget: float | None) -> None:
    for name, value in (("rpm", rpm), ("tpm", tpm), ("budget", budget)):
        if value is not None and not value > 0:  # not > 0: nan too
            raise RequestError(f"--{name} must be above 0 (leave it out for no limit).",
                               param=name)
    if budget is not None and budget > MAX_BUDGET:
        raise RequestError(f"--budget {budget:g} is over the largest budget a key can "
                           f"count, ${MAX_BUDGET:,.0f}; leave it out for no limit.",
                           param="budget")


def _tuple(values: list[str] | tuple[str, ...] | None) -> tuple[str, ...] | None:
    return tuple(values) if values else None


def _json(values: tuple[str, ...] | None) -> str | None:
    return orjson.dumps(list(values)).decode() if values is not None else None


def _key(row: Any) -> ApiKey:
    def scope(raw: str | None) -> tuple[str, ...] | None:
        return tuple(orjson.loads(raw)) if raw else None

    return ApiKey(id=row.id, name=row.name, prefix=row.prefix, routes=scope(row.routes),
                  contracts=scope(row.contracts), rpm=row.rpm, tpm=row.tpm,
                  budget=row.budget, created=row.created, revoked=row.revoked)
