"""Time and peak memory of reading one party's CSV file: apfed's two streaming passes against holding every field
as text (the csv module into lists, then numpy), each in a fresh process; and apfed's reading of the same table
with 1 % of its values missing and a categorical (text) column, which takes the field-by-field path.

Writes benchmarks/results/<date>-csv-read-cpu.{json,md}.
Usage: python benchmarks/csv_read_timing.py [--rows 200000] [--features 50]
"""

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from apfed.report import write_benchmark

READERS = {
    "apfed (csv module for IDs and labels, numpy's parser for features)": """
from apfed.data.files import read_party_file
t = read_party_file(PATH, "id", "label")
shape = t.X.shape
""",
    "every field held as text (csv module into lists, then numpy)": """
import csv
import numpy as np
with open(PATH, newline="") as f:
    rows = list(csv.reader(f))
cols = list(zip(*rows[1:]))
ids, labels = np.asarray(cols[0], dtype=str), np.asarray(cols[-1], dtype=str)
X = np.asarray(cols[1:-1], dtype=np.float32).T
shape = X.shape
""",
}

MESSY = "apfed, 1 % of the values missing and a 5-value text column (read again field by field)"

PROBE = """
import json, time
import apfed.data.files  # the same imports for both readers
from apfed.memory import peak_rss_mb
PATH = {path!r}
t0 = time.perf_counter()
{code}
print(json.dumps({{"seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb(), "shape": list(shape)}}))
"""


def write_csv(path: Path, rows: int, features: int, messy: bool = False) -> None:
    """``rows`` x ``features`` numbers, an ID and a label; ``messy``: 1 % of the numbers missing (empty) and a
    categorical column ``segment`` in place of the last feature."""
    rng = np.random.default_rng(0)
    names = [f"x{j}" for j in range(features - 1)] + (["segment"] if messy else [f"x{features - 1}"])
    with path.open("w") as f:
        f.write("id," + ",".join(names) + ",label\n")
        for s in range(0, rows, 10_000):
            X = rng.standard_normal((min(10_000, rows - s), features)).astype(np.float32)
            text = [[f"{v:.5f}" for v in x] for x in X]
            if messy:
                for t, holes, seg in zip(text, rng.random(X.shape) < 0.01, rng.integers(0, 5, len(X)), strict=True):
                    t[:] = ["" if h else v for v, h in zip(t, holes, strict=True)]
                    t[-1] = "abcde"[seg]
            f.writelines(f"u{s + i}," + ",".join(t) + f",{(s + i) % 3}\n" for i, t in enumerate(text))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--features", type=int, default=50)
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path, messy = Path(tmp) / "party.csv", Path(tmp) / "messy.csv"
        write_csv(path, a.rows, a.features)
        write_csv(messy, a.rows, a.features, messy=True)
        mb = path.stat().st_size / 1e6
        rows = []
        runs = [(name, code, path) for name, code in READERS.items()]
        runs.insert(1, (MESSY, next(iter(READERS.values())), messy))
        for name, code, file in runs:
            out = subprocess.run(
                [sys.executable, "-c", PROBE.format(path=str(file), code=code)], capture_output=True, text=True
            )
            if out.returncode:
                raise SystemExit(out.stderr)
            rows.append({"reader": name, **json.loads(out.stdout)})
            print(rows[-1], flush=True)
    rep = {"benchmark": "CSV party file reading", "rows": a.rows, "features": a.features, "file_mb": mb}
    rep.update(results=rows, command=f"python benchmarks/csv_read_timing.py --rows {a.rows} --features {a.features}")
    md = [
        f"# Reading one party's CSV file: {a.rows:,} rows × {a.features} features + ID + label ({mb:.0f} MB)",
        "",
        "Each reader in a fresh process; peak RSS is the whole process's high-water mark (VmHWM), imports included.",
        "",
        "| reader | seconds | peak RSS (MB) |",
        "|---|---|---|",
        *(f"| {r['reader']} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} |" for r in rows),
    ]
    write_benchmark(Path(a.out) / f"{datetime.date.today()}-csv-read-cpu", rep, md)


if __name__ == "__main__":
    main()
