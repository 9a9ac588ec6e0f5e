"""Would torch.compile bring a CPU vertical split under issue 5's 1.15 x the bare epoch? APFed-C's modules on one
dataset, four epochs per round in a rotating order: the bare joint epoch and the split floor (each party's forward,
backward and optimizer step on its own, no protocol), each eager and with the losses compiled.
Usage: python benchmarks/compiled_split.py [--dataset handwritten] [--repeats 9] [--cpp-wrapper]"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from datetime import date
from pathlib import Path

import torch

from apfed.config import make_config
from apfed.data.bundled import load_bundled
from apfed.report import write_benchmark
from apfed.speed import bare_apfed_c_epoch

VARIANTS = {  # name: (split, compiled)
    "bare": (False, False),
    "split": (True, False),
    "bare, compiled": (False, True),
    "split, compiled": (True, True),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="handwritten")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--cpp-wrapper", action="store_true", help="compile with inductor's C++ wrapper (slower to build)")
    a = ap.parse_args()
    # every passive's input width and the last, shorter minibatch are shapes of their own
    torch._dynamo.config.recompile_limit = 64
    warnings.filterwarnings("ignore", message=".*functools.lru_cache")  # NT-Xent's cached positives: traced, fine
    options = {"dynamic": False, **({"options": {"cpp_wrapper": True}} if a.cpp_wrapper else {})}
    ds = load_bundled(a.dataset)
    active = ds.view_index("fou") if a.dataset == "handwritten" else 0
    cfg = make_config("default" if a.dataset == "handwritten" else "paper", method="apfed-c", epochs=1)

    def epoch(name: str) -> float:
        split, compiled = VARIANTS[name]
        return bare_apfed_c_epoch(ds, active, cfg, split=split, compiled=options if compiled else None)

    warm = {}
    for name in VARIANTS:  # the compiled variants build their code here, outside the timed epochs
        t = time.perf_counter()
        epoch(name)
        warm[name] = time.perf_counter() - t
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    names = list(VARIANTS)
    for r in range(a.repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(epoch(name))
    bare = statistics.median(times["bare"])
    rows = [
        {"variant": n, "median_s": statistics.median(t), "ratio": statistics.median(t) / bare, "first_s": warm[n]}
        for n, t in times.items()
    ]
    md = [
        f"# torch.compile and the vertical split: APFed-C's modules on {a.dataset} ({len(ds.views)} views), CPU",
        "",
        f"Median of {a.repeats} epochs each, the four in a rotating order; torch {torch.__version__},"
        f" {torch.get_num_threads()} threads; compiled with `torch.compile({options})`.",
        "",
        "| variant | epoch (s) | / bare eager | first epoch, with compilation (s) |",
        "|---|---|---|---|",
        *(f"| {r['variant']} | {r['median_s']:.4f} | {r['ratio']:.3f} | {r['first_s']:.1f} |" for r in rows),
        "",
        "Bare: every party's modules as one model, one joint backward. Split: no protocol, but each party's forward,"
        " backward and optimizer step on its own, as a vertical split must (the floor of any VFL implementation)."
        " Compiled: the losses' forward through torch.compile (so their backward too); the optimizer steps are"
        " eager in every variant.",
    ]
    tag = "-cpp-wrapper" if a.cpp_wrapper else ""
    out = Path(f"benchmarks/results/{date.today()}-compiled-split-{a.dataset}{tag}-cpu")
    cmd = f"python benchmarks/compiled_split.py --dataset {a.dataset} --repeats {a.repeats}" + (
        " --cpp-wrapper" if a.cpp_wrapper else ""
    )
    write_benchmark(out, {"benchmark": "compiled split", "rows": rows, "times": times, "command": cmd}, md)


if __name__ == "__main__":
    main()
