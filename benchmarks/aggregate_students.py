"""Summarise the JSONL lines of an exploration script (benchmarks/explore_*.py: one line per teacher or student,
with its strip, seed and accuracy) into PREFIX.json and PREFIX.md: mean ± std over the seeds per strip and
student, and each student's gain over `local` of the same strip and seed (none for a name in parentheses: a teacher
or a diagnostic).

Usage: python benchmarks/aggregate_students.py PREFIX DIR --intro INTRO.md --machine "one NVIDIA H200" --command CMD
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
from pathlib import Path

from apfed.report import write_benchmark


def summarise(rows: list[dict]) -> list[dict]:
    """One entry per (strip, student), in the order they first appear: mean, std, the gain over local paired by
    seed (mean and std) and the number of seeds."""
    acc = collections.defaultdict(dict)
    for r in rows:
        acc[(r["strip"], r["student"])][r["seed"]] = r["accuracy"]
    out = []
    for (strip, student), by_seed in acc.items():
        local = acc.get((strip, "local"), {})
        gains = [a - local[s] for s, a in by_seed.items() if s in local]
        v = list(by_seed.values())
        out.append(
            {
                "strip": strip,
                "student": student,
                "mean": statistics.mean(v),
                "std": statistics.pstdev(v),
                "vs_local_mean": statistics.mean(gains) if gains else None,
                "vs_local_std": statistics.pstdev(gains) if gains else None,
                "n": len(v),
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("prefix", type=Path)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--intro", type=Path, required=True, help="markdown put above the table")
    ap.add_argument("--machine", required=True, help="the machine the runs ran on, in words")
    ap.add_argument("--command", required=True, help="the command that made the JSONL lines")
    a = ap.parse_args()
    rows = [json.loads(line) for f in sorted(a.dir.glob("*.jsonl")) for line in f.read_text().splitlines() if line]
    summary = summarise(rows)
    md = [
        a.intro.read_text().rstrip(),
        "",
        "| strip | student | accuracy | gain over same-recipe local (paired by seed) |",
        "|---|---|---|---|",
    ]
    for s in summary:
        gain = (
            ""
            if s["student"] == "local" or s["student"].startswith("(") or s["vs_local_mean"] is None
            else (f"{s['vs_local_mean']:+.2f} ± {s['vs_local_std']:.2f}")
        )
        md.append(f"| {s['strip']} | {s['student']} | {s['mean']:.2f} ± {s['std']:.2f} | {gain} |")
    report = {"summary": summary, "runs": rows, "machine": a.machine, "command": a.command}
    write_benchmark(a.prefix, report, md)


if __name__ == "__main__":
    main()
