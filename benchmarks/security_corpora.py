"""Measure the shield's detectors on the corpora in tests/corpora/.

    python benchmarks/security_corpora.py

Prints, and writes to benchmarks/security_corpora.md: secret recall per kind
and overall, false positives on benign text, exfiltration payloads blocked per
form, false positives on benign answers with links, and detector speed.
"""

from __future__ import annotations

import json
import platform
import time
from collections import Counter
from pathlib import Path

from unwalled.shield.links import find_exfiltration
from unwalled.shield.redaction import redact_text
from unwalled.shield.secrets import covers, find_secrets

ROOT = Path(__file__).resolve().parents[1]
CORPORA = ROOT / "tests" / "corpora"
OUT = Path(__file__).with_suffix(".md")


def jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (CORPORA / name).read_text().splitlines()]


def secrets_report() -> tuple[list[str], dict]:
    rows = jsonl("secrets.jsonl")
    benign = [line for line in (CORPORA / "benign_text.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    totals, hits = Counter(), Counter()
    for row in rows:
        totals[row["kind"]] += 1
        hits[row["kind"]] += covers(row["text"], row["secret"])
    flagged = [line for line in benign if find_secrets(line)]
    figures = {"secrets": len(rows), "kinds": len(totals),
               "recall": sum(hits.values()) / len(rows), "benign_lines": len(benign),
               "false_positive_rate": len(flagged) / len(benign)}
    lines = ["## Secrets", "",
             f"{len(rows)} fake secrets of {len(totals)} kinds; {len(benign)} benign "
             "lines.", "",
             f"- recall: **{figures['recall']:.3f}** (goal >= 0.95)",
             "- false positives on benign text: "
             f"**{figures['false_positive_rate']:.3%}** "
             f"({len(flagged)} of {len(benign)}; goal <= 2%)", "",
             "| kind | found / planted |", "|---|---|"]
    lines += [f"| {kind} | {hits[kind]} / {totals[kind]} |" for kind in sorted(totals)]
    return lines, figures


def exfiltration_report() -> tuple[list[str], dict]:
    payloads = jsonl("exfiltration.jsonl")
    benign = jsonl("benign_links.jsonl")
    totals, blocked = Counter(), Counter()
    for payload in payloads:
        totals[payload["form"]] += 1
        blocked[payload["form"]] += bool(find_exfiltration(payload["text"]))
    flagged = [a["text"] for a in benign if find_exfiltration(a["text"])]
    figures = {"payloads": len(payloads), "blocked": sum(blocked.values()),
               "benign_answers": len(benign), "benign_flagged": len(flagged)}
    lines = ["## Exfiltration links", "",
             f"- payloads blocked: **{figures['blocked']} / {len(payloads)}**",
             f"- benign answers flagged: **{len(flagged)} / {len(benign)}**", "",
             "| form | blocked / payloads |", "|---|---|"]
    lines += [f"| {form} | {blocked[form]} / {totals[form]} |"
              for form in sorted(totals)]
    return lines, figures


def speed_report() -> list[str]:
    """Throughput of each detector on the whole benign text, as KB per second."""
    text = (CORPORA / "benign_text.txt").read_text()
    answers = "\n".join(a["text"] for a in jsonl("benign_links.jsonl"))
    rows = []
    for name, fn, sample in (("find_secrets", find_secrets, text),
                             ("redact_text (secrets + PII)", redact_text, text),
                             ("find_exfiltration", find_exfiltration, answers)):
        rounds, started = 0, time.perf_counter()
        while time.perf_counter() - started < 1.0:
            fn(sample)
            rounds += 1
        seconds = (time.perf_counter() - started) / rounds
        rows.append(f"| {name} | {len(sample) / 1024 / seconds:,.0f} |")
    machine = f"{platform.machine()} ({platform.python_version()})"
    return ["## Speed", "", f"One run on {machine}, a shared and noisy machine: read the figures as orders of magnitude.", "",
            "| detector | KB of text per second |", "|---|---|", *rows]


def main() -> None:
    secret_lines, secret_figures = secrets_report()
    exfil_lines, exfil_figures = exfiltration_report()
    report = ["# Security corpora", "",
              "Written by `python benchmarks/security_corpora.py` from the corpora in "
              "`tests/corpora/` (all values fake; `make_secrets.py` regenerates the "
              "secrets).", "",
              "Read with care: the corpora and the detectors were written by the same "
              "engineer, so these figures show that the detectors cover the formats "
              "and tricks listed here, not how they fare on somebody else's data. "
              "Secret shapes follow the vendors' documented formats; the benign text "
              "was written to contain the usual traps (hashes, UUIDs, placeholders, "
              "code that reads secrets from the environment).", "",
              *secret_lines, "", *exfil_lines, "", *speed_report(), ""]
    OUT.write_text("\n".join(report), encoding="utf-8")
    print(json.dumps({**secret_figures, **exfil_figures}, indent=2))
    print(f"written to {OUT}")


if __name__ == "__main__":
    main()
