"""For benchmarks that stop and restart a gateway themselves (``harness.process``
ties one to a block): start from a config dict, signal by process id, RSS."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import yaml

from harness import PYTHON, ROOT, free_port, wait_for_port

__all__ = ["free_port", "rss_mb", "start_gateway", "stop"]


def start_gateway(config: dict[str, Any], workdir: Path, port: int,
                  log_name: str = "gateway.log") -> subprocess.Popen[bytes]:
    """``unwalled serve`` on ``config`` in a process of its own."""
    path = workdir / "unwalled.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    log = open(workdir / log_name, "ab")
    proc = subprocess.Popen(
        [PYTHON, "-m", "unwalled", "serve", "--config", str(path),
         "--port", str(port), "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    wait_for_port(port)
    return proc


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
         timeout: float = 60.0) -> int:
    """Signal one process we started and wait for it; kill it if it hangs."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")
