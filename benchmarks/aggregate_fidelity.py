"""Combine the `apfed evaluate` outputs of benchmarks/paper_fidelity.sh into one report against REFERENCE.md.

Usage: python benchmarks/aggregate_fidelity.py RUNDIR OUT_PREFIX   (writes OUT_PREFIX.json and OUT_PREFIX.md)
"""

import json
import sys
from pathlib import Path

REFERENCE = {  # REFERENCE.md §2: mean over the last 10 epochs, mean over 3 seeds
    "top": {"local": 91.05, "apfed-r": 91.30, "apfed-c": 91.51, "tvfl": 95.32},
    "bottom": {"local": 87.65, "apfed-r": 87.80, "apfed-c": 88.18, "tvfl": 95.56},
}


def main(run_dir: Path, prefix: Path) -> None:
    rows, machine = [], None
    for strip, methods in REFERENCE.items():
        for method, ref in methods.items():
            rep = json.loads((run_dir / f"{strip}-{method}" / "results.json").read_text())
            machine = rep["machine"]
            s = rep["summary"][method]
            row = {
                "active": strip,
                "method": method,
                "accuracy_mean": s["accuracy_mean"],
                "accuracy_std": s["accuracy_std"],
                "reference": ref,
                "delta": s["accuracy_mean"] - ref,
                "seeds": s["seeds"],
                "epochs": rep["epochs"],
                "per_seed": [r["accuracy"] for r in rep["runs"]],
                "fills": {k: v["accuracy_mean"] for k, v in rep["summary"].items() if "absent" in k},
            }
            rows.append(row)
    out = {
        "benchmark": "paper-fidelity",
        "dataset": "mnist5k",
        "views": 2,
        "preset": "paper",
        "command": "benchmarks/paper_fidelity.sh OUT cuda 300",
        "machine": machine,
        "rows": rows,
        "within_1_point": all(abs(r["delta"]) <= 1.0 for r in rows),
    }
    prefix.with_suffix(".json").write_text(json.dumps(out, indent=1))
    md = [
        "# Paper-preset fidelity on mnist5k, 2 views",
        "",
        "`--preset paper` (SGD lr 1e-3, momentum 0.9, wd 1e-4, batch 128, 300 epochs, λ = 1, T = 1). Accuracy: test "
        "accuracy averaged over the last 10 epochs, mean ± std over 3 seeds. Reference: REFERENCE.md §2.",
        "",
        "| active strip | method | apfed | reference | Δ |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['active']} | {r['method']} | {r['accuracy_mean']:.2f} ± {r['accuracy_std']:.2f} | "
            f"{r['reference']:.2f} | {r['delta']:+.2f} |"
        )
    fills = [f"{r['active']}: " + " / ".join(f"{v:.1f}" for v in r["fills"].values()) for r in rows if r["fills"]]
    md += [
        "",
        "TVFL with passives absent (zero / mean / rand fill): " + "; ".join(fills),
        "",
        f"All within ±1.0 point: {'yes' if out['within_1_point'] else 'no'}.",
        "",
        f"Machine: {json.dumps(machine)}. Reproduce: `{out['command']}` then "
        "`python benchmarks/aggregate_fidelity.py OUT PREFIX`.",
        "",
    ]
    prefix.with_suffix(".md").write_text("\n".join(md))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
