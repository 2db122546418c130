"""The one exception tree of Unwalled.

Every error a user can meet is an ``UnwalledError``. Each carries a message that
says what went wrong and what fixes it, an HTTP status for the gateway, and an
OpenAI-style error ``type`` and ``code``::

    UnwalledError
    ├── ConfigError              a config or contract file is wrong (names file, key, fix)
    ├── RequestError             the caller sent something we cannot serve (4xx)
    │   ├── UnknownRouteError    the ``model`` names no route
    │   ├── LimitExceededError   body size, message count, depth, max_tokens
    │   ├── AuthError            missing or unknown key (401)
    │   ├── ForbiddenError       route outside the key's scope (403)
    │   ├── RateLimitError       over a rate limit (429, Retry-After)
    │   ├── BudgetError          over a spending budget (402)
    │   ├── EgressError          a remote target while egress is local-only
    │   └── ClientLeftError      the client went away before its request was whole (499)
    ├── BackendError             a backend failed; ``retryable`` says if a retry can help
    │   ├── BackendTimeout
    │   ├── BackendUnavailable   connection refused or reset, 5xx, open circuit
    │   ├── BackendRateLimited   upstream 429, with the upstream's Retry-After
    │   └── BackendProtocolError malformed JSON, truncated stream, wire garbage
    ├── RoutingError             every target of a route failed; carries each attempt
    ├── StateUnavailableError    shared state (Redis) for limits is unreachable (503)
    ├── ContractError            an answer broke its contract and ``on_fail`` said reject
    │   └── PromptLeakError      an answer leaked the request's canary
    └── DriftError               a drift snapshot or check cannot run (no snapshot, ...)
"""

from __future__ import annotations

import logging
from typing import Any


class UnwalledError(Exception):
    """Base of every error Unwalled raises on purpose."""

    status: int = 500
    type: str = "server_error"
    code: str = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_openai(self) -> dict[str, Any]:
        """The error body in OpenAI's wire format."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.details.get("param"),
                "code": self.code,
            }
        }


class ConfigError(UnwalledError):
    """A config or contract file is invalid. The message names file, key and fix."""

    code = "config_error"

    def __init__(self, message: str, *, file: str | None = None,
                 key: str | None = None, fix: str | None = None) -> None:
        parts = [f"{file}: " if file else "", f"{key}: " if key else "", message]
        if fix:
            parts.append(f" Fix: {fix}")
        super().__init__("".join(parts), file=file, key=key, fix=fix)


class RequestError(UnwalledError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class UnknownRouteError(RequestError):
    status = 404
    code = "model_not_found"


class LimitExceededError(RequestError):
    status = 413
    code = "limit_exceeded"


class AuthError(RequestError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class ForbiddenError(RequestError):
    status = 403
    type = "permission_error"
    code = "route_not_allowed"


class RateLimitError(RequestError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after = retry_after


class BudgetError(RequestError):
    status = 402
    type = "insufficient_quota"
    code = "budget_exceeded"


class EgressError(RequestError):
    status = 403
    type = "permission_error"
    code = "egress_refused"


class ClientLeftError(RequestError):
    """Nobody is left to answer: recorded as ``cancelled``, like a stream the
    client closed, not as a request it got wrong."""

    status = 499
    code = "client_closed_request"


class BackendError(UnwalledError):
    """A backend failed. ``retryable`` tells the router whether trying again helps."""

    status = 502
    type = "api_error"
    code = "backend_error"
    retryable = True

    def __init__(self, message: str, *, target: str | None = None,
                 upstream_status: int | None = None,
                 retryable: bool | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, target=target, upstream_status=upstream_status)
        self.target = target
        self.upstream_status = upstream_status
        self.retry_after = retry_after
        if retryable is not None:
            self.retryable = retryable


class BackendTimeout(BackendError):
    status = 504
    code = "backend_timeout"


class BackendUnavailable(BackendError):
    status = 503
    code = "backend_unavailable"


class BackendRateLimited(BackendError):
    status = 429
    type = "rate_limit_error"
    code = "upstream_rate_limited"


class BackendProtocolError(BackendError):
    code = "backend_protocol_error"


class RoutingError(UnwalledError):
    """Every target of a route failed. ``attempts`` holds each try, in order."""

    status = 502
    type = "api_error"
    code = "all_targets_failed"

    def __init__(self, message: str, *, attempts: list[Any],
                 last: BackendError | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.last = last
        if last is not None:
            self.status = last.status
            self.type = last.type
            self.code = last.code


class StateUnavailableError(UnwalledError):
    """The shared store of rate limits and budgets cannot be reached: fail closed."""

    status = 503
    type = "api_error"
    code = "state_unavailable"


class ContractError(UnwalledError):
    """An answer broke its contract and the contract said to reject it."""

    status = 422
    type = "invalid_response_error"
    code = "contract_violation"

    def __init__(self, message: str, *, verdict: Any = None) -> None:
        super().__init__(message)
        self.verdict = verdict


class PromptLeakError(ContractError):
    """An answer repeated the canary planted in its system prompt, so it was blocked."""

    code = "prompt_leak"


class DriftError(UnwalledError):
    """A drift snapshot or check could not run; the message says what to do."""

    status = 409
    type = "invalid_request_error"
    code = "drift_not_runnable"


def as_unwalled(exc: BaseException, doing: str, log: logging.Logger) -> UnwalledError:
    """Our own errors as they are. Anything else is a bug met while ``doing``:
    logged with its traceback, and still answered (a 500 in the ingress's
    format) and recorded like any other failure, so no request escapes the
    ledger."""
    if isinstance(exc, UnwalledError):
        return exc
    log.exception("unexpected error while %s", doing)
    return UnwalledError(f"internal error while {doing} ({type(exc).__name__}); "
                         "it has been logged.")
