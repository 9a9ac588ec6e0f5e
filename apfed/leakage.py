"""``apfed leakage``: train a method in-process, keep what crosses each party boundary, and measure what each side
could infer from it about the other's data (``apfed.attacks``).

The passives receive, per training row, the active party's sent embedding (``act``: APFed-R's encoder output,
APFed-C's projection) and, for tvfl and apfed-kd, the gradient of their own embedding (``prev_grad``); they send back
the gradient of their loss in ``act`` (``grad``) and, for tvfl and apfed-kd, their embedding (``emb``). Each row's
latest vector of each is kept, with any DP noise the run adds (what the other party really receives), as it is after
the first epoch, the middle one and the last: what crosses early in training, before the model fits its rows, may tell
more than what crosses at the end, and an attacker may keep any epoch's. Each attack reports the epoch that served it
best. Encryption (``--encrypt``) hides messages from the relay, not from the party they are sent to, so it changes
nothing here."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from apfed.attacks import feature_attack, known_per_class, known_share, label_attack, majority_share
from apfed.config import TrainConfig
from apfed.data.views import MultiViewDataset
from apfed.errors import ConfigError, DataError
from protocols.codec import decode
from protocols.messages import REPLY, TRAIN

TO_PASSIVE = ("act", "prev_grad")  # what a passive receives per row
TO_ACTIVE = ("grad", "emb")  # what the active party receives per row from a passive


class MessageTap(list):
    """Stands for the in-process transport's ``record`` list: rather than every message's bytes, it keeps each
    row's latest vector of every per-row array that crosses a boundary in training, per passive."""

    def __init__(self, rows: int, keep_epochs: tuple[int, ...] = ()):
        super().__init__()
        self.rows = rows
        self.vectors: dict[tuple[str, str], np.ndarray] = {}
        self.seen: dict[tuple[str, str], np.ndarray] = {}
        self.asked: dict[str, np.ndarray] = {}  # each passive's rows of the train request its next reply answers
        self.keep_epochs, self.epoch = keep_epochs, 0
        self.snapshots: dict[int, dict[tuple[str, str], np.ndarray]] = {}  # epoch -> a copy of ``vectors`` then

    def end_epoch(self) -> None:
        """An epoch ended: keep a copy of every row's vectors if it is one of ``keep_epochs``."""
        self.epoch += 1
        if self.epoch in self.keep_epochs:
            self.snapshots[self.epoch] = {k: v.copy() for k, v in self.vectors.items()}

    def append(self, data: bytes) -> None:  # the transport calls it with each encoded message
        m = decode(data)
        a = m.arrays
        if m.kind == TRAIN:
            self.asked[m.receiver] = np.asarray(a["idx"], dtype=np.int64)
            if "act" in a:
                self._keep(m.receiver, "act", self.asked[m.receiver], a["act"])
            if "prev_grad" in a:
                self._keep(m.receiver, "prev_grad", np.asarray(a["prev_idx"], dtype=np.int64), a["prev_grad"])
        elif m.kind == REPLY and m.sender in self.asked:
            rows = self.asked.pop(m.sender)
            for key in TO_ACTIVE:
                if key in a:
                    self._keep(m.sender, key, rows, a[key])
        else:
            self.asked.pop(m.receiver, None)  # another request: its reply is no train reply

    def _keep(self, party: str, key: str, rows: np.ndarray, values) -> None:
        v = np.asarray(values, dtype=np.float32).reshape(len(rows), -1)
        if (party, key) not in self.vectors:
            self.vectors[party, key] = np.zeros((self.rows, v.shape[1]), dtype=np.float32)
            self.seen[party, key] = np.zeros(self.rows, dtype=bool)
        self.vectors[party, key][rows] = v
        self.seen[party, key][rows] = True

    def received(self, party: str, keys: tuple[str, ...], rows: np.ndarray) -> tuple[dict[int, np.ndarray], list[str]]:
        """The vectors of ``keys`` kept for ``party`` at ``rows`` side by side, by epoch (each kept epoch and the
        last; empty when none was sent), and their names."""
        names = [k for k in keys if (party, k) in self.vectors]
        if not names:
            return {}, []
        states = {**self.snapshots, self.epoch: self.vectors}
        return {e: np.concatenate([v[party, k][rows] for k in names], 1) for e, v in states.items()}, names

    def rows_seen(self, party: str, keys: tuple[str, ...]) -> np.ndarray:
        """A mask of the rows for which every array of ``keys`` that crossed for ``party`` did."""
        seen = np.ones(self.rows, dtype=bool)
        for k in keys:
            if (party, k) in self.seen:
                seen &= self.seen[party, k]
        return seen


def audit(
    ds: MultiViewDataset,
    active: int,
    cfg: TrainConfig,
    per_class: int = 4,
    share: float = 0.1,
    log: Callable = lambda *_: None,
    on_epoch: Callable | None = None,
) -> dict:
    """Train ``cfg.method`` on ``ds`` in-process, then attack what crossed: for each passive, how well it labels the
    training rows from ``per_class`` known labels per class with its own features, its trained encoder or what it
    received (a regression: the R² of the target from ``share`` of the rows' targets), the same attack on the test
    rows (``new_rows``: rows the run never trained on) from its own features or its encoder, and how well the active
    party predicts that passive's features from ``share`` of its rows with its own features or with what it received
    (of the epoch that served each attack best). Returns the figures and the run's test metrics."""
    from apfed.runner import build_clients, in_process_passives

    if cfg.method in ("local", "centralized"):
        raise ConfigError(f"{cfg.method} sends no message between parties: nothing to attack")
    n_rows = len(ds.ids) + (len(ds.unmatched.ids) if ds.unmatched is not None else 0)
    tap = MessageTap(n_rows, keep_epochs=(1, max(1, cfg.epochs // 2)))
    client = build_clients(ds, active, cfg, serialize=True, record=tap, log=log)
    client.setup()

    def ended(row: dict) -> None:
        tap.end_epoch()
        if on_epoch is not None:
            on_epoch(row)

    client.fit(on_epoch=ended)
    final = client.final_metrics()
    keep, train, test = np.asarray(client.keep), np.asarray(client.split[0]), np.asarray(client.split[1])
    labels_all = np.asarray(client.data.labels)[keep]
    regression = labels_all.dtype.kind == "f"  # a regression's target: the label attack is a ridge regression too
    labelled = ~np.isnan(labels_all) if regression else labels_all >= 0
    names = [v.name for i, v in enumerate(ds.views) if i != active]
    new_rows = test[labelled[test]]  # rows no party trained on: a future customer's
    target_new = labels_all[new_rows][:, None] if regression else labels_all[new_rows]
    out = []
    for name, party, p in zip(names, client.names, in_process_passives(client), strict=True):
        rows = train[labelled[train] & tap.rows_seen(party, TO_PASSIVE + TO_ACTIVE)[train]]
        if len(rows) < 20:
            raise DataError(f"{name}: too few training rows crossed the boundary to attack ({len(rows)})")
        labels = labels_all[rows]
        own, own_new = (p.data.view.X[np.asarray(p.rows)[r]] for r in (rows, new_rows))
        encoder = encoder_new = None
        if "encoder" in p.learner.modules:  # an APFed-R passive trains a decoder only
            encoder, encoder_new = (_embedded(p, r, cfg.device) for r in (rows, new_rows))
        known_rows = known_share(len(rows), share, cfg.seed)
        if regression:  # R² of the target from the known rows' targets, as the feature attack's
            known, chance = known_rows, 0.0

            def attack(v, new=None, known=known_rows, y=labels[:, None]):
                return feature_attack(v, y, known, new)
        else:
            known = known_per_class(labels, per_class, cfg.seed)
            chance = majority_share(labels, known)

            def attack(v, new=None, known=known, y=labels):
                return label_attack(v, y, known, new)

        got, got_names = tap.received(party, TO_PASSIVE, rows)
        label = {
            "chance": chance,
            "own_features": attack(own),
            "own_encoder": attack(encoder) if encoder is not None else None,
        }
        label["received"], label["received_epoch"] = _best({e: attack(v) for e, v in got.items()})
        label["new_rows"] = {"rows": len(new_rows), "own_features": None, "own_encoder": None}
        if len(new_rows):
            label["new_rows"]["own_features"] = attack(own, (own_new, target_new))
            if encoder is not None:
                label["new_rows"]["own_encoder"] = attack(encoder, (encoder_new, target_new))
        mine = _flat(client.data.view.X[keep[rows]])
        sent, sent_names = tap.received(party, TO_ACTIVE, rows)
        features = {"active_features": feature_attack(mine, own, known_rows)}
        features["received"], features["received_epoch"] = _best(
            {e: feature_attack(v, own, known_rows) for e, v in sent.items()}
        )
        out.append(
            {
                "passive": name,
                "rows": len(rows),
                "received": got_names,
                "sent": sent_names,
                "labels": label,
                "features": features,
            }
        )
    client.finish()
    return {
        "method": cfg.method,
        "task": "regression" if regression else "classification",
        "test": final,
        "passives": out,
    }


def _embedded(passive, rows: np.ndarray, device: str) -> np.ndarray:
    """The passive's trained encoder's output for ``rows`` (positions among the aligned rows)."""
    with torch.no_grad():
        return passive.learner.embed(torch.as_tensor(rows, device=device)).float().cpu().numpy()


def _best(by_epoch: dict[int, float]) -> tuple[float | None, int | None]:
    """The highest figure and the epoch it came from, the earliest of equals (None, None for none)."""
    if not by_epoch:
        return None, None
    epoch = max(by_epoch, key=lambda e: (by_epoch[e], -e))
    return by_epoch[epoch], epoch


def _flat(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).reshape(len(x), -1)
