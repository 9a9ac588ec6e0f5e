"""Exploration: ensembles of TVFL teachers and "function matching" (patient, consistent distillation) on mnist5k.

Stage 1 trains N TVFL teachers through the real clients (in-process, cross-party shift augmentation).
Stage 2 trains a fresh active-only student. In function matching, every minibatch is augmented (shift and
mixup) identically for the student's active view and the teachers' views, and the student matches the teachers'
averaged soft labels on that very input. Lines are appended to OUT/STRIP-SEED.jsonl as they finish.

Usage: python benchmarks/explore_function_matching.py OUT STRIP SEED [DEVICE]
Environment: LONG_EPOCHS (the patient students' epochs, default 200), ONLY (comma-separated student names
without their epoch suffix, e.g. ONLY=fm3-s2m1,local-s2m02).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from apfed.augment import apply_augmentation, mixed_cross_entropy, sample_augmentation
from apfed.config import lr_at, make_config
from apfed.data.bundled import load_bundled
from apfed.learner import make_optimizer, set_lr
from apfed.losses import distillation
from apfed.models import encoder_output_shape, init_modules, make_encoder, make_head
from apfed.runner import build_clients


def script_args():
    """``OUT STRIP SEED [DEVICE]`` from the command line, as every exploration script takes them: (out directory,
    created; strip; seed; device; mnist5k in 2 views; the active view's index)."""
    out, strip, seed = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    device = sys.argv[4] if len(sys.argv) > 4 else "cpu"
    out.mkdir(parents=True, exist_ok=True)
    return out, strip, seed, device, load_bundled("mnist5k", 2), {"top": 0, "bottom": 1}[strip]


def two_parties(seed: int, device: str, ds, active: int):
    """Both parties' rows aligned on the device, nothing trained, for scripts that train their own networks: (the
    active client, set up; the passive's rows; the default recipe as ``local``; 60 epochs times env SCALE)."""
    epochs = max(1, int(60 * float(os.environ.get("SCALE", 1))))
    cfg = make_config("default", method="tvfl", seed=seed, device=device, epochs=1)
    client = build_clients(ds, active, cfg)
    client.setup()
    X_passive = client.transport.handlers["passive1"].__self__.learner.X
    return client, X_passive, replace(cfg, method="local"), epochs


def train_epochs(client, cfg, params, epochs: int, loss_of, after_epoch=None, gen: torch.Generator | None = None):
    """The recipe's optimizer and schedule over ``epochs`` shuffles of the training rows drawn from ``gen`` (else a
    generator seeded with ``cfg.seed``): one step on ``loss_of(idx)`` per minibatch, then ``after_epoch(epoch)``."""
    scfg = replace(cfg, epochs=epochs)
    opt = make_optimizer(list(params), scfg)
    gen = torch.Generator().manual_seed(cfg.seed) if gen is None else gen
    tr = client.train_idx
    for epoch in range(epochs):
        batches = tr[torch.randperm(len(tr), generator=gen).to(tr.device)].split(cfg.batch_size)
        for b, idx in enumerate(batches):
            loss = loss_of(idx)
            set_lr(opt, lr_at(scfg, (epoch + b / len(batches)) / epochs))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if after_epoch is not None:
            after_epoch(epoch)


def jsonl_emitter(out: Path, strip: str, seed: int):
    """``emit(**row)``: append the row, tagged with the strip and seed, to OUT/STRIP-SEED.jsonl and print it."""
    sink = open(out / f"{strip}-{seed}.jsonl", "a")  # noqa: SIM115 (kept open for the whole run)

    def emit(**row) -> None:
        row.update(strip=strip, seed=seed)
        sink.write(json.dumps(row) + "\n")
        sink.flush()
        print(row, flush=True)

    return emit


def train_teacher(ds, active, cfg):
    client = build_clients(ds, active, cfg)
    client.setup()
    client.fit()
    passive = client.transport.handlers["passive1"].__self__.learner
    return client, passive


@torch.no_grad()
def teacher_out(teachers, idx, aug):
    """Mean logits of the teachers on the augmented rows ``idx`` (every party applies the same augmentation)."""
    out = 0
    for client, passive in teachers:
        L = client.learner
        L.modules.eval()
        passive.modules.eval()
        h = L.modules["encoder"](apply_augmentation(L.X[idx], aug)).flatten(1)
        e = passive.modules["encoder"](apply_augmentation(passive.X[idx], aug)).flatten(1)
        out = out + L.modules["fused_head"](torch.cat([h, e], 1))
    return out / len(teachers)


def network(spec: dict, cfg, seed: int) -> torch.nn.Module:
    """A fresh standalone network (the reference encoder and head) for ``spec``, initialised from ``seed``."""
    d = int(torch.tensor(encoder_output_shape(spec, cfg.embedding_dim)).prod())
    build = lambda: torch.nn.Sequential(  # noqa: E731
        make_encoder(spec, cfg.embedding_dim, cfg.hidden_dim), make_head(d, cfg.head_hidden, 10, cfg.dropout)
    )
    return init_modules(seed, build).to(cfg.device)


@torch.no_grad()
def test_accuracy(net: torch.nn.Module, client) -> float:
    """``net``'s accuracy (%) on the active party's test rows, in eval mode."""
    net.eval()
    pred = net(client.learner.X[client.test_idx]).argmax(1).cpu().numpy()
    return float((pred == client.y_test).mean() * 100)


def student(
    client,
    teachers,
    cfg,
    T=1.0,
    w=1.0,
    ce=True,
    shift=0,
    mixup=0.0,
    epochs=60,
    sample=sample_augmentation,
    augment=apply_augmentation,
    hint=None,
):
    """A fresh active-only network; returns its mean test accuracy over the last 10 epochs. ``teachers``: the
    (client, passive) pairs whose mean logits it distils, or a function (rows, augmentation) -> target logits.
    ``sample(n, cfg, generator, device)`` draws a minibatch's augmentation, ``augment(x, aug)`` applies it to the
    student's (active) rows. ``hint``: a module called as ``hint(hidden, idx, aug)`` on the student's head activations
    (after the first layer and ReLU), returning an extra loss; its parameters train with the student's."""
    soft = teachers if callable(teachers) else lambda idx, aug: teacher_out(teachers, idx, aug)
    L = client.learner
    mods = network(client.spec, cfg, cfg.seed + 99)
    scfg = replace(cfg, shift=shift, mixup=mixup, epochs=epochs)
    params = [*mods.parameters(), *(hint.to(cfg.device).parameters() if hint is not None else [])]
    agen = torch.Generator().manual_seed(cfg.seed + 2)
    torch.manual_seed(cfg.seed + 1)
    accs = []

    def loss_of(idx):
        aug = sample(len(idx), scfg, agen, cfg.device)
        mods.train()
        hidden = mods[1][:3](mods[0](augment(L.X[idx], aug)))  # the head's first layer and ReLU
        logits = mods[1][3:](hidden)
        loss = mixed_cross_entropy(logits, L.y[idx].long(), aug) if ce else logits.new_zeros(())
        if hint is not None:
            loss = loss + hint(hidden, idx, aug)
        if w > 0:
            loss = loss + w * distillation(logits, soft(idx, aug), T)
        return loss

    train_epochs(client, scfg, params, epochs, loss_of, lambda _: accs.append(test_accuracy(mods, client)))
    return sum(accs[-10:]) / len(accs[-10:])


def main() -> None:
    out, strip, seed, device, ds, active = script_args()
    scale = float(os.environ.get("SCALE", 1))
    base = make_config("default", method="tvfl", seed=seed, device=device, epochs=max(1, int(60 * scale)), shift=2)
    emit = jsonl_emitter(out, strip, seed)

    only = [o for o in os.environ.get("ONLY", "").split(",") if o]  # name prefixes, e.g. ONLY=fm3-s2m1,local-s2m02
    no_teacher = bool(only) and all(o.startswith("local") for o in only)  # 1 epoch: the client's data only
    teachers = []
    for t in range(1 if no_teacher else 3):
        t0 = time.time()
        tcfg = replace(base, seed=seed * 10 + t, epochs=1 if no_teacher else base.epochs)
        teachers.append(train_teacher(ds, active, tcfg))
        emit(student=f"(teacher {t})", accuracy=teachers[-1][0].history[-1]["accuracy"], seconds=time.time() - t0)
    client = teachers[0][0]
    cfg = replace(base, method="local", shift=0)
    long = int(os.environ.get("LONG_EPOCHS", max(1, int(200 * scale))))  # the patient students' epochs
    short = max(1, int(60 * scale))
    runs = [
        (f"local-s2-e{long}", teachers[:1], dict(w=0, shift=2, epochs=long)),
        (f"fm1-s2m1-e{long}", teachers[:1], dict(T=1, ce=False, shift=2, mixup=1.0, epochs=long)),
        (f"fm3-s2m1-e{long}", teachers, dict(T=1, ce=False, shift=2, mixup=1.0, epochs=long)),
        (f"ens3-kdT4-s2-e{short}", teachers, dict(T=4, w=1, shift=2, epochs=short)),
        (f"fm3-s2m02-ce-e{long}", teachers, dict(T=2, ce=True, shift=2, mixup=0.2, epochs=long)),
        (f"local-s2m02-e{long}", teachers[:1], dict(w=0, shift=2, mixup=0.2, epochs=long)),
        # no augmentation for the student (the recipe where soft labels gain most): one teacher or three
        (f"local-e{short}", teachers[:1], dict(w=0, epochs=short)),
        (f"kdT4-e{short}", teachers[:1], dict(T=4, w=1, epochs=short)),
        (f"ens3-kdT4-e{short}", teachers, dict(T=4, w=1, epochs=short)),
        (f"ens3-kdT2-e{short}", teachers, dict(T=2, w=1, epochs=short)),
    ]
    for name, ts, kw in runs:
        if only and not any(name.startswith(o + "-e") for o in only):
            continue
        t0 = time.time()
        emit(student=name, accuracy=student(client, ts, cfg, **kw), seconds=time.time() - t0)


if __name__ == "__main__":
    main()
