"""Time of ECDH-PSI alignment per party, for N IDs per party (half of them shared).

Measures the protocol's compute (hashing to the curve, blinding, matching) for the active and one passive
party, in one process on this machine. Wire: 32 bytes per active ID to the passive, 32 bytes per active ID plus
32 per passive ID back (plus the alignment positions, 8 bytes per shared row). Writes
benchmarks/results/<date>-psi-timing-cpu.{json,md}.
Each size runs with one process per party and with blinding processes per party (``psi_workers()``: one per
core, or APFED_PSI_WORKERS), their start included.
Usage: python benchmarks/psi_timing.py [--sizes 10000 100000 1000000] [--label WORD]
"""

import argparse
import datetime
import time
from pathlib import Path

import numpy as np

from apfed.report import write_benchmark
from protocols.psi import PsiKey, hash_to_points, match, psi_workers


def one(n: int, workers: int) -> dict:
    active_ids = [f"customer-{i:08d}" for i in range(n)]
    passive_ids = [f"customer-{i:08d}" for i in range(n // 2, n + n // 2)]
    t = {"active_s": 0.0, "passive_s": 0.0}
    with PsiKey(workers) as a, PsiKey(workers) as p:
        t0 = time.perf_counter()
        sent = a.blind(hash_to_points(active_ids, "run"))  # active: step 1
        t1 = time.perf_counter()
        double = p.blind(sent)  # passive: step 2
        order = np.random.default_rng(0).permutation(n)
        own = p.blind(hash_to_points([passive_ids[i] for i in order], "run"))
        t2 = time.perf_counter()
        pos = match(double, a.blind(own))  # active: step 3
        t3 = time.perf_counter()
    t["active_s"], t["passive_s"] = (t1 - t0) + (t3 - t2), t2 - t1
    found = int((pos >= 0).sum())
    assert found == n - n // 2, found
    return {
        "ids_per_party": n,
        "processes_per_party": workers,
        "intersection": found,
        **t,
        "mb_active_to_passive": 32 * n / 1e6,
        "mb_passive_to_active": 64 * n / 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--label", default="", help="a word added to the report's name (another run the same day)")
    a = ap.parse_args()
    rows = []
    for n in a.sizes:
        for workers in sorted({1, psi_workers()}):
            rows.append(one(n, workers))
            print(rows[-1], flush=True)
    rep = {
        "benchmark": "ECDH-PSI timing",
        "rows": rows,
        "command": "python benchmarks/psi_timing.py --sizes "
        + " ".join(map(str, a.sizes))
        + (f" --label {a.label}" if a.label else ""),
    }
    prefix = Path(a.out) / f"{datetime.date.today()}-psi-timing{'-' + a.label if a.label else ''}-cpu"
    md = [
        "# ECDH-PSI alignment time (X25519)",
        "",
        "N IDs per party, half shared. Active: hash + blind its IDs, then blind the passive's list and match. "
        "Passive: blind the active's list and its own (shuffled). Compute only, both parties in one process, one "
        "after the other. Processes: the blinding processes that serve lists of 20,000 points or more (plain "
        "`python -c` processes, one socket each, driven by the party's main thread), their start included.",
        "",
        "| IDs per party | processes per party | intersection | active (s) | passive (s) | MB active → passive |"
        " MB passive → active |",
        "|---|---|---|---|---|---|---|",
    ]
    md += [
        f"| {r['ids_per_party']:,} | {r['processes_per_party']} | {r['intersection']:,} | {r['active_s']:.1f} | "
        f"{r['passive_s']:.1f} | {r['mb_active_to_passive']:.1f} | {r['mb_passive_to_active']:.1f} |"
        for r in rows
    ]
    write_benchmark(prefix, rep, md)


if __name__ == "__main__":
    main()
