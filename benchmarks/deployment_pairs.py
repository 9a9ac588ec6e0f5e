"""One deployment option on against off, in pairs: `apfed clientapps` or `apfed supernode` against Flower's own.

Deploys APFed-C on loopback (TLS and SuperNode authentication) the same way twice per pair, once with the option and
once without, the order alternating from pair to pair:
- `clientapps`: each SuperNode forks its ClientApps from a warm server (`apfed clientapps`), against Flower starting
  a fresh `flwr-clientapp` process per message;
- `supernode`: the passives run `apfed supernode` (Flower's SuperNode, its fixed waits shortened), against Flower's
  own `flower-supernode`.
Reported per run: the median epoch after the first, the whole run (`flwr run` to its end), the pulls of a reply that
waited for Flower's 1 s retry, and the CPU time the whole host spent meanwhile (`/proc/stat`: every process of the
deployment, and anything else running, so run it on an otherwise idle host); then the medians and their ratios.
Writes benchmarks/results/<date>-<warm-clientapps|supernode>-cpu.{json,md}.
Usage: python benchmarks/deployment_pairs.py clientapps|supernode [--dataset digits] [--epochs 3] [--k 4]
[--passives 2] [--pairs 3]
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

# per comparison: the deploy() keyword and its value with the option on, then off; names for the report
COMPARISONS = {
    "clientapps": {
        "kwarg": ("warm_clientapps", True, False),
        "names": ("warm", "fresh"),
        "long": ("warm (apfed clientapps)", "fresh (Flower by itself)"),
        "title": "Warm ClientApp processes against a fresh one per message",
        "slug": "warm-clientapps",
        "command": "python benchmarks/warm_clientapps.py",
    },
    "supernode": {
        "kwarg": ("flower_supernode", False, True),
        "names": ("apfed", "flower"),
        "long": ("apfed supernode (waits shortened)", "flower-supernode (Flower's own)"),
        "title": "apfed supernode against Flower's own flower-supernode",
        "slug": "supernode",
        "command": "python benchmarks/deployment_pairs.py supernode",
    },
}


def _busy_s() -> float:
    """CPU seconds the host has spent busy since boot (user, nice, system, irq, softirq)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return sum(int(fields[i]) for i in (0, 1, 2, 5, 6)) / 100


def one(a, comparison: dict, on: bool) -> dict:
    kwarg, value_on, value_off = comparison["kwarg"]
    with tempfile.TemporaryDirectory(prefix="apfed-pair-") as d:
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
            **{kwarg: value_on if on else value_off},
        )
        wall, cpu = time.monotonic() - t, _busy_s() - cpu
    epochs = [h["train_time"] for h in r["history"]]
    return {
        "on": on,
        "epoch_s": statistics.median(epochs[1:] or epochs),
        "epochs_s": epochs,
        "run_s": r["timing"]["run_s"],
        "wall_s": wall,
        "host_cpu_s": cpu,
        "pulls_held": r["pulls_held"]["count"],
        "accuracy": r["final"]["accuracy"],
        "messages": r["wire"]["messages"],
    }


def _accuracies(runs: list[dict], on: bool) -> str:
    return ", ".join(sorted({f"{r['accuracy']:.2f}" for r in runs if r["on"] == on}))


def main(which: str | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    if which is None:
        ap.add_argument("comparison", choices=sorted(COMPARISONS))
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--passives", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    c = COMPARISONS[which or a.comparison]
    name = dict(zip((True, False), c["names"], strict=True))
    runs = []
    for i in range(a.pairs):
        for on in (True, False) if i % 2 == 0 else (False, True):
            runs.append(one(a, c, on))
            r = runs[-1]
            print(
                f"{name[on]}: epoch {r['epoch_s']:.2f} s, run {r['run_s']:.1f} s, host CPU {r['host_cpu_s']:.1f} s,"
                f" pulls held {r['pulls_held']}, accuracy {r['accuracy']:.2f}",
                flush=True,
            )
    keys = ("epoch_s", "run_s", "host_cpu_s")
    med = {on: {k: statistics.median(r[k] for r in runs if r["on"] == on) for k in keys} for on in (True, False)}
    ratio = {k: med[True][k] / med[False][k] for k in keys}
    held = {on: sum(r["pulls_held"] for r in runs if r["on"] == on) for on in (True, False)}
    md = [
        f"# {c['title']} ({a.dataset}, {a.passives} passives, APFed-C, {a.epochs} epochs, K = {a.k} pipelined, TLS"
        " and SuperNode authentication)",
        "",
        "| deployment | epoch (s, median) | run (s, median) | host CPU (s, median) | pulls held (all runs)"
        " | accuracy |",
        "|---|---|---|---|---|---|",
        *(
            f"| {c['long'][0 if on else 1]} | {med[on]['epoch_s']:.2f} | {med[on]['run_s']:.1f} |"
            f" {med[on]['host_cpu_s']:.1f} | {held[on]} | {_accuracies(runs, on)} |"
            for on in (True, False)
        ),
        f"| {name[True]} / {name[False]} | {ratio['epoch_s']:.2f} | {ratio['run_s']:.2f} | {ratio['host_cpu_s']:.2f}"
        " | | |",
        "",
        f"{a.pairs} pairs, the order alternating; each run's epoch is the median of its epochs after the first"
        " (Flower's start-up). Run: from `flwr run` to its end (set-up, PSI, training, the last evaluation, the model"
        " written); host CPU: every process on the host, from the deployment's start to its stop; a pull held: one"
        " of a reply that took 0.5 s or more (Flower's retry of a reply registered before its contents were"
        " uploaded). Every run:",
        "",
        "| # | deployment | epochs (s) | run (s) | host CPU (s) | pulls held | messages |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {i + 1} | {name[r['on']]} | {', '.join(f'{t:.1f}' for t in r['epochs_s'])} | {r['run_s']:.1f} |"
            f" {r['host_cpu_s']:.1f} | {r['pulls_held']} | {r['messages']} |"
            for i, r in enumerate(runs)
        ),
    ]
    report = {
        "comparison": which or a.comparison,
        "settings": {k: v for k, v in vars(a).items() if k != "comparison"},
        "runs": runs,
        "median": {name[True]: med[True], name[False]: med[False]},
        "ratio": ratio,
        "command": c["command"]
        + f" --dataset {a.dataset} --epochs {a.epochs} --k {a.k} --passives {a.passives} --pairs {a.pairs}",
    }
    write_benchmark(Path(a.out) / f"{datetime.date.today()}-{c['slug']}-cpu", report, md)


if __name__ == "__main__":
    main()
