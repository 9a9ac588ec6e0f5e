"""The command line that benchmarks comparing methods on one dataset share (``every_row.py``, ``calibration.py``)."""

import argparse


def method_args(doc: str) -> argparse.Namespace:
    """``--dataset``, ``--active``, ``--methods``, ``--seeds``, ``--epochs``, ``--device`` and ``--out``, parsed; the
    namespace's ``command`` repeats them."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--dataset", default="handwritten")
    ap.add_argument("--active", default=None)
    ap.add_argument("--methods", nargs="+", default=["local", "apfed-kd"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="benchmarks/results")
    return ap.parse_args()


def command(script: str, a: argparse.Namespace) -> str:
    """How to run ``benchmarks/SCRIPT`` again with the arguments ``a``."""
    return (
        f"python benchmarks/{script} --dataset {a.dataset}"
        + (f" --active {a.active}" if a.active else "")
        + f" --methods {' '.join(a.methods)} --seeds {a.seeds} --epochs {a.epochs} --device {a.device}"
    )
