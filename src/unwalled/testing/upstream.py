"""A scripted upstream that speaks the OpenAI and Anthropic wire formats exactly.

Shipped as a feature: point a route at it to test your application against
answers, tool calls and faults you choose, without a real provider::

    upstream = ScriptedUpstream([
        "hello",                                       # a plain answer
        {"tool_calls": [{"name": "get", "arguments": {"id": 1}}]},
        {"status": 429, "retry_after": 1},             # a fault
        {"truncate": True},                            # a stream cut short
    ])
    with upstream.running() as base_url:               # http://127.0.0.1:PORT
        ...

Each request takes the next step of the script (the last step repeats). A
step's keys: ``text``, ``tool_calls``, ``status`` (+ ``retry_after``,
``message``), ``delay`` (seconds before answering), ``chunk_delay`` (seconds
between streamed pieces), ``malformed`` (invalid JSON), ``truncate`` (stream
cut before its end), ``reset`` (connection dropped), ``redirect`` (a 307 to
that address), ``stream_error`` (a stream that sends an error event with this
message instead of its answer), ``omit_usage``,
``keepalive`` (SSE comments and blank keep-alives between events),
``finish`` (finish_reason or stop_reason, in the wire's own words),
``write_size`` (stream bytes written in pieces of this size, whatever the event
boundaries), ``usage`` (``{prompt_tokens, completion_tokens}``).

Run one from a shell: ``python -m unwalled.testing.upstream --port 9000 --text hi``,
or with ``--script steps.json --cycle`` to play a list of steps (faults
included) over and over, e.g. under a soak test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading
import uuid
from typing import Any, Iterator

import orjson
from aiohttp import web

Step = dict[str, Any]


class ScriptedUpstream:
    def __init__(self, script: list[Any] | None = None, *, cycle: bool = False) -> None:
        self.script: list[Step] = [s if isinstance(s, dict) else {"text": s}
                                   for s in (script or [{"text": "ok"}])]
        self.cycle = cycle
        """Start the script over at its end instead of repeating the last step."""
        self.requests: list[dict[str, Any]] = []
        """Every request body received, in order."""
        self.headers: list[dict[str, str]] = []
        self._next = 0
        self._lock = threading.Lock()
        self.port = 0

    # ---- the script ----

    def step(self) -> Step:
        with self._lock:
            if self.cycle:
                step = self.script[self._next % len(self.script)]
            else:
                step = self.script[min(self._next, len(self.script) - 1)]
            self._next += 1
            return step

    def reset_script(self, script: list[Any]) -> None:
        with self._lock:
            self.script = [s if isinstance(s, dict) else {"text": s} for s in script]
            self._next = 0
            self.requests.clear()
            self.headers.clear()

    # ---- the server ----

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024,
                              middlewares=[_quiet_when_client_leaves])
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)
        app.router.add_get("/v1/models", self._models)
        return app

    @contextlib.contextmanager
    def running(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Serve on a background thread; yields the base URL."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        runner = web.AppRunner(self.app(), access_log=None)

        async def start() -> None:
            await runner.setup()
            site = web.TCPSite(runner, host, port)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()

        thread = threading.Thread(target=loop.run_forever, daemon=True,
                                  name="scripted-upstream")
        thread.start()
        asyncio.run_coroutine_threadsafe(start(), loop).result(10)
        ready.wait(10)
        try:
            yield f"http://{host}:{self.port}"
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            loop.close()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": "scripted", "object": "model", "owned_by": "unwalled"}]})

    async def _receive(self, request: web.Request) -> tuple[dict[str, Any], Step]:
        body = await request.json(loads=orjson.loads)
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        step = self.step()
        if step.get("delay"):
            await asyncio.sleep(float(step["delay"]))
        return body, step

    async def _fault(self, request: web.Request, step: Step,
                     error_body: dict[str, Any]) -> web.StreamResponse | None:
        if step.get("reset"):
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError  # the connection is gone
        if step.get("status"):
            headers = {}
            if step.get("retry_after") is not None:
                headers["retry-after"] = str(step["retry_after"])
            return web.json_response(error_body, status=int(step["status"]),
                                     headers=headers)
        if step.get("malformed"):
            return web.Response(body=b'{"choices": [ {"mess', content_type="application/json")
        if step.get("redirect"):
            return web.Response(status=307, headers={"location": str(step["redirect"])})
        return None

    # ---- OpenAI ----

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        body, step = await self._receive(request)
        fault = await self._fault(request, step, {"error": {
            "message": step.get("message", "scripted failure"), "type": "api_error"}})
        if fault is not None:
            return fault
        model = body.get("model", "scripted")
        calls = _calls(step)
        usage = _usage(step, body)
        if body.get("stream"):
            return await self._openai_stream(request, step, model, calls, usage)
        message: dict[str, Any] = {"role": "assistant", "content": step.get("text", "")}
        if calls:
            message["tool_calls"] = [{"id": c["id"], "type": "function", "function": {
                "name": c["name"], "arguments": c["arguments"]}} for c in calls]
        answer: dict[str, Any] = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
            "created": 0, "model": model,
            "choices": [{"index": 0, "message": message,
                         "finish_reason": _finish(step, calls, "tool_calls", "stop")}]}
        if not step.get("omit_usage"):
            answer["usage"] = {**usage, "total_tokens": sum(usage.values())}
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def _openai_stream(self, request: web.Request, step: Step, model: str,
                             calls: list[dict[str, Any]],
                             usage: dict[str, int]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        base = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk",
                "created": 0, "model": model}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return _frame({**base, "choices": [{"index": 0, "delta": delta,
                                                "finish_reason": finish}]})

        frames = [chunk({"role": "assistant", "content": ""})]
        if step.get("stream_error"):  # an error event where the answer would be
            frames.append(_frame({"error": {"message": str(step["stream_error"]),
                                            "type": "server_error"}}))
            await self._send(request, response, frames, step)
            return response
        frames += [chunk({"content": piece}) for piece in _pieces(step.get("text", ""))]
        for i, call in enumerate(calls):
            frames.append(chunk({"tool_calls": [{"index": i, "id": call["id"],
                                                 "type": "function", "function": {
                                                     "name": call["name"],
                                                     "arguments": ""}}]}))
            for piece in _pieces(call["arguments"], 7):
                frames.append(chunk({"tool_calls": [{"index": i, "function": {
                    "arguments": piece}}]}))
        frames.append(chunk({}, _finish(step, calls, "tool_calls", "stop")))
        if not step.get("omit_usage"):
            frames.append(_frame({**base, "choices": [], "usage": {
                **usage, "total_tokens": sum(usage.values())}}))
        frames.append(b"data: [DONE]\n\n")
        await self._send(request, response, frames, step)
        return response

    # ---- Anthropic ----

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        body, step = await self._receive(request)
        fault = await self._fault(request, step, {"type": "error", "error": {
            "type": "overloaded_error" if step.get("status") == 529 else "api_error",
            "message": step.get("message", "scripted failure")}})
        if fault is not None:
            return fault
        model = body.get("model", "scripted")
        calls = _calls(step, prefix="toolu_")
        usage = _usage(step, body)
        text = step.get("text", "")
        stop = _finish(step, calls, "tool_use", "end_turn")
        if body.get("stream"):
            return await self._anthropic_stream(request, step, model, text, calls,
                                                usage, stop)
        content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
        content += [{"type": "tool_use", "id": c["id"], "name": c["name"],
                     "input": orjson.loads(c["arguments"])} for c in calls]
        answer: dict[str, Any] = {
            "id": f"msg_{uuid.uuid4().hex[:12]}", "type": "message", "role": "assistant",
            "model": model, "content": content, "stop_reason": stop,
            "stop_sequence": None}
        if not step.get("omit_usage"):
            answer["usage"] = {"input_tokens": usage["prompt_tokens"],
                               "output_tokens": usage["completion_tokens"]}
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def _anthropic_stream(self, request: web.Request, step: Step, model: str,
                                text: str, calls: list[dict[str, Any]],
                                usage: dict[str, int], stop: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        omit = step.get("omit_usage")
        start_usage = {} if omit else {"input_tokens": usage["prompt_tokens"],
                                       "output_tokens": 1}
        frames = [_frame({"type": "message_start", "message": {
            "id": "msg_scripted", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            **({"usage": start_usage} if start_usage else {})}}, "message_start"),
            _frame({"type": "ping"}, "ping")]
        if step.get("stream_error"):  # an error event where the answer would be
            frames.append(_frame({"type": "error", "error": {
                "type": "api_error", "message": str(step["stream_error"])}}, "error"))
            await self._send(request, response, frames, step)
            return response
        index = 0
        if text:
            frames.append(_frame({"type": "content_block_start", "index": index,
                                  "content_block": {"type": "text", "text": ""}},
                                 "content_block_start"))
            frames += [_frame({"type": "content_block_delta", "index": index,
                               "delta": {"type": "text_delta", "text": piece}},
                              "content_block_delta") for piece in _pieces(text)]
            frames.append(_frame({"type": "content_block_stop", "index": index},
                                 "content_block_stop"))
            index += 1
        for call in calls:
            frames.append(_frame({"type": "content_block_start", "index": index,
                                  "content_block": {"type": "tool_use", "id": call["id"],
                                                    "name": call["name"], "input": {}}},
                                 "content_block_start"))
            frames += [_frame({"type": "content_block_delta", "index": index,
                               "delta": {"type": "input_json_delta",
                                         "partial_json": piece}}, "content_block_delta")
                       for piece in _pieces(call["arguments"], 7)]
            frames.append(_frame({"type": "content_block_stop", "index": index},
                                 "content_block_stop"))
            index += 1
        delta: dict[str, Any] = {"type": "message_delta",
                                 "delta": {"stop_reason": stop, "stop_sequence": None}}
        if not omit:
            delta["usage"] = {"output_tokens": usage["completion_tokens"]}
        frames.append(_frame(delta, "message_delta"))
        frames.append(_frame({"type": "message_stop"}, "message_stop"))
        await self._send(request, response, frames, step)
        return response

    async def _send(self, request: web.Request, response: web.StreamResponse,
                    frames: list[bytes], step: Step) -> None:
        if step.get("truncate"):
            frames = frames[: max(1, len(frames) // 2)]
            frames[-1] = frames[-1][: len(frames[-1]) // 2]
        delay = float(step.get("chunk_delay", 0))
        if step.get("keepalive"):
            frames = [b": keep-alive\n\n" + frame + b"\n" for frame in frames]
        if step.get("write_size"):
            # Writes that ignore event boundaries: events split across reads,
            # or several in one read when the size is large.
            body, size = b"".join(frames), int(step["write_size"])
            frames = [body[i:i + size] for i in range(0, len(body), size)]
        for frame in frames:
            await response.write(frame)
            if delay:
                await asyncio.sleep(delay)
        if step.get("truncate"):
            if request.transport is not None:
                request.transport.close()  # cut: no last event, no end of body
            return
        await response.write_eof()


@web.middleware
async def _quiet_when_client_leaves(request: web.Request, handler: Any) -> Any:
    try:
        return await handler(request)
    except ConnectionResetError:
        # The client gave up (a gateway's timeout, say): nobody is left to answer.
        raise asyncio.CancelledError from None


def _frame(data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


def _pieces(text: str, size: int = 4) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def _calls(step: Step, prefix: str = "call_") -> list[dict[str, Any]]:
    calls = []
    for i, call in enumerate(step.get("tool_calls") or []):
        arguments = call.get("arguments", {})
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments).decode()
        calls.append({"id": call.get("id", f"{prefix}{i}"), "name": call["name"],
                      "arguments": arguments})
    return calls


def _finish(step: Step, calls: list[dict[str, Any]], tool: str, plain: str) -> Any:
    """The step's ``finish`` (in the wire's own words, sent as given, so that a
    test can send a wrong type too), else what the answer implies."""
    given = step.get("finish")
    return given if given is not None else (tool if calls else plain)


def _usage(step: Step, body: dict[str, Any]) -> dict[str, int]:
    given = step.get("usage") or {}
    words = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    return {"prompt_tokens": int(given.get("prompt_tokens", words + 5)),
            "completion_tokens": int(given.get("completion_tokens",
                                               max(1, len(step.get("text", "")) // 4)))}


def main() -> None:
    parser = argparse.ArgumentParser(description="A scripted OpenAI/Anthropic upstream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--text", default="ok", help="The fixed answer.")
    parser.add_argument("--script", help="A JSON file holding a list of steps.")
    parser.add_argument("--cycle", action="store_true",
                        help="Start the script over at its end.")
    args = parser.parse_args()
    steps = [{"text": args.text}]
    if args.script:
        with open(args.script, "rb") as file:
            steps = orjson.loads(file.read())
    upstream = ScriptedUpstream(steps, cycle=args.cycle)
    upstream.requests = _Discard()  # a long-running server keeps no history
    upstream.headers = _Discard()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(f"scripted upstream on http://{args.host}:{args.port} (OpenAI: /v1, "
          f"Anthropic: /v1/messages), {len(steps)} step(s)"
          f"{', cycling' if args.cycle else ''}; Ctrl-C stops it", flush=True)
    web.run_app(upstream.app(), host=args.host, port=args.port, access_log=None,
                print=lambda *_: None)


class _Discard(list):  # type: ignore[type-arg]
    def append(self, item: Any) -> None:
        return None


if __name__ == "__main__":
    main()
