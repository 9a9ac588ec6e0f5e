"""Epoch time of the in-process protocol against the bare forward/backward compute of the same modules."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from apfed.config import TrainConfig
from apfed.data.views import MultiViewDataset, Preprocessor
from apfed.graphs import WARMUP, StepGraphs
from apfed.learner import make_optimizer
from apfed.losses import nt_xent
from apfed.models import encoder_output_shape, make_encoder, make_head, make_projection


def bare_apfed_c_epoch(
    ds: MultiViewDataset, active: int, cfg: TrainConfig, graph: bool = False, split: bool = False
) -> float:
    """Seconds for one epoch of APFed-C's modules (every party's encoder, the task head, every projection head,
    the optimizer steps) in one process and one autograd graph, with no protocol at all.

    ``graph`` (CUDA only): the whole step of every party captured as one CUDA graph (apfed.graphs), the floor
    of what the GPU can do with these modules; the last, shorter minibatch runs eagerly.
    ``split``: still no protocol, but one forward/backward/optimizer call per party, as the parties of a
    vertical split must (each passive back-propagates its NT-Xent alone, the active then applies the
    passives' gradients): the floor of any VFL implementation of these modules."""
    dev = cfg.device
    tr = ds.train_idx
    views = [ds.views[active]] + [v for i, v in enumerate(ds.views) if i != active]
    X = [torch.from_numpy(Preprocessor.fit(v, tr)(v.X[tr])).to(dev) for v in views]
    y = torch.from_numpy(ds.labels[tr]).to(dev)
    specs = [{"kind": v.kind, "shape": list(v.shape)} for v in views]
    d = [int(torch.tensor(encoder_output_shape(s, cfg.embedding_dim)).prod()) for s in specs]
    encoders = [make_encoder(s, cfg.embedding_dim, cfg.hidden_dim).to(dev) for s in specs]
    head = make_head(d[0], cfg.head_hidden, len(ds.class_names), cfg.dropout).to(dev)
    projections = [make_projection(di, cfg.projection_dim).to(dev) for di in d]  # the active's is shared
    opts = [make_optimizer([*encoders[0].parameters(), *head.parameters(), *projections[0].parameters()], cfg)]
    passive_modules = zip(encoders[1:], projections[1:], strict=True)
    opts += [make_optimizer([*e.parameters(), *p.parameters()], cfg) for e, p in passive_modules]

    def step(t: dict[str, torch.Tensor], captured: bool = False) -> dict[str, torch.Tensor]:
        idx = t["idx"]
        h = encoders[0](X[0][idx])
        z = projections[0](h)
        loss = F.cross_entropy(head(h), y[idx])
        for e, p, x in zip(encoders[1:], projections[1:], X[1:], strict=True):
            loss = loss + cfg.lam * nt_xent(z, p(e(x[idx])), cfg.temperature)
        for o in opts:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for o in opts:
            o.step_captured() if captured else o.step()
        return {"loss": loss.detach()}

    def split_step(t: dict[str, torch.Tensor]) -> None:
        idx = t["idx"]
        with torch.no_grad():
            z = projections[0](encoders[0](X[0][idx]))
        grads = []
        for e, p, x, o in zip(encoders[1:], projections[1:], X[1:], opts[1:], strict=True):
            a = z.detach().requires_grad_(True)
            loss = nt_xent(a, p(e(x[idx])), cfg.temperature)
            o.zero_grad(set_to_none=True)
            loss.backward()
            o.step()
            grads.append(a.grad)
        h = encoders[0](X[0][idx])
        z = projections[0](h)
        loss = F.cross_entropy(head(h), y[idx])
        for g in grads:
            loss = loss + cfg.lam * (z * g).sum()
        opts[0].zero_grad(set_to_none=True)
        loss.backward()
        opts[0].step()

    run = StepGraphs(step, opts) if graph and dev.startswith("cuda") and not split else None
    if run is not None:  # warm up and capture outside the timed epoch
        warm = torch.arange(cfg.batch_size, device=dev)
        for _ in range(WARMUP + 1):
            run(len(warm), {"idx": warm})
    _sync(dev)
    t0 = time.perf_counter()
    for idx in torch.randperm(len(y), device=dev).split(cfg.batch_size):
        if run is not None and len(idx) == cfg.batch_size:
            run(len(idx), {"idx": idx})
        elif split:
            split_step({"idx": idx})
        else:
            step({"idx": idx})
    _sync(dev)
    return time.perf_counter() - t0


def alternate(repeats: int, first: Callable[[], None], second: Callable[[], None]) -> None:
    """Run ``first`` and ``second`` ``repeats`` times each, swapping their order every time: noise hits both
    alike, and on a shared host the second of a back-to-back pair tends to run slower."""
    for i in range(repeats):
        for f in (first, second) if i % 2 == 0 else (second, first):
            f()


def _sync(dev: str) -> None:
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def compare(ds: MultiViewDataset, active: int, cfg: TrainConfig, repeats: int = 5) -> dict:
    """Interleave protocol epochs and bare epochs (noise hits both alike); report medians and their ratio."""
    from apfed.runner import build_clients

    cfg = TrainConfig(**{**cfg.to_dict(), "method": "apfed-c", "epochs": 1})
    client = build_clients(ds, active, cfg)
    client.setup()
    client.evaluate = lambda: {"accuracy": 0.0}  # time training only
    gpu = cfg.device.startswith("cuda")
    protocol, bare, bare_graph = [], [], []
    bare_apfed_c_epoch(ds, active, cfg)  # warm-up
    if gpu:
        client.fit()  # warm-up: CUDA-graph capture

    def protocol_epoch() -> None:
        _sync(cfg.device)
        client.history.clear()
        client.fit()
        _sync(cfg.device)
        protocol.append(client.history[-1]["train_time"])

    def bare_epochs() -> None:
        bare.append(bare_apfed_c_epoch(ds, active, cfg))
        if gpu:
            bare_graph.append(bare_apfed_c_epoch(ds, active, cfg, graph=True))

    alternate(repeats, protocol_epoch, bare_epochs)
    p, b = statistics.median(protocol), statistics.median(bare)
    out = {
        "protocol_epoch_s": protocol,
        "bare_epoch_s": bare,
        "protocol_median_s": p,
        "bare_median_s": b,
        "ratio": p / b,
    }
    if gpu:
        bg = statistics.median(bare_graph)
        out.update(bare_graph_epoch_s=bare_graph, bare_graph_median_s=bg, ratio_to_graph=p / bg)
    return out
