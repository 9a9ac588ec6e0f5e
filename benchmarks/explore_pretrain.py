"""Exploration (issue 2, point 2): the passive's strip as a pretext task before the labels, not beside them.

APFed-C and APFed-R train the active encoder on the labels and on the passive's loss at the same time, and gain
little over local when every row has a label (docs/research.md). Here the active encoder is first pretrained on the
pretext task alone, then fine-tuned on the labels as local is (the standard self-supervised recipe, sequential,
not joint):
- cross-view contrastive: NT-Xent between the active strip's and the passive strip's projections of the same row
  (what APFed-C's passive computes; in a deployment the passive's encoder and projection stay with it);
- cross-view prediction: the active strip's embedding regresses the passive strip's pixels (a context encoder;
  the decoder and the MSE would be the passive's, only the embedding and its gradient crossing).

Students (default recipe, no augmentation; test accuracy of the active network, mean of the last 10 of the
fine-tuning epochs):
- ``local``: the network trained on the labels alone for 60 epochs; ``local-120`` for 120 (as many steps as a
  pretrained network gets in all);
- ``pre-cv-T{0.5,0.1}``: 60 epochs of cross-view NT-Xent at that temperature, then 60 of local's fine-tuning;
- ``pre-rec``: 60 epochs of cross-view prediction, then the fine-tuning;
- ``pre-self-T0.5``: the control, SimCLR on the active's own strip (two random shifts of up to 3 px and pixel
  noise as the two views), then the fine-tuning: what pretraining gives with no other party.

Usage: python benchmarks/explore_pretrain.py OUT STRIP SEED [DEVICE]; lines are appended to OUT/STRIP-SEED.jsonl.
Environment: SCALE=x multiplies the epoch counts, ONLY=a,b runs those students only.
"""

from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F
from explore_function_matching import (
    jsonl_emitter,
    network,
    script_args,
    test_accuracy,
    train_epochs,
    two_parties,
)

from apfed.augment import apply_augmentation
from apfed.losses import nt_xent
from apfed.models import encoder_output_shape, init_modules, make_encoder


def mlp(d_in: int, d_out: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(d_in, 256), torch.nn.ReLU(), torch.nn.Linear(256, d_out))


def two_views_of_own_strip(x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two random views of the same strips: a horizontal shift of up to 3 px each, plus Gaussian pixel noise."""
    views = []
    for _ in range(2):
        shift = torch.randint(-3, 4, (len(x),), generator=gen).to(x.device)
        noise = torch.randn(x.shape, generator=gen).to(x.device) * 0.1
        views.append(apply_augmentation(x, {"shift": shift}) + noise)
    return views[0], views[1]


def pretrain(net, client, X_b, cfg, epochs: int, kind: str, T: float) -> None:
    """Train ``net``'s encoder (``net[0]``) on the pretext task ``kind`` (cv, rec or self) for ``epochs``."""
    L, spec = client.learner, client.spec
    d = int(torch.tensor(encoder_output_shape(spec, cfg.embedding_dim)).prod())
    enc_a = net[0]
    proj_a = enc_b = proj_b = dec = None
    if kind in ("cv", "self"):
        proj_a = init_modules(cfg.seed + 5, lambda: mlp(d, 64))
    if kind == "cv":  # the passive's side
        enc_b = init_modules(cfg.seed + 6, lambda: make_encoder(spec, cfg.embedding_dim, cfg.hidden_dim))
        proj_b = init_modules(cfg.seed + 7, lambda: mlp(d, 64))
    if kind == "rec":
        dec = init_modules(cfg.seed + 8, lambda: mlp(d, int(X_b[0].numel())))
    extra = [m.to(cfg.device) for m in (proj_a, enc_b, proj_b, dec) if m is not None]
    params = list(enc_a.parameters()) + [p for m in extra for p in m.parameters()]
    gen = torch.Generator().manual_seed(cfg.seed + 3)
    for m in [enc_a, *extra]:
        m.train()

    def loss_of(idx):
        x_a = L.X[idx]
        if kind == "cv":
            return nt_xent(proj_a(enc_a(x_a).flatten(1)), proj_b(enc_b(X_b[idx]).flatten(1)), T)
        if kind == "self":
            v1, v2 = two_views_of_own_strip(x_a, gen)
            return nt_xent(proj_a(enc_a(v1).flatten(1)), proj_a(enc_a(v2).flatten(1)), T)
        return F.mse_loss(dec(enc_a(x_a).flatten(1)), X_b[idx].flatten(1))

    train_epochs(client, cfg, params, epochs, loss_of, gen=gen)  # one generator: the order, then the views


def finetune(net, client, cfg, epochs: int) -> float:
    """Local's training of the whole network on the labels; its mean test accuracy over the last 10 epochs."""
    L, accs = client.learner, []
    torch.manual_seed(cfg.seed + 1)

    def loss_of(idx):
        net.train()
        return F.cross_entropy(net(L.X[idx]), L.y[idx].long())

    train_epochs(client, cfg, net.parameters(), epochs, loss_of, lambda _: accs.append(test_accuracy(net, client)))
    return sum(accs[-10:]) / len(accs[-10:])


def main() -> None:
    out, strip, seed, device, ds, active = script_args()
    client, X_b, cfg, epochs = two_parties(seed, device, ds, active)
    emit = jsonl_emitter(out, strip, seed)
    runs = [
        ("local", None, 1.0, 1),
        ("pre-cv-T0.5", "cv", 0.5, 1),
        ("pre-rec", "rec", 1.0, 1),
        ("pre-self-T0.5", "self", 0.5, 1),
        ("local-120", None, 1.0, 2),
        ("pre-cv-T0.1", "cv", 0.1, 1),
    ]
    only = [o for o in os.environ.get("ONLY", "").split(",") if o]
    for name, kind, T, length in runs:
        if only and name not in only:
            continue
        t0 = time.time()
        net = network(client.spec, cfg, cfg.seed + 99)
        if kind is not None:
            pretrain(net, client, X_b, cfg, epochs, kind, T)
        acc = finetune(net, client, cfg, epochs * length)
        emit(student=name, accuracy=acc, seconds=time.time() - t0)


if __name__ == "__main__":
    main()
