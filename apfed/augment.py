"""Cross-party consistent augmentation. The active party draws the parameters (horizontal shift per sample,
mixup partner within the batch and mixing weight); every party applies them to its own view, so a sample's
views stay one sample. Only parameters travel, never features."""

from __future__ import annotations

import torch

from apfed.config import TrainConfig


def sample_augmentation(n: int, cfg: TrainConfig, gen: torch.Generator, device) -> dict[str, torch.Tensor] | None:
    """Parameters for a minibatch of ``n`` samples, or None when the recipe has no augmentation."""
    if cfg.mixup <= 0 and cfg.shift <= 0:
        return None
    aug = {}
    if cfg.shift > 0:
        aug["shift"] = torch.randint(-cfg.shift, cfg.shift + 1, (n,), generator=gen).to(device)
    if cfg.mixup > 0:
        g1 = _gamma(n, cfg.mixup, gen)
        g2 = _gamma(n, cfg.mixup, gen)
        lam = g1 / (g1 + g2)
        aug["perm"] = torch.randperm(n, generator=gen).to(device)
        aug["lam"] = lam.float().to(device)
    return aug


def _gamma(n: int, alpha: float, gen: torch.Generator) -> torch.Tensor:
    """Gamma(alpha, 1) samples from a seeded generator (Marsaglia-Tsang via the generator's normals and
    uniforms), so Beta draws are reproducible across processes."""
    a = alpha + 1.0 if alpha < 1 else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / (9.0 * d) ** 0.5
    out = torch.empty(n, dtype=torch.float64)
    filled = 0
    while filled < n:
        x = torch.randn(2 * n, generator=gen, dtype=torch.float64)
        u = torch.rand(2 * n, generator=gen, dtype=torch.float64)
        v = (1 + c * x) ** 3
        ok = (v > 0) & (torch.log(u.clamp_min(1e-300)) < 0.5 * x * x + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        take = (d * v)[ok][: n - filled]
        out[filled : filled + len(take)] = take
        filled += len(take)
    if alpha < 1:
        out = out * torch.rand(n, generator=gen, dtype=torch.float64) ** (1.0 / alpha)
    return out


def apply_augmentation(x: torch.Tensor, aug: dict[str, torch.Tensor] | None) -> torch.Tensor:
    """Shift image rows horizontally (with wrap-around; digit borders are blank), then mix samples."""
    if aug is None:
        return x
    if "shift" in aug and x.dim() == 4:
        w = x.shape[-1]
        cols = (torch.arange(w, device=x.device)[None, :] - aug["shift"][:, None]) % w
        x = x.gather(3, cols[:, None, None, :].expand_as(x))
    if "perm" in aug:
        lam = aug["lam"].view(-1, *([1] * (x.dim() - 1)))
        x = lam * x + (1 - lam) * x[aug["perm"]]
    return x


def join_augmentations(augs: list[dict | None], sizes: list[int]) -> dict[str, torch.Tensor] | None:
    """Concatenate per-minibatch parameters; mixup partners become indices into the concatenation."""
    if not augs or augs[0] is None:
        return None
    out = {}
    for key in augs[0]:
        parts, start = [], 0
        for a, n in zip(augs, sizes, strict=True):
            parts.append(a[key] + start if key == "perm" else a[key])
            start += n
        out[key] = torch.cat(parts)
    return out


def slice_augmentation(aug: dict | None, start: int, size: int) -> dict[str, torch.Tensor] | None:
    """The parameters of one minibatch out of a concatenation made by ``join_augmentations``."""
    if aug is None:
        return None
    return {k: (v[start : start + size] - start if k == "perm" else v[start : start + size]) for k, v in aug.items()}


def mixed_cross_entropy(
    logits: torch.Tensor,
    y: torch.Tensor,
    aug: dict | None,
    weight: torch.Tensor | None = None,
    unlabelled: bool = False,
) -> torch.Tensor:
    """Cross-entropy against the mixed labels of a mixup batch (plain cross-entropy otherwise); ``weight``: one
    per class, the loss then being the weighted mean over the minibatch, as ``F.cross_entropy``'s. ``unlabelled``:
    ``y`` may hold -1 (no label), which counts for nothing; a minibatch with no label at all has loss 0."""
    import torch.nn.functional as F

    if unlabelled:
        return _labelled_cross_entropy(logits, y, aug, weight)
    if aug is None or "perm" not in aug:
        return F.cross_entropy(logits, y, weight=weight)
    lam, y2 = aug["lam"], y[aug["perm"]]
    per_sample = lam * F.cross_entropy(logits, y, weight=weight, reduction="none") + (1 - lam) * F.cross_entropy(
        logits, y2, weight=weight, reduction="none"
    )
    if weight is None:
        return per_sample.mean()
    return per_sample.sum() / (lam * weight[y] + (1 - lam) * weight[y2]).sum()


def _labelled_cross_entropy(
    logits: torch.Tensor, y: torch.Tensor, aug: dict | None, weight: torch.Tensor | None
) -> torch.Tensor:
    """``mixed_cross_entropy`` over the rows that have a label (y >= 0): each row's (and with mixup, each of its
    two labels') weight is 0 without one, and the loss is the weighted mean, computed on the device (no sync, as a
    CUDA graph needs)."""
    import torch.nn.functional as F

    def part(labels: torch.Tensor, share) -> tuple[torch.Tensor, torch.Tensor]:
        has = labels >= 0
        safe = labels.clamp(min=0)
        w = has.to(logits.dtype) * (weight[safe] if weight is not None else 1.0) * share
        return (w * F.cross_entropy(logits, safe, reduction="none")).sum(), w.sum()

    if aug is None or "perm" not in aug:
        total, count = part(y, 1.0)
    else:
        lam = aug["lam"]
        (t1, c1), (t2, c2) = part(y, lam), part(y[aug["perm"]], 1 - lam)
        total, count = t1 + t2, c1 + c2
    return total / count.clamp(min=1e-12)


def mixed_squared_error(
    out: torch.Tensor,
    y: torch.Tensor,
    aug: dict | None,
    weight: None = None,
    unlabelled: bool = False,
    huber: float = 0.0,
) -> torch.Tensor:
    """A regression task's loss: the mean squared error of the outputs ``out`` (n, 1) against the (standardized)
    targets ``y`` (n,), with mixup against the mixed targets (for the squared error, the same gradient as mixing
    the two errors). ``huber`` > 0: the Huber loss with that threshold instead (squared below it, linear above).
    ``unlabelled``: ``y`` may hold NaN (no label), which counts for nothing; a minibatch with no label has loss 0,
    computed on the device (no sync, as a CUDA graph needs). ``weight`` is there to match ``mixed_cross_entropy``;
    a regression has no classes to weigh."""
    import torch.nn.functional as F

    pred = out.reshape(len(out))
    if aug is not None and "perm" in aug:
        y = aug["lam"] * y + (1 - aug["lam"]) * y[aug["perm"]]  # a row mixed with one that has no label has none
    has = ~torch.isnan(y) if unlabelled else None
    if has is not None:
        y = torch.where(has, y, pred.detach())  # no label: no error, and no gradient
    per_row = F.huber_loss(pred, y, reduction="none", delta=huber) if huber > 0 else (pred - y) ** 2
    if has is None:
        return per_row.mean()
    return per_row.sum() / has.sum().to(pred.dtype).clamp(min=1)


def mixed_distillation(
    student: torch.Tensor,
    teacher: torch.Tensor,
    taught: torch.Tensor,
    aug: dict | None,
    temperature: float,
    regression: bool = False,
) -> torch.Tensor:
    """Distillation towards fixed teacher outputs of the rows (a fresh student's, ``kd_student=fresh``): Hinton's
    T² · KL(softmax(teacher / T) ‖ softmax(student / T)), or a regression's squared distance to the teacher's output,
    averaged over the minibatch. ``taught``: 1 for a row the teacher labelled, 0 for one it did not (a row that no
    passive holds), which then counts for nothing. Under mixup the target mixes the two rows' teacher probabilities
    (or outputs) with the rows' weight, and counts where both rows are taught; a shift leaves the target as it is
    (the teacher labelled the row unshifted). Computed on the device, no sync (a CUDA graph captures it)."""
    import torch.nn.functional as F

    mixed = aug is not None and "perm" in aug
    if mixed:
        lam, perm = aug["lam"].view(-1, 1), aug["perm"]
        taught = taught * taught[perm]
    if regression:
        target = lam * teacher + (1 - lam) * teacher[perm] if mixed else teacher
        return (((student - target) ** 2).sum(1) * taught).mean()
    p = F.softmax(teacher / temperature, dim=1)
    if mixed:
        p = lam * p + (1 - lam) * p[perm]
    kl = (torch.special.xlogy(p, p) - p * F.log_softmax(student / temperature, dim=1)).sum(1)
    return (kl * taught).mean() * temperature * temperature
