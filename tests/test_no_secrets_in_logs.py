"""No key, secret or redacted value reaches a log line, on any path.

The gateway runs as its own process with logging at DEBUG; its stderr is
searched after requests through both ingresses, streamed and not, refused and
failed, and after the ``keys`` CLI. The same traffic then goes through an
in-process gateway with pytest's ``caplog`` at DEBUG. (Log records of the
test's own SDK clients are left out of the search: they belong to the caller.)
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
import yaml

from tests.conftest import GatewayServer, free_port, make_runtime, wait_for_port
from unwalled.gateway.keys import KeyStore
from unwalled.ledger.store import engine_for, migrate
from unwalled.testing import ScriptedUpstream

SRC = str(Path(__file__).parents[1] / "src")
EMAIL = "ana.lima@example.com"
CARD = "4111 1111 1111 1111"
AWS = "AKIAQ3EGRV5TPDLMZ7XN"
TOKEN = "ghp_Zr4V8wq2NcX9bT7mYk3LpQ0sHd6JfG1aB2cD"
PRIVATE = f"Mail {EMAIL}, card {CARD}, aws {AWS}, token {TOKEN}."
CLIENT_LOGGERS = ("openai", "anthropic", "httpx", "httpcore")


def config_for(tmp: Path, upstream_url: str) -> dict:
    return {
        "ledger": {"url": f"sqlite:///{tmp / 'ledger.db'}", "store": "full"},
        "auth": {"required": True, "cache_seconds": 0},
        "limits": {"max_body_bytes": 2048},
        "backends": {"vendor": {"type": "openai", "base_url": upstream_url + "/v1",
                                "remote": True}},
        "routes": {"ask": {"targets": ["vendor/big"], "retries": 0},
                   "echo": {"targets": ["mock/echo"]},
                   "closed": {"targets": ["mock/echo"]}},
    }


def cli_at_once(*commands: tuple[str, ...], config: Path,
                ) -> list[subprocess.CompletedProcess]:
    """Run CLI commands side by side (each pays Python's start-up alone)."""
    running = [subprocess.Popen([sys.executable, "-m", "unwalled", *args, "-c",
                                 str(config)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": SRC})
               for args in commands]
    done = []
    for args, process in zip(commands, running):
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, (args, err)
        done.append(subprocess.CompletedProcess(args, 0, out, err))
    return done


def traffic(base_url: str, secret: str, revoked: str) -> None:
    """Every path: both ingresses, streams, 401/403/413/400 and an upstream 500."""
    user = [{"role": "user", "content": PRIVATE}]
    oai = openai.OpenAI(base_url=base_url + "/v1", api_key=secret, max_retries=0)
    ant = anthropic.Anthropic(base_url=base_url, api_key=secret, max_retries=0)
    for route in ("ask", "echo"):
        oai.chat.completions.create(model=route, messages=user)
        list(oai.chat.completions.create(model=route, messages=user, stream=True))
        ant.messages.create(model=route, max_tokens=32, messages=user)
        with ant.messages.stream(model=route, max_tokens=32, messages=user) as s:
            "".join(s.text_stream)
    url = base_url + "/v1/chat/completions"
    refusals = [
        httpx.post(url, json={"model": "echo", "messages": user},
                   headers={"authorization": f"Bearer {revoked}"}),
        httpx.post(base_url + "/v1/messages", json={"model": "echo", "max_tokens": 8,
                                                    "messages": user},
                   headers={"x-api-key": revoked}),
        httpx.post(url, json={"model": "echo", "messages": user * 40},
                   headers={"authorization": f"Bearer {secret}"}),
        httpx.post(url, json={"model": "echo", "messages": [{"role": PRIVATE}]},
                   headers={"authorization": f"Bearer {secret}"}),
        httpx.post(url, json={"model": "ask", "messages": user},
                   headers={"authorization": f"Bearer {secret}"}),
    ]
    assert [r.status_code for r in refusals] == [401, 401, 413, 400, 503]


def assert_clean(text: str, *secrets: str) -> None:
    for value in (EMAIL, CARD, AWS, TOKEN, *secrets):
        assert value not in text, f"{value[:6]}... reached a log"


def test_gateway_process_and_cli_log_no_secret(tmp_path):
    upstream = ScriptedUpstream()
    with upstream.running() as upstream_url:
        upstream.reset_script(["Mailed [EMAIL_1]."] * 4 + [{"status": 500}])
        settings = config_for(tmp_path, upstream_url)
        config = tmp_path / "unwalled.yaml"
        config.write_text(yaml.safe_dump(settings))
        engine = engine_for(settings["ledger"]["url"])
        migrate(engine)  # once, before the processes below share the database
        _, gone = KeyStore(engine).create("gone")
        port = free_port()
        log_file = tmp_path / "gateway.log"
        with open(log_file, "wb") as log:
            gateway = subprocess.Popen(
                [sys.executable, "-m", "unwalled", "serve", "-c", str(config), "--port",
                 str(port), "--log-level", "debug"], stdout=log,
                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": SRC})
            try:
                made, revoked, listed = cli_at_once(
                    ("keys", "create", "logs"), ("keys", "revoke", "gone"),
                    ("keys", "list", "--all"), config=config)
                secret = made.stdout.strip()
                wait_for_port(port, 120)
                traffic(f"http://127.0.0.1:{port}", secret, gone)
            finally:
                gateway.terminate()
                gateway.wait(30)
                engine.dispose()
    logged = log_file.read_text()
    assert "DEBUG unwalled.guard" in logged and "status=401" in logged  # at DEBUG
    assert "ana.lima" not in str(upstream.requests)  # the remote got placeholders
    for output in (made.stderr, revoked.stderr, listed.stdout, listed.stderr, logged):
        assert_clean(output, secret, gone)


@pytest.fixture
def gateway_in_process(tmp_path):
    upstream = ScriptedUpstream()
    with upstream.running() as upstream_url:
        runtime = make_runtime(config_for(tmp_path, upstream_url), tmp_path)
        with GatewayServer(runtime) as server:
            yield server, upstream
        runtime.ledger.close()


def test_in_process_logs_at_debug_hold_no_secret(gateway_in_process, caplog):
    server, upstream = gateway_in_process
    upstream.reset_script(["Mailed [EMAIL_1]."] * 4 + [{"status": 500}])
    keys = server.app.state.gateway.guard.keys
    _, secret = keys.create("caplog")
    _, gone = keys.create("gone")
    keys.revoke("gone")
    with caplog.at_level(logging.DEBUG):
        traffic(server.base_url, secret, gone)
        assert server.runtime.ledger.flush()
    ours = [r for r in caplog.records if not r.name.startswith(CLIENT_LOGGERS)]
    assert {"unwalled", "unwalled.guard"} <= {r.name for r in ours}
    assert_clean("\n".join(f"{r.name} {r.getMessage()}" for r in ours), secret, gone)
