"""The finished runs of ``apfed evaluate``, one file each under ``OUT/runs/``, so that an interrupted comparison
resumes where it stopped (``--resume``) instead of training every method and seed again.

A stored run is reused only if it was made from the same data (a digest of the ids, labels, split and features)
with the same settings (the whole training configuration, the method and seed included, and the safety
options); a run stored with other settings is an error that names them, never silently mixed into a report."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np

from apfed.checkpoint import ids_digest, save_atomic
from apfed.config import TrainConfig, with_defaults
from apfed.data.views import MultiViewDataset
from apfed.errors import ConfigError, DataError


def data_digest(ds: MultiViewDataset, active: int) -> str:
    """SHA-256 of what a run learns from: the views (names, kinds, shapes, resident features), the ids, labels,
    class names and split, the active party's unmatched rows, and which view is the active party's."""
    h = hashlib.sha256()
    meta = {
        "name": ds.name,
        "active": active,
        "views": [[v.name, v.kind, list(v.shape), v.columns] for v in ds.views],
        "classes": list(map(str, ds.class_names)),
    }
    h.update(json.dumps(meta, sort_keys=True).encode())
    h.update(ids_digest(ds.ids).encode())  # ids may be strings: hashed as a checkpoint names its rows
    u = ds.unmatched  # the active party's rows that no passive holds train the standalone methods too
    extra = [] if u is None else [np.asarray([u.view]), u.X, u.labels, u.test, np.asarray(ids_digest(u.ids))]
    for a in [ds.labels, ds.train_idx, ds.test_idx] + [v.X for v in ds.views if isinstance(v.X, np.ndarray)] + extra:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# How a run draws its validation rows where the active party trains on rows that no passive holds: since
# 2026-12-03 from all its training rows, those included (before, from the matched ones alone). A run stored before
# has no such entry in its key, so --resume refuses it instead of mixing the two draws in one report.
VALIDATION_DRAW = "every training row"


class RunStore:
    """``root/METHOD-seedS.json``: ``{"key": what the run was made from, "run": RunResult.to_json()}``.
    ``unmatched_train``: how many of the active party's training rows no passive holds."""

    def __init__(self, root: Path, data: str, safety: dict | None, unmatched_train: int = 0):
        self.root, self.data, self.safety = Path(root), data, safety
        self.unmatched_train = unmatched_train

    def path(self, cfg: TrainConfig, label: str | None = None) -> Path:
        """``label``: the ``--methods`` entry, a method with its own settings (``apfed-c[lam=0.5]``) or the method."""
        name = re.sub(r"[^\w.,=+\[\]-]", "_", label or cfg.method)
        return self.root / f"{name}-seed{cfg.seed}.json"

    def key(self, cfg: TrainConfig) -> dict:
        key = {"data": self.data, "config": cfg.to_dict(), "safety": self.safety}
        if cfg.validation > 0 and cfg.trains_unmatched and self.unmatched_train:
            key["validation_rows"] = VALIDATION_DRAW
        # through JSON, as it is stored: tuples become lists, so a reloaded key compares equal
        return json.loads(json.dumps(key))

    def load(self, cfg: TrainConfig, label: str | None = None) -> dict | None:
        """The stored run for ``cfg``, None if there is none; an error if it was made with other settings."""
        p = self.path(cfg, label)
        if not p.exists():
            return None
        try:
            stored = json.loads(p.read_text())
            key, run = stored["key"], stored["run"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"{p}: not a stored run ({e}); delete it to train that run again") from None
        want = self.key(cfg)
        if isinstance(key, dict) and isinstance(key.get("config"), dict):
            key = {**key, "config": with_defaults(key["config"])}
        if key != want:
            raise ConfigError(
                f"{p} was made with other settings ({', '.join(_differences(key, want))}); use another --out,"
                " or leave out --resume to train every run again"
            )
        return run

    def save(self, cfg: TrainConfig, run: dict, label: str | None = None) -> None:
        save_atomic(self.path(cfg, label), json.dumps({"key": self.key(cfg), "run": run}).encode())


def _differences(stored: dict, want: dict) -> list[str]:
    out = []
    if stored.get("data") != want["data"]:
        out.append("the data")
    old, new = stored.get("config") or {}, want["config"]
    for k in sorted(set(old) | set(new)):
        if old.get(k) != new.get(k):
            out.append(f"{k} {old.get(k)!r}, now {new.get(k)!r}")
    if stored.get("safety") != want["safety"]:
        out.append("the safety options")
    if stored.get("validation_rows") != want.get("validation_rows"):
        out.append(
            "validation rows drawn from the rows every party holds, by an apfed before 2026-12-03; they are now"
            " drawn from every training row"
        )
    return out or ["the file's format"]
