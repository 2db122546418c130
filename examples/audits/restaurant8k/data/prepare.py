"""How the files in this folder were made from the full restaurant8k data.

Each utterance becomes one JSON line: its text, the slot the assistant had just
asked for, and the expected slots as {slot: value}, the value cut from the text
by its span (a missing start index means 0). Samples: 300 test, 400 train,
drawn with a fixed seed.
Run from the repository root: python examples/audits/restaurant8k/data/prepare.py
"""

import json
import random
from pathlib import Path

SOURCE = Path("../shared/data/restaurant8k")
HERE = Path(__file__).parent
SIZES = {"test": 300, "train": 400}


def to_row(example: dict) -> dict:
    text = example["userInput"]["text"]
    slots = {}
    for label in example.get("labels", []):
        span = label["valueSpan"]
        slots[label["slot"]] = text[span.get("startIndex", 0):span["endIndex"]]
    requested = ", ".join(example.get("context", {}).get("requestedSlots", []))
    return {"text": text, "requested": requested or "nothing in particular",
            "slots": slots}


def main() -> None:
    rng = random.Random(8)
    for split, size in SIZES.items():
        examples = json.loads((SOURCE / f"{split}.json").read_text(encoding="utf-8"))
        rows = [to_row(e) for e in rng.sample(examples, size)]
        with (HERE / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(json.dumps(SIZES))


if __name__ == "__main__":
    main()
