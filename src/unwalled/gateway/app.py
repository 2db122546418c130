"""The gateway: an ASGI app with OpenAI and Anthropic ingress.

    POST /v1/chat/completions   OpenAI chat completions, SSE streaming, tool calls
    POST /v1/messages           Anthropic Messages, SSE streaming, tool use
    GET  /v1/models             the routes, as models
    GET  /healthz               liveness and readiness
    GET  /metrics               Prometheus
    GET  /openapi.json          this API's OpenAPI description

A request names a route as its ``model``. Errors come back in the ingress's own
error format with the right status, and every request reaches the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from unwalled.backends.base import (
    ChatRequest, ChatResponse, Delta, Usage, estimate_usage, output_text,
)
from unwalled.contracts.book import HEADER as CONTRACT_HEADER
from unwalled.errors import (
    ContractError, RequestError, UnknownRouteError, UnwalledError, as_unwalled,
)
from unwalled.gateway import contracts
from unwalled.gateway.front import ClientWatch, FrontDoor, Incoming
from unwalled.gateway.guard import Guard
from unwalled.gateway.metrics import Metrics
from unwalled.gateway.quotas import Reservation
from unwalled.protocols import anthropic as anthropic_wire
from unwalled.protocols import openai as openai_wire
from unwalled.runtime import CLIENT_LEFT, CallInfo, Runtime

log = logging.getLogger("unwalled.gateway")
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def json_response(body: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers,
                    media_type="application/json")


class Gateway:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.metrics = Metrics(lambda: runtime.config.routes)
        runtime.listeners.append(self.metrics.observe)
        self.guard = Guard(runtime)

    # ---- shared steps ----

    async def read_json(self, http: Incoming) -> Any:
        """The body as JSON, within the size, depth and message-count limits."""
        return await self.guard.read_body(http)

    def reject(self, info: CallInfo, error: UnwalledError, route: str | None,
               request: ChatRequest | None, *, stream: bool = False) -> None:
        """Record a request refused before it reached the router."""
        self.runtime.record_failure(route, request, info, [], error, stream=stream)

    # ---- both ingresses: parse, route, answer in the ingress's own format ----

    async def chat_completions(self, http: Incoming) -> Response:
        return await self.serve(http, OPENAI)

    async def messages(self, http: Incoming) -> Response:
        return await self.serve(http, ANTHROPIC)

    async def serve(self, http: Incoming, wire: "Wire") -> Response:
        """One request through either ingress: ``wire`` holds all that differs.
        Whatever is added between parsing and answering (a contract on the
        answer, say) is written once here and holds for both ingresses alike;
        ``_stream`` also streams pieces of an answer that was checked whole."""
        info = CallInfo(ingress=wire.name, request_id=wire.new_id())
        route = parsed = None
        try:
            key = self.guard.authenticate(http)
            body = await self.read_json(http)
            route = body.get("model") if isinstance(body, dict) else None
            parsed = wire.parse(body)
            config = self.runtime.router.route(parsed.route)
            self.guard.check_scope(key, http, info, parsed.route)
            verifier = self.runtime.contracts.for_request(
                parsed.route, http.headers.get(CONTRACT_HEADER))
            held = await self.guard.admit(key, info, config, parsed.request, verifier)
        except Exception as exc:
            error = as_unwalled(exc, "reading the request", log)
            self.reject(info, error, route if isinstance(route, str) else None,
                        parsed.request if parsed else None)
            return wire.error_response(error)
        watch = ClientWatch(http)
        try:
            return await self._answer(parsed, info, wire, verifier, held)
        except asyncio.CancelledError:
            if not watch.left:
                raise  # the server is stopping, not the client leaving
            asyncio.current_task().uncancel()
            # The key's hold is swapped for what was spent (every path settles
            # on its own way out too; settling twice is a no-op).
            await self.guard.settle(held)
            return Response(status_code=CLIENT_LEFT)  # recorded; nobody reads it
        finally:
            watch.stop()

    async def _answer(self, parsed: Any, info: CallInfo, wire: "Wire", verifier: Any,
                      held: Reservation | None) -> Response:
        if verifier is not None:
            return await self._under_contract(parsed, info, wire, verifier, held)
        if parsed.stream:
            return await self._stream(parsed, info, wire, held=held)
        try:
            answer = await self.runtime.complete(parsed.route, parsed.request, info)
        except UnwalledError as error:
            return wire.error_response(error)
        finally:
            await self.guard.settle(held)
        return json_response(wire.response_body(answer, parsed.route, info.request_id))

    async def _under_contract(self, parsed: Any, info: CallInfo, wire: "Wire",
                              verifier: Any, held: Reservation | None) -> Response:
        """The answer judged whole first; then sent, or refused with a 422."""
        try:
            outcome = await contracts.run(self.runtime, parsed.route, parsed, info,
                                          verifier)
        except UnwalledError as error:
            await self.guard.settle(held)
            if isinstance(error, ContractError):
                body = contracts.rejected_body(error, wire.error_body(error))
                return json_response(body, error.status, contracts.error_headers(error))
            return wire.error_response(error)
        headers = contracts.headers(outcome.verdict)
        if parsed.stream:
            return await self._stream(parsed, info,
                                      contracts.with_verdict(wire, outcome.verdict),
                                      contracts.replay(outcome.response), headers, held)
        await self.guard.settle(held)
        body = wire.response_body(outcome.response, parsed.route, info.request_id)
        body["unwalled"] = contracts.extension(outcome.verdict)
        return json_response(body, headers=headers)

    async def _stream(self, parsed: Any, info: CallInfo, wire: "Wire",
                      pieces: AsyncIterator[Delta] | None = None,
                      headers: dict[str, str] | None = None,
                      held: Reservation | None = None) -> Response:
        """Stream an answer in the ingress's format: from the route, or from
        ``pieces`` a caller already holds (e.g. an answer checked whole first).
        ``held`` is the key's hold on its limits, settled when the stream ends."""
        pieces = pieces or self.runtime.stream(parsed.route, parsed.request, info)
        try:
            first = await anext(pieces)
        except UnwalledError as error:
            await self.guard.settle(held)
            return wire.error_response(error)
        writer = wire.stream_writer(parsed, info.request_id)

        async def frames() -> AsyncIterator[bytes]:
            usage: Usage | None = None
            finish, written = "stop", []
            yield writer.start()
            try:
                async for piece in _chain(first, pieces):
                    usage = piece.usage or usage
                    finish = piece.finish_reason or finish
                    written.append(output_text(piece))
                    out = writer.delta(piece)
                    if out:
                        yield out
            except UnwalledError as error:
                yield writer.error(error)
                return
            finally:
                await pieces.aclose()
                await self.guard.settle(held)
            if usage is None:  # every backend sends usage; count it if one did not
                usage = estimate_usage(parsed.request, "".join(written))
            yield writer.finish(finish, usage)

        return StreamingResponse(frames(), media_type="text/event-stream",
                                 headers={**SSE_HEADERS, **(headers or {})})

    # ---- the rest ----

    def _visible_routes(self, http: Request) -> dict[str, Any]:
        """The routes the request's key may see (all, without keys)."""
        routes = self.runtime.config.routes
        key = self.guard.authenticate(Incoming(http.url.path, http.headers))
        if key is not None and key.routes is not None:
            routes = {name: r for name, r in routes.items() if name in key.routes}
        return routes

    async def models(self, http: Request) -> Response:
        try:
            routes = self._visible_routes(http)
        except UnwalledError as error:
            return openai_error(error)
        # One list both SDKs read: OpenAI's fields, and Anthropic's (type,
        # display_name, created_at, and the page's has_more/first_id/last_id).
        names = list(routes)
        return json_response({
            "object": "list", "has_more": False,
            "first_id": names[0] if names else None,
            "last_id": names[-1] if names else None,
            "data": [_model_entry(name, route) for name, route in routes.items()]})

    async def model(self, http: Request) -> Response:
        """``GET /v1/models/{id}``: one route, as both SDKs' ``models.retrieve``."""
        name = http.path_params["model_id"]
        respond = anthropic_error if "anthropic-version" in http.headers else openai_error
        try:
            routes = self._visible_routes(http)
            if name not in routes:
                raise UnknownRouteError(
                    f"no route named {name!r}. Known routes: {', '.join(sorted(routes))}.",
                    param="model")
        except UnwalledError as error:
            return respond(error)
        return json_response(_model_entry(name, routes[name]))

    async def healthz(self, http: Request) -> Response:
        return json_response({"status": "ok", "routes": len(self.runtime.config.routes)})

    async def metrics_endpoint(self, http: Request) -> Response:
        return Response(self.metrics.render(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    async def openapi(self, http: Request) -> Response:
        routes = tuple(self.runtime.config.routes)
        return Response(openapi_document(routes), media_type="application/json")


async def _chain(first: Delta, rest: AsyncIterator[Delta]) -> AsyncIterator[Delta]:
    yield first
    async for piece in rest:
        yield piece


_ids = random.Random(os.urandom(16))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(16)))


def _id() -> str:
    """24 random hex digits: unique enough for a ledger key, and no system call
    per request (ids name requests; they guard nothing)."""
    return f"{_ids.getrandbits(96):024x}"


@dataclass(frozen=True, slots=True)
class Wire:
    """What differs between the two ingresses; everything else is shared."""

    name: str
    new_id: Callable[[], str]
    parse: Callable[[Any], Any]
    response_body: Callable[[ChatResponse, str, str], dict[str, Any]]
    stream_writer: Callable[[Any, str], Any]
    error_body: Callable[[UnwalledError], dict[str, Any]]
    error_response: Callable[[UnwalledError], Response]


def openai_error(error: UnwalledError) -> Response:
    headers = _retry_headers(error)
    return json_response(error.to_openai(), error.status, headers)


def anthropic_error(error: UnwalledError) -> Response:
    return json_response(anthropic_wire.error_body(error.status, error.message),
                         error.status, _retry_headers(error))


def _retry_headers(error: UnwalledError) -> dict[str, str] | None:
    retry_after = getattr(error, "retry_after", None)
    if retry_after is None:
        last = getattr(error, "last", None)
        retry_after = getattr(last, "retry_after", None)
    if retry_after is None or not math.isfinite(retry_after):
        return None
    return {"retry-after": str(max(1, int(min(retry_after, 86_400) + 0.999)))}


OPENAI = Wire(
    name="openai", new_id=lambda: f"chatcmpl-{_id()}", parse=openai_wire.parse_request,
    response_body=openai_wire.response_body,
    stream_writer=lambda parsed, request_id: openai_wire.StreamWriter(
        parsed.route, request_id, parsed.include_usage),
    error_body=lambda error: error.to_openai(), error_response=openai_error)
ANTHROPIC = Wire(
    name="anthropic", new_id=anthropic_wire.message_id,
    parse=anthropic_wire.parse_request, response_body=anthropic_wire.response_body,
    stream_writer=lambda parsed, request_id: anthropic_wire.StreamWriter(
        parsed.route, request_id),
    error_body=lambda error: anthropic_wire.error_body(error.status, error.message),
    error_response=anthropic_error)


@functools.cache
def openapi_document(routes: tuple[str, ...]) -> bytes:
    """The gateway's OpenAPI description (YAML beside this module), naming this
    gateway's routes as the values ``model`` takes."""
    import yaml

    text = (Path(__file__).parent / "openapi.yaml").read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    schemas = document["components"]["schemas"]
    for request in ("ChatRequest", "MessagesRequest"):
        schemas[request]["properties"]["model"]["enum"] = list(routes)
    return orjson.dumps(document)


def create_app(runtime: Runtime) -> FrontDoor:
    gateway = Gateway(runtime)
    watch = _drift_watch(runtime, gateway)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.warm()
        if watch is not None:
            watch.start()
        yield
        if watch is not None:
            await watch.stop()
        await gateway.guard.close()
        await runtime.close()

    async def http_error(request: Request, exc: Exception) -> Response:
        """404 and 405, in the format of the ingress the path belongs to."""
        status = getattr(exc, "status_code", 500)
        error = RequestError(f"{request.method} {request.url.path}: "
                             f"{getattr(exc, 'detail', 'error')}. See GET /v1/models "
                             "and the README for the endpoints.")
        error.status = status
        anthropic_path = request.url.path.startswith("/v1/messages")
        response = (anthropic_error if anthropic_path else openai_error)(error)
        response.headers.update(getattr(exc, "headers", None) or {})  # Allow, on a 405
        return response

    # The POST endpoints are also listed here, so that other methods on them
    # get Starlette's 405; the front door answers their POSTs itself.
    app = Starlette(exception_handlers={HTTPException: http_error}, routes=[
        Route("/v1/chat/completions", _front_only, methods=["POST"]),
        Route("/chat/completions", _front_only, methods=["POST"]),
        Route("/v1/messages", _front_only, methods=["POST"]),
        Route("/v1/models", gateway.models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", gateway.model, methods=["GET"]),
        Route("/healthz", gateway.healthz, methods=["GET"]),
        Route("/metrics", gateway.metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", gateway.openapi, methods=["GET"]),
    ], lifespan=lifespan)
    app.state.gateway = gateway
    app.state.drift_watch = watch
    return FrontDoor(app, {"/v1/chat/completions": gateway.chat_completions,
                           "/chat/completions": gateway.chat_completions,
                           "/v1/messages": gateway.messages},
                     gateway.metrics.in_flight)


def _model_entry(name: str, route: Any) -> dict[str, Any]:
    return {"id": name, "object": "model", "type": "model", "created": 0,
            "created_at": "1970-01-01T00:00:00Z", "display_name": name,
            "owned_by": "unwalled", "description": route.description,
            "targets": [t.target for t in route.targets]}


async def _front_only(request: Request) -> Response:
    raise AssertionError("the front door answers POSTs on this path")


def _drift_watch(runtime: Runtime, gateway: Gateway) -> Any:
    """Scheduled drift checks, when ``drift.routes`` names any route."""
    if not runtime.config.drift.routes:
        return None
    from unwalled.drift.watch import DriftWatch
    from unwalled.gateway.server import claim

    if not claim("drift-watch"):
        return None  # another worker of this gateway runs the checks

    return DriftWatch(runtime, gateway.metrics.registry)
