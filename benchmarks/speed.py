"""In-process epoch time against the bare forward/backward compute of the same modules, in one run.

mnist5k, 2 views, APFed-C, paper networks and paper preset (SGD, batch 128), active strip top.
Protocol epochs and bare epochs are interleaved so machine noise hits both alike; medians and their ratio
are reported. Usage: python benchmarks/speed.py [--device cpu|cuda] [--repeats N] [--out benchmarks/results]
"""

import argparse
import datetime
import platform
from pathlib import Path

from apfed.config import make_config
from apfed.data import load_bundled
from apfed.report import machine, write_benchmark
from apfed.speed import compare


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    ds = load_bundled("mnist5k")
    res = compare(ds, 0, make_config("paper", method="apfed-c", device=a.device), repeats=a.repeats)
    kind = "gpu" if a.device.startswith("cuda") else "cpu"
    prefix = Path(a.out) / f"{datetime.date.today()}-speed-{kind}-{platform.node()[:12] or 'host'}"
    rep = {
        "benchmark": "in-process vs bare compute",
        "dataset": "mnist5k",
        "views": 2,
        "method": "apfed-c",
        "preset": "paper",
        "device": a.device,
        "machine": machine(),
        **res,
        "command": f"python benchmarks/speed.py --device {a.device} --repeats {a.repeats}",
    }
    md = [
        "# In-process epoch time vs bare compute",
        "",
        f"mnist5k, 2 views, APFed-C, paper networks and preset, device `{a.device}`, {a.repeats} interleaved repeats.",
        "",
        "| | median epoch (s) | all epochs (s) |",
        "|---|---|---|",
        f"| apfed in-process (ActiveClient + PassiveClient + messages + validation) | {res['protocol_median_s']:.3f} "
        f"| {', '.join(f'{x:.2f}' for x in res['protocol_epoch_s'])} |",
        f"| bare forward/backward of the same modules | {res['bare_median_s']:.3f} "
        f"| {', '.join(f'{x:.2f}' for x in res['bare_epoch_s'])} |",
        "",
        f"Ratio (median / median): **{res['ratio']:.3f}** (goal ≤ 1.15).",
    ]
    write_benchmark(prefix, rep, md)


if __name__ == "__main__":
    main()
