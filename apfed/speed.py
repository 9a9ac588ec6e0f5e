"""Epoch time of the in-process protocol against the bare forward/backward compute of the same modules."""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from apfed.config import TrainConfig
from apfed.data.views import MultiViewDataset, Preprocessor
from apfed.graphs import WARMUP, StepGraphs
from apfed.learner import ActiveLearner, PassiveLearner, make_optimizer, train_mode
from apfed.losses import nt_xent, reconstruction
from apfed.models import encoder_output_shape, make_encoder, make_head, make_projection


def bare_apfed_c_epoch(
    ds: MultiViewDataset,
    active: int,
    cfg: TrainConfig,
    graph: bool = False,
    split: bool = False,
    compiled: dict | None = None,
) -> float:
    """Seconds for one epoch of APFed-C's modules (every party's encoder, the task head, every projection head,
    the optimizer steps) in one process and one autograd graph, with no protocol at all.

    ``graph`` (CUDA only): the whole step of every party captured as one CUDA graph (apfed.graphs), the floor
    of what the GPU can do with these modules; the last, shorter minibatch runs eagerly.
    ``split``: still no protocol, but one forward/backward/optimizer call per party, as the parties of a
    vertical split must (each passive back-propagates its NT-Xent alone, the active then applies the
    passives' gradients): the floor of any VFL implementation of these modules.
    ``compiled``: the losses' forward (and so their backward) through ``torch.compile`` with these keyword
    arguments (``{}`` for its defaults): the joint loss as one compiled region; with ``split``, each party's own
    (``benchmarks/compiled_split.py``). The optimizer steps stay eager."""
    dev = cfg.device
    tr = ds.train_idx
    views = [ds.views[active]] + [v for i, v in enumerate(ds.views) if i != active]
    X = [torch.from_numpy(Preprocessor.fit(v, tr)(v.X[tr])).to(dev) for v in views]
    y = torch.from_numpy(ds.labels[tr]).long().to(dev)
    specs = [{"kind": v.kind, "shape": list(v.shape)} for v in views]
    d = [int(torch.tensor(encoder_output_shape(s, cfg.embedding_dim)).prod()) for s in specs]
    encoders = [make_encoder(s, cfg.embedding_dim, cfg.hidden_dim).to(dev) for s in specs]
    head = make_head(d[0], cfg.head_hidden, len(ds.class_names), cfg.dropout).to(dev)
    projections = [make_projection(di, cfg.projection_dim).to(dev) for di in d]  # the active's is shared
    opts = [make_optimizer([*encoders[0].parameters(), *head.parameters(), *projections[0].parameters()], cfg)]
    passive_modules = zip(encoders[1:], projections[1:], strict=True)
    opts += [make_optimizer([*e.parameters(), *p.parameters()], cfg) for e, p in passive_modules]

    joint_loss, passive_loss, active_forward, active_loss = (
        _joint_c_loss,
        _passive_c_loss,
        _active_c_forward,
        _active_c_loss,
    )
    if compiled is not None:
        joint_loss, passive_loss, active_forward, active_loss = (
            _compiled(f, compiled) for f in (joint_loss, passive_loss, active_forward, active_loss)
        )

    def step(t: dict[str, torch.Tensor], captured: bool = False) -> dict[str, torch.Tensor]:
        idx = t["idx"]
        xs = [x[idx] for x in X]
        loss = joint_loss(encoders, projections, head, xs, y[idx], cfg.lam, cfg.temperature)
        for o in opts:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for o in opts:
            o.step_captured() if captured else o.step()
        return {"loss": loss.detach()}

    def split_step(t: dict[str, torch.Tensor]) -> None:
        idx = t["idx"]
        # the active's graph kept until the replies come, as the active learner keeps it at K = 1
        h, z = active_forward(encoders[0], projections[0], X[0][idx])
        grads = []
        for e, p, x, o in zip(encoders[1:], projections[1:], X[1:], opts[1:], strict=True):
            a = z.detach().requires_grad_(True)
            loss = passive_loss(e, p, a, x[idx], cfg.temperature)
            o.zero_grad(set_to_none=True)
            loss.backward()
            o.step()
            grads.append(a.grad)
        loss = active_loss(head, h, z, y[idx], grads, cfg.lam)
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


def _joint_c_loss(encoders, projections, head, xs, y, lam: float, temperature: float) -> torch.Tensor:
    h, z = _active_c_forward(encoders[0], projections[0], xs[0])
    loss = F.cross_entropy(head(h), y)
    for e, p, x in zip(encoders[1:], projections[1:], xs[1:], strict=True):
        loss = loss + lam * nt_xent(z, p(e(x)), temperature)
    return loss


def _passive_c_loss(encoder, projection, a: torch.Tensor, x: torch.Tensor, temperature: float) -> torch.Tensor:
    return nt_xent(a, projection(encoder(x)), temperature)


def _active_c_forward(encoder, projection, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    h = encoder(x)
    return h, projection(h)


def _active_c_loss(head, h, z, y, grads: list[torch.Tensor], lam: float) -> torch.Tensor:
    loss = F.cross_entropy(head(h), y)
    for g in grads:
        loss = loss + lam * (z * g).sum()
    return loss


_COMPILED: dict = {}


def _compiled(f: Callable, options: dict) -> Callable:
    """``torch.compile(f, **options)``, once per function and options: modules are arguments, so fresh modules
    of the same shapes reuse the compiled code."""
    key = (f, repr(sorted(options.items())))
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(f, **options)
    return _COMPILED[key]


def joint_copies(client) -> tuple[ActiveLearner, list[PassiveLearner]]:
    """Fresh copies of a set-up in-process run's learners (the same modules, data and optimizer settings, no
    CUDA graphs yet), for ``bare_joint_epoch`` and ``learners_epoch``; the run's own modules are left untouched."""
    from apfed.runner import in_process_passives

    passives = [p.learner for p in in_process_passives(client)]
    out = []
    for learner in (client.learner, *passives):
        c = copy.copy(learner)
        c.modules = copy.deepcopy(learner.modules)
        c._every = list(c.modules.modules())
        opt = make_optimizer(c.modules.parameters(), learner.cfg)
        c.graphs = None
        if isinstance(c, ActiveLearner):  # one optimizer: the copies train no rows that only the active holds
            c.opts, c.own_graphs = [opt], None
        else:
            c.opt = opt
        out.append(c)
    return out[0], out[1:]


def learners_epoch(
    active: ActiveLearner, passives: list[PassiveLearner], train_idx: torch.Tensor, batches: list | None = None
) -> float:
    """Seconds for one epoch of the learners alone, K = 1: the active's ``outgoing`` and ``step`` and every
    passive's ``train_batch``, called directly, with no message, codec, validation or transport in between (the
    protocol epoch minus the protocol). On a GPU the copies capture their own CUDA graphs, as the run's do.
    ``batches``: these minibatches of row indices instead of a random permutation of ``train_idx``."""
    for learner in (active, *passives):
        if learner.cfg.device.startswith("cuda") and learner.cfg.cuda_graphs and learner.graphs is None:
            learner.graphs = StepGraphs(learner._graph_step, _optimizers(learner))
    dev = active.cfg.device
    pending: list = [None] * len(passives)
    _sync(dev)
    t0 = time.perf_counter()
    batches = batches or _shuffled_batches(train_idx, active.cfg.batch_size)
    for b, idx in enumerate(batches):
        progress = b / len(batches)
        sent = active.outgoing(idx)
        replies = [p.train_batch(idx, s, pend, progress) for p, s, pend in zip(passives, sent, pending, strict=True)]
        _, emb_grads = active.step(idx, [r[0] for r in replies], [r[1] for r in replies], progress)
        pending = [(idx, None, g) if g is not None else None for g in emb_grads]
    for p, pend in zip(passives, pending, strict=True):
        if pend is not None:  # the final flush
            p.train_batch(idx[:0], None, pend, 1.0)
    _sync(dev)
    return time.perf_counter() - t0


def bare_joint_epoch(
    active: ActiveLearner, passives: list[PassiveLearner], train_idx: torch.Tensor, batches: list | None = None
) -> float:
    """Seconds for one epoch of any method's modules as one model: every party's forward, one joint backward,
    every party's optimizer step, no protocol. Each passive's encoder runs once per minibatch (the protocol
    may run it more: an embedding for the teacher, the NT-Xent, the teacher's gradient), so this is the floor.
    The passives' APFed losses join the active's objective with weight λ, as the reference's joint loss.
    ``batches``: these minibatches of row indices instead of a random permutation of ``train_idx``."""
    cfg = active.cfg
    opts = [*active.opts, *(p.opt for p in passives)]

    def step(idx: torch.Tensor) -> None:
        for learner in (active, *passives):
            train_mode(learner.modules, learner._every)
        h, z = active._forward(idx, None)
        active._cache = None
        encoded = [p.modules["encoder"](p.X[idx]) if "encoder" in p.modules else None for p in passives]
        embs = [e if p.sends_embedding else None for p, e in zip(passives, encoded, strict=True)]
        loss, _ = active._objective(idx, h, z, [None] * len(passives), embs, None)
        for p, e in zip(passives, encoded, strict=True):
            if p.loss == "c":
                loss = loss + cfg.lam * nt_xent(z, p.modules["projection"](e), cfg.temperature)
            elif p.loss == "r":
                loss = loss + cfg.lam * reconstruction(p.modules["decoder"](h), p.X[idx])
        for o in opts:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for o in opts:
            o.step()

    dev = cfg.device
    _sync(dev)
    t0 = time.perf_counter()
    for idx in batches or _shuffled_batches(train_idx, cfg.batch_size):
        step(idx)
    _sync(dev)
    return time.perf_counter() - t0


def _optimizers(learner: ActiveLearner | PassiveLearner) -> list:
    return learner.opts if isinstance(learner, ActiveLearner) else [learner.opt]


def _shuffled_batches(train_idx: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    return list(train_idx[torch.randperm(len(train_idx), device=train_idx.device)].split(batch_size))


def compare_methods(ds: MultiViewDataset, active: int, cfg: TrainConfig, methods: list[str], repeats: int) -> list:
    """For each method: protocol epochs interleaved with ``bare_joint_epoch`` epochs; medians and ratio."""
    return [
        _compare_method(ds, active, TrainConfig(**{**cfg.to_dict(), "method": m, "epochs": 1}), repeats)
        for m in methods
    ]


def _compare_method(ds: MultiViewDataset, active: int, cfg: TrainConfig, repeats: int) -> dict:
    client, protocol_epoch, protocol = _timed_client(ds, active, cfg)
    A, Ps = joint_copies(client)
    LA, LPs = joint_copies(client)
    bare: list[float] = []
    alone: list[float] = []
    bare_joint_epoch(A, Ps, client.train_idx)  # warm-up
    learners_epoch(LA, LPs, client.train_idx)  # warm-up (on a GPU: graph capture)

    def floors() -> None:
        bare.append(bare_joint_epoch(A, Ps, client.train_idx))
        alone.append(learners_epoch(LA, LPs, client.train_idx))

    alternate(repeats, protocol_epoch, floors)
    p, b, a = statistics.median(protocol), statistics.median(bare), statistics.median(alone)
    return {
        "method": cfg.method,
        "protocol_s": p,
        "learners_s": a,
        "bare_s": b,
        "ratio": p / b,
        "learners_ratio": a / b,
        "passives": len(Ps),
    }


def _timed_client(ds: MultiViewDataset, active: int, cfg: TrainConfig) -> tuple:
    """A set-up in-process run (training only, warmed up on a GPU), a function that times one more of its
    epochs, and the list that collects those times."""
    from apfed.runner import build_clients

    client = build_clients(ds, active, cfg)
    client.setup()
    client.evaluate = lambda: {"accuracy": 0.0}  # time training only
    if cfg.device.startswith("cuda"):
        client.fit()  # warm-up: CUDA-graph capture
    times: list[float] = []

    def epoch() -> None:
        _sync(cfg.device)
        client.history.clear()
        client.fit()
        _sync(cfg.device)
        times.append(client.history[-1]["train_time"])

    return client, epoch, times


def paired_epochs(dataset: str, preset: str, variants: Callable, pairs: int) -> dict:
    """Epochs of one set-up in-process APFed-C run (K = 1; a bundled dataset, handwritten with the active view fou)
    under two variants: ``variants(client)`` returns ``{name: switch}`` for two names, and each epoch of a variant
    runs right after its ``switch()``, in either order in turn. The medians (``{name}_s``), the second's over the
    first's (``ratio``), the pairs in which the second was faster, and every epoch's time."""
    from apfed.config import make_config
    from apfed.data.bundled import load_bundled

    ds = load_bundled(dataset)
    active = ds.view_index("fou") if dataset == "handwritten" else 0
    client, epoch, times = _timed_client(ds, active, make_config(preset, method="apfed-c", epochs=1))
    client.fit()  # warm-up
    switches = variants(client)
    first, second = switches
    runs: dict[str, list[float]] = {first: [], second: []}

    def timed(name: str) -> Callable[[], None]:
        def run() -> None:
            switches[name]()
            epoch()
            runs[name].append(times[-1])

        return run

    alternate(pairs, timed(first), timed(second))
    a, b = statistics.median(runs[first]), statistics.median(runs[second])
    faster = sum(y < x for x, y in zip(runs[first], runs[second], strict=True))
    medians = {f"{first}_s": a, f"{second}_s": b, "ratio": b / a, "faster": faster}
    return {"dataset": dataset, "preset": preset, **medians, "epochs_s": runs}


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
    """Interleave protocol epochs and bare epochs (noise hits both alike); report medians and their ratio. On the
    CPU each bare epoch is paired with the vertical split's floor (``bare_apfed_c_epoch(split=True)``): the same
    modules, one forward, backward and optimizer call per party, no protocol (the two in either order in turn)."""
    cfg = TrainConfig(**{**cfg.to_dict(), "method": "apfed-c", "epochs": 1})
    gpu = cfg.device.startswith("cuda")
    bare_apfed_c_epoch(ds, active, cfg)  # warm-up
    _, protocol_epoch, protocol = _timed_client(ds, active, cfg)
    bare, bare_graph, split = [], [], []

    def bare_epochs() -> None:
        if gpu:
            bare.append(bare_apfed_c_epoch(ds, active, cfg))
            bare_graph.append(bare_apfed_c_epoch(ds, active, cfg, graph=True))
            return
        first_joint = len(bare) % 2 == 0  # the joint epoch and the split floor, in either order in turn
        for floor in (False, True) if first_joint else (True, False):
            (split if floor else bare).append(bare_apfed_c_epoch(ds, active, cfg, split=floor))

    alternate(repeats, protocol_epoch, bare_epochs)
    p, b = statistics.median(protocol), statistics.median(bare)
    out = {
        "protocol_epoch_s": protocol,
        "bare_epoch_s": bare,
        "protocol_median_s": p,
        "bare_median_s": b,
        "ratio": p / b,
    }
    if split:
        sm = statistics.median(split)
        out.update(split_epoch_s=split, split_median_s=sm, split_ratio=sm / b)
    if gpu:
        bg = statistics.median(bare_graph)
        out.update(bare_graph_epoch_s=bare_graph, bare_graph_median_s=bg, ratio_to_graph=p / bg)
    return out
