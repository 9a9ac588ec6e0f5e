"""Exploration: distil p(y | active view) by marginalising a TVFL teacher over the passive view, on mnist5k.

A student that sees only the active strip can at best learn p(y | x_A). Distilling a teacher that also sees the
passive strip gives targets close to the hard labels (the teacher is ~98 % right), so they carry little of the
ambiguity the student must learn. Here the target of training row i is

    q_i = sum_j w_ij * softmax(teacher(x_A_i, x_P_j)),    w_ij = softmax_j(s(x_A_i, x_P_j) / beta)

over the passive strips x_P_j of other rows, where s is a cross-view contrastive critic (an NT-Xent critic
estimates log p(x_P | x_A) / p(x_P) up to a per-row constant). The critic is cross-fitted (trained on the other
half of the rows) so that it has not memorised row i's own pair. "critic-labels" uses onehot(y_j) in place of the
teacher's output.

Usage: python benchmarks/explore_marginal_teacher.py OUT STRIP SEED [DEVICE]. Lines go to OUT/STRIP-SEED.jsonl.
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

from apfed.config import lr_at, make_config
from apfed.learner import make_optimizer, set_lr
from apfed.losses import nt_xent
from apfed.models import encoder_output_shape, init_modules, make_encoder, make_projection


def _spec(X: torch.Tensor) -> dict:
    return {"kind": "image", "shape": tuple(X.shape[1:])}


def train_critic(XA, XP, rows, cfg, seed, tau, epochs):
    """Cross-view NT-Xent critic on ``rows``: (encoder_A + projection, encoder_P + projection)."""
    dA = int(torch.tensor(encoder_output_shape(_spec(XA), cfg.embedding_dim)).prod())
    dP = int(torch.tensor(encoder_output_shape(_spec(XP), cfg.embedding_dim)).prod())

    def build():
        return torch.nn.ModuleList(
            [
                torch.nn.Sequential(make_encoder(_spec(XA), cfg.embedding_dim, 0), make_projection(dA, 64)),
                torch.nn.Sequential(make_encoder(_spec(XP), cfg.embedding_dim, 0), make_projection(dP, 64)),
            ]
        )

    mods = init_modules(seed, build).to(XA.device)
    ccfg = replace(cfg, epochs=epochs)
    opt = make_optimizer(mods.parameters(), ccfg)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        batches = rows[torch.randperm(len(rows), generator=gen).to(rows.device)].split(256)
        for b, idx in enumerate(batches):
            if len(idx) < 2:
                continue
            loss = nt_xent(mods[0](XA[idx]), mods[1](XP[idx]), tau)
            set_lr(opt, lr_at(ccfg, (epoch + b / len(batches)) / epochs))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    mods.eval()
    return mods


@torch.no_grad()
def marginal_targets(client, passive, critics, folds, tau, beta, topk):
    """q_i for every training row (see the module docstring); returns (teacher-marginal, label-marginal)."""
    L = client.learner
    L.modules.eval()
    passive.modules.eval()
    n_cls = int(L.y.max()) + 1
    q_t = torch.zeros(len(L.X), n_cls, device=L.X.device)
    q_y = torch.zeros_like(q_t)
    for critic, fold in zip(critics, folds, strict=True):  # critic trained on the other fold scores this fold
        zA = F.normalize(critic[0](L.X[fold]), dim=1)
        zP = F.normalize(critic[1](passive.X[fold]), dim=1)
        s = zA @ zP.t() / tau
        val, pos = s.topk(topk, dim=1)
        w = torch.softmax(val / beta, dim=1)  # (n_fold, topk)
        j = fold[pos]  # global rows of the chosen passive strips
        onehot = F.one_hot(L.y[j].long(), n_cls).float()
        q_y[fold] = (w[..., None] * onehot).sum(1)
        hA = L.modules["encoder"](L.X[fold]).flatten(1)
        for c in range(0, len(fold), 64):
            sl = slice(c, c + 64)
            jj = j[sl].reshape(-1)
            eP = passive.modules["encoder"](passive.X[jj]).flatten(1)
            hAr = hA[sl].repeat_interleave(topk, 0)
            p = torch.softmax(L.modules["fused_head"](torch.cat([hAr, eP], 1)), 1).reshape(-1, topk, n_cls)
            q_t[fold[sl]] = (w[sl, :, None] * p).sum(1)
    return q_t, q_y


def main() -> None:
    out, strip, seed, device, ds, active = script_args()
    epochs = int(os.environ.get("EPOCHS", 60))
    base = make_config("default", method="tvfl", seed=seed, device=device, epochs=epochs, shift=2)
    emit = jsonl_emitter(out, strip, seed)

    t0 = time.time()
    client, passive = train_teacher(ds, active, base)
    emit(student="(teacher)", accuracy=client.history[-1]["accuracy"], seconds=time.time() - t0)
    L, tr = client.learner, client.train_idx
    half = tr[torch.randperm(len(tr), generator=torch.Generator().manual_seed(seed + 5)).to(tr.device)]
    folds = [half[: len(half) // 2], half[len(half) // 2 :]]
    tau = 0.1
    t0 = time.time()
    critics = [train_critic(L.X, passive.X, folds[1 - f], base, seed * 10 + f, tau, epochs) for f in (0, 1)]
    emit(student="(critics)", accuracy=0.0, seconds=time.time() - t0)
    cfg = replace(base, method="local", shift=0)
    runs = [("local", [], {"w": 0.0})]
    for beta in (1.0, 3.0):
        q_t, q_y = marginal_targets(client, passive, critics, folds, tau, beta, topk=64)
        agree = float((q_t[tr].argmax(1) == L.y[tr]).float().mean() * 100)
        emit(
            student=f"(targets beta{beta})",
            accuracy=agree,
            entropy=float(-(q_t[tr] * q_t[tr].clamp_min(1e-8).log()).sum(1).mean()),
        )
        for name, q in ((f"marg-teacher-b{beta}", q_t), (f"marg-labels-b{beta}", q_y)):
            # KL(q || student) as a distillation at T = 1 from the logits log q
            runs.append((name, lambda idx, aug, q=q: q[idx].clamp_min(1e-8).log(), {}))
    for name, soft, kw in runs:
        t0 = time.time()
        emit(student=name, accuracy=student(client, soft, cfg, epochs=epochs, **kw), seconds=time.time() - t0)


if __name__ == "__main__":
    main()
