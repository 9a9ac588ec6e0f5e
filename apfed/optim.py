"""SGD, Adam and AdamW in plain tensor ops, with the same update rules as ``torch.optim``.

Why not ``torch.optim``: constructing or stepping one of its optimizers imports ``torch._dynamo`` (about 2 s on
this class of machine). A Flower ClientApp is a fresh process for every message, so that import would be paid on
every round of a deployment. These optimizers import nothing beyond torch, and their state is a dict of tensors
that loads with ``torch.load(weights_only=True)``.

``step_captured`` is the same update in a form that a CUDA graph can capture (apfed.graphs): every parameter
has a gradient, every buffer exists, and the learning rate and bias corrections are device tensors that
``before_replay`` fills (a kernel each, no host sync) before each replay.
"""

from __future__ import annotations

import math

import torch


class Optimizer:
    """One parameter group; ``param_groups[0]["lr"]`` is the learning rate, as in torch.optim."""

    def __init__(self, params, lr: float, weight_decay: float = 0.0):
        self.params = [p for p in params]
        self.param_groups = [{"lr": lr, "weight_decay": weight_decay}]
        self.counts = [0] * len(self.params)  # steps taken per parameter (as torch.optim counts them)
        self.buffers: dict[str, list[torch.Tensor | None]] = {}
        self._scalars: torch.Tensor | None = None  # device copies of the step's scalars, for step_captured

    @property
    def lr(self) -> float:
        return self.param_groups[0]["lr"]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def _buffer(self, name: str, i: int, like: torch.Tensor) -> torch.Tensor:
        buf = self.buffers.setdefault(name, [None] * len(self.params))
        if buf[i] is None:
            buf[i] = torch.zeros_like(like, memory_format=torch.preserve_format)
        return buf[i]

    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        raise NotImplementedError

    # --- CUDA-graph capture ---------------------------------------------------------------------------
    def capturable(self) -> bool:
        """True once every parameter has taken the same number (>= 1) of steps: its buffers all exist."""
        return bool(self.counts) and self.counts[0] >= 1 and len(set(self.counts)) == 1

    def scalars(self) -> torch.Tensor:
        if self._scalars is None:
            self._scalars = torch.zeros(3, device=self.params[0].device)
        return self._scalars

    def before_replay(self) -> None:
        """Count one more step and write this step's scalars to the device (the graph reads them)."""
        self.counts = [c + 1 for c in self.counts]
        s = self.scalars()
        for i, v in enumerate(self._step_scalars(self.counts[0])):
            s[i].fill_(v)

    def _step_scalars(self, t: int) -> tuple[float, ...]:
        raise NotImplementedError

    @torch.no_grad()
    def step_captured(self) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {
            "lr": torch.tensor(self.lr, dtype=torch.float64),
            "counts": torch.tensor(self.counts, dtype=torch.int64),
            **{f"{name}.{i}": b for name, bufs in self.buffers.items() for i, b in enumerate(bufs) if b is not None},
        }

    def load_state_dict(self, state: dict) -> None:
        self.param_groups[0]["lr"] = float(state["lr"])
        self.counts = [int(c) for c in state["counts"]]
        if len(self.counts) != len(self.params):
            raise ValueError("optimizer state is for another set of parameters")
        self.buffers = {}
        for key, value in state.items():
            name, _, i = key.rpartition(".")
            if name and key not in ("lr", "counts"):
                p = self.params[int(i)]
                self.buffers.setdefault(name, [None] * len(self.params))[int(i)] = value.to(p.device, p.dtype)


class SGD(Optimizer):
    """torch.optim.SGD with momentum (no dampening, no Nesterov) and L2 weight decay."""

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, lr, weight_decay)
        self.momentum = momentum

    @torch.no_grad()
    def step(self) -> None:
        # foreach ops: a few kernels for all parameters (on the CPU they loop, with the same arithmetic)
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        for i in live:
            self.counts[i] += 1
        ps = [self.params[i] for i in live]
        gs = [p.grad for p in ps]
        wd = self.param_groups[0]["weight_decay"]
        if wd:
            gs = torch._foreach_add(gs, ps, alpha=wd)
        if self.momentum:
            bufs = self.buffers.setdefault("momentum", [None] * len(self.params))
            old = [j for j, i in enumerate(live) if self.counts[i] > 1]
            if old:
                olds = [bufs[live[j]] for j in old]
                torch._foreach_mul_(olds, self.momentum)
                torch._foreach_add_(olds, [gs[j] for j in old])
            for j, i in enumerate(live):
                if self.counts[i] == 1:
                    bufs[i] = torch.clone(gs[j]).detach()
            gs = [bufs[i] for i in live]
        torch._foreach_add_(ps, gs, alpha=-self.lr)

    def _step_scalars(self, t: int) -> tuple[float, ...]:
        return (-self.lr,)

    @torch.no_grad()
    def step_captured(self) -> None:
        gs = [p.grad for p in self.params]
        wd = self.param_groups[0]["weight_decay"]
        if wd:
            gs = torch._foreach_add(gs, self.params, alpha=wd)
        if self.momentum:
            bufs = self.buffers["momentum"]
            torch._foreach_mul_(bufs, self.momentum)
            torch._foreach_add_(bufs, gs)
            gs = bufs
        torch._foreach_add_(self.params, torch._foreach_mul(gs, self.scalars()[0]))


class Adam(Optimizer):
    """torch.optim.Adam (L2 weight decay added to the gradient) or, with ``decoupled=True``, AdamW."""

    def __init__(
        self,
        params,
        lr: float,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        decoupled: bool = False,
    ):
        super().__init__(params, lr, weight_decay)
        self.betas, self.eps, self.decoupled = betas, eps, decoupled

    @torch.no_grad()
    def step(self) -> None:
        # foreach ops, as torch.optim's foreach Adam: ~8 calls per step instead of ~8 per parameter (on the
        # CPU the per-call overhead of tiny tabular models is most of an optimizer step)
        by_count: dict[int, list[int]] = {}
        for i, p in enumerate(self.params):
            if p.grad is not None:
                self.counts[i] += 1
                by_count.setdefault(self.counts[i], []).append(i)
        for t, live in by_count.items():  # one group unless parameters joined at different steps
            self._foreach_update(live, t)

    def _foreach_update(self, live: list[int], t: int) -> None:
        ps = [self.params[i] for i in live]
        gs = [p.grad for p in ps]
        wd = self.param_groups[0]["weight_decay"]
        b1, b2 = self.betas
        if wd and self.decoupled:
            torch._foreach_mul_(ps, 1 - self.lr * wd)
        elif wd:
            gs = torch._foreach_add(gs, ps, alpha=wd)
        m = [self._buffer("exp_avg", i, self.params[i]) for i in live]
        v = [self._buffer("exp_avg_sq", i, self.params[i]) for i in live]
        torch._foreach_lerp_(m, gs, 1 - b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, gs, gs, value=1 - b2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, math.sqrt(1 - b2**t))
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(ps, m, denom, value=-self.lr / (1 - b1**t))

    def _step_scalars(self, t: int) -> tuple[float, ...]:
        b1, b2 = self.betas
        wd = self.param_groups[0]["weight_decay"]
        return (-self.lr / (1 - b1**t), 1 / math.sqrt(1 - b2**t), 1 - self.lr * wd)

    @torch.no_grad()
    def step_captured(self) -> None:
        ps, gs = self.params, [p.grad for p in self.params]
        s = self.scalars()
        wd = self.param_groups[0]["weight_decay"]
        b1, b2 = self.betas
        if wd and self.decoupled:
            torch._foreach_mul_(ps, s[2])
        elif wd:
            gs = torch._foreach_add(gs, ps, alpha=wd)
        m, v = self.buffers["exp_avg"], self.buffers["exp_avg_sq"]
        torch._foreach_lerp_(m, gs, 1 - b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, gs, gs, value=1 - b2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_mul_(denom, s[1])
        torch._foreach_add_(denom, self.eps)
        upd = torch._foreach_div(m, denom)
        torch._foreach_mul_(upd, s[0])
        torch._foreach_add_(ps, upd)
