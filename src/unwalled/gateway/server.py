"""Running the gateway under uvicorn (uvloop and httptools where installed)."""

from __future__ import annotations

import logging
import threading
import time

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


def serve(runtime: Runtime, host: str, port: int, *, log_level: str = "info",
          ready: object = None) -> None:
    """Serve until SIGINT or SIGTERM; in-flight requests finish first."""
    import uvicorn

    from unwalled.gateway.app import create_app

    handler = BufferedStderrHandler()
    handler.setFormatter(SecondCachingFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        handlers=[handler])
    app = create_app(runtime)
    config = uvicorn.Config(app, host=host, port=port, loop="auto", http="auto",
                            access_log=False, log_level=log_level,
                            timeout_graceful_shutdown=30, lifespan="on",
                            backlog=4096)
    try:
        uvicorn.Server(config).run()
    finally:
        handler.force_flush()
