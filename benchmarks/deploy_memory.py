"""Does a long deployment hold its memory? Each process's resident memory, sampled through a loopback deployment.

Deploys APFed-C on digits (3 views: the active party and two passives, TLS and SuperNode authentication, K = 2,
pipelined: many small rounds) and samples the resident set (VmRSS) of every process it started (the SuperLink and
its ServerApp, the SuperNodes, their ClientApps and the passives' workers) every few seconds. A process that keeps
something per round or per message grows with the rounds; one that does not stays flat after its warm-up.
Writes benchmarks/results/<date>-deploy-memory-cpu.{json,md}.
Usage: python benchmarks/deploy_memory.py [--epochs 60] [--every 10] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from apfed.bench import load_deploy
from apfed.report import write_benchmark

deploy = load_deploy()


def started_here(root: int) -> list[int]:
    """Every live process below ``root``, and the passives' workers that those started (a worker detaches from the
    ClientApp that starts it, and names it with ``--parent-pid``), read from /proc."""
    children: dict[int, list[int]] = {}
    workers: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                argv = (d / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
            if "clients.passive_worker" in argv and "--parent-pid" in argv:
                workers[int(d.name)] = int(argv[argv.index("--parent-pid") + 1])
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out + [w for w, parent in workers.items() if parent in out and w not in out]


def sample(pid: int) -> tuple[str, float] | None:
    """The process's role (its program, or ``python -m`` module) and resident memory in MB; None once it is gone."""
    try:
        proc = Path(f"/proc/{pid}")
        argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        rss = next(line for line in (proc / "status").read_text().splitlines() if line.startswith("VmRSS"))
    except (OSError, StopIteration):
        return None
    words = [w for w in argv if w]
    if len(words) > 2 and words[1] == "-m":
        role = words[2]
    else:
        role = Path(words[1] if len(words) > 1 and words[0].endswith(("python", "python3")) else words[0]).name
    return role, int(rss.split()[1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    samples: list[dict] = []
    work = Path(tempfile.mkdtemp(prefix="apfed-deploy-memory-"))
    t0 = time.monotonic()

    def watch(link, done: threading.Event) -> None:
        while not done.is_set():
            now = time.monotonic() - t0
            for pid in started_here(os.getpid()):
                s = sample(pid)
                if s is not None and s[0] not in ("sh", "bash", "flwr"):  # shells and the `flwr run` client
                    samples.append({"t": round(now, 1), "pid": pid, "role": s[0], "rss_mb": round(s[1], 1)})
            done.wait(a.every)

    hit = deploy.deploy(
        work,
        method="apfed-c",
        dataset="digits",
        views=3,
        active="0",
        epochs=a.epochs,
        k=2,
        n_passives=2,
        timeout=3600,
        during=watch,
    )
    rounds = len(hit["history"]) * 6  # digits: 1437 training rows, 12 minibatches per epoch, K = 2
    rows = []
    for pid in dict.fromkeys(s["pid"] for s in samples):
        mine = [s for s in samples if s["pid"] == pid]
        if len(mine) < 4:  # a short-lived helper
            continue
        warm = next((s for s in mine if s["t"] >= mine[0]["t"] + 60), mine[len(mine) // 4])  # after a minute
        last = mine[-1]
        rows.append(
            {
                "role": mine[0]["role"],
                "pid": pid,
                "samples": len(mine),
                "from_s": warm["t"],
                "to_s": last["t"],
                "rss_warm_mb": warm["rss_mb"],
                "rss_last_mb": last["rss_mb"],
                "rss_max_mb": max(s["rss_mb"] for s in mine),
                "growth_mb": round(last["rss_mb"] - warm["rss_mb"], 1),
            }
        )
    report = {
        "epochs": len(hit["history"]),
        "rounds": rounds,
        "messages": hit["wire"]["messages"] if "wire" in hit else None,
        "accuracy": hit["final"]["accuracy"],
        "seconds": round(time.monotonic() - t0, 1),
        "every_s": a.every,
        "processes": rows,
        "samples": samples,
        "command": " ".join(["python", *sys.argv]),
    }
    md = [
        "# Resident memory through a long loopback deployment",
        "",
        f"APFed-C on digits, 3 views (two passives), TLS and SuperNode authentication, K = 2 pipelined: "
        f"{report['epochs']} epochs, {rounds} training rounds, {report['seconds']:.0f} s, test accuracy "
        f"{report['accuracy']:.2f} %. Each process's VmRSS sampled every {a.every:g} s; growth: from the first sample "
        "a minute into the process's life to its last.",
        "",
        "| process | pid | samples | RSS after a minute (MB) | RSS at the end (MB) | max (MB) | growth (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    md += [
        f"| {r['role']} | {r['pid']} | {r['samples']} | {r['rss_warm_mb']:.1f} | {r['rss_last_mb']:.1f} | "
        f"{r['rss_max_mb']:.1f} | {r['growth_mb']:+.1f} |"
        for r in rows
    ]
    write_benchmark(Path(a.out) / f"{datetime.date.today()}-deploy-memory-cpu", report, md)


if __name__ == "__main__":
    main()
