"""SGD, Adam and AdamW with the same update rules as ``torch.optim``: on the CPU its fused kernels (one pass over
each parameter), elsewhere plain foreach tensor ops.

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


def _fused_kernel(name: str, params: list[torch.Tensor], fused: bool | None):
    """torch's fused update kernel ``name`` (what torch.optim's ``fused=True`` calls): by default on the CPU only
    (on a GPU, CUDA graphs replay the foreach form, ``step_captured``); None where not wanted or not in this torch."""
    wanted = (bool(params) and params[0].device.type == "cpu") if fused is None else fused
    return getattr(torch, name, None) if wanted else None


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

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0, fused: bool | None = None):
        super().__init__(params, lr, weight_decay)
        self.momentum = momentum
        self._fused = _fused_kernel("_fused_sgd_", self.params, fused)

    @torch.no_grad()
    def step(self) -> None:
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        for i in live:
            self.counts[i] += 1
        if self._fused is not None and self._fused_update(live):
            return
        # foreach ops: a few kernels for all parameters (on the CPU they loop, with the same arithmetic)
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

    def _fused_update(self, live: list[int]) -> bool:
        """One fused-kernel update per group (parameters at their first step start their momentum buffer from the
        gradient); False (and the foreach ops from then on) where this build has no such kernel."""
        bufs = self.buffers.setdefault("momentum", [None] * len(self.params)) if self.momentum else None
        for first in (True, False):
            group = [i for i in live if (self.counts[i] == 1) == first]
            if not group:
                continue
            if bufs is not None and first:
                for i in group:
                    bufs[i] = torch.empty_like(self.params[i])
            ps = [self.params[i] for i in group]
            try:
                self._fused(
                    ps, [p.grad for p in ps], [bufs[i] for i in group] if bufs is not None else [],
                    weight_decay=self.param_groups[0]["weight_decay"], momentum=self.momentum, lr=self.lr,
                    dampening=0.0, nesterov=False, maximize=False, is_first_step=first and bufs is not None,
                )  # fmt: skip
            except NotImplementedError:  # no kernel registered for this device in this build
                if bufs is not None and first:
                    for i in group:
                        bufs[i] = None
                self._fused = None
                return False
        return True

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
    """torch.optim.Adam (L2 weight decay added to the gradient) or, with ``decoupled=True``, AdamW.

    ``fused`` (default: on the CPU) steps with torch's fused kernel, as ``torch.optim.Adam(fused=True)`` does, bit
    for bit: one pass over each parameter instead of eight foreach passes (benchmarks/fused_optimizers.py: an
    epoch 0.88x as long). Elsewhere, or where this torch has no such kernel, the foreach ops of ``torch.optim``'s
    foreach Adam."""

    def __init__(
        self,
        params,
        lr: float,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        decoupled: bool = False,
        fused: bool | None = None,
    ):
        super().__init__(params, lr, weight_decay)
        self.betas, self.eps, self.decoupled = betas, eps, decoupled
        self._fused = _fused_kernel("_fused_adamw_" if decoupled else "_fused_adam_", self.params, fused)

    @torch.no_grad()
    def step(self) -> None:
        by_count: dict[int, list[int]] = {}
        for i, p in enumerate(self.params):
            if p.grad is not None:
                self.counts[i] += 1
                by_count.setdefault(self.counts[i], []).append(i)
        for t, live in by_count.items():  # one group unless parameters joined at different steps
            if self._fused is None or not self._fused_update(live, t):
                self._foreach_update(live, t)

    def _fused_update(self, live: list[int], t: int) -> bool:
        """One fused-kernel update; False (and the foreach ops from then on) where this build has no such kernel."""
        ps = [self.params[i] for i in live]
        m = [self._buffer("exp_avg", i, self.params[i]) for i in live]
        v = [self._buffer("exp_avg_sq", i, self.params[i]) for i in live]
        b1, b2 = self.betas
        step = torch.tensor(float(t), device=ps[0].device)  # the kernel reads the count, never writes it
        try:
            self._fused(
                ps, [p.grad for p in ps], m, v, [], [step] * len(ps), lr=self.lr, beta1=b1, beta2=b2,
                weight_decay=self.param_groups[0]["weight_decay"], eps=self.eps, amsgrad=False, maximize=False,
            )  # fmt: skip
        except NotImplementedError:  # no kernel registered for this device in this build
            self._fused = None
            return False
        return True

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
