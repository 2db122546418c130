"""Running the gateway under uvicorn (uvloop and httptools where installed)."""

from __future__ import annotations

import fcntl
import gc
import logging
import os
import shutil
import tempfile
import threading
import time
from typing import Any

from unwalled.runtime import Runtime


class SecondCachingFormatter(logging.Formatter):
    """Formats the date once a second: at thousands of lines a second, strftime
    was a tenth of the cost of a request."""

    _second = -1
    _text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._text},{int(record.msecs):03d}"


class BufferedStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes log lines to stderr through a buffer flushed four times a second
    (and at once for warnings and errors): one write call per line was the
    single largest cost of the per-request INFO line."""

    def __init__(self) -> None:
        super().__init__(open(2, "w", buffering=1 << 16, encoding="utf-8",
                              closefd=False))
        self._ticker = threading.Thread(target=self._tick, daemon=True,
                                        name="log-flusher")
        self._ticker.start()

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        if record.levelno >= logging.WARNING:
            self.force_flush()

    def flush(self) -> None:
        """Left to the ticker: StreamHandler calls this after every line."""

    def force_flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self.stream.flush()

    def _tick(self) -> None:
        while True:
            time.sleep(0.25)
            self.force_flush()

    def close(self) -> None:
        self.force_flush()
        super().close()


def configure_logging(log_level: str) -> BufferedStderrHandler:
    handler = BufferedStderrHandler()
    handler.setFormatter(SecondCachingFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        handlers=[handler], force=True)
    return handler


def tune_gc() -> None:
    """Once the app is built: keep the start-up objects (config, models, modules)
    out of every later collection, and collect the young generation less often.
    A proxied request allocates many short-lived objects; with Python's default
    thresholds the collector ran every few requests and cost a fifth of the
    gateway's own time per request."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 100)


GC_YOUNG_THRESHOLD = 20_000
"""Allocations between young collections (Python's default: 700)."""


def _uvicorn_options(log_level: str) -> dict[str, Any]:
    return dict(loop="auto", http="auto", access_log=False, log_level=log_level,
                timeout_graceful_shutdown=30, lifespan="on", backlog=4096)


def serve(runtime: Runtime, host: str, port: int, *, log_level: str = "info",
          workers: int = 1, config_path: str | None = None) -> None:
    """Serve until SIGINT or SIGTERM; in-flight requests finish first.

    With ``workers`` above 1, that many processes share the port, each with
    its own runtime built from ``config_path``; ``runtime`` is then only used
    to have migrated the ledger once, before any worker starts.
    """
    if workers > 1:
        if runtime.ledger is not None:
            runtime.ledger.close()
        return _serve_workers(host, port, workers, log_level, config_path)
    import uvicorn

    handler = configure_logging(log_level)
    config = uvicorn.Config(_app(runtime), host=host, port=port,
                            **_uvicorn_options(log_level))
    try:
        uvicorn.Server(config).run()
    finally:
        handler.force_flush()


# ---- several worker processes ----

WORKER_CONFIG = "UNWALLED_WORKER_CONFIG"
WORKER_LOG_LEVEL = "UNWALLED_WORKER_LOG_LEVEL"
SINGLETONS = "UNWALLED_WORKER_SINGLETONS"


def _serve_workers(host: str, port: int, workers: int, log_level: str,
                   config_path: str | None) -> None:
    """uvicorn's supervisor runs ``workers`` processes on one socket, restarting
    any that dies. Metrics are summed over workers (prometheus_client's
    multiprocess mode); per-process state (circuit breakers, key limits) is
    shared only through ``state.redis_url``, as between replicas."""
    import uvicorn

    shared = tempfile.mkdtemp(prefix="unwalled-workers-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared
    os.environ[SINGLETONS] = shared
    os.environ[WORKER_CONFIG] = config_path or ""
    os.environ[WORKER_LOG_LEVEL] = log_level
    try:
        uvicorn.run("unwalled.gateway.server:worker_app", factory=True, host=host,
                    port=port, workers=workers, **_uvicorn_options(log_level))
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def worker_app() -> Any:
    """The app of one worker process (the factory uvicorn calls in each)."""
    # The runtime first, as with one process: configured first, logging would
    # print Alembic's INFO lines from opening the ledger, in every worker.
    runtime = Runtime.from_config(os.environ.get(WORKER_CONFIG) or None)
    configure_logging(os.environ.get(WORKER_LOG_LEVEL, "info"))
    return _app(runtime)


def _app(runtime: Runtime) -> Any:
    """The gateway app on ``runtime``, with the collector tuned once it is built."""
    from unwalled.gateway.app import create_app

    app = create_app(runtime)
    tune_gc()
    return app


def claim(name: str) -> bool:
    """True in exactly one worker (the first to ask), and always with one
    process: for jobs that must not run once per worker, like drift checks."""
    folder = os.environ.get(SINGLETONS)
    if not folder:
        return True
    handle = open(os.path.join(folder, f"{name}.lock"), "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return False
    _held.append(handle)  # the lock lasts as long as this process
    return True


_held: list[Any] = []
