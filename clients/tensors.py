"""Conversion between what a message carries (numpy arrays or tensors) and tensors on a device."""

from __future__ import annotations

import numpy as np
import torch


def as_tensor(a, device: str | torch.device) -> torch.Tensor:
    """A received array as a tensor on ``device``. A host-to-GPU copy does not wait for the GPU: the source is
    pageable memory, which CUDA stages before the call returns (a GPU-to-host copy stays blocking)."""
    if isinstance(a, np.ndarray):
        a = torch.from_numpy(np.ascontiguousarray(a))
    return a.to(device, non_blocking=a.device.type == "cpu")


def to_wire(t: torch.Tensor, payload: str) -> torch.Tensor:
    """An embedding or gradient as it is sent: float32, or float16 (``payload``; half the bytes). A value
    beyond float16's range becomes infinite and the receiver refuses the message."""
    return t.to(torch.float16) if payload == "float16" else t


def from_wire(t: torch.Tensor) -> torch.Tensor:
    """A received embedding or gradient, back in float32 for the receiver's compute."""
    return t.float() if t.dtype == torch.float16 else t
