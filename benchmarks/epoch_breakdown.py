"""Where an in-process APFed-C epoch goes, against the bare compute of the same modules: time inside the
learners (the active party's outgoing/step, every passive's train_batch) and time in the protocol around them
(messages, validation, routing).
Usage: python benchmarks/epoch_breakdown.py [--dataset handwritten] [--repeats 7] [--tag NAME]"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date
from pathlib import Path

import apfed.learner as learner
from apfed.config import make_config
from apfed.data.bundled import load_bundled
from apfed.report import write_benchmark
from apfed.runner import build_clients
from apfed.speed import alternate, bare_apfed_c_epoch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="handwritten")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--tag", default="", help="appended to the report's name, so a second run that day keeps the first")
    a = ap.parse_args()
    ds = load_bundled(a.dataset)
    active = ds.view_index("fou") if a.dataset == "handwritten" else 0
    preset = "default" if a.dataset == "handwritten" else "paper"
    cfg = make_config(preset, method="apfed-c", epochs=1)
    client = build_clients(ds, active, cfg)
    client.setup()
    client.evaluate = lambda: {"accuracy": 0.0}
    spent = {"active": 0.0, "passive": 0.0}

    def timed(cls, name: str, key: str) -> None:
        f = getattr(cls, name)

        def g(*args, **kw):
            t = time.perf_counter()
            out = f(*args, **kw)
            spent[key] += time.perf_counter() - t
            return out

        setattr(cls, name, g)

    timed(learner.ActiveLearner, "outgoing", "active")
    timed(learner.ActiveLearner, "step", "active")
    timed(learner.PassiveLearner, "train_batch", "passive")
    runs, bare, split = [], [], []

    def protocol_epoch() -> None:
        client.history.clear()
        spent.update(active=0.0, passive=0.0)
        t = time.perf_counter()
        client.fit()
        runs.append({"epoch_s": time.perf_counter() - t, **spent})

    def bare_epochs() -> None:
        bare.append(bare_apfed_c_epoch(ds, active, cfg))
        split.append(bare_apfed_c_epoch(ds, active, cfg, split=True))

    alternate(a.repeats, protocol_epoch, bare_epochs)
    mid = sorted(runs, key=lambda r: r["epoch_s"])[len(runs) // 2]
    b, sp = statistics.median(bare), statistics.median(split)
    learners = mid["active"] + mid["passive"]
    row = {
        "dataset": a.dataset,
        "views": len(ds.views),
        "epoch_s": mid["epoch_s"],
        "active_learner_s": mid["active"],
        "passive_learners_s": mid["passive"],
        "protocol_s": mid["epoch_s"] - learners,
        "bare_s": b,
        "bare_split_s": sp,
        "split_ratio": sp / b,
        "ratio": mid["epoch_s"] / b,
        "learners_ratio": learners / b,
    }
    md = [
        f"# Epoch breakdown: in-process APFed-C on {a.dataset} ({len(ds.views)} views, K = 1), median of {a.repeats}",
        "",
        "| epoch (s) | active learner (s) | passive learners (s) | protocol around them (s) | bare (s) "
        "| bare, split per party (s) | epoch / bare | learners / bare | split bare / bare |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {row['epoch_s']:.3f} | {row['active_learner_s']:.3f} | {row['passive_learners_s']:.3f} | "
        f"{row['protocol_s']:.3f} | {row['bare_s']:.3f} | {row['bare_split_s']:.3f} | {row['ratio']:.2f} | "
        f"{row['learners_ratio']:.2f} | {row['split_ratio']:.2f} |",
        "",
        "Bare: all parties' modules, one joint backward per minibatch. Bare, split per party: the same modules"
        " with no protocol but one forward/backward/optimizer call per party, as a vertical split requires (the"
        " floor of any VFL implementation). Learners: the time inside apfed's learners; protocol: the rest"
        " (building, routing and validating the messages).",
    ]
    tag = f"-{a.tag}" if a.tag else ""
    out = Path(f"benchmarks/results/{date.today()}-epoch-breakdown-{a.dataset}-cpu{tag}")
    cmd = f"python benchmarks/epoch_breakdown.py --dataset {a.dataset} --repeats {a.repeats}" + (
        f" --tag {a.tag}" if a.tag else ""
    )
    write_benchmark(out, {"benchmark": "epoch breakdown", "row": row, "runs": runs, "bare": bare, "command": cmd}, md)


if __name__ == "__main__":
    main()
