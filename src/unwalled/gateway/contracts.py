"""Contracts at the gateway, for both ingresses.

A request runs under the contract its ``x-unwalled-contract`` header names, else
under its route's. The verdict comes back in the ``x-unwalled-verdict`` header
and, for answers that are not streamed, in the body's ``unwalled.verdict``
extension field. A rejected answer is a 422 in the ingress's error format, with
the violations listed in ``error.violations``.

Streaming under a contract buffers: the answer is complete and judged (repairs
and fallbacks included) before its first piece is sent, because an answer
cannot be taken back once the client has seen it. The client then receives the
passing answer as an ordinary stream, whose last event carries the verdict too
(``unwalled.verdict`` in the OpenAI chunk with ``finish_reason``, in the
Anthropic ``message_delta``) for clients that cannot read response headers.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any, AsyncIterator

from unwalled.backends.base import ChatResponse, Delta, ToolCallDelta
from unwalled.contracts.runner import Outcome, complete_async
from unwalled.contracts.verdict import Verdict
from unwalled.contracts.verifier import Verifier
from unwalled.errors import ContractError, UnwalledError
from unwalled.runtime import CallInfo, Runtime

VERDICT_HEADER = "x-unwalled-verdict"


async def run(runtime: Runtime, route: str, parsed: Any, info: CallInfo,
              verifier: Verifier) -> Outcome:
    """The answer under the contract; raises ``ContractError`` when rejected."""
    return await complete_async(runtime, route, parsed.request, verifier, info,
                                stream=parsed.stream)


def headers(verdict: Verdict) -> dict[str, str]:
    return {VERDICT_HEADER: verdict.header()}


def extension(verdict: Verdict) -> dict[str, Any]:
    """The extension field added to a response body."""
    return {"verdict": verdict.to_dict()}


def with_verdict(wire: Any, verdict: Verdict) -> Any:
    """The ingress ``wire`` whose stream writers end with the verdict."""
    make = wire.stream_writer

    def stream_writer(parsed: Any, request_id: str) -> Any:
        writer = make(parsed, request_id)
        writer.extension = extension(verdict)
        return writer

    return replace(wire, stream_writer=stream_writer)


def rejected_body(error: ContractError, body: dict[str, Any]) -> dict[str, Any]:
    """An ingress error body with the violations added to its ``error`` object."""
    verdict: Verdict | None = error.verdict
    if verdict is not None:
        body["error"]["violations"] = [asdict(v) for v in verdict.violations]
        body["unwalled"] = extension(verdict)
    return body


def error_headers(error: UnwalledError) -> dict[str, str] | None:
    verdict = getattr(error, "verdict", None)
    return headers(verdict) if isinstance(verdict, Verdict) else None


async def replay(response: ChatResponse) -> AsyncIterator[Delta]:
    """A judged answer as stream pieces: its text, its tool calls, then the end."""
    if response.text:
        yield Delta(text=response.text)
    for index, call in enumerate(response.tool_calls or ()):
        yield Delta(tool_calls=[ToolCallDelta(index=index, id=call.id, name=call.name,
                                              arguments=call.arguments)])
    yield Delta(finish_reason=response.finish_reason, usage=response.usage)
