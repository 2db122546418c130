"""``unwalled serve --workers 2``: two processes on one port, one ledger, and
metrics summed over both."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import httpx
import openai
import pytest
import yaml

from tests.conftest import free_port, wait_for_port
from unwalled.gateway import server
from unwalled.ledger.store import Ledger

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory) -> Iterator[tuple[str, Path, subprocess.Popen]]:
    tmp = tmp_path_factory.mktemp("workers")
    config = tmp / "unwalled.yaml"
    config.write_text(yaml.safe_dump({
        "ledger": {"url": f"sqlite:///{tmp / 'ledger.db'}"},
        "backends": {"slow": {"type": "mock", "script": [{"text": "a b c",
                                                          "delay": 0.05}]}},
        "routes": {"chat": {"targets": ["slow/m"]}},
    }))
    port = free_port()
    log = open(tmp / "serve.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "unwalled", "serve", "-c", str(config), "--port",
         str(port), "--workers", "2"],
        stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    try:
        wait_for_port(port, 120)
        yield f"http://127.0.0.1:{port}", tmp, process
    finally:
        process.terminate()
        process.wait(60)
        log.close()


def children(pid: int) -> list[int]:
    """Live worker processes whose parent is ``pid`` (not multiprocessing's
    resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes()
            if int(fields[1]) == pid and fields[0] != "Z" and \
                    b"resource_tracker" not in command:
                found.append(int(entry.name))
    return found


async def ask_many(base_url: str, count: int) -> list[str]:
    client = openai.AsyncOpenAI(base_url=base_url + "/v1", api_key="none", max_retries=0)
    async with client:
        answers = await asyncio.gather(*(
            client.chat.completions.create(model="chat", messages=HI)
            for _ in range(count)))
    return [a.choices[0].message.content for a in answers]


def test_two_workers_answer_record_and_count_every_request(two_workers):
    base_url, tmp, process = two_workers
    assert len(children(process.pid)) == 2
    answers = asyncio.run(ask_many(base_url, 40))
    assert answers == ["a b c"] * 40
    # Whichever worker answers /metrics counts both workers' requests.
    for _ in range(4):
        text = httpx.get(base_url + "/metrics").text
        total = re.search(r'^unwalled_requests_total\{[^}]*route="chat"[^}]*\} (\S+)$',
                          text, re.M)
        assert total and float(total.group(1)) == 40.0, text[:2000]
    ledger = Ledger(f"sqlite:///{tmp / 'ledger.db'}")
    try:
        for _ in range(50):  # each worker's writer commits within a fraction of a second
            if ledger.count() == 40:
                break
            asyncio.run(asyncio.sleep(0.1))
        assert ledger.count() == 40
        assert {r["route"] for r in ledger.tail(40)} == {"chat"}
    finally:
        ledger.close()


def test_workers_log_no_migration_lines(two_workers):
    """At the default level a worker logs what the gateway says, not the
    INFO lines Alembic writes while each worker opens the ledger."""
    _, tmp, _ = two_workers
    log = (tmp / "serve.log").read_text()
    assert log.count("Application startup complete.") == 2, log
    assert "alembic" not in log, log


def test_sigterm_stops_every_worker(tmp_path):
    config = tmp_path / "unwalled.yaml"
    config.write_text(yaml.safe_dump({
        "ledger": {"url": f"sqlite:///{tmp_path / 'ledger.db'}"},
        "routes": {"chat": {"targets": ["mock/echo"]}}}))
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "unwalled", "serve", "-c", str(config), "--port",
         str(port), "--workers", "2", "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    try:
        wait_for_port(port, 120)
        workers = children(process.pid)
        assert len(workers) == 2
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
        assert [pid for pid in workers if Path(f"/proc/{pid}").exists()
                and "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]
                ] == []
    finally:  # a failed assertion must not leave a gateway running
        if process.poll() is None:
            process.terminate()  # stops the workers too, as SIGKILL would not
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def test_a_job_claimed_once_runs_in_one_worker_only(tmp_path, monkeypatch):
    assert server.claim("anything")  # a single process always runs it
    monkeypatch.setenv(server.SINGLETONS, str(tmp_path))
    assert server.claim("drift-watch") is True
    assert server.claim("drift-watch") is False  # a second worker asking
    assert server.claim("other-job") is True
    code = ("from unwalled.gateway.server import claim; "
            "raise SystemExit(0 if claim('drift-watch') else 3)")
    other = subprocess.run([sys.executable, "-c", code],
                           env={**os.environ, server.SINGLETONS: str(tmp_path),
                                "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    assert other.returncode == 3  # held by this process
