"""Optional differential-privacy noise on what crosses a party boundary: per-sample L2 clipping, then Gaussian
noise (the Gaussian mechanism applied to each release). No privacy accountant: the noise multiplier is
reported, the composed epsilon over a whole run is not computed (docs/security.md)."""

from __future__ import annotations

import torch

from apfed.config import TrainConfig


def clip_rows(t: torch.Tensor, bound: float) -> torch.Tensor:
    """Scale each sample (row) of ``t`` down to L2 norm ``bound`` at most; differentiable, so a party can
    back-propagate a received gradient through the clipping it applied before sending."""
    flat = t.flatten(1)
    scale = (bound / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)
    return (flat * scale).reshape(t.shape)


class Privatizer:
    """Clips and noises one party's outgoing embeddings (bound ``dp_clip``) and gradients (bound
    ``dp_clip / batch_size``: the losses are batch means, so per-sample gradients are that much smaller)."""

    def __init__(self, cfg: TrainConfig, seed: int):
        self.clip, self.noise, self.batch = cfg.dp_clip, cfg.dp_noise, cfg.batch_size
        self.gen = torch.Generator(device=cfg.device).manual_seed(seed) if self.clip > 0 else None

    @property
    def active(self) -> bool:
        return self.clip > 0

    def embedding(self, t: torch.Tensor) -> torch.Tensor:
        return self._apply(t, self.clip)

    def gradient(self, t: torch.Tensor) -> torch.Tensor:
        return self._apply(t, self.clip / self.batch)

    def _apply(self, t: torch.Tensor, bound: float) -> torch.Tensor:
        if not self.active or t.numel() == 0:
            return t
        flat = clip_rows(t.detach(), bound).flatten(1)
        if self.noise > 0:
            flat = flat + self.noise * bound * torch.randn(flat.shape, generator=self.gen, device=flat.device)
        return flat.reshape(t.shape)
