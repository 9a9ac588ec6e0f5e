"""How often a deployment's pull of a reply waits for Flower's retry, and for how long.

A SuperNode registers its reply in the SuperLink, then uploads the reply's contents; a pull that lands in between
waits for Flower's first retry, 1 s later (±20 %). The ServerApp times each pull of a reply and a run's result
lists those that took 0.5 s or more (`pulls_held`). This deploys APFed-C on loopback (TLS and node authentication)
twice: mnist5k 2 views at K = 16 (the bench's deployment) and digits 3 views (two passives) at K = 1 (the most
rounds per epoch), both pipelined. Writes benchmarks/results/<date>-pulls-held-cpu.{json,md}.
Usage: python benchmarks/pulls_held.py [--epochs 3] [--out benchmarks/results]
"""

import argparse
import datetime
import tempfile
from pathlib import Path

from apfed.bench import load_deploy
from apfed.report import write_benchmark

deploy = load_deploy()
RUNS = [
    {"dataset": "mnist5k", "active": "top", "k": 16},
    {"dataset": "digits", "active": "0", "k": 1, "views": 3, "n_passives": 2},
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    rows = []
    for run in RUNS:
        with tempfile.TemporaryDirectory() as tmp:
            dep = deploy.deploy(Path(tmp), "apfed-c", epochs=a.epochs, timeout=1800, pipeline=True, **run)
        train_s = sum(h["train_time"] for h in dep["history"])
        replies = dep["wire"]["messages"] // 2
        held = dep["pulls_held"]
        rows.append({**run, "train_s": train_s, "replies": replies, "pulls_held": held, "share": held["s"] / train_s})
    rep = {"benchmark": "deployment pulls held by Flower's retry", "epochs": a.epochs, "runs": rows}
    rep["command"] = f"python benchmarks/pulls_held.py --epochs {a.epochs}"
    md = [
        "# Deployment: pulls that waited for a reply still uploading",
        "",
        f"APFed-C over loopback (TLS and node authentication), pipelined, {a.epochs} epochs. A pull held: one that"
        " took 0.5 s or more, Flower's retry of a reply registered before its contents were uploaded.",
        "",
        "| data | K | training rounds' replies | pulls held | seconds held | training time (s) | held / training |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {r['dataset']} ({r.get('n_passives', 1)} passive(s)) | {r['k']} | {r['replies']} |"
            f" {r['pulls_held']['count']} | {r['pulls_held']['s']:.2f} | {r['train_s']:.1f} |"
            f" {100 * r['share']:.1f} % |"
            for r in rows
        ],
        "",
        "A held pull delays its round by up to the time held, less whatever the round still waited for besides"
        " (pipelined, the other passive may still be computing): the share is an upper bound on what it costs.",
    ]
    write_benchmark(Path(a.out) / f"{datetime.date.today()}-pulls-held-cpu", rep, md)


if __name__ == "__main__":
    main()
