"""Small modules: encoders, task heads, decoders and projection heads for image strips and tabular views."""

from __future__ import annotations

import math

import torch
from torch import nn

from apfed.data.views import CONV_MIN_ROWS


def encoder_output_shape(spec: dict, cfg_embedding_dim: int) -> tuple[int, ...]:
    """Shape of one sample's embedding for a view spec ``{"kind", "shape"}``."""
    if spec["kind"] == "image":
        c, h, w = spec["shape"]
        return (64, h - 4, w - 4)
    return (cfg_embedding_dim,)


def make_encoder(spec: dict, embedding_dim: int, hidden_dim: int) -> nn.Module:
    """Reference conv encoder for image strips, MLP for tabular views."""
    if spec["kind"] == "image":
        c, h, w = spec["shape"]
        if h < CONV_MIN_ROWS or w < CONV_MIN_ROWS:
            raise ValueError(f"image strips of {h}x{w} are too small for the 5x5 conv encoder")
        return nn.Sequential(nn.Conv2d(c, 32, 5, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 5, padding=1), nn.ReLU())
    (d,) = spec["shape"]
    return nn.Sequential(nn.Linear(d, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, embedding_dim), nn.ReLU())


def make_decoder(active_embedding: tuple[int, ...], spec: dict, hidden_dim: int) -> nn.Module:
    """Reconstructs a passive's view from the active's embedding (APFed-R)."""
    if spec["kind"] == "image" and len(active_embedding) == 3:
        return nn.Sequential(
            nn.ConvTranspose2d(64, 32, 5, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(32, spec["shape"][0], 5, padding=1),
            nn.ReLU(),
        )
    out = math.prod(spec["shape"])
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(active_embedding), hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, out),
        nn.Unflatten(1, tuple(spec["shape"])),
    )


def make_head(in_dim: int, hidden: int, n_classes: int, dropout: float) -> nn.Module:
    """Task head: FC-ReLU-Dropout-FC, returning logits (log-softmax is applied by the loss)."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes)
    )


def make_projection(in_dim: int, out_dim: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(in_dim, out_dim))


class StandaloneNet(nn.Module):
    """The active party's complete model: encoder then head, on preprocessed active-view input."""

    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def init_modules(seed: int, build):
    """Build modules with a private seed, leaving the global RNG untouched (so roles in one process don't
    perturb each other and every transport initialises identically)."""
    with torch.random.fork_rng(devices=[]):
        seed_rng(seed, "cpu")  # modules are built on the CPU
        return build()


def seed_rng(seed: int, device: str) -> None:
    """``torch.manual_seed`` for the generators a run on ``device`` draws from: the CPU's, and CUDA's on a GPU.
    (``torch.manual_seed`` also queues the seed for every accelerator backend not yet started, formatting a stack
    trace for each: about 1 ms per call on a CPU-only host.)"""
    torch.random.default_generator.manual_seed(seed)
    if device.startswith("cuda"):
        torch.cuda.manual_seed_all(seed)
