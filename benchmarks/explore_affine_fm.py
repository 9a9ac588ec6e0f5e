"""Exploration (issue 2, point 2): function matching with stronger augmentation that every party can still apply
to its own strip alone: a horizontal affine map per image (scale 0.9-1.1, shear up to 0.3 px per row, shift up to
2 px, continuous, bilinear), the same for every strip of an image (the shear uses the row's position in the whole
image), then mixup. Does the full-view teachers' labelling of such inputs help the top-strip student more than
the labels help a local student with the same augmentation?

Teachers: 3 TVFL models trained through the real clients (explore_function_matching.train_teacher, 60 epochs,
shift 2). Students: fresh active-only networks, ``LONG_EPOCHS`` epochs (default 300). fm3-aff-m1: KL to the
teachers' mean soft labels on the very same augmented, mixed input, no label loss; local-aff-m02: labels only,
same affine maps, mixup alpha 0.2; local-aff: labels only, affine maps alone.

Usage: python benchmarks/explore_affine_fm.py OUT STRIP SEED [DEVICE]; lines are appended to OUT/STRIP-SEED.jsonl.
Environment: LONG_EPOCHS, TEACHER_EPOCHS (default 60), ONLY (comma-separated student names without the epoch suffix).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

import torch
import torch.nn.functional as F
from explore_function_matching import (  # same directory: run as a script
    jsonl_emitter,
    script_args,
    student,
    train_teacher,
)

from apfed.augment import sample_augmentation
from apfed.config import make_config

HEIGHT = 28  # the whole image's rows; strip i of 2 starts at row 14 * i


def sample_affine(n: int, cfg, gen: torch.Generator, device) -> dict[str, torch.Tensor]:
    """Per image: horizontal scale, shear and shift (continuous), plus mixup partners when ``cfg.mixup``."""
    u = torch.rand(3, n, generator=gen)
    aug = {
        "scale": (0.9 + 0.2 * u[0]).to(device),
        "shear": (0.6 * u[1] - 0.3).to(device),
        "tx": (4 * u[2] - 2).to(device),
    }
    mix = sample_augmentation(n, replace(cfg, shift=0), gen, device) if cfg.mixup > 0 else None
    return {**aug, **(mix or {})}


def affine_strip(x: torch.Tensor, aug: dict[str, torch.Tensor], row0: int) -> torch.Tensor:
    """Apply the images' horizontal affine maps to one strip (rows ``row0`` .. of the whole image), then mixup."""
    n, _, h, w = x.shape
    cols = torch.arange(w, device=x.device, dtype=x.dtype) - (w - 1) / 2
    rows = torch.arange(h, device=x.device, dtype=x.dtype) + row0 - (HEIGHT - 1) / 2
    src = (cols[None, None, :] - aug["tx"][:, None, None] - aug["shear"][:, None, None] * rows[None, :, None]) / aug[
        "scale"
    ][:, None, None] + (w - 1) / 2
    gx = (2 * src + 1) / w - 1
    gy = ((2 * torch.arange(h, device=x.device, dtype=x.dtype) + 1) / h - 1)[None, :, None].expand(n, h, w)
    out = F.grid_sample(x, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="zeros", align_corners=False)
    if "perm" in aug:
        lam = aug["lam"].view(-1, 1, 1, 1)
        out = lam * out + (1 - lam) * out[aug["perm"]]
    return out


def main() -> None:
    out, strip, seed, device, ds, active = script_args()
    rows = [0, 14]
    base = make_config("default", method="tvfl", seed=seed, device=device, shift=2)
    emit = jsonl_emitter(out, strip, seed)

    only = [o for o in os.environ.get("ONLY", "").split(",") if o]
    no_teacher = bool(only) and all(o.startswith("local") for o in only)
    teacher_epochs = int(os.environ.get("TEACHER_EPOCHS", 60))
    teachers = []
    for t in range(1 if no_teacher else 3):
        t0 = time.time()
        tcfg = replace(base, seed=seed * 10 + t, epochs=1 if no_teacher else teacher_epochs)
        teachers.append(train_teacher(ds, active, tcfg))
        emit(student=f"(teacher {t})", accuracy=teachers[-1][0].history[-1]["accuracy"], seconds=time.time() - t0)
    client = teachers[0][0]

    @torch.no_grad()
    def soft(idx: torch.Tensor, aug: dict) -> torch.Tensor:
        """The teachers' mean logits on the augmented rows, each party's strip augmented with its own rows."""
        total = 0
        for c, passive in teachers:
            L = c.learner
            L.modules.eval()
            passive.modules.eval()
            h = L.modules["encoder"](affine_strip(L.X[idx], aug, rows[active])).flatten(1)
            e = passive.modules["encoder"](affine_strip(passive.X[idx], aug, rows[1 - active])).flatten(1)
            total = total + L.modules["fused_head"](torch.cat([h, e], 1))
        return total / len(teachers)

    cfg = replace(base, method="local", shift=0)
    long = int(os.environ.get("LONG_EPOCHS", 300))
    own = dict(sample=sample_affine, augment=lambda x, aug: affine_strip(x, aug, rows[active]))
    runs = [
        (f"fm3-aff-m1-e{long}", soft, dict(T=1, ce=False, mixup=1.0, epochs=long)),
        (f"local-aff-m02-e{long}", teachers[:1], dict(w=0, mixup=0.2, epochs=long)),
        (f"local-aff-e{long}", teachers[:1], dict(w=0, epochs=long)),
    ]
    for name, ts, kw in runs:
        if only and not any(name.startswith(o + "-e") for o in only):
            continue
        t0 = time.time()
        emit(student=name, accuracy=student(client, ts, cfg, **kw, **own), seconds=time.time() - t0)


if __name__ == "__main__":
    main()
