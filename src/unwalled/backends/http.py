"""What the HTTP backends share: one pooled aiohttp session and error mapping.

Vendor and transport errors become ``BackendError`` subclasses here, each saying
whether a retry can help. aiohttp is used rather than httpx because it keeps a
proxy's overhead near the floor (about ten times the throughput here).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from email.utils import parsedate_to_datetime
from typing import Any, AsyncIterator

import aiohttp
import orjson
from yarl import URL

from unwalled.config import BackendConfig
from unwalled.errors import (
    BackendError, BackendProtocolError, BackendRateLimited, BackendTimeout,
    BackendUnavailable,
)

log = logging.getLogger("unwalled.backends")
RETRYABLE_STATUS = {408, 409, 425, 500, 502, 503, 504, 529}


class HTTPBackend:
    """Base of the ``openai`` and ``anthropic`` adapters."""

    def __init__(self, name: str, config: BackendConfig, remote: bool) -> None:
        self.name = name
        self.config = config
        self.remote = remote
        self.base_url = (config.base_url or "").rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._urls: dict[str, URL] = {}
        if self.missing_key_variable():
            log.warning("backend %s: api_key_env names %s, which is not set: requests "
                        "go out without a key", name, config.api_key_env)

    def url(self, path: str) -> URL:
        """``base_url + path``, parsed once rather than on every request."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(self.base_url + path)
        return url

    def headers(self) -> dict[str, str]:
        return {"content-type": "application/json"}

    @property
    def session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is not None and self._session_loop is not loop:
            # A session belongs to the event loop it was made on; a caller that
            # runs each call in its own loop (asyncio.run twice, a test per
            # loop) gets a new one rather than "Event loop is closed".
            self._session.detach()  # its sockets went with the old loop
            self._session = None
        if self._session is None or self._session.closed:
            self._session_loop = loop
            connector = aiohttp.TCPConnector(limit=self.config.max_connections,
                                             ttl_dns_cache=300)
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=timeout, headers=self.headers(),
                json_serialize=lambda o: orjson.dumps(o).decode())
        return self._session

    async def post_json(self, path: str, body: dict[str, Any], target: str) -> Any:
        """POST and return the decoded JSON answer, or raise a mapped error."""
        try:
            async with self.session.post(self.url(path), data=orjson.dumps(body),
                                         allow_redirects=False) as resp:
                raw = await resp.read()
                if resp.status >= 300:
                    raise self._explained(status_error(resp.status, raw, resp.headers,
                                                       target))
        except BackendError:
            raise
        except Exception as exc:
            raise transport_error(exc, target) from exc
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BackendProtocolError(
                f"upstream sent malformed JSON ({len(raw)} bytes, starts "
                f"{raw[:40]!r}).", target=target) from exc

    async def post_stream(self, path: str, body: dict[str, Any],
                          target: str) -> AsyncIterator[bytes]:
        """POST and yield the raw body as it arrives, or raise a mapped error."""
        try:
            async with self.session.post(self.url(path), data=orjson.dumps(body),
                                         allow_redirects=False) as resp:
                if resp.status >= 300:
                    raise self._explained(status_error(
                        resp.status, await resp.read(), resp.headers, target))
                async for chunk in resp.content.iter_any():
                    yield chunk
        except BackendError:
            raise
        except Exception as exc:
            raise transport_error(exc, target) from exc

    def missing_key_variable(self) -> str | None:
        """The environment variable ``api_key_env`` names, when it is not set."""
        variable = self.config.api_key_env
        return variable if variable and not os.environ.get(variable) else None

    def _explained(self, error: BackendError) -> BackendError:
        """An upstream's 401 or 403 says why when the key was never there."""
        variable = self.missing_key_variable()
        if error.upstream_status in (401, 403) and variable:
            error.message += (f" The key was not sent: {variable}, named by "
                              f"backends.{self.name}.api_key_env, is not set in the "
                              "gateway's environment. Set it and restart.")
        return error

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def status_error(status: int, raw: bytes, headers: Any, target: str) -> BackendError:
    """Map an upstream HTTP error to the right ``BackendError``."""
    if status < 400:
        # Not followed: a redirect could lead a local-only route off the machine.
        return BackendError(
            f"upstream answered {status}, a redirect to "
            f"{str(headers.get('location') or '(nowhere given)')[:200]}, which is "
            "not followed. Set the backend's base_url to the address it serves on.",
            target=target, upstream_status=status, retryable=False)
    detail = _upstream_message(raw)
    message = f"upstream answered {status}: {detail}"
    if status == 429:
        return BackendRateLimited(message, target=target, upstream_status=status,
                                  retry_after=parse_retry_after(headers))
    if status in RETRYABLE_STATUS or status >= 500:
        return BackendUnavailable(message, target=target, upstream_status=status,
                                  retry_after=parse_retry_after(headers))
    error = BackendError(message, target=target, upstream_status=status,
                         retryable=False)
    if status in (400, 404, 413, 422):
        # The caller's request was refused upstream: say so with a 4xx.
        error.status = 400
        error.type = "invalid_request_error"
        error.code = "upstream_rejected_request"
    return error


def transport_error(exc: BaseException, target: str) -> BackendError:
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return BackendTimeout("upstream did not answer in time.", target=target)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return BackendProtocolError(f"upstream cut its answer short: {exc}",
                                    target=target)
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return BackendUnavailable(f"cannot reach upstream: {type(exc).__name__}: {exc}",
                                  target=target)
    return BackendError(f"unexpected failure calling upstream: {exc!r}", target=target)


MAX_RETRY_AFTER = 86_400.0
"""An upstream's Retry-After is capped at a day: ``inf`` once broke the answer."""


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait, from ``Retry-After`` (seconds or HTTP date) or ``retry-after-ms``."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        seconds = _seconds(ms, 1000)
        if seconds is not None:
            return seconds
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _seconds(value, 1)
    if seconds is not None:
        return seconds
    try:
        import datetime as dt

        when = parsedate_to_datetime(value)
        wait = (when - dt.datetime.now(when.tzinfo)).total_seconds()
        return min(MAX_RETRY_AFTER, max(0.0, wait))
    except (TypeError, ValueError):
        return None


def _seconds(value: str, per_second: int) -> float | None:
    """A finite wait in seconds, from 0 to ``MAX_RETRY_AFTER``; None if not a number."""
    try:
        seconds = float(value) / per_second
    except ValueError:
        return None
    if not math.isfinite(seconds):
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


def _upstream_message(raw: bytes) -> str:
    """What an upstream said about its error (redacted by the router, as every
    backend error is, before it reaches the client or the ledger)."""
    try:
        body = orjson.loads(raw)
        error = body.get("error", body) if isinstance(body, dict) else body
        if isinstance(error, dict):
            return str(error.get("message") or error)[:500]
        return str(error)[:500]
    except (orjson.JSONDecodeError, AttributeError):
        return raw[:200].decode("utf-8", errors="replace") or "(empty body)"
