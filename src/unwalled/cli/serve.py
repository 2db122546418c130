"""``unwalled serve``: run the gateway."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from unwalled.cli.options import ConfigOption


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(config: ConfigOption = None,
              host: Annotated[Optional[str], typer.Option(help="Address to bind.")] = None,
              port: Annotated[Optional[int], typer.Option(help="Port to bind.")] = None,
              log_level: Annotated[str, typer.Option(
                  help="debug (adds a line per request), info, warning.")] = "info",
              workers: Annotated[Optional[int], typer.Option(
                  min=1, help="Worker processes sharing the port (default: "
                              "server.workers, 1).")] = None,
              ) -> None:
        """Serve the OpenAI- and Anthropic-compatible gateway."""
        from unwalled.gateway import serve as run
        from unwalled.ledger.store import safe_url
        from unwalled.runtime import Runtime

        runtime = Runtime.from_config(config)
        host = host or runtime.config.server.host
        port = port if port is not None else runtime.config.server.port
        routes = ", ".join(runtime.config.routes)
        count = workers or runtime.config.server.workers
        typer.echo(f"unwalled: serving routes [{routes}] on http://{host}:{port}/v1 "
                   f"(ledger: {safe_url(runtime.config.ledger.url)}"
                   f"{f'; {count} workers' if count > 1 else ''})", err=True)
        workers = workers or runtime.config.server.workers
        run(runtime, host, port, log_level=log_level, workers=workers,
            config_path=str(config) if config else None)
