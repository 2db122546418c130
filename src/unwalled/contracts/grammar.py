"""Whether a schema can constrain decoding on the in-process backend.

llama.cpp turns a JSON Schema into a grammar, so that the model can only write
valid JSON. Not every schema converts (``not``, ``if``/``then``, recursive
``$ref``, remote ``$ref``), and some convert into a grammar llama.cpp cannot
parse (an empty ``enum`` or ``anyOf``, a quote inside a property name or a
``const``). Decoding under such a grammar crashes the process, so every schema
is converted and then parsed by llama.cpp itself before it is used.

A contract's schema that cannot become a grammar is not silently dropped:
decoding runs free, the verdict and the ledger say why, and the answer is
validated as always. A client's own ``response_format`` schema that cannot is
refused with a 400 (nothing would validate the answer). Each schema is tried
once.
"""

from __future__ import annotations

import atexit
import functools
import logging
import threading
from typing import Any

import orjson

log = logging.getLogger("unwalled.grammar")


def decoding_plan(schema: dict[str, Any], local_targets: frozenset[str]
                  ) -> tuple[bool, str | None]:
    """``(send the schema, note)``. The note says why decoding is free, if it is."""
    if not local_targets:
        return True, None
    problem = schema_problem(schema)
    if problem is None:
        return True, None
    return False, (f"the output schema cannot become a llama.cpp grammar ({problem}); "
                   "decoding is unconstrained and the answer is validated")


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why this schema cannot become a grammar, or None when it can."""
    return grammar_problem(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode())


@functools.lru_cache(maxsize=256)
def grammar_problem(schema_json: str) -> str | None:
    """Why llama.cpp cannot turn this schema (as JSON text) into a grammar, or
    None when it can."""
    try:
        from llama_cpp import LlamaGrammar
    except ImportError:
        return "llama-cpp-python is not installed"
    try:
        grammar = LlamaGrammar.from_json_schema(schema_json, verbose=False)
    except Exception as exc:  # any failure to convert means no grammar
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    if not _parses(grammar._grammar, grammar._root):
        return ("llama.cpp cannot parse the grammar made from it; an empty enum, "
                "anyOf or type list, or a quote inside a property name or a const, "
                "is a known cause")
    return None


_vocab_lock = threading.Lock()
_vocab: list[Any] = []
"""The embedded model loaded for its vocabulary only, kept for the process."""


def _parses(grammar: str, root: str) -> bool:
    """Whether llama.cpp's own parser takes this grammar (it answers NULL when
    not, where decoding under it would crash)."""
    import llama_cpp

    vocab = _vocabulary()
    if vocab is None:
        return True  # nothing to parse with; decoding will say what is wrong
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(),
                                                   root.encode())
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


def _vocabulary() -> Any:
    with _vocab_lock:
        if not _vocab:
            try:
                import llama_cpp

                from unwalled.backends.local import embedded_model_path

                model = llama_cpp.Llama(model_path=str(embedded_model_path()),
                                        vocab_only=True, n_ctx=64, verbose=False)
                _vocab.append((model, llama_cpp.llama_model_get_vocab(model.model)))
                # Freed before the interpreter tears llama_cpp down under it.
                atexit.register(model.close)
            except Exception as exc:
                log.warning("cannot load a vocabulary to parse grammars with (%s)",
                            type(exc).__name__)
                _vocab.append((None, None))
        return _vocab[0][1]
