"""Tokens per second of the embedded model: through the gateway versus raw
llama-cpp-python, in the same run.

Raw: ``Llama.create_chat_completion`` called directly in this process. Gateway:
``unwalled serve`` on the built-in default route, called with the openai SDK,
plain and streamed. Each side generates the same prompts at temperature 0, in
alternating rounds, so both meet the same machine load. Writes embedded_tokens.md.

    .venv/bin/python benchmarks/embedded_tokens.py [--rounds 3] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from harness import PYTHON, free_port, process, workdir
from llama_cpp import Llama
from openai import OpenAI

from unwalled.backends.local import embedded_model_path

HERE = Path(__file__).parent
PROMPTS = ["Write a short story about a lighthouse keeper.",
           "Explain how a bicycle works.",
           "Describe a walk through a forest in autumn."]


def raw_rate(llama: Llama, max_tokens: int) -> float:
    tokens, started = 0, time.perf_counter()
    for prompt in PROMPTS:
        out = llama.create_chat_completion(
            messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
            temperature=0)
        tokens += out["usage"]["completion_tokens"]
    return tokens / (time.perf_counter() - started)


def gateway_rate(client: OpenAI, max_tokens: int, stream: bool) -> float:
    tokens, started = 0, time.perf_counter()
    for prompt in PROMPTS:
        messages = [{"role": "user", "content": prompt}]
        if stream:
            chunks = client.chat.completions.create(
                model="default", messages=messages, max_tokens=max_tokens,
                temperature=0, stream=True, stream_options={"include_usage": True})
            tokens += [c for c in chunks][-1].usage.completion_tokens
        else:
            out = client.chat.completions.create(model="default", messages=messages,
                                                 max_tokens=max_tokens, temperature=0)
            tokens += out.usage.completion_tokens
    return tokens / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()

    llama = Llama(model_path=str(embedded_model_path()), n_ctx=2048, verbose=False,
                  seed=0)
    rates: dict[str, list[float]] = {"raw llama-cpp-python": [], "gateway": [],
                                     "gateway, streamed": []}
    with workdir() as tmp:
        config = tmp / "unwalled.yaml"
        config.write_text(f'ledger: {{url: "sqlite:///{tmp / "l.db"}"}}\n'
                          "routes:\n  default: {targets: [local/smollm2-135m], "
                          f"max_tokens: {args.max_tokens}}}\n")
        port = free_port()
        with process([PYTHON, "-m", "unwalled", "serve", "-c", str(config), "--port",
                      str(port)], port, tmp / "gw.log"):
            client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x",
                            timeout=600)
            gateway_rate(client, 8, False)  # load the model in the gateway
            raw_rate(llama, 8)
            for _ in range(args.rounds):
                rates["raw llama-cpp-python"].append(raw_rate(llama, args.max_tokens))
                rates["gateway"].append(gateway_rate(client, args.max_tokens, False))
                rates["gateway, streamed"].append(
                    gateway_rate(client, args.max_tokens, True))
    report(rates, args)


def report(rates: dict[str, list[float]], args: argparse.Namespace) -> None:
    raw = statistics.median(rates["raw llama-cpp-python"])
    lines = ["# Embedded model: tokens per second through the gateway", "",
             f"Run: `{Path(__file__).name} --rounds {args.rounds} --max-tokens "
             f"{args.max_tokens}` on {time.strftime('%Y-%m-%d')}; SmolLM2-135M-Instruct "
             "Q4_1, temperature 0, 3 prompts per round, medians over rounds.", "",
             "| path | completion tokens/s | share of raw |", "|---|---|---|"]
    for name, values in rates.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {median:.1f} | {median / raw:.1%} |")
    text = "\n".join(lines) + "\n"
    print(text)
    (HERE / "embedded_tokens.md").write_text(text)


if __name__ == "__main__":
    main()
