"""How the files in this folder were made from the full banking77 data.

A stratified sample: 5 test and 30 train messages per intent, drawn with a
fixed seed, so the audit's baseline sees every class and the files stay small.
Run from the repository root: python examples/audits/banking77/data/prepare.py
"""

import csv
import json
import random
import shutil
from collections import defaultdict
from pathlib import Path

SOURCE = Path("../shared/data/banking77")
HERE = Path(__file__).parent
PER_CLASS = {"test": 5, "train": 30}


def main() -> None:
    rng = random.Random(77)
    for split, per_class in PER_CLASS.items():
        with (SOURCE / f"{split}.csv").open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        by_class = defaultdict(list)
        for row in rows:
            by_class[row["category"]].append(row)
        chosen = [row for label in sorted(by_class)
                  for row in rng.sample(by_class[label], per_class)]
        with (HERE / f"{split}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, ["text", "category"])
            writer.writeheader()
            writer.writerows(chosen)
    shutil.copy(SOURCE / "categories.json", HERE / "categories.json")
    print(json.dumps({s: n * 77 for s, n in PER_CLASS.items()}))


if __name__ == "__main__":
    main()
