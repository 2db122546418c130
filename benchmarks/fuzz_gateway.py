"""Fuzz the gateway against its own OpenAPI description with schemathesis.

    python benchmarks/fuzz_gateway.py --max-examples 400 --write

Starts ``unwalled serve`` on the mock backend (no model, so thousands of cases
run in minutes), points ``schemathesis run`` at its GET /openapi.json, and
checks every response: no 5xx, only documented status codes, content types,
headers and bodies (SSE events included). With --write the summary is appended
to benchmarks/fuzz.md. Exit status is schemathesis's: 0 when nothing was found.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _gateway import free_port, start_gateway, stop

HERE = Path(__file__).resolve().parent
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_headers_conformance,response_schema_conformance")


def fuzz_config(workdir: Path) -> dict:
    return {
        "ledger": {"url": f"sqlite:///{workdir / 'ledger.db'}", "store": "redacted"},
        "routes": {
            "default": {"targets": ["mock/echo"], "max_tokens": 512},
            "tools": {"targets": ["mock/echo"]},
        },
    }


def run(max_examples: int, seed: int | None) -> tuple[int, str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="unwalled-fuzz-"))
    port = free_port()
    gateway = start_gateway(fuzz_config(workdir), workdir, port)
    command = [sys.executable, "-m", "schemathesis.cli", "run",
               f"http://127.0.0.1:{port}/openapi.json", "--checks", CHECKS,
               "--max-examples", str(max_examples), "--workers", "1",
               "--suppress-health-check", "too_slow,filter_too_much,data_too_large"]
    if seed is not None:
        command += ["--seed", str(seed)]
    began = time.monotonic()
    try:
        done = subprocess.run(command, capture_output=True, text=True)
    finally:
        stop(gateway)
    return done.returncode, done.stdout + done.stderr, time.monotonic() - began


def summary(code: int, output: str, seconds: float, max_examples: int) -> str:
    cases = re.search(r"(\d+) generated", output)
    seed = re.search(r"Seed: (\d+)", output)
    failures = sorted(set(re.findall(r"- (ST\d+ [^\n]+)", output)))
    lines = [
        f"### Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"- {cases.group(1) if cases else '?'} cases generated "
        f"(--max-examples {max_examples}), {seconds:.0f} s, seed "
        f"{seed.group(1) if seed else '?'}",
        f"- checks: {CHECKS.replace(',', ', ')}",
        f"- result: {'no failures' if code == 0 and not failures else 'FAILURES'}",
    ]
    lines += [f"  - {failure}" for failure in failures]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=400,
                        help="Cases per operation and phase.")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    code, output, seconds = run(args.max_examples, args.seed)
    print(output[-6000:])
    text = summary(code, output, seconds, args.max_examples)
    print(text)
    if args.write:
        with open(HERE / "fuzz.md", "a", encoding="utf-8") as file:
            file.write(text + "\n")
    sys.exit(code)


if __name__ == "__main__":
    main()
