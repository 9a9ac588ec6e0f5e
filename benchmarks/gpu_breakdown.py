"""Break an in-process APFed-C epoch on a GPU into its parts (mnist5k, 2 views, paper preset): the epoch with
CUDA graphs, without them, without the value checks' host syncs, and the replay cost of each role's graph."""

from __future__ import annotations

import statistics
import time

import torch

import protocols.validation as validation
from apfed.config import make_config
from apfed.data.bundled import load_bundled
from apfed.runner import build_clients
from apfed.speed import bare_apfed_c_epoch


def epochs(cfg, n=5) -> float:
    client = build_clients(load_bundled("mnist5k", 2), 0, cfg)
    client.setup()
    times = []
    for _ in range(n):
        client.history.clear()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        client.fit()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:]), client


def main() -> None:
    cfg = make_config("paper", method="apfed-c", epochs=1, device="cuda")
    g, client = epochs(cfg)
    print(f"graphs: {g:.4f} s/epoch, accuracy after 5 epochs {client.history[-1]['accuracy']:.2f}", flush=True)
    e, client = epochs(make_config("paper", method="apfed-c", epochs=1, device="cuda", cuda_graphs=False))
    print(f"eager: {e:.4f} s/epoch, accuracy after 5 epochs {client.history[-1]['accuracy']:.2f}", flush=True)
    saved = validation._read_back
    validation._read_back = lambda checks: [True for _ in checks]
    try:
        n, _ = epochs(cfg)
    finally:
        validation._read_back = saved
    print(f"graphs, value checks not read back: {n:.4f} s/epoch", flush=True)
    b = statistics.median(bare_apfed_c_epoch(load_bundled("mnist5k", 2), 0, cfg) for _ in range(5))
    print(f"bare eager: {b:.4f} s/epoch", flush=True)
    L = client.learner
    idx = client.train_idx[:128]
    g0 = torch.zeros(128, 64, device="cuda")
    per_call("active step", lambda: L.step(idx, [g0], [None], 0.5))
    per_call("active outgoing", lambda: L.outgoing(idx))


def per_call(name: str, fn, n: int = 200) -> None:
    """CPU time per call (launches) and time per call including the GPU work, after a warm-up."""
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    t2 = time.perf_counter()
    print(f"{name}: {(t1 - t0) / n * 1e6:.0f} us CPU per call, {(t2 - t0) / n * 1e6:.0f} us incl. GPU", flush=True)


def micro() -> None:
    """Profile the active step's replay path alone."""
    from torch.profiler import ProfilerActivity, profile

    cfg = make_config("paper", method="apfed-c", epochs=1, device="cuda")
    _, client = epochs(cfg, 2)
    L = client.learner
    idx = client.train_idx[:128]
    g0 = torch.zeros(128, 64, device="cuda")
    per_call("step", lambda: L.step(idx, [g0], [None], 0.5), 100)
    e = L.graphs.entries[(128, (True,))]
    per_call("replay", e.graph.replay, 100)
    per_call("before_replay", L.opts[0].before_replay, 100)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(20):
            L.step(idx, [g0], [None], 0.5)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=25))


if __name__ == "__main__":
    import sys

    micro() if "--micro" in sys.argv else main()
