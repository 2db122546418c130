"""Whether a contract's schema can constrain decoding on the in-process backend.

llama.cpp turns a JSON Schema into a grammar, so that the model can only write
valid JSON. Not every schema converts (``not``, ``if``/``then``, recursive
``$ref``, remote ``$ref``). Such a schema is not silently dropped: decoding
runs free, the verdict and the ledger say why, and the answer is validated as
always. The conversion is tried once per schema.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson


def decoding_plan(schema: dict[str, Any], local_targets: frozenset[str]
                  ) -> tuple[bool, str | None]:
    """``(send the schema, note)``. The note says why decoding is free, if it is."""
    if not local_targets:
        return True, None
    problem = grammar_problem(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode())
    if problem is None:
        return True, None
    return False, (f"the output schema cannot become a llama.cpp grammar ({problem}); "
                   "decoding is unconstrained and the answer is validated")


@functools.lru_cache(maxsize=256)
def grammar_problem(schema_json: str) -> str | None:
    """Why llama.cpp cannot turn this schema into a grammar, or None when it can."""
    try:
        from llama_cpp import LlamaGrammar
    except ImportError:
        return "llama-cpp-python is not installed"
    try:
        LlamaGrammar.from_json_schema(schema_json, verbose=False)
    except Exception as exc:  # any failure to convert means no grammar
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None
