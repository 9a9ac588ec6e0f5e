"""Epoch time of the in-process protocol against the bare forward/backward compute of the same modules."""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from apfed.config import TrainConfig
from apfed.data.views import MultiViewDataset, Preprocessor
from apfed.learner import make_optimizer
from apfed.losses import nt_xent
from apfed.models import encoder_output_shape, make_encoder, make_head, make_projection


def bare_apfed_c_epoch(ds: MultiViewDataset, active: int, cfg: TrainConfig) -> float:
    """Seconds for one epoch of APFed-C's modules (both encoders, task head, both projection heads, optimizer
    steps) in one process and one graph, with no protocol at all."""
    dev = cfg.device
    tr = ds.train_idx
    views = [ds.views[active], next(v for i, v in enumerate(ds.views) if i != active)]
    X = [torch.from_numpy(Preprocessor.fit(v, tr)(v.X[tr])).to(dev) for v in views]
    y = torch.from_numpy(ds.labels[tr]).to(dev)
    specs = [{"kind": v.kind, "shape": list(v.shape)} for v in views]
    d = [int(torch.tensor(encoder_output_shape(s, cfg.embedding_dim)).prod()) for s in specs]
    enc_a, enc_p = (make_encoder(s, cfg.embedding_dim, cfg.hidden_dim).to(dev) for s in specs)
    head = make_head(d[0], cfg.head_hidden, len(ds.class_names), cfg.dropout).to(dev)
    proj_a, proj_p = (
        make_projection(d[0], cfg.projection_dim).to(dev),
        make_projection(d[1], cfg.projection_dim).to(dev),
    )
    opt_a = make_optimizer([*enc_a.parameters(), *head.parameters(), *proj_a.parameters()], cfg)
    opt_p = make_optimizer([*enc_p.parameters(), *proj_p.parameters()], cfg)
    _sync(dev)
    t0 = time.perf_counter()
    for idx in torch.randperm(len(y), device=dev).split(cfg.batch_size):
        h = enc_a(X[0][idx])
        loss = F.cross_entropy(head(h), y[idx]) + cfg.lam * nt_xent(
            proj_a(h), proj_p(enc_p(X[1][idx])), cfg.temperature
        )
        opt_a.zero_grad(set_to_none=True)
        opt_p.zero_grad(set_to_none=True)
        loss.backward()
        opt_a.step()
        opt_p.step()
    _sync(dev)
    return time.perf_counter() - t0


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
    protocol, bare = [], []
    bare_apfed_c_epoch(ds, active, cfg)  # warm-up
    for _ in range(repeats):
        _sync(cfg.device)
        client.history.clear()
        client.fit()
        _sync(cfg.device)
        protocol.append(client.history[-1]["train_time"])
        bare.append(bare_apfed_c_epoch(ds, active, cfg))
    p, b = statistics.median(protocol), statistics.median(bare)
    return {
        "protocol_epoch_s": protocol,
        "bare_epoch_s": bare,
        "protocol_median_s": p,
        "bare_median_s": b,
        "ratio": p / b,
    }
