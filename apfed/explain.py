"""Per-row explanations of a standalone model's predictions: integrated gradients (Sundararajan et al., 2017) from
the average training row to each row, summed per raw column. A column's effect is how much it moved this row's
explained output (a class's probability, or a regression's value) away from the average row's; the effects of
all columns add up to that difference (completeness), up to the integral's discretization."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

ROWS_PER_PASS = 4096  # interpolated inputs per forward/backward pass: bounded memory for any number of rows


@dataclass
class Explanation:
    """What moved each row's prediction. ``effects[i, j]``: how much column ``columns[j]`` moved row i's explained
    output from ``baseline[i]`` (the average training row's) to ``value[i]`` (the row's): a probability (0-1) of
    the class ``explained[i]``, or a regression's predicted value in the target's units. Each row's effects add up
    to ``value - baseline`` up to ``gap`` (the integral's discretization; more ``steps`` make it smaller)."""

    columns: list[str]
    effects: np.ndarray
    value: np.ndarray
    baseline: np.ndarray
    explained: np.ndarray | None = None  # classification: the class whose probability each row explains

    @property
    def gap(self) -> np.ndarray:
        """Per row: the effects' sum minus (value - baseline)."""
        return self.effects.sum(1) - (self.value - self.baseline)

    def top(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each row's ``k`` columns that moved it most (largest absolute effect first): names and effects."""
        return top_reasons(self.effects, self.columns, k)


def integrated_gradients(
    output: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    targets: torch.Tensor,
    baseline: torch.Tensor,
    steps: int = 32,
    progress: Callable[[int], object] | None = None,
) -> np.ndarray:
    """Integrated gradients of ``output(inputs, targets)`` (one value per row, each row's own) for the rows ``x``
    (rows x features, on the model's device) against ``baseline`` (one row), by the midpoint rule with ``steps``
    points on the straight path: attribution = (x - baseline) * mean gradient along it. Rows are independent, so
    one backward pass of the outputs' sum gives each row its gradient. ``progress`` gets the rows done after each
    pass."""
    alphas = (torch.arange(steps, dtype=x.dtype, device=x.device) + 0.5) / steps
    rows = max(1, ROWS_PER_PASS // steps)
    out = np.empty(tuple(x.shape), np.float32)
    for start in range(0, len(x), rows):
        chunk, target = x[start : start + rows], targets[start : start + rows]
        delta = chunk - baseline
        path = (baseline + alphas.view(-1, *([1] * chunk.dim())) * delta).reshape(-1, *chunk.shape[1:])
        path.requires_grad_(True)
        value = output(path, target.repeat(steps))
        (grad,) = torch.autograd.grad(value.sum(), path)
        mean_grad = grad.reshape(steps, *chunk.shape).mean(0)
        out[start : start + len(chunk)] = (delta * mean_grad).detach().cpu().numpy()
        if progress is not None:
            progress(len(chunk))
    return out


def column_effects(attributions: np.ndarray, groups: list[tuple[str, list[int]]]) -> np.ndarray:
    """Each raw column's effect per row (rows x columns, in ``groups``' order): the sum of its features'
    attributions (a categorical column's one 0/1 feature per value together)."""
    flat = attributions.reshape(len(attributions), -1)
    return np.stack([flat[:, idx].sum(1) for _, idx in groups], 1) if groups else flat[:, :0]


def top_reasons(effects: np.ndarray, names: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` columns of largest absolute effect, largest first: their names (rows x k, str) and
    effects (rows x k)."""
    k = min(k, effects.shape[1])
    order = np.argsort(-np.abs(effects), axis=1, kind="stable")[:, :k]
    return np.asarray(names, dtype=object)[order], np.take_along_axis(effects, order, 1)
