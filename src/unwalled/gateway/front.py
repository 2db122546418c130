"""The gateway's front door: the completion endpoints as plain ASGI.

``POST /v1/chat/completions`` and ``POST /v1/messages`` carry nearly all of a
gateway's traffic, so they skip the web framework: the front door reads the
request into an ``Incoming`` and hands it straight to the ``Gateway``. Every
other path (models, health, metrics, the OpenAPI document, and any unknown
path with its 404 or 405) goes to the Starlette app behind it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Mapping

from starlette.datastructures import Headers

from unwalled.errors import ClientLeftError, LimitExceededError

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Incoming:
    """One HTTP request as the gateway sees it: path, headers (looked up by
    lower-case name, decoded only when asked for) and a body read on demand
    within a size limit."""

    __slots__ = ("path", "headers", "_receive")

    def __init__(self, path: str, headers: Mapping[str, str],
                 receive: Receive | None = None) -> None:
        self.path = path
        self.headers = headers
        self._receive = receive

    @classmethod
    def from_scope(cls, scope: Scope, receive: Receive) -> "Incoming":
        return cls(scope["path"], Headers(scope=scope), receive)

    async def body(self, limit: int) -> bytes:
        """The whole body; ``LimitExceededError`` (413) past ``limit`` bytes."""
        declared = self.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large(int(declared), limit)
        if self._receive is None:
            return b""
        chunks, size = [], 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientLeftError("the client went away before sending its body.")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large(size, limit)
            chunks.append(chunk)
            if not message.get("more_body"):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


    async def departure(self) -> None:
        """Return once the client has gone away (after the body was read)."""
        if self._receive is None:
            await asyncio.Event().wait()  # no connection to lose: wait for ever
        while (await self._receive())["type"] != "http.disconnect":
            pass


class ClientWatch:
    """Cancels the task serving a request if its client goes away before the
    answer is ready, so that no model keeps working for nobody. The runtime
    records such a request as a 499 when the cancellation reaches it; streams
    are watched by the streaming response itself once it has begun.

    The watching starts only once an answer has taken ``after`` seconds: most
    answers from a fast upstream come sooner, and skip its cost (a task)."""

    __slots__ = ("left", "_http", "_serving", "_timer", "_task")

    def __init__(self, http: Incoming, after: float = 0.05) -> None:
        self.left = False
        self._http = http
        self._serving = asyncio.current_task()
        self._task: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(after, self._start)

    def _start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        await self._http.departure()
        self.left = True
        if self._serving is not None:
            self._serving.cancel()

    def stop(self) -> None:
        self._timer.cancel()
        if self._task is not None:
            self._task.cancel()


def too_large(size: int, limit: int) -> LimitExceededError:
    return LimitExceededError(f"the request body is {size} bytes, over the limit "
                              f"limits.max_body_bytes of {limit}. Send a smaller "
                              "request.", param="body")


class FrontDoor:
    """ASGI app: the completion paths to their handler, the rest to ``behind``."""

    def __init__(self, behind: Any,
                 handlers: dict[str, Callable[[Incoming], Awaitable[Any]]],
                 in_flight: Any) -> None:
        self.behind = behind
        self.handlers = handlers
        self.state = behind.state
        self.in_flight = in_flight
        """A gauge of the completion requests being served, streams included."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self.handlers.get(scope["path"])
            if handler is not None:
                self.in_flight.inc()
                try:
                    response = await handler(Incoming.from_scope(scope, receive))
                    await response(scope, receive, send)
                finally:
                    self.in_flight.dec()
                return
        await self.behind(scope, receive, send)
