"""State beyond one machine, on the real servers on loopback: the ledger on
PostgreSQL (same migrations, one row per request, replicas sharing it) and the
circuit breaker's state in Redis, shared by two routers as by two replicas."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import sqlalchemy as sa

from unwalled.backends import build_backend
from unwalled.backends.base import ChatRequest, Message
from unwalled.backends.mock import MockBackend
from unwalled.config import parse_config
from unwalled.errors import ConfigError
from unwalled.ledger import Ledger, Record
from unwalled.routing import RedisCircuitBreaker, Router
from unwalled.runtime import CallInfo, Runtime
from unwalled.testing import ScriptedUpstream

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def pg_url():
    """A ledger URL on a schema of its own, dropped afterwards: reruns start clean."""
    schema = f"unwalled_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def newest_migration() -> str:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    from unwalled.ledger.store import MIGRATIONS

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def test_postgres_migrations_create_the_same_versioned_schema(pg_url):
    Ledger(pg_url).close()
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        version = conn.execute(sa.text("select version_num from alembic_version")).scalar()
        tables = set(sa.inspect(conn).get_table_names())
        columns = {c["name"] for c in sa.inspect(conn).get_columns("attempts")}
    engine.dispose()
    assert version == newest_migration()
    assert {"requests", "attempts", "alembic_version"} <= tables
    assert {"request_id", "seq", "target", "outcome", "upstream_status"} <= columns
    Ledger(pg_url).close()  # a second open is a no-op upgrade


def test_replicas_starting_together_migrate_once(pg_url):
    # Four replicas open the ledger at the same moment; the advisory lock makes
    # one of them migrate and the others find the schema done.
    with ThreadPoolExecutor(4) as pool:
        ledgers = list(pool.map(lambda _: Ledger(pg_url), range(4)))
    for ledger in ledgers:
        ledger.close()
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        versions = conn.execute(sa.text("select version_num from alembic_version")).all()
    engine.dispose()
    assert versions == [(newest_migration(),)]


async def test_every_request_is_one_postgres_row_with_its_attempts(pg_url):
    config = parse_config({
        "ledger": {"url": pg_url, "store": "full"},
        "backends": {"m": {"type": "mock"}, "n": {"type": "mock"}},
        "routes": {"r": {"targets": ["m/x", "n/y"], "retries": 0}}})
    runtime = Runtime(config, Ledger(config.ledger.url))
    runtime.backends["m"] = MockBackend("m", script=[{"error": {"status": 503}}, "a"])
    runtime.backends["n"] = MockBackend("n", script=["from n",
                                                     {"error": {"status": 500}}])
    runtime.router.backends = runtime.backends
    request = ChatRequest([Message("user", "nul \x00 in text is kept readable")])
    await runtime.complete("r", request, CallInfo(request_id="fallback"))
    await runtime.complete("r", request, CallInfo(request_id="first"))
    assert runtime.ledger.flush()
    rows = {r["id"]: r for r in runtime.ledger.tail(10)}
    await runtime.close()
    assert set(rows) == {"fallback", "first"}
    assert [(a["seq"], a["target"], a["outcome"], a["upstream_status"])
            for a in rows["fallback"]["attempts"]] == [(0, "m/x", "error", 503),
                                                        (1, "n/y", "ok", None)]
    assert rows["fallback"]["completion"] == "from n"
    assert "\x00" not in rows["first"]["prompt"] and "in text" in rows["first"]["prompt"]


def test_two_replicas_write_to_one_postgres_ledger_without_loss(pg_url):
    first, second = Ledger(pg_url), Ledger(pg_url)
    for i in range(600):
        replica = first if i % 2 else second
        replica.record(Record(id=f"r{i}", ingress="test", route="r", status=200,
                              outcome="ok", latency_ms=1.0))
    first.close()
    second.close()
    reader = Ledger(pg_url)
    assert reader.count() == 600
    [group] = reader.stats()
    assert (group["route"], group["requests"]) == ("r", 600)
    reader.close()


def test_an_unreachable_postgres_names_the_fix():
    with pytest.raises(ConfigError) as err:
        Ledger("postgresql+psycopg://postgres:secret@127.0.0.1:1/test")
    message = err.value.message
    assert "ledger.url" in message and "reachable" in message
    assert "secret" not in message


# ---- the circuit breaker in Redis ----

REQUEST = ChatRequest(messages=[Message("user", "hi")], max_tokens=8)


def redis_router(urls: dict[str, str], route: str, breaker: dict) -> Router:
    config = parse_config({
        "state": {"redis_url": REDIS},
        "backends": {name: {"type": "openai", "base_url": url + "/v1"}
                     for name, url in urls.items()},
        "routes": {route: {"targets": [f"{n}/m" for n in urls], "retries": 0,
                           "breaker": breaker}}})
    backends = {name: build_backend(name, b) for name, b in config.backends.items()}
    return Router(config, backends)


async def close_router(router: Router) -> None:
    for backend in router.backends.values():
        await backend.close()
    await router.close()


async def test_a_circuit_opened_by_one_replica_is_open_for_the_other():
    route = f"shared-{uuid.uuid4().hex[:8]}"  # a key space of its own per run
    broken, good = ScriptedUpstream([{"status": 500}]), ScriptedUpstream(["good"])
    with broken.running() as url_a, good.running() as url_b:
        urls = {"a": url_a, "b": url_b}
        breaker = {"failures": 2, "reset_after": 0.6}
        one = redis_router(urls, route, breaker)
        two = redis_router(urls, route, breaker)
        try:
            await one.complete(route, REQUEST, [])
            await two.complete(route, REQUEST, [])  # second failure, other replica
            assert await one.breakers[route].state("a/m") == "open"
            attempts: list = []
            answer = await two.complete(route, REQUEST, attempts)
            assert answer.text == "good"
            assert [a.outcome for a in attempts] == ["circuit_open", "ok"]
            assert len(broken.requests) == 2  # neither replica sent a third

            await asyncio.sleep(0.7)  # half-open: exactly one replica gets the trial
            assert await one.breakers[route].state("a/m") == "half-open"
            allowed = [await one.breakers[route].allow("a/m"),
                       await two.breakers[route].allow("a/m")]
            assert allowed == [True, False]
            await two.breakers[route].success("a/m")
            assert await one.breakers[route].state("a/m") == "closed"
        finally:
            await close_router(one)
            await close_router(two)


async def test_breaker_lets_calls_through_when_redis_is_down(caplog):
    import redis.asyncio

    client = redis.asyncio.Redis.from_url("redis://127.0.0.1:1/0",
                                          socket_connect_timeout=0.5)
    breaker = RedisCircuitBreaker(client, "r", failures=1, reset_after=30)
    await breaker.failure("t")
    assert await breaker.allow("t")
    await client.aclose()
    assert "Redis unavailable" in caplog.text


def test_a_bad_redis_url_names_the_key():
    with pytest.raises(ConfigError) as err:
        Router(parse_config({"state": {"redis_url": "http://nowhere"}}), {})
    assert "state.redis_url" in err.value.message


@pytest.fixture(autouse=True, scope="module")
def forget_breaker_keys():
    yield
    client = redis.Redis.from_url(REDIS)
    for key in client.scan_iter("unwalled:breaker:shared-*"):
        client.delete(key)
    client.close()


def test_export_pages_the_postgres_ledger_as_it_does_sqlite(pg_url, tmp_path):
    from tests.test_ledger import _export_ledger

    ledgers = [_export_ledger(pg_url), _export_ledger(f"sqlite:///{tmp_path / 'l.db'}")]
    try:
        on_pg, on_sqlite = ([(r["id"], r["ts"], r["verdict"], r["attempts"])
                             for r in ledger.export(chunk=2)] for ledger in ledgers)
        assert len(on_pg) == 7 and on_pg == on_sqlite
    finally:
        for ledger in ledgers:
            ledger.close()
