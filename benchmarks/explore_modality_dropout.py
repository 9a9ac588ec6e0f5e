"""Exploration (issue 2, point 2): a TVFL model trained with modality dropout, kept as the standalone model.

TVFL's fused head sees both parties' embeddings and, with the passive's filled by zeros at test, is far below local
(the head never learnt to do without it). Trained with the passive's embedding dropped for a random share of each
minibatch's rows (replaced by a learned vector: what the head sees when the passive is absent), one network learns
both tasks, and its active encoder is shaped by the joint task on the rows where the passive is there. The
standalone model is the active encoder and the fused head with the learned vector in the passive's place: it needs
nothing from the passive at prediction time. (In a deployment the passive's encoder stays with the passive, as in
TVFL; the dropout is the active party's choice of which rows' embeddings to use.)

Students (60 epochs, default recipe, no augmentation; test accuracy of the active-only path, mean of the last 10):
- ``local``: the active network alone, labels only (the same reference encoder and head);
- ``md-p{0.25,0.5,0.75}``: modality dropout, the passive's embedding dropped for that share of the rows;
- ``md-both``: every row twice, with and without the passive (the sum of the two cross-entropies);
- ``md-both-kd``: ``md-both`` plus the active-only path distilled from the full path (T = 4, the full path's
  logits detached): the teacher and its student share every weight but the passive's encoder.

Usage: python benchmarks/explore_modality_dropout.py OUT STRIP SEED [DEVICE]; lines are appended to
OUT/STRIP-SEED.jsonl. Environment: SCALE=x multiplies the epoch count, ONLY=a,b runs those students only.
"""

from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F
from explore_function_matching import jsonl_emitter, network, script_args, test_accuracy, train_epochs, two_parties

from apfed.losses import distillation
from apfed.models import encoder_output_shape, init_modules, make_encoder, make_head


class DroppedPassive(torch.nn.Module):
    """Both strips' encoders and one fused head; ``forward(x_a, x_b, keep)``: ``keep`` (a bool per row) says whose
    passive embedding the head sees, the other rows get the learned ``absent`` vector; ``x_b=None``: none."""

    def __init__(self, spec: dict, cfg, seed: int):
        super().__init__()
        d = int(torch.tensor(encoder_output_shape(spec, cfg.embedding_dim)).prod())

        def build():
            enc_a = make_encoder(spec, cfg.embedding_dim, cfg.hidden_dim)
            enc_b = make_encoder(spec, cfg.embedding_dim, cfg.hidden_dim)
            return enc_a, enc_b, make_head(2 * d, cfg.head_hidden, 10, cfg.dropout)

        self.enc_a, self.enc_b, self.head = init_modules(seed, build)
        self.absent = torch.nn.Parameter(torch.zeros(d))

    def forward(self, x_a: torch.Tensor, x_b: torch.Tensor | None = None, keep: torch.Tensor | None = None):
        e_a = self.enc_a(x_a).flatten(1)
        gone = self.absent.expand(len(e_a), -1)
        if x_b is None:
            return self.head(torch.cat([e_a, gone], 1))
        e_b = self.enc_b(x_b).flatten(1)
        if keep is not None:
            e_b = torch.where(keep[:, None], e_b, gone)
        return self.head(torch.cat([e_a, e_b], 1))


def train(client, X_b, cfg, epochs: int, p_drop: float | None, both: bool = False, kd: float = 0.0) -> float:
    """``p_drop=None``: local (the standalone network alone); else the modality-dropout model. The active-only
    path's mean test accuracy over the last 10 epochs."""
    L = client.learner
    seed = cfg.seed + 99
    net = network(client.spec, cfg, seed) if p_drop is None else DroppedPassive(client.spec, cfg, seed).to(cfg.device)
    drop_gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed + 7)
    torch.manual_seed(cfg.seed + 1)
    accs = []

    def loss_of(idx):
        net.train()
        y = L.y[idx].long()
        if p_drop is None:
            return F.cross_entropy(net(L.X[idx]), y)
        if both:
            full = net(L.X[idx], X_b[idx])
            alone = net(L.X[idx])
            loss = F.cross_entropy(full, y) + F.cross_entropy(alone, y)
            if kd:
                loss = loss + kd * distillation(alone, full, 4.0)  # the full path's logits detached
            return loss
        keep = torch.rand(len(idx), generator=drop_gen, device=cfg.device) >= p_drop
        return F.cross_entropy(net(L.X[idx], X_b[idx], keep), y)

    # DroppedPassive tested on the active strip alone
    train_epochs(client, cfg, net.parameters(), epochs, loss_of, lambda _: accs.append(test_accuracy(net, client)))
    return sum(accs[-10:]) / len(accs[-10:])


def main() -> None:
    out, strip, seed, device, ds, active = script_args()
    client, X_b, cfg, epochs = two_parties(seed, device, ds, active)
    assert X_b.shape[1:] == client.learner.X.shape[1:], "both strips have one shape (one encoder spec serves both)"
    emit = jsonl_emitter(out, strip, seed)
    runs = [
        ("local", dict(p_drop=None)),
        ("md-p0.5", dict(p_drop=0.5)),
        ("md-both", dict(p_drop=0.0, both=True)),
        ("md-both-kd", dict(p_drop=0.0, both=True, kd=1.0)),
        ("md-p0.25", dict(p_drop=0.25)),
        ("md-p0.75", dict(p_drop=0.75)),
    ]
    only = [o for o in os.environ.get("ONLY", "").split(",") if o]
    for name, kw in runs:
        if only and name not in only:
            continue
        t0 = time.time()
        acc = train(client, X_b, cfg, epochs, **kw)
        emit(student=name, accuracy=acc, seconds=time.time() - t0)


if __name__ == "__main__":
    main()
