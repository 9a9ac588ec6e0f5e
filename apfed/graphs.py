"""CUDA-graph replay of one training step (forward, backward, optimizer update) of one role's learner.

On a GPU the paper networks are small: an eager step is bound by ~200 kernel launches from Python, not by the
GPU. After a few eager warm-up steps, the step is captured once per input signature (batch size, which inputs
are present) and then replayed: one launch per step. Inputs are copied into the graph's static tensors, outputs
are cloned out. The step itself is unchanged apart from the optimizer, whose learning rate and bias corrections
are read from device tensors (``Optimizer.step_captured``), so a schedule needs no re-capture.

A step can be captured only if it never reads a value back to the host and every shape in it is fixed by its
signature; the learners choose which steps qualify (no augmentation, no per-step Python branching on values).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import torch

from apfed.optim import Optimizer

StepFn = Callable[[dict[str, torch.Tensor], bool], dict[str, torch.Tensor]]
WARMUP = 3  # eager steps per signature before capture (lazy library initialisation, optimizer buffers)


@dataclass
class _Entry:
    calls: int = 0
    graph: torch.cuda.CUDAGraph | None = None
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)


class StepGraphs:
    """Runs ``fn(inputs, captured)`` eagerly for its first WARMUP calls per signature, then captures and replays.

    ``fn`` must call ``opt.step()`` when ``captured`` is False and ``opt.step_captured()`` when it is True, for
    each of ``optimizers``; the caller sets the learning rate (``param_groups[0]["lr"]``) before every call.
    """

    def __init__(self, fn: StepFn, optimizers: list[Optimizer]):
        self.fn, self.optimizers = fn, optimizers
        self.entries: dict[Hashable, _Entry] = {}
        self.pool = None
        self.replays = 0

    def reset(self) -> None:
        """Forget every graph (after the optimizer state or the parameters were replaced)."""
        self.entries.clear()
        self.pool = None

    def __call__(self, key: Hashable, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        e = self.entries.setdefault(key, _Entry())
        if e.graph is None and (e.calls < WARMUP or not all(o.capturable() for o in self.optimizers)):
            e.calls += 1
            return self.fn(inputs, False)
        if e.graph is None:
            self._capture(e, inputs)
        with torch.no_grad():
            for k, v in inputs.items():
                e.inputs[k].copy_(v)
        for o in self.optimizers:
            o.before_replay()
        e.graph.replay()
        self.replays += 1
        return {k: v.clone() for k, v in e.outputs.items()}

    def _capture(self, e: _Entry, inputs: dict[str, torch.Tensor]) -> None:
        e.inputs = {k: v.detach().clone().requires_grad_(v.requires_grad) for k, v in inputs.items()}
        for o in self.optimizers:  # allocated outside the graph: a tensor made inside it is re-zeroed per replay
            o.scalars()
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        # Only this thread's CUDA calls can spoil the capture: another thread of the process (a Flower or Ray
        # thread, or a finished run's objects freed there) may call CUDA meanwhile. Nor may a garbage collection
        # here free a finished run's graphs mid-capture (torch.cuda.graph collects once before capturing).
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
                out = self.fn(e.inputs, True)
        finally:
            if gc_was_on:
                gc.enable()
        e.outputs = {k: v for k, v in out.items() if v is not None}
        e.graph = graph
        self.pool = graph.pool()


def configure_cuda(device: str, tf32: bool, deterministic: bool = False) -> None:
    """On a GPU: cuDNN times its convolution algorithms once per shape and keeps the fastest; TF32 matrix
    multiplies if asked. ``deterministic``: only kernels that give the same result on every run instead (cuDNN's
    deterministic algorithms, cuBLAS with a fixed workspace), so that a seed gives one model. Process-wide torch
    settings, as torch offers them; each run sets them again."""
    if device.startswith("cuda"):
        if deterministic:
            # read by cuBLAS when torch creates its handle for a stream: before this process's first matrix multiply
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
        torch.use_deterministic_algorithms(deterministic)
        if tf32:
            torch.backends.cuda.matmul.allow_tf32 = True


def enabled(device: str, requested: bool) -> bool:
    """CUDA graphs are used on a CUDA device unless switched off (``cuda_graphs = false``)."""
    return requested and device.startswith("cuda") and torch.cuda.is_available()
