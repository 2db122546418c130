"""Server-sent events: an incremental reader that tolerates what real upstreams send.

It accepts events split across reads, several events in one read, ``\\r\\n`` or
``\\n`` line ends, comment lines (``: keep-alive``), blank keep-alives, and
OpenAI's ``data: [DONE]``. ``close()`` says whether the stream ended cleanly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator


@dataclass(slots=True)
class Event:
    event: str | None
    data: str


class SSEDecoder:
    """Feed bytes as they arrive; take complete events out."""

    def __init__(self) -> None:
        self._buffer = b""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[Event]:
        self._buffer += chunk
        events: list[Event] = []
        while True:
            line, sep, rest = _split_line(self._buffer)
            if not sep:
                return events
            self._buffer = rest
            event = self._line(line.decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)

    def _line(self, line: str) -> Event | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        return None

    def _dispatch(self) -> Event | None:
        if not self._data and self._event is None:
            return None
        event = Event(self._event, "\n".join(self._data))
        self._event, self._data = None, []
        return event

    @property
    def pending(self) -> bool:
        """True when bytes or a half-built event remain: the stream was cut."""
        return bool(self._buffer.strip()) or bool(self._data)

    def close(self) -> list[Event]:
        """End of input: a final event without its blank line still counts."""
        tail = self._buffer
        self._buffer = b""
        events = [] if not tail else self.feed(tail + b"\n")
        last = self._dispatch()
        return events + ([last] if last else [])


def _split_line(buffer: bytes) -> tuple[bytes, bytes, bytes]:
    lf, cr = buffer.find(b"\n"), buffer.find(b"\r")
    if cr == -1 or (lf != -1 and lf < cr):
        if lf == -1:
            return buffer, b"", b""
        return buffer[:lf], b"\n", buffer[lf + 1:]
    if cr + 1 == len(buffer):
        return buffer, b"", b""  # wait: a \n may follow in the next read
    skip = 2 if buffer[cr + 1] == 0x0A else 1
    return buffer[:cr], b"\n", buffer[cr + skip:]


async def iter_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[Event]:
    """Events from an async byte stream, then any final unterminated one."""
    decoder = SSEDecoder()
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.close():
        yield event


def encode(data: bytes | str, event: str | None = None) -> bytes:
    """One SSE frame."""
    if isinstance(data, str):
        data = data.encode()
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + data + b"\n\n"
