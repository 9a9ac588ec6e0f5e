"""Exploration: two-stage (offline) distillation on mnist5k, 2 views.

Stage 1 trains a TVFL teacher through the real clients (in-process). Stage 2 trains a fresh active-only student
on the teacher's soft labels, computed once for every training row. Each student line is appended to
OUT/STRIP-SEED.jsonl as soon as it is done, so a cut-off run still reports what it finished.

Usage: python benchmarks/explore_offline_kd.py OUT STRIP SEED [DEVICE]
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

import torch
import torch.nn.functional as F
from explore_function_matching import jsonl_emitter, script_args  # same directory: run as a script

from apfed.augment import apply_augmentation, sample_augmentation
from apfed.config import lr_at, make_config
from apfed.learner import make_optimizer, set_lr
from apfed.losses import distillation
from apfed.models import encoder_output_shape, init_modules, make_encoder, make_head
from apfed.runner import build_clients


def teacher_logits(ds, active, cfg, fold=None, folds=2):
    """Train TVFL (optionally on one fold of the training rows); return logits for every row and test acc."""
    client = build_clients(ds, active, cfg)
    client.setup()
    full_train = client.train_idx
    if fold is not None:
        g = torch.Generator().manual_seed(1234 + cfg.seed)
        part = torch.randperm(len(full_train), generator=g) % folds
        client.train_idx = full_train[(part != fold).to(full_train.device)]
        held = full_train[(part == fold).to(full_train.device)]
    client.fit()
    all_idx = torch.arange(client.n, device=full_train.device)
    logits = client.learner.fused_logits(all_idx, client.passive_embeddings(all_idx))
    acc = float((logits[client.test_idx].argmax(1).cpu().numpy() == client.y_test).mean() * 100)
    return client, logits, acc, (held if fold is not None else None)


def student(client, t_logits, cfg, T, w, ce=True, shift=0):
    """Fresh encoder + head trained on the active view: CE (optional) + w * KD(T) from fixed teacher logits."""
    L = client.learner
    spec = client.spec
    d = int(torch.tensor(encoder_output_shape(spec, cfg.embedding_dim)).prod())
    mods = init_modules(
        cfg.seed + 99,
        lambda: torch.nn.Sequential(
            make_encoder(spec, cfg.embedding_dim, cfg.hidden_dim), make_head(d, cfg.head_hidden, 10, cfg.dropout)
        ),
    ).to(cfg.device)
    opt = make_optimizer(mods.parameters(), cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    agen = torch.Generator().manual_seed(cfg.seed + 2)
    acfg = replace(cfg, shift=shift, mixup=0.0)
    torch.manual_seed(cfg.seed + 1)
    tr = client.train_idx
    accs = []
    for epoch in range(cfg.epochs):
        mods.train()
        perm = tr[torch.randperm(len(tr), generator=gen).to(tr.device)]
        batches = perm.split(cfg.batch_size)
        for b, idx in enumerate(batches):
            aug = sample_augmentation(len(idx), acfg, agen, cfg.device)
            logits = mods(apply_augmentation(L.X[idx], aug))
            loss = F.cross_entropy(logits, L.y[idx].long()) if ce else logits.new_zeros(())
            if w > 0:
                loss = loss + w * distillation(logits, t_logits[idx], T)
            set_lr(opt, lr_at(cfg, (epoch + b / len(batches)) / cfg.epochs))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        mods.eval()
        with torch.no_grad():
            pred = mods(L.X[client.test_idx]).argmax(1).cpu().numpy()
        accs.append(float((pred == client.y_test).mean() * 100))
    return sum(accs[-10:]) / len(accs[-10:])


def main() -> None:
    out, strip, seed, device, ds, active = script_args()
    base = make_config("default", method="tvfl", seed=seed, device=device, epochs=int(os.environ.get("EPOCHS", 60)))
    emit = jsonl_emitter(out, strip, seed)

    students = [
        ("local", dict(T=1, w=0)),
        ("local-s2", dict(T=1, w=0, shift=2)),
        ("kd-T2", dict(T=2, w=1)),
        ("kd-T4", dict(T=4, w=1)),
        ("kd-T8", dict(T=8, w=1)),
        ("kd-T4-w3", dict(T=4, w=3)),
        ("kd-T4-only", dict(T=4, w=1, ce=False)),
        ("kd-T4-s2", dict(T=4, w=1, shift=2)),
        ("kd-T2-s2", dict(T=2, w=1, shift=2)),
    ]
    teachers = [("full", {}), ("full-s2", {"shift": 2}), ("crossfit", {})]
    for tname, tover in teachers:
        t0 = time.time()
        tcfg = replace(base, **tover)
        if tname == "crossfit":
            client, logits, acc, _ = teacher_logits(ds, active, tcfg)
            mixed = logits.clone()
            accs = []
            for fold in range(2):
                _, lf, a, held = teacher_logits(ds, active, tcfg, fold=fold)
                mixed[held] = lf[held]
                accs.append(a)
            logits, acc = mixed, sum(accs) / 2
        else:
            client, logits, acc, _ = teacher_logits(ds, active, tcfg)
        emit(teacher=tname, student="(teacher)", accuracy=acc, seconds=time.time() - t0)
        scfg = replace(base, method="local")
        for sname, kw in students:
            if tname != "full" and sname.startswith("local"):
                continue
            t0 = time.time()
            emit(teacher=tname, student=sname, accuracy=student(client, logits, scfg, **kw), seconds=time.time() - t0)


if __name__ == "__main__":
    main()
