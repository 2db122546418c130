"""Send banking77 test messages through a running Unwalled gateway and print the answers.

    .venv/bin/python examples/banking77/send.py --n 100 [--base-url URL] [--route R]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from openai import APIError, OpenAI

HERE = Path(__file__).parent


def system_prompt(intents: list[str]) -> str:
    return ("Classify the customer's message into exactly one intent from this list "
            "and answer with the intent only:\n" + "\n".join(intents))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="How many messages.")
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--route", default="default")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--constrained", action="store_true",
                        help="Ask for JSON {intent} with the 77 intents as an enum "
                             "(grammar-constrained on the embedded model).")
    args = parser.parse_args()

    intents = json.loads((HERE / "categories.json").read_text())
    with open(HERE / "test_sample.csv", newline="") as f:
        rows = list(csv.DictReader(f))[: args.n]
    client = OpenAI(base_url=args.base_url, api_key="unused", max_retries=0,
                    timeout=300)
    system = system_prompt(intents)

    schema = {"type": "object", "properties": {"intent": {"enum": intents}},
              "required": ["intent"]}
    extra = {"response_format": {"type": "json_schema", "json_schema": {
        "name": "intent", "schema": schema}}} if args.constrained else {}

    def classify(row: dict[str, str]) -> str:
        """The intent the route answered, or why there is none (no message stops
        the run: an error or a cut answer is reported as such)."""
        try:
            answer = client.chat.completions.create(
                model=args.route, max_tokens=48 if args.constrained else 12,
                temperature=0, messages=[{"role": "system", "content": system},
                                         {"role": "user", "content": row["text"]}],
                **extra)
        except APIError as exc:
            return f"<error: {exc.message[:60]}>"
        text = (answer.choices[0].message.content or "").strip()
        if not args.constrained:
            return text
        if answer.choices[0].finish_reason == "length":
            return f"<cut at max_tokens: {text[:30]}>"
        try:
            return json.loads(text)["intent"]
        except (ValueError, KeyError, TypeError):
            return f"<not the asked JSON: {text[:30]}>"

    started = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        answers = list(pool.map(classify, rows))
    matched = 0
    for row, answer in zip(rows, answers):
        ok = answer.lower().strip(" .") == row["category"]
        matched += ok
        print(f"{'✓' if ok else '✗'} {row['text'][:60]!r:64} expected "
              f"{row['category']:<28} got {answer[:40]!r}")
    seconds = time.perf_counter() - started
    failed = sum(answer.startswith("<") for answer in answers)
    print(f"\n{len(rows)} messages in {seconds:.1f} s; {matched} matched "
          f"({matched / max(1, len(rows)):.0%}); {failed} without an answer. "
          "See them: ./dev unwalled ledger tail")
    return 0


if __name__ == "__main__":
    sys.exit(main())
