"""Running the gateway under uvicorn (uvloop and httptools where installed)."""

from __future__ import annotations

import logging

from unwalled.runtime import Runtime


def serve(runtime: Runtime, host: str, port: int, *, log_level: str = "info",
          ready: object = None) -> None:
    """Serve until SIGINT or SIGTERM; in-flight requests finish first."""
    import uvicorn

    from unwalled.gateway.app import create_app

    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app(runtime)
    config = uvicorn.Config(app, host=host, port=port, loop="auto", http="auto",
                            access_log=False, log_level=log_level,
                            timeout_graceful_shutdown=30, lifespan="on",
                            backlog=4096)
    uvicorn.Server(config).run()
