"""Share of schema-valid answers on banking77 under the intent contract, by mode.

200 banking77 test messages go through the embedded model (SmolLM2-135M, in
process) under ``examples/banking77/intent.contract.yaml`` in three modes:

- unconstrained: free decoding, the first answer is judged (on_fail: reject);
- unconstrained + repair: free decoding, re-asked with the violations up to 2 times;
- constrained: the schema becomes a llama.cpp grammar (on_fail: reject).

"Schema-valid" means the final answer holds JSON that validates against the
contract's schema (one of the 77 intents). Accuracy against the label is shown
beside it. The system prompt lists the 77 labels in every mode. Every request
is in a ledger (a temporary SQLite file). Writes contracts_banking77.md.

    .venv/bin/python benchmarks/contracts_banking77.py [--n 200] [--data CSV]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BANKING = ROOT / "examples" / "banking77"
MODES = {
    "unconstrained": {"decoding": "free", "on_fail": "reject"},
    "unconstrained + repair (2)": {"decoding": "free", "on_fail": {"repair": 2}},
    "constrained": {"decoding": "constrained", "on_fail": "reject"},
}
REPORT_EVERY = 5
"""Messages between rewrites of the report, so a stopped run still reports."""


@dataclass
class Tally:
    valid: int = 0
    correct: int = 0
    attempts: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)


def messages(path: Path, n: int, seed: int) -> list[tuple[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [(r["text"], r["category"]) for r in csv.DictReader(handle)]
    random.Random(seed).shuffle(rows)
    return rows[:n]


def contract_for(mode: str):
    from unwalled.contracts import load_contract

    base = load_contract(BANKING / "intent.contract.yaml")
    labels = ", ".join(base.schema["properties"]["intent"]["enum"])
    settings = MODES[mode]
    return base.model_copy(update={
        "name": f"banking77-{mode}",
        "system": f"{base.system}\nAllowed labels: {labels}",
        "decoding": settings["decoding"],
        "on_fail": type(base.on_fail).model_validate(settings["on_fail"])})


async def run_one(client, contract, tally: Tally, text: str, label: str,
                  max_tokens: int) -> None:
    from unwalled import ContractError

    started = time.perf_counter()
    try:
        result = await client.complete(text, contract=contract, route="intent",
                                       temperature=0, max_tokens=max_tokens)
        verdict, parsed = result.verdict, result.parsed
    except ContractError as error:
        verdict, parsed = error.verdict, None
    tally.seconds.append(time.perf_counter() - started)
    tally.attempts.append(len(verdict.attempts))
    if schema_valid(verdict):
        tally.valid += 1
        tally.correct += parsed is not None and parsed.get("intent") == label


def schema_valid(verdict) -> bool:
    """The final answer had JSON that passed the schema (other checks aside)."""
    last = verdict.attempts[-1]
    return not any(v.check in ("json", "schema") for v in last.violations)


async def main_async(args: argparse.Namespace) -> dict[str, Tally]:
    from unwalled import AsyncClient
    from unwalled.config import parse_config
    from unwalled.ledger import Ledger
    from unwalled.runtime import Runtime

    items = messages(args.data, args.n, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config({
            "ledger": {"url": f"sqlite:///{tmp}/ledger.db"},
            # One thread: on a shared, busy machine llama.cpp's threads mostly wait
            # for each other; pass --threads 2 on an idle one.
            "backends": {"local": {"type": "local", "models": {
                "smollm2-135m": {"n_threads": args.threads}}}},
            "routes": {"intent": {"targets": ["local/smollm2-135m"], "retries": 0}}})
        runtime = Runtime(config, Ledger(config.ledger.url))
        client = AsyncClient(runtime)
        contracts = {mode: contract_for(mode) for mode in MODES}
        results = {mode: Tally() for mode in MODES}
        try:
            # Message by message, every mode in turn: a run stopped early still
            # compares the modes on the same messages.
            for done, (text, label) in enumerate(items, start=1):
                for mode, contract in contracts.items():
                    await run_one(client, contract, results[mode], text, label,
                                  args.max_tokens)
                if done % REPORT_EVERY == 0 or done == len(items):
                    write(report(results, args, done))
                    print(f"{done}/{len(items)}: " + ", ".join(
                        f"{m} {t.valid}" for m, t in results.items()), flush=True)
            runtime.ledger.flush()
            rows = runtime.ledger.count()
        finally:
            await runtime.close()
    print(f"ledger rows: {rows} (requests: {len(items) * len(MODES)})")
    return results


def write(text: str) -> None:
    Path(__file__).with_suffix(".md").write_text(text)


def report(results: dict[str, Tally], args: argparse.Namespace, n: int) -> str:
    source = args.data.relative_to(ROOT) if args.data.is_relative_to(ROOT) \
        else f"banking77 {args.data.name}"
    lines = [
        "# Schema-valid answers on banking77, by decoding mode",
        "",
        f"{n} of {args.n} banking77 test messages done (from `{source}`, "
        f"shuffled with seed {args.seed}) through the embedded SmolLM2-135M-Instruct "
        "(Q4_1, llama.cpp, in process, "
        f"{args.threads} thread{'s' if args.threads > 1 else ''}, temperature 0, "
        f"max_tokens {args.max_tokens}) under `examples/banking77/intent.contract.yaml`. The "
        "system prompt lists the 77 labels in every mode. Rerun with "
        "`.venv/bin/python benchmarks/contracts_banking77.py`.",
        "",
        "| mode | schema-valid | accuracy | attempts per message | seconds per message "
        "(p50) | seconds per message (mean) |",
        "|---|---|---|---|---|---|",
    ]
    for mode, tally in results.items():
        lines.append(
            f"| {mode} | {tally.valid}/{n} ({tally.valid / n:.1%}) | "
            f"{tally.correct}/{n} ({tally.correct / n:.1%}) | "
            f"{statistics.mean(tally.attempts):.2f} | "
            f"{statistics.median(tally.seconds):.2f} | "
            f"{statistics.mean(tally.seconds):.2f} |")
    lines += ["", "Schema-valid: the final answer holds JSON that validates against the "
              "contract's schema (one of the 77 intents). Accuracy: that intent is the "
              "labelled one. A 135M model is no classifier; the point is what each "
              "mode does to validity, not its accuracy.", "", *WHERE_TIME_GOES]
    return "\n".join(lines)


WHERE_TIME_GOES = [
    "## Where the time goes",
    "",
    "Profiled on single messages (prompt and completion tokens per call):",
    "",
    "- The system prompt with the 77 labels is about 600 tokens. llama.cpp "
    "evaluates it once and takes it from its prefix cache for every later call, "
    "whatever the mode, since all modes share it: a call costs its new prompt "
    "tokens (the message, about 20) and its completion (up to max_tokens).",
    "- A repair re-ask is the original request, the bad answer and a short note "
    "(the violations, and the schema with the enum named as \"listed in the "
    "system prompt\"): about 125 tokens more than the first call. It used to "
    "carry the whole schema (the 77 labels again, about 700 tokens) and grow "
    "with each repair; reading those was most of the 92 s per message of the "
    "first, partial run.",
    "- At temperature 0 this model gives the same answer to the second re-ask "
    "as to the first, so the second repair comes almost whole from the cache.",
    "- With 2 threads on a busy 2-core machine, generation fell to about 0.5 s "
    "a token (each thread waits for the other's time slice); 1 thread is the "
    "default here.",
    "",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=77)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, default=BANKING / "test_sample.csv",
                        help="a CSV with columns text,category")
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"{args.data} is missing; give a banking77 CSV with --data")
    asyncio.run(main_async(args))
    print(f"wrote {Path(__file__).with_suffix('.md')}")


if __name__ == "__main__":
    main()
