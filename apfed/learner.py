"""The compute of each role, with no networking: what the active party and a passive party do per minibatch.

Both learners keep their (preprocessed) view resident on the device and take row indices, so the hot path
has no per-sample Python and no host/device copies of features.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from apfed.augment import apply_augmentation, mixed_cross_entropy, mixed_distillation, mixed_squared_error
from apfed.config import TrainConfig, lr_at
from apfed.graphs import StepGraphs, configure_cuda, enabled
from apfed.losses import distillation, nt_xent, reconstruction, regression_distillation
from apfed.models import (
    StandaloneNet,
    encoder_output_shape,
    init_modules,
    make_decoder,
    make_encoder,
    make_head,
    make_projection,
)
from apfed.optim import SGD, Adam, Optimizer
from apfed.privacy import clip_rows

EVAL_CHUNK = 2048


def make_optimizer(params, cfg: TrainConfig) -> Optimizer:
    """The recipe's optimizer (apfed.optim: torch.optim's update rules without its 2 s dynamo import)."""
    params = list(params)
    if cfg.optimizer == "sgd":
        return SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, decoupled=cfg.optimizer == "adamw")


def chunked(fn: Callable[[torch.Tensor, slice], torch.Tensor], idx: torch.Tensor) -> torch.Tensor:
    """``fn(rows, their slice of idx)`` over ``EVAL_CHUNK`` rows at a time, written into one output tensor. A list of
    per-chunk outputs kept until the end would settle in the heap's holes that each chunk's freed activations
    leave, and the heap would grow by a chunk's activations per chunk (StandaloneModel._proba_of_features)."""
    out = None
    for start in range(0, len(idx), EVAL_CHUNK):
        sl = slice(start, start + EVAL_CHUNK)
        y = fn(idx[sl], sl)
        if out is None:
            out = y.new_empty((len(idx), *y.shape[1:]))
        out[start : start + len(y)] = y
    return out if out is not None else fn(idx, slice(0, 0))


def set_lr(opt: Optimizer | list[Optimizer], lr: float) -> None:
    for o in opt if isinstance(opt, list) else [opt]:
        for g in o.param_groups:
            g["lr"] = lr


def update(opt: Optimizer | list[Optimizer], loss: torch.Tensor, captured: bool = False) -> None:
    """One optimizer update from ``loss`` (of each optimizer of a list); ``captured``: the form a CUDA graph
    records (apfed.graphs)."""
    opts = opt if isinstance(opt, list) else [opt]
    for o in opts:
        o.zero_grad(set_to_none=True)
    loss.backward()
    for o in opts:
        if captured:
            o.step_captured()
        else:
            o.step()


def train_mode(modules: nn.Module, every: list[nn.Module]) -> None:
    """``modules.train()``, skipped when ``every`` one of its submodules is already in training mode (train()
    walks the tree and sets every flag again: a cost on every step of a GPU run)."""
    if not all(m.training for m in every):
        modules.train()


@dataclass
class PassiveInfo:
    """What the active party knows of one passive: its APFed loss and the shape of the embedding it sends."""

    loss: str | None  # "r", "c" or None
    embedding_shape: tuple[int, ...] | None  # set when the passive sends embeddings (tvfl, apfed-kd)


class ActiveLearner:
    """Encoder, standalone head, projection head and (tvfl, apfed-kd, centralized) a fused head.

    ``y``: class indices of any integer dtype (the active party holds them as int16; -1: a row with no label, which
    only the passives' losses and the distillation train on); a minibatch's are widened. Float ``y`` is a
    regression target (standardized; NaN: no label): one output, squared errors, and distillation by the squared
    distance to the teacher's output. ``n_classes`` is then 1."""

    def __init__(
        self,
        spec: dict,
        cfg: TrainConfig,
        n_classes: int,
        X: torch.Tensor,
        y: torch.Tensor,
        passives: list[PassiveInfo],
        extra_specs: list[dict] | None = None,
        extra_X: list[torch.Tensor] | None = None,
        class_weights: torch.Tensor | None = None,
        own_rows: bool = False,
        unlabelled: bool = False,
        teacher: tuple[torch.Tensor, torch.Tensor] | None = None,
    ):
        """``own_rows``: ``X`` also holds rows that no passive holds, trained by ``own_step``; ``unlabelled``: some
        training rows have no label. ``teacher``: fixed outputs of a teacher for each row of ``X`` and a 0/1 float
        per row (1: labelled by the teacher), which ``own_step`` distils next to the task loss (a fresh student)."""
        self.cfg, self.spec, self.X, self.y, self.passives = cfg, spec, X, y, passives
        self.n_classes, self.teacher = n_classes, teacher
        self.unlabelled = unlabelled  # some training rows have no label (-1): the task losses skip them
        self.regression = y.is_floating_point()
        if self.regression:
            self._task_loss = functools.partial(mixed_squared_error, huber=cfg.huber)
        else:
            self._task_loss = mixed_cross_entropy
        self.class_weights = class_weights  # the task losses' weight per class (cfg.class_weight), or None
        self.extra_X = extra_X or []
        extra_specs = extra_specs or []
        self.h_shape = encoder_output_shape(spec, cfg.embedding_dim)
        d = math.prod(self.h_shape)
        self.standalone = cfg.method not in ("tvfl", "centralized")
        self.fused = cfg.method in ("tvfl", "apfed-kd", "centralized")
        fused_dim = d + sum(math.prod(encoder_output_shape(s, cfg.embedding_dim)) for s in extra_specs)
        fused_dim += sum(math.prod(p.embedding_shape) for p in passives if p.embedding_shape)

        def build() -> nn.ModuleDict:
            m = nn.ModuleDict({"encoder": make_encoder(spec, cfg.embedding_dim, cfg.hidden_dim)})
            if self.standalone:
                m["head"] = make_head(d, cfg.head_hidden, n_classes, cfg.dropout)
            if any(p.loss == "c" for p in passives):
                m["projection"] = make_projection(d, cfg.projection_dim)
            if self.fused:
                m["fused_head"] = make_head(fused_dim, cfg.head_hidden, n_classes, cfg.dropout)
            for i, s in enumerate(extra_specs):
                m[f"encoder_{i + 1}"] = make_encoder(s, cfg.embedding_dim, cfg.hidden_dim)
            return m

        configure_cuda(cfg.device, cfg.tf32, cfg.deterministic)
        self.modules = init_modules(cfg.seed, build).to(cfg.device)
        self._every = list(self.modules.modules())
        # With rows that no passive holds, the standalone model (encoder and head) takes more steps than the other
        # modules: one optimizer each, so each optimizer's parameters keep one step count, as a CUDA graph of its
        # update needs (the update of every parameter is the same as with one optimizer)
        own = own_rows and self.standalone
        standalone = [*self.modules["encoder"].parameters(), *self.modules["head"].parameters()] if own else []
        taken = {id(q) for q in standalone}
        rest = [q for q in self.modules.parameters() if id(q) not in taken]
        self.opts = [make_optimizer(g, cfg) for g in (standalone, rest) if g]
        self._cache: tuple | None = None
        self._version = 0
        self.graphs = StepGraphs(self._graph_step, self.opts) if enabled(cfg.device, cfg.cuda_graphs) else None
        self.own_graphs = StepGraphs(self._own_step, self.opts[:1]) if self.graphs is not None and own else None

    def _graphable(self, aug: dict | None) -> bool:
        return self.graphs is not None and aug is None

    # --- training -------------------------------------------------------------------------------------
    def _forward(self, idx: torch.Tensor, aug: dict | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.modules["encoder"](apply_augmentation(self.X[idx], aug))
        z = self.modules["projection"](h) if "projection" in self.modules else None
        self._cache = (idx, self._version, h, z)
        return h, z

    def outgoing(self, idx: torch.Tensor, aug: dict | None = None) -> list[torch.Tensor | None]:
        """Forward one minibatch; return what each passive receives: h_A (APFed-R), z_A (APFed-C) or nothing."""
        train_mode(self.modules, self._every)
        if self._graphable(aug):  # the captured step recomputes the forward pass
            if all(p.loss is None for p in self.passives):  # tvfl: the passives get nothing
                return [None for _ in self.passives]
            with torch.no_grad():
                h = self.modules["encoder"](self.X[idx])
                z = self.modules["projection"](h) if "projection" in self.modules else None
        else:
            h, z = self._forward(idx, aug)
        return [h.detach() if p.loss == "r" else z.detach() if p.loss == "c" else None for p in self.passives]

    def step(
        self,
        idx: torch.Tensor,
        grads: list[torch.Tensor | None],
        embs: list[torch.Tensor | None],
        progress: float,
        aug: dict | None = None,
    ) -> tuple[dict, list[torch.Tensor | None]]:
        """Apply one minibatch: task loss(es), distillation, and λ·(passive gradients) on what was sent.

        ``grads[i]`` is passive i's gradient w.r.t. what it received; ``embs[i]`` its embedding (tvfl, kd).
        Returns metrics and, per passive, the gradient w.r.t. its embedding.
        """
        train_mode(self.modules, self._every)
        if self._graphable(aug):
            set_lr(self.opts, lr_at(self.cfg, progress))
            key = (len(idx), tuple(g is not None for g in grads), tuple(e is not None for e in embs))
            inputs = {
                "idx": idx,
                **{f"g{i}": g for i, g in enumerate(grads) if g is not None},
                **{f"e{i}": e.detach().requires_grad_(True) for i, e in enumerate(embs) if e is not None},
            }
            metrics = self.graphs(key, inputs)
            self._version += 1
            return metrics, [metrics.pop(f"e{i}_grad", None) for i in range(len(embs))]
        c = self._cache
        if c is not None and c[1] == self._version and c[0] is idx:
            h, z = c[2], c[3]
        else:  # K > 1: the graph is stale after earlier updates in this round, so recompute it
            h, z = self._forward(idx, aug)
        self._cache = None
        leaves = [e.detach().requires_grad_(True) if e is not None else None for e in embs]
        loss, metrics = self._objective(idx, h, z, grads, leaves, aug)
        set_lr(self.opts, lr_at(self.cfg, progress))
        update(self.opts, loss)
        self._version += 1
        return metrics, [e.grad if e is not None else None for e in leaves]

    def _graph_step(self, t: dict[str, torch.Tensor], captured: bool) -> dict[str, torch.Tensor]:
        """One step (forward recomputed, no augmentation), for apfed.graphs; the passives' embeddings (tvfl,
        apfed-kd) come in as leaves and their gradients go out as ``e{i}_grad``."""
        idx = t["idx"]
        h, z = self._forward(idx, None)
        self._cache = None
        grads = [t.get(f"g{i}") for i in range(len(self.passives))]
        leaves = [t.get(f"e{i}") for i in range(len(self.passives))]
        for e in leaves:
            if e is not None:
                e.grad = None
        loss, metrics = self._objective(idx, h, z, grads, leaves, None)
        update(self.opts, loss, captured)
        return {**metrics, **{f"e{i}_grad": e.grad for i, e in enumerate(leaves) if e is not None}}

    def own_step(self, idx: torch.Tensor, progress: float, aug: dict | None = None) -> dict:
        """Apply one minibatch of rows that no passive holds: the standalone task loss alone (a local step); a fresh
        student's minibatch of any training rows: also the distillation from its teacher's fixed outputs."""
        train_mode(self.modules, self._every)
        set_lr(self.opts[0], lr_at(self.cfg, progress))
        if self.own_graphs is not None and aug is None:
            metrics = self.own_graphs(len(idx), {"idx": idx})
        else:
            metrics = self._own_step({"idx": idx}, False, aug)
        self._version += 1
        return metrics

    def _own_step(self, t: dict[str, torch.Tensor], captured: bool, aug: dict | None = None) -> dict:
        idx = t["idx"]
        logits = self.modules["head"](self.modules["encoder"](apply_augmentation(self.X[idx], aug)))
        task = self._task_loss(logits, self._targets(idx), aug, self.class_weights, self.unlabelled)
        loss, metrics = task, {"task_loss": task.detach()}
        if self.teacher is not None:
            outputs, taught = self.teacher
            kd = mixed_distillation(logits, outputs[idx], taught[idx], aug, self.cfg.kd_temperature, self.regression)
            loss = loss + self.cfg.kd_weight * kd
            metrics["kd_loss"] = kd.detach()
        update(self.opts[0], loss, captured)
        return metrics

    def _targets(self, idx: torch.Tensor) -> torch.Tensor:
        """A minibatch's labels: class indices widened to int64 (they are held narrow,
        ``apfed.data.views.compact_labels``), or a regression's float targets."""
        y = self.y[idx]
        return y if self.regression else y.long()

    def _objective(
        self,
        idx: torch.Tensor,
        h: torch.Tensor,
        z: torch.Tensor | None,
        grads: list[torch.Tensor | None],
        leaves: list[torch.Tensor | None],
        aug: dict | None,
    ) -> tuple[torch.Tensor, dict]:
        """The active party's loss for one minibatch, and its metrics (detached tensors)."""
        y = self._targets(idx)
        loss = h.new_zeros(())
        metrics = {}
        if self.standalone:
            hidden = self.modules["head"][:3](h)
            logits = self.modules["head"][3:](hidden)
            task = self._task_loss(logits, y, aug, self.class_weights, self.unlabelled)
            loss = loss + task
            metrics["task_loss"] = task.detach()
        if self.fused:
            parts = [h.flatten(1) if self.cfg.teacher_grad or self.standalone is False else h.detach().flatten(1)]
            parts += [
                self.modules[f"encoder_{i + 1}"](apply_augmentation(x[idx], aug)).flatten(1)
                for i, x in enumerate(self.extra_X)
            ]
            parts += [e.flatten(1) for e in leaves if e is not None]
            fused_hidden = self.modules["fused_head"][:3](torch.cat(parts, 1))
            fused_logits = self.modules["fused_head"][3:](fused_hidden)
            fused = self._task_loss(fused_logits, y, aug, self.class_weights, self.unlabelled)
            loss = loss + fused
            metrics["fused_loss"] = fused.detach()
            if self.standalone:  # apfed-kd: the active-only student learns from the fused teacher
                if self.regression:
                    kd = regression_distillation(logits, fused_logits)
                else:
                    kd = distillation(logits, fused_logits, self.cfg.kd_temperature)
                loss = loss + self.cfg.kd_weight * kd
                metrics["kd_loss"] = kd.detach()
                if self.cfg.feature_weight > 0:
                    feat = F.mse_loss(hidden, fused_hidden.detach())
                    loss = loss + self.cfg.feature_weight * feat
                    metrics["feature_loss"] = feat.detach()
        for p, g in zip(self.passives, grads, strict=True):
            if g is not None and self.cfg.lam > 0:
                sent = h if p.loss == "r" else z
                if self.cfg.dp_clip > 0:  # the gradient is w.r.t. the clipped value that was sent
                    sent = clip_rows(sent, self.cfg.dp_clip)
                loss = loss + self.cfg.lam * (sent * g).sum()
        return loss, metrics

    # --- evaluation -----------------------------------------------------------------------------------
    @torch.no_grad()
    def standalone_logits(self, idx: torch.Tensor) -> torch.Tensor:
        self.modules.eval()
        return chunked(lambda i, _: self.modules["head"](self.modules["encoder"](self.X[i])), idx)

    @torch.no_grad()
    def fused_logits(self, idx: torch.Tensor, embs: list[torch.Tensor]) -> torch.Tensor:
        """Fused-head logits with the given passive embeddings (real, or fills for absent passives)."""
        self.modules.eval()

        def fused(i: torch.Tensor, sl: slice) -> torch.Tensor:
            parts = [self.modules["encoder"](self.X[i]).flatten(1)]
            parts += [self.modules[f"encoder_{k + 1}"](x[i]).flatten(1) for k, x in enumerate(self.extra_X)]
            parts += [e[sl].flatten(1) for e in embs]
            return self.modules["fused_head"](torch.cat(parts, 1))

        return chunked(fused, idx)

    @torch.no_grad()
    def scale_standalone_logits(self, factor: float) -> None:
        """Multiply the standalone model's logits by ``factor``, in its last layer's weights (in place: captured
        CUDA graphs keep their parameters)."""
        last = [m for m in self.modules["head"].modules() if isinstance(m, torch.nn.Linear)][-1]
        last.weight.mul_(factor)
        if last.bias is not None:
            last.bias.mul_(factor)
        self._version += 1

    def standalone_net(self) -> StandaloneNet:
        return StandaloneNet(self.modules["encoder"], self.modules["head"])

    def standalone_weights(self) -> dict[str, torch.Tensor]:
        """A copy of the standalone model's weights (encoder and head), for ``restore_standalone``."""
        return {k: v.detach().clone() for k, v in self.standalone_net().state_dict().items()}

    def restore_standalone(self, weights: dict[str, torch.Tensor]) -> None:
        """Put back weights from ``standalone_weights``, in place (captured CUDA graphs keep their parameters)."""
        self.standalone_net().load_state_dict(weights)
        self._version += 1

    def state(self) -> dict:
        opts = {
            "optimizer": self.opts[0].state_dict(),
            **{f"optimizer{i}": o.state_dict() for i, o in enumerate(self.opts) if i},
        }
        return {"modules": self.modules.state_dict(), **opts, "version": self._version}

    def load_state(self, state: dict) -> None:
        self.modules.load_state_dict(state["modules"])
        for i, o in enumerate(self.opts):
            o.load_state_dict(state["optimizer" if i == 0 else f"optimizer{i}"])
        self._version = state["version"]
        for g in (self.graphs, self.own_graphs):
            if g is not None:
                g.reset()


@dataclass
class _Pending:
    """A minibatch whose update waits for the active's gradient of the embedding sent for it. Its APFed loss is
    kept as the gradient w.r.t. this party's projection ``gz`` (APFed-C: the NT-Xent is not run backwards
    twice) or as its input ``a`` (APFed-R); ``h``, ``z`` and ``loss`` are graphs, None when recomputed."""

    idx: torch.Tensor
    aug: dict | None
    a: torch.Tensor | None = None
    gz: torch.Tensor | None = None
    h: torch.Tensor | None = None
    z: torch.Tensor | None = None
    loss: torch.Tensor | None = None


class PassiveLearner:
    """A passive party's modules: decoder (APFed-R), encoder + projection (APFed-C), encoder (tvfl, kd).

    A passive that sends embeddings (tvfl, apfed-kd) with K = 1 and no pipelining *defers* each minibatch's
    update: it runs its encoder once, answers with the APFed loss's gradient and the embedding, and applies the
    APFed loss together with the active's gradient of that embedding, which the next request carries. This is
    exactly one step of the joint model (every loss of the minibatch at the same parameters) and costs one encoder
    forward and one backward. Otherwise (K > 1, pipelining) each minibatch is applied at once, and the gradient of
    an earlier embedding is applied to the encoder recomputed for its rows."""

    def __init__(
        self,
        spec: dict,
        cfg: TrainConfig,
        X: torch.Tensor,
        loss: str | None,
        sends_embedding: bool,
        active_shape: tuple[int, ...] | None,
        seed: int,
    ):
        self.cfg, self.X, self.loss, self.sends_embedding = cfg, X, loss, sends_embedding
        self.embedding_shape = encoder_output_shape(spec, cfg.embedding_dim)
        self.defers = sends_embedding and cfg.batches_per_round == 1 and not cfg.pipeline
        d = math.prod(self.embedding_shape)

        def build() -> nn.ModuleDict:
            m = nn.ModuleDict()
            if loss == "r":
                m["decoder"] = make_decoder(tuple(active_shape), spec, cfg.hidden_dim)
            if loss == "c" or sends_embedding:
                m["encoder"] = make_encoder(spec, cfg.embedding_dim, cfg.hidden_dim)
            if loss == "c":
                m["projection"] = make_projection(d, cfg.projection_dim)
            return m

        configure_cuda(cfg.device, cfg.tf32, cfg.deterministic)
        self.modules = init_modules(seed, build).to(cfg.device)
        self._every = list(self.modules.modules())
        self.opt = make_optimizer(self.modules.parameters(), cfg)
        self.graphs = StepGraphs(self._graph_step, [self.opt]) if enabled(cfg.device, cfg.cuda_graphs) else None
        self._pending: _Pending | None = None

    def _apfed_loss(self, a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of this view from the active's h_A, or NT-Xent between z_A and this view's z_P."""
        if self.loss == "r":
            return reconstruction(self.modules["decoder"](a), x)
        return nt_xent(a, self.modules["projection"](self.modules["encoder"](x)), self.cfg.temperature)

    def _clip(self, emb: torch.Tensor) -> torch.Tensor:
        """The embedding as it was sent: the active's gradient is w.r.t. the clipped embedding under DP."""
        return clip_rows(emb, self.cfg.dp_clip) if self.cfg.dp_clip > 0 else emb

    def _graph_step(self, t: dict[str, torch.Tensor], captured: bool) -> dict[str, torch.Tensor]:
        """``train_batch`` with no augmentation, for apfed.graphs. Deferred (``pend_idx``): the pending minibatch's
        APFed loss and embedding gradient, one update, then this minibatch's embedding and APFed gradient.
        Otherwise: the gradient of an earlier embedding (``prev_idx``, ``prev_grad``), the APFed loss on ``a``,
        one update, then this minibatch's embedding."""
        if "pend_idx" in t:
            return self._deferred_graph_step(t, captured)
        out, total = {}, None
        if "prev_idx" in t:
            total = (self._embedding_sent(t["prev_idx"], None) * t["prev_grad"]).sum()
        if "a" in t:
            a = t["a"]
            a.grad = None
            apfed = self._apfed_loss(a, self.X[t["idx"]])
            total = apfed if total is None else total + apfed
            out["loss"] = apfed.detach()
        update(self.opt, total, captured)
        if "a" in t:
            out["grad"] = t["a"].grad
        if self.sends_embedding:
            with torch.no_grad():
                out["emb"] = self.modules["encoder"](self.X[t["idx"]])
        return out

    def _deferred_graph_step(self, t: dict[str, torch.Tensor], captured: bool) -> dict[str, torch.Tensor]:
        x = self.X[t["pend_idx"]]
        h = self.modules["encoder"](x)
        total = self._pending_loss(h, x, t.get("pend_a"), t.get("pend_gz"))
        if "prev_grad" in t:
            term = (self._clip(h) * t["prev_grad"]).sum()
            total = term if total is None else total + term
        update(self.opt, total, captured)
        out = {}
        if "idx" in t:
            x = self.X[t["idx"]]
            with torch.no_grad():
                out["emb"] = h = self.modules["encoder"](x)
            if "a" in t:
                out["grad"], out["gz"], _, out["loss"] = self._answer(t["a"], x, h)
        return out

    def _answer(self, a: torch.Tensor, x: torch.Tensor, h: torch.Tensor) -> tuple:
        """The APFed loss of a deferred minibatch: (gradient w.r.t. ``a``, gradient w.r.t. this party's projection
        ``z`` (APFed-C), ``z`` or the loss with its graph (APFed-R), the loss's value)."""
        if self.loss == "c":
            z = self.modules["projection"](h)
            loss = nt_xent(a, z, self.cfg.temperature)
            grad, gz = torch.autograd.grad(loss, [a, z])
            return grad, gz, z, loss.detach()
        loss = self._apfed_loss(a, x)
        (grad,) = torch.autograd.grad(loss, a, retain_graph=True)
        return grad, None, loss, loss.detach()

    def _pending_loss(
        self, h: torch.Tensor, x: torch.Tensor, a: torch.Tensor | None, gz: torch.Tensor | None
    ) -> torch.Tensor | None:
        """The deferred APFed loss, rebuilt from the encoder output ``h`` of its rows."""
        if gz is not None:
            return (self.modules["projection"](h) * gz).sum()
        return self._apfed_loss(a, x) if a is not None else None

    def train_batch(
        self,
        idx: torch.Tensor,
        received: torch.Tensor | None,
        prev: tuple[torch.Tensor, dict | None, torch.Tensor] | None,
        progress: float,
        aug: dict | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, float]:
        """One minibatch: the APFed loss of ``idx`` (w.r.t. ``received``), plus the active's gradient for an
        embedding sent earlier (``prev`` = (row indices, augmentation, gradient)).

        Returns the gradient w.r.t. ``received``, this minibatch's embedding (if it sends one) and the loss.
        """
        train_mode(self.modules, self._every)
        if received is None or self.loss is None or not len(idx):
            received = None
        if self.defers:
            return self._train_deferred(idx, received, prev, progress, aug)
        unaugmented = aug is None and (prev is None or prev[1] is None)
        if self.graphs is not None and len(idx) and unaugmented and (received is not None or prev is not None):
            set_lr(self.opt, lr_at(self.cfg, progress))
            inputs = {"idx": idx}
            if received is not None:
                inputs["a"] = received.detach().requires_grad_(True)
            if prev is not None:
                inputs.update(prev_idx=prev[0], prev_grad=prev[2])
            out = self.graphs((len(idx), len(prev[0]) if prev else 0, received is not None), inputs)
            return out.get("grad"), out.get("emb"), out.get("loss", 0.0)
        total = None
        value = 0.0
        a = None
        if prev is not None:
            prev_idx, prev_aug, prev_grad = prev
            total = (self._embedding_sent(prev_idx, prev_aug) * prev_grad).sum()
        if received is not None:
            a = received.detach().requires_grad_(True)
            apfed = self._apfed_loss(a, apply_augmentation(self.X[idx], aug))
            value = apfed.detach()
            total = apfed if total is None else total + apfed
        if total is not None:
            set_lr(self.opt, lr_at(self.cfg, progress))
            update(self.opt, total)
        emb = None
        if self.sends_embedding and len(idx):
            with torch.no_grad():
                emb = self.modules["encoder"](apply_augmentation(self.X[idx], aug))
        return (a.grad if a is not None else None), emb, value

    def _embedding_sent(self, idx: torch.Tensor, aug: dict | None) -> torch.Tensor:
        """This party's embedding of ``idx`` as it was sent, recomputed with its graph."""
        return self._clip(self.modules["encoder"](apply_augmentation(self.X[idx], aug)))

    def _train_deferred(
        self,
        idx: torch.Tensor,
        received: torch.Tensor | None,
        prev: tuple[torch.Tensor, dict | None, torch.Tensor] | None,
        progress: float,
        aug: dict | None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, float]:
        p, self._pending = self._pending, None
        matched = p is not None and prev is not None and _same(prev[0], p.idx) and _same_aug(prev[1], p.aug)
        graphable = aug is None and p is not None and p.aug is None and (prev is None or matched)
        if self.graphs is not None and graphable and (p.a is not None or p.gz is not None or matched):
            set_lr(self.opt, lr_at(self.cfg, progress))
            inputs = {"pend_idx": p.idx}
            if p.gz is not None:
                inputs["pend_gz"] = p.gz
            elif p.a is not None:
                inputs["pend_a"] = p.a
            if matched:
                inputs["prev_grad"] = prev[2]
            if len(idx):
                inputs["idx"] = idx
            if received is not None:
                inputs["a"] = received.detach().requires_grad_(True)
            key = ("deferred", len(p.idx), p.gz is not None, p.a is not None, matched, len(idx), received is not None)
            out = self.graphs(key, inputs)
            if len(idx):
                a = received.detach() if received is not None and self.loss == "r" else None
                self._pending = _Pending(idx, None, a=a, gz=out.get("gz"))
            return out.get("grad"), out.get("emb"), out.get("loss", 0.0)
        total = None
        if p is not None:
            if p.h is None:  # restored from a checkpoint, or computed inside a CUDA graph
                x = apply_augmentation(self.X[p.idx], p.aug)
                p.h = self.modules["encoder"](x)
                total = self._pending_loss(p.h, x, p.a, p.gz)
            elif p.gz is not None:
                total = (p.z * p.gz).sum()
            else:
                total = p.loss
            if matched:
                term = (self._clip(p.h) * prev[2]).sum()
                total = term if total is None else total + term
        if prev is not None and not matched:  # not the pending rows (no reply was expected): recompute them
            term = (self._embedding_sent(prev[0], prev[1]) * prev[2]).sum()
            total = term if total is None else total + term
        if total is not None:
            set_lr(self.opt, lr_at(self.cfg, progress))
            update(self.opt, total)
        if not len(idx):
            return None, None, 0.0
        x = apply_augmentation(self.X[idx], aug)
        h = self.modules["encoder"](x)
        pending = _Pending(idx, aug, h=h)
        grad, value = None, 0.0
        if received is not None:
            grad, pending.gz, kept, value = self._answer(received.detach().requires_grad_(True), x, h)
            if self.loss == "c":
                pending.z = kept
            else:
                pending.a, pending.loss = received.detach(), kept
        self._pending = pending
        return grad, h.detach(), value

    @torch.no_grad()
    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        self.modules.eval()
        return chunked(lambda i, _: self.modules["encoder"](self.X[i]), idx)

    def state(self) -> dict:
        state = {"modules": self.modules.state_dict(), "optimizer": self.opt.state_dict()}
        p = self._pending
        if p is not None:  # an exact resume applies it after the restore
            state["pending"] = {"idx": p.idx, **{k: v for k, v in (("a", p.a), ("gz", p.gz)) if v is not None}}
            state["pending"].update({f"aug_{k}": v for k, v in (p.aug or {}).items()})
        return state

    def load_state(self, state: dict) -> None:
        self.modules.load_state_dict(state["modules"])
        self.opt.load_state_dict(state["optimizer"])
        if self.graphs is not None:
            self.graphs.reset()
        self._pending = None
        if "pending" in state:
            p = state["pending"]
            aug = {k[4:]: v for k, v in p.items() if k.startswith("aug_")} or None
            self._pending = _Pending(p["idx"], aug, a=p.get("a"), gz=p.get("gz"))


def _same_aug(a: dict | None, b: dict | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal tensors; two live tensors over the same memory with the same layout are equal without reading them
    (on a GPU, reading them would wait for the device)."""
    if a is b:
        return True
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    if a.data_ptr() == b.data_ptr() and a.stride() == b.stride():
        return True
    return torch.equal(a, b)
