"""Shared fixtures: real servers on loopback, the embedded model, SDK clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
import uvicorn

from unwalled.config import parse_config
from unwalled.gateway import create_app
from unwalled.ledger import Ledger
from unwalled.runtime import Runtime
from unwalled.testing import ScriptedUpstream
from unwalled.testing.net import free_port, wait_for_port


class GatewayServer:
    """A real gateway (uvicorn) on a loopback port, in a background thread."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.port = free_port()
        self.app = create_app(runtime)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "GatewayServer":
        self.thread.start()
        wait_for_port(self.port)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def make_runtime(raw: dict[str, Any], tmp: Path, backends: dict[str, Any] | None = None,
                 ) -> Runtime:
    raw = {"ledger": {"url": f"sqlite:///{tmp / 'ledger.db'}", "store": "full"}, **raw}
    config = parse_config(raw)
    runtime = Runtime(config, Ledger(config.ledger.url))
    if backends:
        runtime.backends.update(backends)
    return runtime


@contextlib.contextmanager
def gateway_on_two_upstreams(tmp: Path, routes: dict[str, Any], **config: Any,
                             ) -> Iterator[tuple[GatewayServer, ScriptedUpstream,
                                                 ScriptedUpstream]]:
    """A gateway whose backend ``oa`` is an OpenAI-format scripted upstream and
    ``an`` an Anthropic one, serving ``routes`` (more config keys in ``config``);
    tests script the upstreams."""
    oa, an = ScriptedUpstream(), ScriptedUpstream()
    with oa.running() as oa_url, an.running() as an_url:
        runtime = make_runtime({
            **config,
            "backends": {"oa": {"type": "openai", "base_url": oa_url + "/v1"},
                         "an": {"type": "anthropic", "base_url": an_url}},
            "routes": routes}, tmp)
        with GatewayServer(runtime) as server:
            yield server, oa, an
        runtime.ledger.close()


@pytest.fixture(scope="session")
def local_backend():
    """The embedded model, loaded once for the whole run."""
    from unwalled.backends.local import LocalBackend
    from unwalled.config import builtin_backends

    backend = LocalBackend("local", builtin_backends()["local"])
    yield backend
    asyncio.run(backend.close())


@pytest.fixture(scope="session")
def embedded_gateway(tmp_path_factory, local_backend) -> Iterator[GatewayServer]:
    """The gateway on its built-in default route, the embedded model."""
    tmp = tmp_path_factory.mktemp("embedded")
    runtime = make_runtime({"routes": {"json": {
        "targets": ["local/smollm2-135m"], "max_tokens": 64}}}, tmp,
        backends={"local": local_backend})
    with GatewayServer(runtime) as server:
        yield server
    runtime.ledger.close()


@pytest.fixture
def upstream() -> Iterator[tuple[ScriptedUpstream, str]]:
    scripted = ScriptedUpstream()
    with scripted.running() as base_url:
        yield scripted, base_url


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory) -> Iterator[str]:
    """llama-cpp-python's own OpenAI-compatible server on the embedded model."""
    from unwalled.backends.local import embedded_model_path

    port = free_port()
    log = open(tmp_path_factory.mktemp("llama-server") / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_model_path()),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
         "--model_alias", "smollm2"],
        stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"})
    try:
        wait_for_port(port, 120)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
