"""What the leaner NT-Xent (2026-12-06: no division at temperature 1, the self-pairs filled in place, the positives'
index kept per batch size) saves, against the formula it replaced, which is kept here: the same loss and gradients
bit for bit (checked first). Timed alone (forward and backward, B = 128, 64 wide) and as in-process APFed-C epochs
of one run, every learner switched between the two before each epoch, in either order in turn (K = 1, CPU).

Usage: python benchmarks/nt_xent_speed.py [--pairs 15] [--out benchmarks/results/DATE-nt-xent-speed-cpu]"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F

import apfed.learner
from apfed.losses import nt_xent
from apfed.report import write_benchmark
from apfed.speed import alternate, paired_epochs


def nt_xent_before(z_a: torch.Tensor, z_p: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """apfed.losses.nt_xent until 2026-12-06."""
    b = z_a.shape[0]
    z = F.normalize(torch.cat([z_a, z_p]), dim=1)
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b, device=z.device), torch.arange(0, b, device=z.device)])
    return F.cross_entropy(sim, target)


def same_bits(temperature: float) -> bool:
    gen = torch.Generator().manual_seed(0)
    a, p = (torch.randn(128, 64, generator=gen, requires_grad=True) for _ in range(2))
    out = []
    for f in (nt_xent_before, nt_xent):
        loss = f(a, p, temperature)
        out.append((loss.detach(), *torch.autograd.grad(loss, [a, p])))
    return all(torch.equal(x, y) for x, y in zip(*out, strict=True))


def alone(temperature: float, rounds: int = 40, calls: int = 100) -> dict:
    a, p = (torch.randn(128, 64, requires_grad=True) for _ in range(2))
    times: dict[str, list[float]] = {"before": [], "now": []}

    def timed(name: str, f: Callable) -> Callable[[], None]:
        def run() -> None:
            t = time.perf_counter()
            for _ in range(calls):
                a.grad = p.grad = None
                f(a, p, temperature).backward()
            times[name].append((time.perf_counter() - t) / calls * 1e6)

        return run

    alternate(rounds, timed("before", nt_xent_before), timed("now", nt_xent))
    return {"temperature": temperature, **{f"{k}_us": statistics.median(v) for k, v in times.items()}}


def switches(client) -> dict:
    """The learners' NT-Xent: the formula before 2026-12-06, or the current one."""

    def use(f: Callable) -> Callable[[], None]:
        def switch() -> None:
            apfed.learner.nt_xent = f

        return switch

    return {"before": use(nt_xent_before), "now": use(nt_xent)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=15)
    ap.add_argument("--out", default=f"benchmarks/results/{date.today()}-nt-xent-speed-cpu")
    a = ap.parse_args()
    if not (same_bits(1.0) and same_bits(0.5)):
        raise SystemExit("the two formulas differ: nothing to time")
    single = [alone(t) for t in (1.0, 0.5)]
    points = (("handwritten", "default"), ("mnist5k", "paper"))
    try:
        rows = [paired_epochs(d, p, switches, a.pairs) for d, p in points]
    finally:
        apfed.learner.nt_xent = nt_xent
    md = [
        "# NT-Xent, the formula before 2026-12-06 against the current one (the same bits)",
        "",
        "| forward + backward, B = 128, 64 wide | before (µs, median) | now (µs, median) | now / before |",
        "|---|---|---|---|",
        *(
            f"| temperature {r['temperature']} | {r['before_us']:.0f} | {r['now_us']:.0f} | "
            f"{r['now_us'] / r['before_us']:.3f} |"
            for r in single
        ),
        "",
        f"| in-process APFed-C epoch, K = 1, {a.pairs} pairs | before (s, median) | now (s, median) | now / before "
        "| pairs where now is faster |",
        "|---|---|---|---|---|",
        *(
            f"| {r['dataset']}, {r['preset']} preset | {r['before_s']:.4f} | {r['now_s']:.4f} | {r['ratio']:.3f} | "
            f"{r['faster']}/{a.pairs} |"
            for r in rows
        ),
        "",
        f"torch threads {torch.get_num_threads()}; every learner switched between the two formulas before each epoch"
        " of one run, in either order in turn (the passives compute the NT-Xent; the handwritten run has 5 of them).",
    ]
    cmd = f"python benchmarks/nt_xent_speed.py --pairs {a.pairs}"
    report = {"benchmark": "nt-xent speed", "alone": single, "rows": rows, "command": cmd}
    write_benchmark(Path(a.out), report, md)


if __name__ == "__main__":
    main()
