"""Accuracy of ``apfed predict``'s output against the true labels, matched by ID.

python examples/csv-parties/score.py PREDICTIONS.csv TRUTH.csv
"""

from __future__ import annotations

import csv
import sys


def read(path: str) -> tuple[str, list[dict]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return next(iter(rows[0])), rows


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    id_column, predicted = read(sys.argv[1])
    _, truth = read(sys.argv[2])
    label = next(k for k in truth[0] if k != id_column)
    true = {r[id_column]: r[label] for r in truth}
    missing = [r[id_column] for r in predicted if r[id_column] not in true]
    if missing:
        sys.exit(f"error: {len(missing)} predicted IDs have no true label, e.g. {missing[0]}")
    right = sum(r["prediction"] == true[r[id_column]] for r in predicted)
    print(f"standalone predictions for {len(predicted)} new forms: {100 * right / len(predicted):.2f} % correct")


if __name__ == "__main__":
    main()
