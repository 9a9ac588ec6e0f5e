"""SGD, Adam and AdamW in plain tensor ops, with the same update rules as ``torch.optim``.

Why not ``torch.optim``: constructing or stepping one of its optimizers imports ``torch._dynamo`` (about 2 s on
this class of machine). A Flower ClientApp is a fresh process for every message, so that import would be paid on
every round of a deployment. These optimizers import nothing beyond torch, and their state is a dict of tensors
that loads with ``torch.load(weights_only=True)``.
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

    @torch.no_grad()
    def step(self) -> None:
        for i, p in enumerate(self.params):
            if p.grad is not None:
                self.counts[i] += 1
                self._update(i, p, p.grad)

    def _update(self, i: int, p: torch.Tensor, g: torch.Tensor) -> None:
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

    def _update(self, i, p, g):
        wd = self.param_groups[0]["weight_decay"]
        if wd:
            g = g.add(p, alpha=wd)
        if self.momentum:
            fresh = self.counts[i] == 1
            buf = self._buffer("momentum", i, p)
            if fresh:
                buf.copy_(g)
            else:
                buf.mul_(self.momentum).add_(g)
            g = buf
        p.add_(g, alpha=-self.lr)


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

    def _update(self, i, p, g):
        wd = self.param_groups[0]["weight_decay"]
        b1, b2 = self.betas
        if wd and self.decoupled:
            p.mul_(1 - self.lr * wd)
        elif wd:
            g = g.add(p, alpha=wd)
        m = self._buffer("exp_avg", i, p)
        v = self._buffer("exp_avg_sq", i, p)
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        t = self.counts[i]
        bc1 = 1 - b1**t
        bc2 = 1 - b2**t
        denom = (v.sqrt() / math.sqrt(bc2)).add_(self.eps)
        p.addcdiv_(m, denom, value=-self.lr / bc1)
