"""What tool calling by constrained decoding costs on the embedded model.

The local backend has no tool template: with tools in a request it describes
them in the system prompt and constrains the answer with a grammar (see
``unwalled.backends.tool_grammar``). This script measures, in one process and in
alternating rounds so every path meets the same machine load, the seconds per
answer and the completion tokens per second of: a plain answer, an answer held
to a small JSON Schema, and a tool call (``tool_choice`` required, two tools).
It also counts how many tool answers were a well-formed call to an allowed tool.
Writes local_tool_calls.md.

    .venv/bin/python benchmarks/local_tool_calls.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

from unwalled.backends.base import ChatRequest, Message, Tool
from unwalled.backends.local import LocalBackend
from unwalled.config import builtin_backends

HERE = Path(__file__).parent
MODEL = "smollm2-135m"
PROMPTS = ["What is the weather in Paris?", "Add 12 and 30.",
           "Is it raining in Oslo right now?"]
TOOLS = [
    Tool("get_weather", "Current weather for a city.", {
        "type": "object", "properties": {"city": {"type": "string"}},
        "required": ["city"]}),
    Tool("add", "Add two numbers.", {
        "type": "object", "properties": {"a": {"type": "number"},
                                         "b": {"type": "number"}},
        "required": ["a", "b"]}),
]
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}},
          "required": ["city"]}


def request(prompt: str, path: str) -> ChatRequest:
    base = ChatRequest(messages=[Message("user", prompt)], max_tokens=48,
                       temperature=0)
    if path == "json schema":
        return base.replace(json_schema=SCHEMA)
    if path == "tool call":
        return base.replace(tools=TOOLS, tool_choice="required")
    return base


async def one_round(backend: LocalBackend, path: str) -> tuple[float, float, int]:
    """(seconds per answer, completion tokens per second, well-formed calls)."""
    tokens, good, started = 0, 0, time.perf_counter()
    for prompt in PROMPTS:
        answer = await backend.complete(request(prompt, path), MODEL)
        tokens += answer.usage.completion_tokens
        good += bool(answer.tool_calls) and answer.tool_calls[0].name in {
            t.name for t in TOOLS}
    seconds = time.perf_counter() - started
    return seconds / len(PROMPTS), tokens / seconds, good


async def measure(rounds: int) -> dict[str, list[tuple[float, float, int]]]:
    backend = LocalBackend("local", builtin_backends()["local"])
    paths = ["plain", "json schema", "tool call"]
    results: dict[str, list[tuple[float, float, int]]] = {p: [] for p in paths}
    for path in paths:  # warm-up: load the model, build each grammar once
        await one_round(backend, path)
    for _ in range(rounds):
        for path in paths:
            results[path].append(await one_round(backend, path))
    await backend.close()
    return results


def report(results: dict[str, list[tuple[float, float, int]]], rounds: int) -> None:
    plain = statistics.median(r[1] for r in results["plain"])
    lines = ["# Embedded model: the cost of tool calls by constrained decoding", "",
             f"Run: `{Path(__file__).name} --rounds {rounds}` on "
             f"{time.strftime('%Y-%m-%d')}; SmolLM2-135M-Instruct Q4_1, temperature "
             f"0, max_tokens 48, {len(PROMPTS)} prompts per round, medians over "
             "rounds, all paths alternating in one process.", "",
             "| path | s per answer | completion tokens/s | tokens/s vs plain "
             "| well-formed calls |", "|---|---|---|---|---|"]
    for path, rows in results.items():
        seconds = statistics.median(r[0] for r in rows)
        rate = statistics.median(r[1] for r in rows)
        calls = f"{sum(r[2] for r in rows)}/{len(rows) * len(PROMPTS)}" \
            if path == "tool call" else "-"
        lines.append(f"| {path} | {seconds:.2f} | {rate:.1f} | {rate / plain:.0%} "
                     f"| {calls} |")
    text = "\n".join(lines) + "\n"
    print(text)
    (HERE / "local_tool_calls.md").write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    report(asyncio.run(measure(args.rounds)), args.rounds)


if __name__ == "__main__":
    main()
