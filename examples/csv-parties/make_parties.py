"""Write three organizations' files about the same handwritten forms, as they would arrive in practice.

    python examples/csv-parties/make_parties.py OUT_DIR [--seed 0]

The story: three labs digitized the same 2,000 handwritten forms (UCI Multiple Features, bundled with apfed) and
each extracted its own features. Lab A holds the digit written on each form (the labels) and 76 Fourier
coefficients; lab B 64 Karhunen-Loeve coefficients; lab C 240 pixel averages. Every file has its own row order and
its own gaps, so rows must be matched by form ID:

- ``lab_a.csv``: ``form_id``, ``digit``, ``ink`` (text: blue, black or pencil) and ``fou_*``, for 90 % of the
  forms (the other 10 % are new forms); 1 % of its values are missing (empty fields);
- ``lab_b.csv``: ``form_id``, ``scanner`` (text) and ``kar_*``, missing 5 % of lab A's forms; 2 % of its values
  are ``NA``;
- ``lab_c.csv``: ``form_id`` and ``pix_*``, missing another 5 %, plus 50 forms nobody else has;
- ``new_forms.csv``: lab A's features (``form_id``, ``ink``, ``fou_*``, with gaps) of the new forms, to predict
  with lab A's standalone model alone; ``new_forms_digits.csv`` holds their true digits, to score those predictions.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from apfed.data.bundled import load_bundled


def write_csv(path: Path, header: list[str], ids: np.ndarray, columns: list[np.ndarray]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i, form in enumerate(ids):
            w.writerow(
                [form, *(f"{v:.6g}" if isinstance(v, float) else v for c in columns for v in np.atleast_1d(c[i]))]
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    ds = load_bundled("handwritten")
    views = {v.name: v for v in ds.views}
    n = len(ds.labels)
    forms = np.array([f"form-{i:05d}" for i in rng.permutation(np.arange(10_000, 10_000 + n))])
    digits = np.array(ds.class_names)[ds.labels]

    order = rng.permutation(n)
    new, known = order[: n // 10], order[n // 10 :]
    missing_b, missing_c = known[:90], known[90:180]

    def party(rows: np.ndarray, view: str, gaps: float = 0.0, marker: str = "") -> tuple[list[str], list[np.ndarray]]:
        """A lab's features of ``rows``, a fraction ``gaps`` of them missing (written as ``marker``)."""
        X = views[view].X[rows].astype(float)
        text = np.array([[f"{v:.6g}" for v in x] for x in X], dtype=object)
        text[rng.random(X.shape) < gaps] = marker
        return [f"{view}_{j}" for j in range(X.shape[1])], [text]

    # each form's ink and each lab B scan's scanner: text columns, which apfed one-hot encodes
    ink = rng.choice(["blue", "black", "pencil"], n)
    scanner = rng.choice(["flatbed", "sheetfed"], n)

    rows_a = rng.permutation(known)
    header, cols = party(rows_a, "fou", gaps=0.01)
    header, cols = ["digit", "ink", *header], [digits[rows_a], ink[rows_a], *cols]
    write_csv(args.out / "lab_a.csv", ["form_id", *header], forms[rows_a], cols)

    rows_b = rng.permutation(np.setdiff1d(known, missing_b))
    header, cols = party(rows_b, "kar", gaps=0.02, marker="NA")
    write_csv(args.out / "lab_b.csv", ["form_id", "scanner", *header], forms[rows_b], [scanner[rows_b], *cols])

    # lab C also digitized 50 forms of its own: their features are drawn from its real rows, their IDs are new
    rows_c = rng.permutation(np.setdiff1d(known, missing_c))
    own = rng.choice(rows_c, 50, replace=False)
    header, cols = party(np.concatenate([rows_c, own]), "pix")
    ids_c = np.concatenate([forms[rows_c], [f"form-{i:05d}" for i in range(90_000, 90_050)]])
    write_csv(args.out / "lab_c.csv", ["form_id", *header], ids_c, cols)

    header, cols = party(new, "fou", gaps=0.01)
    write_csv(args.out / "new_forms.csv", ["form_id", "ink", *header], forms[new], [ink[new], *cols])
    write_csv(args.out / "new_forms_digits.csv", ["form_id", "digit"], forms[new], [digits[new]])
    print(
        f"wrote {args.out}: lab_a.csv {len(rows_a)} forms (with digits), lab_b.csv {len(rows_b)}, "
        f"lab_c.csv {len(ids_c)}; new_forms.csv {len(new)} forms to predict from lab A's data alone"
    )


if __name__ == "__main__":
    main()
