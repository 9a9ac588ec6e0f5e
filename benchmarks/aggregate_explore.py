"""Summarise an exploration directory of `apfed evaluate` outputs (benchmarks/explore_*.sh) into one report.

Usage: python benchmarks/aggregate_explore.py OUT_PREFIX RUNDIR [RUNDIR ...]
"""

import json
import sys
from pathlib import Path


def main(prefix: Path, dirs: list[Path]) -> None:
    rows, machine = [], None
    for d in dirs:
        for f in sorted(d.glob("*/results.json")):
            rep = json.loads(f.read_text())
            machine = rep["machine"]
            cfg = rep["config"]
            knobs = {
                k: cfg[k]
                for k in (
                    "epochs",
                    "lam",
                    "temperature",
                    "kd_temperature",
                    "kd_weight",
                    "feature_weight",
                    "teacher_grad",
                    "passive_losses",
                    "mixup",
                    "shift",
                )
                if k in cfg
            }
            for m, s in rep["summary"].items():
                if "absent" in m:
                    continue
                rows.append(
                    {
                        "config": f.parent.name,
                        "active": rep["active_view"],
                        "method": m,
                        "accuracy_mean": s["accuracy_mean"],
                        "accuracy_std": s["accuracy_std"],
                        "seeds": s["seeds"],
                        "knobs": knobs,
                    }
                )
    prefix.with_suffix(".json").write_text(
        json.dumps(
            {"benchmark": "default-recipe-exploration", "dataset": "mnist5k", "machine": machine, "rows": rows},
            indent=1,
        )
    )
    md = [
        "# Default-recipe exploration on mnist5k, 2 views (preset `default` + overrides)",
        "",
        "Each row: test accuracy averaged over the last 10 epochs, mean ± std over the seeds shown. "
        "The run directory name lists the overrides (m = mixup α, s = shift px, e = epochs, kd-* = KD knobs).",
        "",
        "| config | active | method | accuracy | seeds |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['config']} | {r['active']} | {r['method']} | {r['accuracy_mean']:.2f} ± {r['accuracy_std']:.2f} "
            f"| {r['seeds']} |"
        )
    md += ["", f"Machine: {json.dumps(machine)}", ""]
    prefix.with_suffix(".md").write_text("\n".join(md))


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
