"""Would handling the passives concurrently speed up an in-process epoch on the CPU? (issue 5, section 3:
"overlapping the active party's compute with the passives' replies".)

The in-process transport calls each passive's handler in turn. Here a variant hands every passive its own worker
thread (one per passive, so each still handles its requests in order) and the active collects the replies. Each
variant runs in fresh processes, alternated (in one process the other variant's idle threads would disturb it),
each process timing in-process epochs interleaved with the bare compute of the same modules
(``apfed.speed.bare_joint_epoch``). Medians per process; the table gives the median over processes.

Usage: python benchmarks/overlap_passives.py [--method apfed-c] [--processes 3] [--epochs 10] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from protocols.messages import Message  # noqa: E402
from protocols.transport import InProcessTransport  # noqa: E402

VARIANTS = ("sequential", "threaded")


class ThreadedTransport(InProcessTransport):
    """Every passive handles its requests on its own thread; ``submit`` returns at once, ``collect`` waits."""

    def __init__(self, handlers: dict):
        super().__init__(handlers)
        self.pools = {n: ThreadPoolExecutor(1, thread_name_prefix=n) for n in handlers}

    def submit(self, requests: dict[str, Message]) -> dict:
        return {n: self.pools[n].submit(self.handlers[n], self._wire(r)) for n, r in requests.items()}

    def collect(self, ticket: dict) -> dict[str, Message]:
        return {n: self._wire(f.result()) for n, f in ticket.items()}

    def exchange(self, requests: dict[str, Message]) -> dict[str, Message]:
        return self.collect(self.submit(requests))

    def close(self) -> None:
        for p in self.pools.values():
            p.shutdown()


def child(variant: str, method: str, epochs: int, threads: int) -> dict:
    """One process: ``epochs`` in-process epochs of ``variant`` interleaved with as many bare epochs; medians."""
    import torch

    from apfed.config import make_config
    from apfed.data import load_bundled
    from apfed.speed import _timed_client, alternate, bare_joint_epoch, joint_copies

    torch.set_num_threads(threads)
    ds = load_bundled("handwritten")
    cfg = make_config("default", method=method, device="cpu", epochs=1)
    client, epoch, times = _timed_client(ds, ds.view_index("fou"), cfg)
    A, Ps = joint_copies(client)
    if variant == "threaded":
        client.transport = ThreadedTransport(client.transport.handlers)
    bare: list[float] = []
    for _ in range(2):  # warm-up
        epoch()
        bare_joint_epoch(A, Ps, client.train_idx)
    times.clear()
    alternate(epochs, epoch, lambda: bare.append(bare_joint_epoch(A, Ps, client.train_idx)))
    client.transport.close()
    return {"epoch_s": statistics.median(times), "bare_s": statistics.median(bare)}


def _verdict(rows: list[dict]) -> list[str]:
    """Per thread count: threaded against sequential, for the in-process epoch and for the bare epoch beside it."""
    out = []
    for t in sorted({r["torch_threads"] for r in rows}):
        seq, thr = (next(r for r in rows if r["torch_threads"] == t and r["transport"] == v) for v in VARIANTS)
        out.append(
            f"- {t} torch thread(s): threaded / sequential in-process epoch {thr['epoch_s'] / seq['epoch_s']:.2f};"
            f" bare epoch beside the threaded run / beside the sequential one {thr['bare_s'] / seq['bare_s']:.2f}."
        )
    one = min(rows, key=lambda r: r["torch_threads"])["torch_threads"]
    seq, thr = (next(r for r in rows if r["torch_threads"] == one and r["transport"] == v) for v in VARIANTS)
    gain = thr["epoch_s"] / seq["epoch_s"]
    out += [
        "",
        f"With {one} torch thread(s) the threaded epoch is {'' if gain < 0.95 else 'not '}shorter by 5 % or more"
        f" ({gain:.2f}). Where more torch threads make both the epoch and the bare epoch beside it slower, our reading"
        " (not profiled further) is that every worker thread gets its own OpenMP team, whose threads stay awake"
        " between calls and take the cores from the thread that computes.",
    ]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="apfed-c")
    ap.add_argument("--processes", type=int, default=3, help="fresh processes per variant and thread count")
    ap.add_argument("--epochs", type=int, default=10, help="timed epochs (and bare epochs) per process")
    ap.add_argument("--threads", default="1,2", help="torch intra-op thread counts to try")
    ap.add_argument("--child", nargs=3, metavar=("VARIANT", "THREADS", "METHOD"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child[0], a.child[2], a.epochs, int(a.child[1]))))
        return
    from apfed.report import write_benchmark

    rows = []
    for threads in [int(t) for t in a.threads.split(",")]:
        got: dict[str, list[dict]] = {v: [] for v in VARIANTS}
        for i in range(a.processes):
            order = ("sequential", "threaded") if i % 2 == 0 else ("threaded", "sequential")
            for variant in order:
                out = subprocess.run(
                    [sys.executable, __file__, "--epochs", str(a.epochs), "--child", variant, str(threads), a.method],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                got[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
        for variant, runs in got.items():
            e = statistics.median(r["epoch_s"] for r in runs)
            b = statistics.median(r["bare_s"] for r in runs)
            rows.append(
                {
                    "torch_threads": threads,
                    "transport": variant,
                    "epoch_s": e,
                    "bare_s": b,
                    "ratio": e / b,
                    "per_process": runs,
                }
            )
            print(rows[-1], flush=True)
    md = [
        f"# Passives handled concurrently in-process? handwritten, {a.method}, 5 passives, K = 1, CPU",
        "",
        "| torch threads | transport | in-process epoch (s) | bare epoch, same process (s) | ratio |",
        "|---|---|---|---|---|",
        *(
            f"| {r['torch_threads']} | {r['transport']} | {r['epoch_s']:.3f} | {r['bare_s']:.3f} | {r['ratio']:.2f} |"
            for r in rows
        ),
        "",
        f"Medians over {a.processes} fresh processes per row, each the median of {a.epochs} epochs interleaved with"
        " as many bare epochs (every party's modules as one model, no protocol, the same torch threads). threaded:"
        " one worker thread per passive (benchmarks/overlap_passives.py), so the passives' handlers may run at the"
        " same time.",
        "",
        *(_verdict(rows)),
    ]
    write_benchmark(
        ROOT / "benchmarks" / "results" / f"{date.today().isoformat()}-overlap-passives-cpu",
        {
            "command": "python benchmarks/overlap_passives.py "
            f"--method {a.method} --processes {a.processes} --epochs {a.epochs} --threads {a.threads}",
            "rows": rows,
        },
        md,
    )


if __name__ == "__main__":
    main()
