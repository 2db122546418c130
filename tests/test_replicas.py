"""Two gateway processes on one real Redis share each key's rate limit and budget."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import openai
import pytest
import yaml

from tests.conftest import free_port, wait_for_port
from unwalled.gateway.keys import KeyStore
from unwalled.ledger.store import engine_for, migrate

REDIS_URL = "redis://127.0.0.1:6379/0"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def replicas(tmp_path_factory) -> Iterator[tuple[KeyStore, list[str]]]:
    tmp = tmp_path_factory.mktemp("replicas")
    ledger = f"sqlite:///{tmp / 'ledger.db'}"
    config = tmp / "unwalled.yaml"
    config.write_text(yaml.safe_dump({
        "ledger": {"url": ledger},
        "auth": {"required": True},
        "state": {"redis_url": REDIS_URL},
        "backends": {"slow": {"type": "mock", "script": [{"text": "a b c",
                                                          "delay": 0.3}]}},
        "routes": {"chat": {"targets": ["mock/echo"], "max_tokens": 16},
                   "paid": {"targets": ["slow/m"], "max_tokens": 5, "retries": 0}},
        "prices": {"slow/m": {"output_per_mtok": 1_000_000}},
    }))
    engine = engine_for(ledger)
    migrate(engine)  # before the replicas start, so they do not race to create it
    ports = [free_port(), free_port()]
    logs = [open(tmp / f"replica-{i}.log", "wb") for i in range(2)]
    processes = [subprocess.Popen(
        [sys.executable, "-m", "unwalled", "serve", "-c", str(config), "--port",
         str(port), "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(
            Path(__file__).parents[1] / "src")}) for port, log in zip(ports, logs)]
    try:
        for port in ports:
            wait_for_port(port, 120)
        yield KeyStore(engine), [f"http://127.0.0.1:{p}/v1" for p in ports]
    finally:
        for process in processes:
            process.terminate()
        for process, log in zip(processes, logs):
            process.wait(30)
            log.close()
        engine.dispose()


def clients(urls: list[str], secret: str) -> list[openai.OpenAI]:
    return [openai.OpenAI(base_url=url, api_key=secret, max_retries=0) for url in urls]


def test_one_rate_limit_across_two_replicas(replicas):
    keys, urls = replicas
    _, secret = keys.create("shared-rpm", rpm=4)
    a, b = clients(urls, secret)
    for client in (a, b, a, b):
        client.chat.completions.create(model="chat", messages=HI)
    for client in (a, b):  # each replica alone has seen only two requests
        with pytest.raises(openai.RateLimitError) as err:
            client.chat.completions.create(model="chat", messages=HI)
        assert int(err.value.response.headers["retry-after"]) >= 50


def test_one_budget_across_two_replicas(replicas):
    keys, urls = replicas
    key, secret = keys.create("shared-budget", budget=9.0)
    a, b = clients(urls, secret)
    for client in (a, b, a):  # each holds $5 and costs $2: 2, 4, 6 spent
        client.chat.completions.create(model="paid", messages=HI)
    with pytest.raises(openai.APIStatusError) as err:  # 6 + 5 > 9, on the other one
        b.chat.completions.create(model="paid", messages=HI)
    assert err.value.status_code == 402
    assert "$6.000000 spent" in err.value.body["message"]


async def test_concurrent_requests_on_both_replicas_cannot_overspend(replicas):
    keys, urls = replicas
    key, secret = keys.create("shared-concurrent", budget=9.0)
    async_clients = [openai.AsyncOpenAI(base_url=url, api_key=secret, max_retries=0)
                     for url in urls]

    async def one(client: openai.AsyncOpenAI) -> int:
        try:
            await client.chat.completions.create(model="paid", messages=HI)
            return 200
        except openai.APIStatusError as exc:
            return exc.status_code

    statuses = await asyncio.gather(*(one(async_clients[i % 2]) for i in range(12)))
    for client in async_clients:
        await client.close()
    # One $5 hold fits in $9 at a time, whichever replica took it.
    assert sorted(statuses) == [200] + [402] * 11
