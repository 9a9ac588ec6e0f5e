"""Warm ClientApp processes (`apfed clientapps`) against Flower's fresh `flwr-clientapp` per message, in pairs.

Deploys APFed-C on loopback (TLS and SuperNode authentication) the same way twice per pair, once with each SuperNode
forking its ClientApps from a warm server and once with Flower starting a fresh process per message, the order
alternating from pair to pair. Reported per run: the median epoch after the first, the whole run (`flwr run` to
its end), and the CPU time the whole host spent meanwhile (`/proc/stat`: every process of the deployment, and
anything else running, so run it on an otherwise idle host); then the medians and their ratios.
Writes benchmarks/results/<date>-warm-clientapps-cpu.{json,md}.
Usage: python benchmarks/warm_clientapps.py [--dataset digits] [--epochs 3] [--k 4] [--passives 2] [--pairs 3]
"""

import argparse
import datetime
import statistics
import tempfile
import time
from pathlib import Path

from apfed.bench import load_deploy
from apfed.report import write_benchmark

deploy = load_deploy()


def _busy_s() -> float:
    """CPU seconds the host has spent busy since boot (user, nice, system, irq, softirq)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return sum(int(fields[i]) for i in (0, 1, 2, 5, 6)) / 100


def one(a, warm: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="apfed-warm-") as d:
        cpu, t = _busy_s(), time.monotonic()
        r = deploy.deploy(
            Path(d),
            "apfed-c",
            a.dataset,
            "0",
            a.epochs,
            a.k,
            0,
            n_passives=a.passives,
            views=a.passives + 1,
            timeout=1800,
            warm_clientapps=warm,
        )
        wall, cpu = time.monotonic() - t, _busy_s() - cpu
    epochs = [h["train_time"] for h in r["history"]]
    return {
        "warm": warm,
        "epoch_s": statistics.median(epochs[1:] or epochs),
        "epochs_s": epochs,
        "run_s": r["timing"]["run_s"],
        "wall_s": wall,
        "host_cpu_s": cpu,
        "accuracy": r["final"]["accuracy"],
        "messages": r["wire"]["messages"],
    }


def _accuracies(runs: list[dict], warm: bool) -> str:
    return ", ".join(sorted({f"{r['accuracy']:.2f}" for r in runs if r["warm"] == warm}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--passives", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    runs = []
    for i in range(a.pairs):
        for warm in (True, False) if i % 2 == 0 else (False, True):
            runs.append(one(a, warm))
            r = runs[-1]
            print(
                f"{'warm ' if warm else 'fresh'}: epoch {r['epoch_s']:.2f} s, run {r['run_s']:.1f} s, host CPU"
                f" {r['host_cpu_s']:.1f} s, accuracy {r['accuracy']:.2f}",
                flush=True,
            )
    keys = ("epoch_s", "run_s", "host_cpu_s")
    med = {w: {k: statistics.median(r[k] for r in runs if r["warm"] == w) for k in keys} for w in (True, False)}
    ratio = {k: med[True][k] / med[False][k] for k in keys}
    md = [
        f"# Warm ClientApp processes against a fresh one per message ({a.dataset}, {a.passives} passives, APFed-C,"
        f" {a.epochs} epochs, K = {a.k} pipelined, TLS and SuperNode authentication)",
        "",
        "| ClientApps | epoch (s, median) | run (s, median) | host CPU (s, median) | accuracy |",
        "|---|---|---|---|---|",
        *(
            f"| {'warm (apfed clientapps)' if w else 'fresh (Flower by itself)'} | {med[w]['epoch_s']:.2f} |"
            f" {med[w]['run_s']:.1f} | {med[w]['host_cpu_s']:.1f} |"
            f" {_accuracies(runs, w)} |"
            for w in (True, False)
        ),
        f"| warm / fresh | {ratio['epoch_s']:.2f} | {ratio['run_s']:.2f} | {ratio['host_cpu_s']:.2f} | |",
        "",
        f"{a.pairs} pairs, the order alternating; each run's epoch is the median of its epochs after the first"
        " (Flower's start-up). Run: from `flwr run` to its end (set-up, PSI, training, the last evaluation, the model"
        " written); host CPU: every process on the host, from the deployment's start to its stop. Every run:",
        "",
        "| # | ClientApps | epochs (s) | run (s) | host CPU (s) | messages |",
        "|---|---|---|---|---|---|",
        *(
            f"| {i + 1} | {'warm' if r['warm'] else 'fresh'} | {', '.join(f'{t:.1f}' for t in r['epochs_s'])} |"
            f" {r['run_s']:.1f} | {r['host_cpu_s']:.1f} | {r['messages']} |"
            for i, r in enumerate(runs)
        ),
    ]
    report = {
        "settings": vars(a),
        "runs": runs,
        "median": {"warm": med[True], "fresh": med[False]},
        "ratio": ratio,
        "command": "python benchmarks/warm_clientapps.py"
        + f" --dataset {a.dataset} --epochs {a.epochs} --k {a.k} --passives {a.passives} --pairs {a.pairs}",
    }
    write_benchmark(Path(a.out) / f"{datetime.date.today()}-warm-clientapps-cpu", report, md)


if __name__ == "__main__":
    main()
