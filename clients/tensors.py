"""Conversion between what a message carries (numpy arrays or tensors) and tensors on a device."""

from __future__ import annotations

import numpy as np
import torch


def as_tensor(a, device: str | torch.device) -> torch.Tensor:
    if isinstance(a, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)
    return a.to(device)
