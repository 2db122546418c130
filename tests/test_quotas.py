"""The two quota stores, one behaviour: holds, settlement, restarts, outages."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.conftest import free_port
from unwalled.errors import BudgetError, RateLimitError, StateUnavailableError
from unwalled.gateway.keys import ApiKey
from unwalled.gateway.quotas import MemoryQuotas, RedisQuotas

REDIS_URL = "redis://127.0.0.1:6379/0"


def key(**limits) -> ApiKey:
    return ApiKey(id=f"key_{uuid.uuid4().hex[:12]}", name="t", prefix="uw-test",
                  routes=None, contracts=None, rpm=limits.get("rpm"),
                  tpm=limits.get("tpm"), budget=limits.get("budget"),
                  created=time.time())


@pytest.fixture(params=["memory", "redis"])
def make_store(request):
    def make(spent=None):
        if request.param == "memory":
            return MemoryQuotas(spent)
        return RedisQuotas(REDIS_URL, spent)

    return make


async def test_settling_frees_what_a_request_did_not_use(make_store):
    store, k = make_store(), key(tpm=1000, budget=1.0)
    first = await store.reserve(k, "r1", 800, 0.6)
    with pytest.raises(RateLimitError) as err:  # 800 held + 300 > 1000
        await store.reserve(k, "r2", 300, 0.1)
    assert "1000 tokens per minute" in err.value.message
    assert 0 < err.value.retry_after <= 60
    first.record(tokens=50, cost=0.05)
    await store.settle(first)
    second = await store.reserve(k, "r3", 300, 0.6)  # 50 + 300 tokens; $0.05 + 0.6
    with pytest.raises(BudgetError):  # 0.05 spent + 0.6 held + 0.6 > 1.0
        await store.reserve(k, "r4", 10, 0.6)
    await store.settle(second)  # nothing recorded: the whole hold is charged
    with pytest.raises(BudgetError) as err:
        await store.reserve(k, "r5", 10, 0.5)
    assert "$0.650000 spent" in err.value.message
    await store.close()


async def test_a_budget_starts_from_the_ledger_after_a_restart(make_store):
    k = key(budget=9.0)
    store = make_store(spent=lambda key_id: 6.0 if key_id == k.id else 0.0)
    with pytest.raises(BudgetError):
        await store.reserve(k, "r1", 10, 5.0)  # 6 spent before the restart + 5 > 9
    await store.reserve(k, "r2", 10, 3.0)
    await store.close()


async def test_an_unreachable_redis_refuses_rather_than_lets_through():
    store = RedisQuotas(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(StateUnavailableError) as err:
        await store.reserve(key(rpm=5), "r1", 10, 0.0)
    assert err.value.status == 503 and "state.redis_url" in err.value.message
    await store.close()


async def test_a_budget_redis_lost_starts_again_from_the_ledger_not_from_zero():
    """Redis flushed (or restarted without storage) under a running gateway: the
    next request finds the budget gone and takes the ledger's figure again."""
    import redis.asyncio

    k = key(budget=9.0)
    ledger_says = {"spent": 0.0}
    store = RedisQuotas(REDIS_URL, lambda key_id: ledger_says["spent"])
    held = await store.reserve(k, "r1", 10, 5.0)
    held.record(tokens=10, cost=5.0)
    await store.settle(held)
    ledger_says["spent"] = 5.0  # what the ledger recorded
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    await client.delete(*[name for name in await client.keys(f"*{k.id}*")])
    await client.aclose()
    with pytest.raises(BudgetError):  # 5 spent (from the ledger) + 5 > 9
        await store.reserve(k, "r2", 10, 5.0)
    await store.close()


async def test_settling_after_redis_lost_a_budget_leaves_it_for_the_ledger_to_reseed():
    import redis.asyncio

    k = key(budget=1.0)
    ledger_says = {"spent": 0.6}
    store = RedisQuotas(REDIS_URL, lambda key_id: ledger_says["spent"])
    held = await store.reserve(k, "r1", 10, 0.2)
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    budget = [name for name in await client.keys(f"*{k.id}*budget")]
    await client.delete(*budget)  # lost while the request was in flight
    held.record(tokens=10, cost=0.2)
    await store.settle(held)
    assert await client.exists(*budget) == 0  # not rebuilt from one request
    await client.aclose()
    ledger_says["spent"] = 0.8  # what the ledger now holds, this request included
    with pytest.raises(BudgetError):  # 0.8 + 0.3 > 1.0: the ledger's figure counts
        await store.reserve(k, "r2", 10, 0.3)
    await store.close()
