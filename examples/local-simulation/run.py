"""A local simulation through apfed's Python API: what the passives add, and a model that needs none of them.

    python examples/local-simulation/run.py [--dataset handwritten] [--epochs 60] [--seed 0] [--device cpu|cuda]
                                            [--flower] [--out DIR]

1. Trains ``local`` (the active party alone) and ``apfed-kd`` (with the passives' help) in this process, over
   the in-process transport.
2. Saves apfed-kd's standalone model, loads it back and predicts the test rows from the active party's view
   alone: no passive, no Flower, no network. Its accuracy is the run's.
3. With ``--flower``, trains apfed-kd again over the Flower simulation engine (Ray: one virtual SuperNode per
   passive, in other processes): the same seed gives the same model, so the same accuracy (the active party
   trains on as many torch threads as in step 1: float sums depend on the thread count).

It writes ``DIR/model.safetensors`` and ``DIR/summary.json`` (DIR: results/local-simulation).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

import apfed
from apfed.errors import ArgumentParser


def main() -> None:
    ap = ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="handwritten", help="a bundled set: handwritten, mnist5k or digits")
    ap.add_argument("--active", default=None, help="the active party's view (default: fou on handwritten, else 0)")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--flower", action="store_true", help="also train over the Flower simulation engine")
    ap.add_argument("--out", type=Path, default=Path("results/local-simulation"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    ds, active = apfed.load_dataset(args.dataset, active=args.active)
    view = ds.views[active]
    print(f"{ds.name}: {len(ds.labels)} samples, {len(ds.views)} views; the active party holds {view.name!r}")

    summary: dict = {"dataset": ds.name, "active_view": view.name, "epochs": args.epochs, "seed": args.seed}
    summary["device"] = args.device
    for method in ("local", "apfed-kd"):
        t0 = time.perf_counter()
        r = apfed.train(ds, active, method, epochs=args.epochs, seed=args.seed, device=args.device)
        summary[method] = {"test_accuracy": r.final["accuracy"], "seconds": time.perf_counter() - t0}
        print(f"{method:>9}: test accuracy {r.final['accuracy']:.2f} % ({time.perf_counter() - t0:.1f} s)")

    path = r.model.save(args.out / "model.safetensors")  # apfed-kd's: the active party's encoder and head
    model = apfed.StandaloneModel.load(path)
    X_test = view.X[ds.test_idx]  # raw features of the active view only
    predicted = model.predict(X_test)
    truth = np.asarray(ds.class_names)[ds.labels[ds.test_idx]]
    standalone = 100 * float(np.mean(predicted == truth))
    summary["standalone_reloaded_accuracy"] = standalone
    print(f"reloaded {path.name}: {standalone:.2f} % on the test rows, from {view.name!r} alone")

    if args.flower:
        t0 = time.perf_counter()
        import torch

        sim = apfed.simulate(
            "apfed-kd",
            dataset=args.dataset,
            active=view.name,
            epochs=args.epochs,
            seed=args.seed,
            device=args.device,
            threads=torch.get_num_threads(),  # as step 1's (simulate's own default: the cores its passives leave)
        )
        same = sim["final"]["accuracy"] == summary["apfed-kd"]["test_accuracy"]
        summary["flower_simulation"] = {"test_accuracy": sim["final"]["accuracy"], "same_as_in_process": same}
        print(
            f"apfed-kd over Flower simulation ({sim['passives']} virtual SuperNodes): test accuracy "
            f"{sim['final']['accuracy']:.2f} % ({time.perf_counter() - t0:.1f} s), "
            + ("the same as in-process" if same else "DIFFERENT from in-process")
        )
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {args.out / 'summary.json'}")


if __name__ == "__main__":
    try:
        main()
    except apfed.ApfedError as e:  # a mistake in the options (no GPU, unknown dataset): one line, exit 2
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
