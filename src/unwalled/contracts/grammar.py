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
import contextlib
import functools
import logging
import os
import re
import sys
import tempfile
import threading
from typing import Any, Iterator

import orjson

from unwalled.contracts.checks.schema import values_of

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
    bound = largest_bound(orjson.loads(schema_json))
    if bound > MAX_NESTING:
        # Said before converting: a bound of 20,000,000 takes the converter
        # seconds of CPU and gigabytes, for a grammar that could never be used.
        return (f"it bounds a length or count at {bound} (maxLength, maxItems or a "
                f"pattern repeat); llama.cpp's grammar takes at most {MAX_NESTING}")
    try:
        grammar = LlamaGrammar.from_json_schema(schema_json, verbose=False)
    except Exception as exc:  # any failure to convert means no grammar
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    depth = nesting(grammar._grammar)
    if depth > MAX_NESTING:
        return (f"its grammar nests {depth} levels deep (a maxLength, maxItems or "
                f"pattern repeat that large); llama.cpp's parser takes at most "
                f"{MAX_NESTING} and crashes beyond that")
    refusal = _refusal(grammar._grammar, grammar._root)
    if refusal is not None:
        return (f"llama.cpp cannot parse the grammar made from it ({refusal}); an "
                "empty enum, anyOf or type list, a quote inside a property name or "
                "a const, or a very large repeat, is a known cause")
    return None


MAX_NESTING = 2000
"""Deepest group nesting llama.cpp's recursive grammar parser is given. A
bound such as ``maxLength: 20000`` becomes 20,000 nested groups, which
overflows its stack (the process dies), so depth is measured first."""


_BOUND_KEYS = ("maxLength", "minLength", "maxItems", "minItems", "maxProperties",
               "minProperties", "maxContains", "minContains")
_REPEAT = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")


def largest_bound(schema: Any) -> int:
    """The largest length or count bound anywhere in a schema, pattern repeats
    (``a{1,50000}``) included: each becomes that many grammar rules."""
    bounds = [int(min(value, 10**12)) for key in _BOUND_KEYS
              for value in values_of(schema, key)
              if isinstance(value, (int, float)) and not isinstance(value, bool)]
    repeats = [int(number[:13]) for pattern in values_of(schema, "pattern")
               if isinstance(pattern, str)
               for pair in _REPEAT.findall(pattern) for number in pair if number]
    return max(bounds + repeats, default=0)


def nesting(grammar: str) -> int:
    """The deepest ``(`` group nesting in a GBNF text, outside literals and
    character classes."""
    depth = deepest = 0
    quote: str | None = None  # '"' inside a literal, ']' inside a class
    escaped = False
    for c in grammar:
        if quote:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == quote:
                quote = None
        elif c == '"':
            quote = '"'
        elif c == "[":
            quote = "]"
        elif c == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif c == ")":
            depth -= 1
    return deepest


_vocab_lock = threading.Lock()
_vocab: list[Any] = []
"""The embedded model loaded for its vocabulary only, kept for the process."""


def _refusal(grammar: str, root: str) -> str | None:
    """What llama.cpp's own parser says against this grammar, or None when it
    takes it (it answers NULL when not, where decoding under it would crash).
    The parser prints its complaint, and the whole grammar, on file descriptor
    2: that is caught, so that the reason can be given and the grammar (which
    can be megabytes) kept out of the server's log."""
    import llama_cpp

    vocab = _vocabulary()
    if vocab is None:
        return None  # nothing to parse with; decoding will say what is wrong
    with _stderr_caught() as caught:
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(),
                                                       root.encode())
    if sampler:
        llama_cpp.llama_sampler_free(sampler)
        return None
    said = caught[0].strip().splitlines() if caught else []
    return said[0].removeprefix("parse: ")[:200] if said else "no reason given"


@contextlib.contextmanager
def _stderr_caught() -> Iterator[list[str]]:
    """File descriptor 2 sent to a temporary file for the block; what was
    written there (its start) is in the yielded list once the block is done."""
    said: list[str] = []
    with _stderr_lock, tempfile.TemporaryFile() as caught:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(caught.fileno(), 2)
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            said.append(caught.read(400).decode("utf-8", "replace"))


_stderr_lock = threading.Lock()


def _vocabulary() -> Any:
    with _vocab_lock:
        if not _vocab:
            try:
                import llama_cpp

                from unwalled.backends.local import embedded_model_path

                # llama.cpp warns that a vocabulary-only load has no training
                # context: true, and no concern of anyone reading the log.
                with _stderr_caught():
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
