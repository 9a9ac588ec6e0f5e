"""One training run over the in-process transport: build the parties from a dataset, train, summarise.

This sits above the core: it wires data, clients and a transport together. Flower runs use the same
ActiveClient and PassiveClient with another transport."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from apfed.config import STANDALONE, TrainConfig
from apfed.data.views import MultiViewDataset, split_parties
from apfed.standalone import StandaloneModel
from clients.active import ActiveClient
from clients.passive import PassiveClient
from protocols.transport import InProcessTransport


@dataclass
class RunResult:
    method: str
    seed: int
    accuracy: float  # mean test accuracy over the last ``eval_last`` epochs
    final: dict  # metrics of the final model
    history: list[dict]
    extra: dict = field(default_factory=dict)  # e.g. tvfl fills, kd teacher: last-N means
    seconds: float = 0.0
    epoch_seconds: float = 0.0
    wire: dict = field(default_factory=dict)
    model: StandaloneModel | None = None

    @property
    def standalone(self) -> bool:
        return STANDALONE[self.method]

    def to_json(self) -> dict:
        return {
            "method": self.method,
            "seed": self.seed,
            "accuracy": self.accuracy,
            "final": self.final,
            "extra": self.extra,
            "seconds": self.seconds,
            "epoch_seconds": self.epoch_seconds,
            "wire": self.wire,
            "history": self.history,
        }


def build_clients(
    ds: MultiViewDataset,
    active: int,
    cfg: TrainConfig,
    serialize: bool = False,
    record: list | None = None,
    log: Callable = lambda *_: None,
) -> ActiveClient:
    """The active client and in-process passives for one method on one dataset."""
    active_data, passive_data = split_parties(ds, active)
    if cfg.method in ("local", "centralized"):
        passive_data_used, extra = [], ([p.view for p in passive_data] if cfg.method == "centralized" else [])
    else:
        passive_data_used, extra = passive_data, []
    names = [f"passive{i + 1}" for i in range(len(passive_data_used))]
    passives = {n: PassiveClient(n, p, cfg.device) for n, p in zip(names, passive_data_used, strict=True)}
    transport = InProcessTransport({n: p.handle for n, p in passives.items()}, serialize=serialize, record=record)
    return ActiveClient(active_data, cfg, transport, names, extra_views=extra, log=log)


def run(
    ds: MultiViewDataset,
    active: int,
    cfg: TrainConfig,
    *,
    on_epoch: Callable | None = None,
    on_batch: Callable | None = None,
    serialize: bool = False,
    record: list | None = None,
    log: Callable = lambda *_: None,
    provenance: dict | None = None,
) -> RunResult:
    """Train one method with one seed; return the headline accuracy, curves and (if any) the standalone model."""
    t0 = time.perf_counter()
    client = build_clients(ds, active, cfg, serialize, record, log)
    client.setup()
    history = client.fit(on_epoch=on_epoch, on_batch=on_batch)
    last = history[-cfg.eval_last :]
    extra = {k: float(np.mean([h[k] for h in last])) for k in last[0] if k.startswith("acc_")}
    final = client.final_metrics()
    model = None
    if STANDALONE[cfg.method]:
        model = client.standalone_model(
            {
                "dataset": ds.name,
                "active_view": ds.views[active].name,
                "method": cfg.method,
                "seed": cfg.seed,
                "test_accuracy": final["accuracy"],
                "run_id": client.run_id,
                **(provenance or {}),
            }
        )
    client.finish()
    return RunResult(
        method=cfg.method,
        seed=cfg.seed,
        accuracy=float(np.mean([h["accuracy"] for h in last])),
        final=final,
        history=history,
        extra=extra,
        seconds=time.perf_counter() - t0,
        epoch_seconds=float(np.median([h["train_time"] for h in history])),
        wire=dict(client.wire),
        model=model,
    )
