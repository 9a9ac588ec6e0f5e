"""Where an in-process APFed-C epoch spends its time (mnist5k, 2 views, paper preset): per-epoch time against
the bare compute, plus cProfile and torch.profiler summaries. Usage: python benchmarks/profile_epoch.py --device cuda"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

import torch

from apfed.config import make_config
from apfed.data.bundled import load_bundled
from apfed.runner import build_clients
from apfed.speed import _sync, bare_apfed_c_epoch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--method", default="apfed-c")
    ap.add_argument("--no-graphs", action="store_true")
    ap.add_argument("--tf32", action="store_true")
    ap.add_argument("--cudnn-benchmark", action="store_true")
    ap.add_argument("--no-profile", action="store_true")
    a = ap.parse_args()
    if a.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    if a.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    ds = load_bundled("mnist5k", 2)
    cfg = make_config("paper", method=a.method, epochs=1, device=a.device, cuda_graphs=not a.no_graphs)
    client = build_clients(ds, 0, cfg)
    client.setup()
    ev = client.evaluate
    for i in range(a.epochs):
        client.history.clear()
        _sync(a.device)
        t0 = time.perf_counter()
        client.fit()
        _sync(a.device)
        t1 = time.perf_counter()
        ev()
        _sync(a.device)
        t2 = time.perf_counter()
        b = bare_apfed_c_epoch(ds, 0, cfg)
        print(f"epoch {i}: fit {t1 - t0:.4f} s (incl. eval) eval {t2 - t1:.4f} s bare {b:.4f} s", flush=True)
    if a.no_profile:
        return
    pr = cProfile.Profile()
    pr.enable()
    client.history.clear()
    client.fit()
    _sync(a.device)
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(25)
    print(s.getvalue())
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if a.device.startswith("cuda") else [])
    with profile(activities=acts) as prof:
        client.history.clear()
        client.fit()
        _sync(a.device)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


if __name__ == "__main__":
    main()
