"""Shared pieces of the benchmark scripts: processes on loopback ports and wrk."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from unwalled.testing.net import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


@contextmanager
def process(args: list[str], port: int, log: Path) -> Iterator[subprocess.Popen]:
    """A server process, stopped (SIGTERM, then SIGKILL) when the block ends."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            wait_for_port(port)
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextmanager
def upstream(text: str = "ok") -> Iterator[str]:
    """The fast fixed-answer OpenAI-compatible upstream."""
    port = free_port()
    with workdir() as tmp, process([PYTHON, "-m", "unwalled.testing.upstream", "--port",
                                    str(port), "--text", text], port, tmp / "up.log"):
        yield f"http://127.0.0.1:{port}"


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      default_type application/json;
      return 200 '{body}';
    }}
  }}
}}
"""
FIXED_ANSWER = ('{"id":"chatcmpl-fixed","object":"chat.completion","created":0,'
                '"model":"fixed","choices":[{"index":0,"message":{"role":"assistant",'
                '"content":"ok"},"finish_reason":"stop"}],'
                '"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}')


@contextmanager
def fast_upstream() -> Iterator[tuple[str, str]]:
    """The fastest fixed-answer upstream at hand, and its name: nginx answering
    every POST with one chat completion (``apt-get install -y nginx-light``),
    else the Python one. A slow upstream hides what the proxies in front of it
    cost, since all of them share the same two cores."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx"
                                      if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        print("nginx not found (apt-get install -y nginx-light): using the Python "
              "upstream, which is slower.", file=sys.stderr)
        with upstream() as url:
            yield url, "unwalled.testing.upstream (Python)"
        return
    port = free_port()
    with workdir() as tmp:
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, body=FIXED_ANSWER))
        with process([nginx, "-c", str(conf), "-p", str(tmp)], port, tmp / "nginx.log"):
            yield f"http://127.0.0.1:{port}", "nginx (fixed answer)"


@contextmanager
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="unwalled-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, body: str, connections: int, seconds: int,
        headers: dict[str, str] | None = None) -> WrkResult:
    """Load ``url`` with POSTs of ``body`` from wrk; latency percentiles in ms."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    lines = ['wrk.method = "POST"', f"wrk.body = [[{body}]]",
             'wrk.headers["Content-Type"] = "application/json"']
    for key, value in (headers or {}).items():
        lines.append(f'wrk.headers["{key}"] = "{value}"')
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("\n".join(lines) + "\n")
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
                          "-s", script.name, url], capture_output=True, text=True,
                         check=True).stdout
    os.unlink(script.name)
    return _parse(out)


def _parse(out: str) -> WrkResult:
    def latency(pct: str) -> float:
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert match, out
        return float(match.group(1)) * _UNITS[match.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", out)
    failed = int(errors.group(1)) if errors else 0
    if socket_errors:
        failed += sum(int(g) for g in socket_errors.groups())
    return WrkResult(rps, latency("50"), latency("99"), total, failed)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
