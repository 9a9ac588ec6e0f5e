"""Aggregate the JSONL lines of explore_offline_kd.py and explore_function_matching.py into one report.

Usage: python benchmarks/aggregate_distillation.py PREFIX OFFLINE_DIR FM_DIR
Writes PREFIX.json and PREFIX.md (mean ± std over seeds per strip, teacher and student).
"""

import collections
import json
import statistics
import sys
from pathlib import Path


def load(d: str, experiment: str) -> list[dict]:
    rows = [json.loads(line) for f in sorted(Path(d).glob("*.jsonl")) for line in f.read_text().splitlines()]
    for r in rows:
        r["experiment"] = experiment
        r.setdefault("teacher", "3 × tvfl, shift 2")
        if r["student"].startswith("(teacher"):
            r["student"] = "(teacher)"
    return rows


def main() -> None:
    prefix, offline, fm = sys.argv[1:4]
    rows = load(offline, "offline KD") + load(fm, "function matching")
    groups = collections.defaultdict(list)
    for r in rows:
        groups[(r["experiment"], r["strip"], r["teacher"], r["student"])].append(r["accuracy"])
    summary = [
        {
            "experiment": e,
            "strip": s,
            "teacher": t,
            "student": st,
            "mean": statistics.mean(v),
            "std": statistics.pstdev(v),
            "n": len(v),
        }
        for (e, s, t, st), v in sorted(groups.items())
    ]
    Path(prefix + ".json").write_text(json.dumps({"summary": summary, "runs": rows}, indent=1))
    md = [
        "# Two-stage distillation on mnist5k, 2 views (default recipe: Adam, cosine, batch 128)",
        "",
        "Teachers are TVFL models trained through the real clients (in-process); students are fresh active-only "
        "networks. Accuracy: mean test accuracy over the last 10 epochs, mean ± std over seeds. Student names: "
        "kd-T<temperature>, w3 = KD weight 3, only = no label loss, s2 = horizontal shift ≤ 2 px, m<α> = mixup, "
        "e<epochs>; fm = function matching (the teacher sees the same augmented, mixed input as the student; "
        "fm3 = mean of 3 teachers); local = no teacher. Reproduce on a GPU: "
        "`python benchmarks/explore_offline_kd.py OUT STRIP SEED cuda` and "
        "`python benchmarks/explore_function_matching.py OUT STRIP SEED cuda` for strips top/bottom, seeds 0-2.",
        "",
        "| experiment | strip | teacher | student | accuracy | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for r in summary:
        md.append(
            f"| {r['experiment']} | {r['strip']} | {r['teacher']} | {r['student']} | "
            f"{r['mean']:.2f} ± {r['std']:.2f} | {r['n']} |"
        )
    Path(prefix + ".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
