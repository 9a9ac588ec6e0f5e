"""One training run over the in-process transport: build the parties from a dataset, train, summarise.

This sits above the core: it wires data, clients and a transport together. Flower runs use the same
ActiveClient and PassiveClient with another transport."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from apfed.config import STANDALONE, TrainConfig
from apfed.data.views import MultiViewDataset, split_parties
from apfed.metrics import headline_accuracy, headline_validation, standalone_rows, test_provenance
from apfed.standalone import StandaloneModel
from clients.active import ACTIVE, ActiveClient
from clients.passive import PassiveClient
from protocols.sealing import PartyKey, Sealing
from protocols.transport import InProcessTransport


@dataclass
class RunResult:
    method: str
    seed: int
    accuracy: float | None  # mean test accuracy over the last ``eval_last`` epochs, or the best validation
    # epoch's; None with no test rows (test fraction 0); a regression's R² (``headline`` r2)
    final: dict  # metrics of the final model
    history: list[dict]
    extra: dict = field(default_factory=dict)  # e.g. tvfl fills, kd teacher: last-N means
    seconds: float = 0.0
    epoch_seconds: float = 0.0
    wire: dict = field(default_factory=dict)
    model: StandaloneModel | None = None
    faults: list[dict] = field(default_factory=list)  # passive contributions skipped (deadline, bad message)
    headline: str = "accuracy"  # what ``accuracy`` holds: accuracy in %, or r2 (a regression)
    validation: float | None = None  # the standalone model's validation figure behind ``accuracy`` (val_<metric>)

    @property
    def standalone(self) -> bool:
        return STANDALONE[self.method]

    def to_json(self) -> dict:
        return {
            "method": self.method,
            "seed": self.seed,
            self.headline: self.accuracy,
            "final": self.final,
            "extra": self.extra,
            "seconds": self.seconds,
            "epoch_seconds": self.epoch_seconds,
            "wire": self.wire,
            "faults": self.faults,
            "history": self.history,
            "validation": self.validation,
        }


@dataclass
class Safety:
    """Run options outside the ML recipe: encryption, the bad-message policy, the per-round deadline."""

    encrypt: bool = False
    on_bad_message: str = "fail"
    round_timeout: float | None = None
    checkpoint_dir: str | None = None  # active.ckpt plus one node-local directory per passive
    checkpoint_every: int = 0  # rounds between checkpoints (0: none)
    resume: bool = False  # continue from checkpoint_dir instead of starting afresh


def in_process_sealing(names: list[str]) -> tuple[Sealing, dict[str, Sealing]]:
    """Fresh long-term keys for the active party and each passive, each pinning the other's fingerprint."""
    active_key = PartyKey()
    keys = {n: PartyKey() for n in names}
    passives = {n: Sealing(keys[n], {ACTIVE: active_key.fingerprint}) for n in names}
    return Sealing(active_key, {n: k.fingerprint for n, k in keys.items()}), passives


def in_process_passives(client: ActiveClient) -> list[PassiveClient]:
    """The passive parties of a run built by ``build_clients``, in the active party's order (the in-process
    transport's handlers are their bound ``handle`` methods)."""
    return [client.transport.handlers[n].__self__ for n in client.names]


def build_clients(
    ds: MultiViewDataset,
    active: int,
    cfg: TrainConfig,
    serialize: bool = False,
    record: list | None = None,
    log: Callable = lambda *_: None,
    safety: Safety | None = None,
) -> ActiveClient:
    """The active client and in-process passives for one method on one dataset."""
    safety = safety or Safety()
    active_data, passive_data = split_parties(ds, active, cfg.holds_unmatched)
    if cfg.method in ("local", "centralized"):
        passive_data_used, extra = [], ([p.view for p in passive_data] if cfg.method == "centralized" else [])
    else:
        passive_data_used, extra = passive_data, []
    names = [f"passive{i + 1}" for i in range(len(passive_data_used))]
    active_sealing, sealings = in_process_sealing(names) if safety.encrypt else (None, {})
    ckdir = Path(safety.checkpoint_dir) if safety.checkpoint_dir else None
    passives = {
        n: PassiveClient(n, p, cfg.device, sealings.get(n), ckdir / n if ckdir else None)
        for n, p in zip(names, passive_data_used, strict=True)
    }
    transport = InProcessTransport(
        {n: p.handle for n, p in passives.items()}, serialize, record, round_timeout=safety.round_timeout
    )
    return ActiveClient(
        active_data,
        cfg,
        transport,
        names,
        extra_views=extra,
        log=log,
        sealing=active_sealing,
        on_bad_message=safety.on_bad_message,
        checkpoint=str(ckdir / "active.ckpt") if ckdir else None,
        checkpoint_every=safety.checkpoint_every,
    )


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
    safety: Safety | None = None,
) -> RunResult:
    """Train one method with one seed; return the headline accuracy, curves and (if any) the standalone model."""
    t0 = time.perf_counter()
    client = build_clients(ds, active, cfg, serialize, record, log, safety)
    if safety is not None and safety.resume:
        client.resume()
    else:
        client.setup()
    history = client.fit(on_epoch=on_epoch, on_batch=on_batch)
    # each model's figure over the last epochs that report it (a fresh student's teacher: the last of its own)
    keys = dict.fromkeys(k for h in history for k in h if k.startswith(("acc_", "r2_")))
    extra = {k: float(np.mean([h[k] for h in history if k in h][-cfg.eval_last :])) for k in keys}
    final = client.final_metrics()
    own = standalone_rows(history, cfg.teacher_epochs)  # the standalone model's epochs
    model = None
    if STANDALONE[cfg.method]:
        model = client.standalone_model(
            {
                "dataset": ds.name,
                "method": cfg.method,
                "seed": cfg.seed,
                **test_provenance(final),
                "run_id": client.run_id,
                **(provenance or {}),
            }
        )
    client.finish()
    return RunResult(
        method=cfg.method,
        seed=cfg.seed,
        accuracy=headline_accuracy(own, final, cfg.eval_last),
        validation=headline_validation(own, final, cfg.eval_last, cfg.validation_metric),
        final=final,
        history=history,
        extra=extra,
        seconds=time.perf_counter() - t0,
        # the federated epochs' (a fresh student's epochs, after them, are the active party's alone)
        epoch_seconds=float(np.median([h["train_time"] for h in history if h["epoch"] <= cfg.epochs])),
        wire=dict(client.wire),
        model=model,
        faults=list(client.faults),
        headline=client.headline,
    )
