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
              log_level: Annotated[str, typer.Option(help="debug, info, warning.")] = "info",
              ) -> None:
        """Serve the OpenAI- and Anthropic-compatible gateway."""
        from unwalled.gateway import serve as run
        from unwalled.ledger.store import safe_url
        from unwalled.runtime import Runtime

        runtime = Runtime.from_config(config)
        host = host or runtime.config.server.host
        port = port if port is not None else runtime.config.server.port
        routes = ", ".join(runtime.config.routes)
        typer.echo(f"unwalled: serving routes [{routes}] on http://{host}:{port}/v1 "
                   f"(ledger: {safe_url(runtime.config.ledger.url)})", err=True)
        run(runtime, host, port, log_level=log_level)
