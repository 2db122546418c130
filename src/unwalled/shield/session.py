"""The shield around one request: what is done on the way in, undone on the way out.

In, in this order: spotlight untrusted content, plant a canary, then (when a
target of the route is remote) redact personal data and secrets. Out: restore
the placeholders, then block the answer if it leaks the canary. Streams get the
same treatment piece by piece, holding back a short tail so that neither a
placeholder nor a canary can slip through split across two pieces.
"""

from __future__ import annotations

from typing import AsyncIterator

from unwalled.backends.base import ChatRequest, ChatResponse, Delta, Message, ToolCall
from unwalled.config import ShieldConfig
from unwalled.errors import PromptLeakError
from unwalled.shield.canary import canary_instruction, leaks, new_canary, squash
from unwalled.shield.redaction import StreamRestorer, Vault
from unwalled.shield.spotlight import add_to_system, spotlight

__all__ = ["ShieldSession"]


class ShieldSession:
    def __init__(self, config: ShieldConfig, *, remote: bool,
                 canary: bool = False) -> None:
        self.config = config
        self.vault = Vault() if remote and config.redact_remote else None
        self.canary = new_canary() if canary or config.canary else None

    # ---- in ----

    def inbound(self, request: ChatRequest) -> ChatRequest:
        if self.config.spotlight:
            request = spotlight(request)
        if self.canary:
            request = request.replace(messages=add_to_system(
                request.messages, canary_instruction(self.canary)))
        if self.vault is not None:
            request = request.replace(messages=[self._redacted(m)
                                                for m in request.messages])
        return request

    def _redacted(self, message: Message) -> Message:
        vault = self.vault
        assert vault is not None
        calls = [ToolCall(c.id, c.name, vault.redact(c.arguments))
                 for c in message.tool_calls] if message.tool_calls else None
        return Message(role=message.role, name=message.name, tool_calls=calls,
                       tool_call_id=message.tool_call_id,
                       content=vault.redact(message.content) if message.content
                       else message.content)

    # ---- out ----

    def outbound(self, response: ChatResponse) -> ChatResponse:
        response = self.restore(response)
        self._check(response.text)
        for call in response.tool_calls or ():
            self._check(call.arguments)
        return response

    def restore(self, response: ChatResponse) -> ChatResponse:
        """The answer with the redaction placeholders put back, and no canary check:
        under a contract, the contract's canary check judges the answer instead."""
        if self.vault is not None:
            response.text = self.vault.restore(response.text)
            for call in response.tool_calls or ():
                call.arguments = self.vault.restore(call.arguments)
        return response

    def _check(self, text: str) -> None:
        if self.canary and leaks(text, self.canary):
            raise PromptLeakError(
                "the answer repeated the canary planted in the system prompt, so it "
                "was blocked as a prompt leak. Rephrase the request; if this keeps "
                "happening, the input is trying to extract the system prompt.")

    async def stream(self, pieces: AsyncIterator[Delta]) -> AsyncIterator[Delta]:
        """The pieces with placeholders restored and the canary watched."""
        if self.vault is None and self.canary is None:
            async for piece in pieces:
                yield piece
            return
        guard = _StreamGuard(self)
        try:
            async for piece in pieces:
                if piece.tool_calls and self.vault is not None:
                    for call in piece.tool_calls:
                        call.arguments = self.vault.restore(call.arguments)
                        self._check(call.arguments)
                last = piece.finish_reason is not None or piece.usage is not None
                text = guard.feed(piece.text) + (guard.flush() if last else "")
                if text or piece.tool_calls or last:
                    yield Delta(text=text, tool_calls=piece.tool_calls,
                                finish_reason=piece.finish_reason, usage=piece.usage)
            rest = guard.flush()
            if rest:
                yield Delta(text=rest)
        finally:
            close = getattr(pieces, "aclose", None)
            if close is not None:
                await close()


class _StreamGuard:
    """Restores placeholders, then holds back a tail long enough to hide a canary."""

    def __init__(self, session: ShieldSession) -> None:
        self.session = session
        self.restorer = StreamRestorer(session.vault) if session.vault else None
        canary = session.canary
        # Four characters of slack per canary character covers separators and
        # invisible characters inserted between them.
        self.hold = 4 * len(squash(canary)) if canary else 0
        self.seen = ""
        self.sent = 0

    def feed(self, text: str) -> str:
        if self.restorer is not None:
            text = self.restorer.feed(text)
        self.seen += text
        window = self.seen[max(0, self.sent - self.hold):]
        self.session._check(window)
        end = max(self.sent, len(self.seen) - self.hold)
        out, self.sent = self.seen[self.sent:end], end
        return out

    def flush(self) -> str:
        if self.restorer is not None:
            self.seen += self.restorer.flush()
        self.session._check(self.seen[max(0, self.sent - self.hold):])
        out, self.sent = self.seen[self.sent:], len(self.seen)
        return out
