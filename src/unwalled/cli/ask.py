"""``unwalled ask``: one prompt through a route, from the terminal."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated, Optional

import typer

from unwalled.cli.options import ConfigOption


def register(app: typer.Typer) -> None:
    @app.command()
    def ask(prompt: Annotated[Optional[str], typer.Argument(
                help="The prompt; read from stdin when omitted.")] = None,
            route: Annotated[str, typer.Option("--route", "-r", help="Route to call.")]
            = "default",
            system: Annotated[Optional[str], typer.Option(help="A system prompt.")] = None,
            max_tokens: Annotated[Optional[int], typer.Option(help="Answer length cap.")]
            = None,
            temperature: Annotated[Optional[float], typer.Option()] = None,
            stream: Annotated[bool, typer.Option(help="Print as it arrives.")] = True,
            config: ConfigOption = None) -> None:
        """Send one prompt through a route and print the answer."""
        text = prompt if prompt is not None else sys.stdin.read()
        if not text.strip():
            raise typer.BadParameter("give a prompt as an argument or on stdin.")
        asyncio.run(_ask(text, route, system, max_tokens, temperature, stream, config))


async def _ask(text: str, route: str, system: str | None, max_tokens: int | None,
               temperature: float | None, stream: bool, config: str | None) -> None:
    from unwalled.backends.base import ChatRequest, Message
    from unwalled.runtime import CallInfo, Runtime

    runtime = Runtime.from_config(config)
    messages = ([Message("system", system)] if system else []) + [Message("user", text)]
    request = ChatRequest(messages=messages, max_tokens=max_tokens,
                          temperature=temperature)
    info = CallInfo(ingress="cli")
    try:
        if stream:
            async for piece in runtime.stream(route, request, info):
                sys.stdout.write(piece.text)
                sys.stdout.flush()
            sys.stdout.write("\n")
        else:
            answer = await runtime.complete(route, request, info)
            sys.stdout.write(answer.text + "\n")
    finally:
        await runtime.close()
