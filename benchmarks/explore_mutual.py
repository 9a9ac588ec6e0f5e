"""Exploration (issue 2, point 2): deep mutual learning with the passive's view (Zhang et al., 2018, "Deep Mutual
Learning"). Every teacher tried so far was trained before its student, and a trained teacher labels its own
training rows nearly one-hot (docs/research.md). Here nothing is trained first: the active party's standalone
network (its strip) and a peer network on the passive's strip train side by side from scratch, each on the labels
(the passive's loss is computed by the active party, which holds them, as in TVFL) and on the other's softened
predictions for the same rows, while both are still learning and their predictions still soft. Only the active
network is kept and tested, alone.

Students (60 epochs, default recipe, no augmentation; test accuracy of the active network, mean of the last 10):
- ``local``: the active network alone, labels only;
- ``dml-passive-T{1,3}``: mutual learning with the peer on the passive's strip, at temperature 1 or 3;
- ``dml-passive-T5``, ``dml-passive-T3-w2`` (weight 2 on both distillation terms);
- ``ens-passive-T3``: each network learns from the two networks' mean logits instead of from the other's;
- ``dml-local-T{1,3}``: the control, mutual learning with a second network on the active's own strip (another
  initialisation): what mutual learning gives without any other party. A gain that this control also gets is the
  recipe's, not the federation's.

Usage: python benchmarks/explore_mutual.py OUT STRIP SEED [DEVICE]; lines are appended to OUT/STRIP-SEED.jsonl.
Environment: SCALE=x multiplies the epoch count (a smoke test's shorter runs).
"""

from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F
from explore_function_matching import jsonl_emitter, network, script_args, test_accuracy, train_epochs, two_parties

from apfed.losses import distillation


def mutual(client, X_peer, cfg, T: float, w: float, epochs: int, peer_seed: int, ensemble: bool = False) -> float:
    """Train the active network (and, with ``X_peer``, a peer on those rows) for ``epochs``; the active network's
    mean test accuracy over the last 10 epochs. ``ensemble``: each network learns from the two networks' mean
    logits (online distillation from the peers' ensemble, Guo et al., 2020) instead of from the other's."""
    L, spec = client.learner, client.spec
    a = network(spec, cfg, cfg.seed + 99)
    nets = [a] + ([network(spec, cfg, peer_seed)] if X_peer is not None else [])
    torch.manual_seed(cfg.seed + 1)
    accs = []

    def loss_of(idx):
        y = L.y[idx].long()
        for n in nets:
            n.train()
        la = a(L.X[idx])
        loss = F.cross_entropy(la, y)
        if X_peer is not None:
            lb = nets[1](X_peer[idx])
            loss = loss + F.cross_entropy(lb, y)
            if ensemble:
                mean = (la + lb) / 2
                loss = loss + w * (distillation(la, mean, T) + distillation(lb, mean, T))  # detached teacher
            else:
                loss = loss + w * (distillation(la, lb, T) + distillation(lb, la, T))  # each detached as teacher
        return loss

    params = [p for n in nets for p in n.parameters()]
    train_epochs(client, cfg, params, epochs, loss_of, lambda _: accs.append(test_accuracy(a, client)))
    return sum(accs[-10:]) / len(accs[-10:])


def main() -> None:
    out, strip, seed, device, ds, active = script_args()
    client, X_passive, cfg, epochs = two_parties(seed, device, ds, active)
    emit = jsonl_emitter(out, strip, seed)
    X_own = client.learner.X
    runs = [
        ("local", None, 1.0, 0.0, False),
        ("dml-passive-T1", X_passive, 1.0, 1.0, False),
        ("dml-passive-T3", X_passive, 3.0, 1.0, False),
        ("dml-local-T1", X_own, 1.0, 1.0, False),
        ("dml-passive-T5", X_passive, 5.0, 1.0, False),
        ("dml-passive-T3-w2", X_passive, 3.0, 2.0, False),
        ("ens-passive-T3", X_passive, 3.0, 1.0, True),
        ("dml-local-T3", X_own, 3.0, 1.0, False),
    ]
    only = [o for o in os.environ.get("ONLY", "").split(",") if o]
    for name, X_peer, T, w, ensemble in runs:
        if only and name not in only:
            continue
        t0 = time.time()
        acc = mutual(client, X_peer, cfg, T, w, epochs, peer_seed=cfg.seed + 555, ensemble=ensemble)
        emit(student=name, accuracy=acc, seconds=time.time() - t0)


if __name__ == "__main__":
    main()
