"""The active party's checkpoints: what it saves after a round, and how an interrupted run resumes from it (each
passive rolling back to its own checkpoint of the same round). A part of ``ActiveClient``."""

from __future__ import annotations

import json

import torch

from apfed.checkpoint import ids_digest, load_checkpoint, save_checkpoint
from apfed.config import with_defaults
from apfed.errors import DataError
from apfed.learner import PassiveInfo
from apfed.metrics import RunningMeans
from protocols.messages import RESUME


class ActiveCheckpoints:
    """``ActiveClient``'s checkpoint and resume; it uses the client's state (learner, rows, pending rounds, RNGs)."""

    def _identity(self) -> dict:
        """What a checkpoint must match to be resumed: the recipe (device aside) and the active party's rows."""
        cfg = {k: v for k, v in self.cfg.to_dict().items() if k != "device"}
        if self._ids_digest is None:
            self._ids_digest = ids_digest(self.data.ids)
        return {"config": json.dumps(cfg, sort_keys=True), "ids": self._ids_digest, "passives": json.dumps(self.names)}

    def _save_checkpoint(self, metrics: RunningMeans, passive_round: int) -> None:
        """Everything the active party needs to continue after this round, written atomically.
        ``passive_round``: the message round after which the passives saved their own checkpoints."""
        state = {
            **self._identity(),
            "run_id": self.run_id,
            "round": self.round,
            "passive_round": passive_round,
            "rounds_sent": self.rounds_sent,
            "keep": torch.from_numpy(self.keep),
            "train": torch.from_numpy(self.split[0]),
            "test": torch.from_numpy(self.split[1]),
            "own": torch.from_numpy(self.own),
            "own_test": torch.from_numpy(self.own_test),
            "val": torch.from_numpy(self.val),
            "own_val": torch.from_numpy(self.own_val),
            **({} if self.best is None else {f"best_{k}": v for k, v in self.best.items()}),
            "infos": json.dumps([[p.loss, list(p.embedding_shape) if p.embedding_shape else None] for p in self.infos]),
            "learner": self.learner.state(),
            "pending": {n: [v[0], v[1] or {}, v[2]] for n, v in self.pending.items()},
            "emb_stats": [list(s) if s is not None else None for s in self.emb_stats],
            "history": json.dumps(self.history),
            "wire": json.dumps(self.wire),
            "faults": json.dumps(self.faults),
            "metrics": metrics.state(),
            "aug_rng": self.aug_gen.get_state(),
            "own_aug_rng": self.own_aug_gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.cfg.device.startswith("cuda") else [],
            "dp_rng": self.dp.gen.get_state() if self.dp.gen is not None else torch.zeros(0, dtype=torch.uint8),
        }
        save_checkpoint(self.checkpoint, state)

    def resume(self) -> None:
        """Continue an interrupted run from the checkpoint (instead of ``setup``): each passive rolls back to
        its own node-local checkpoint of the same round, so the run ends exactly as an uninterrupted one. A passive that
        missed that round (gone, or its request expired) resumes from its latest earlier checkpoint instead."""
        ck = load_checkpoint(self.checkpoint, self.cfg.device)
        mine = self._identity()
        try:  # a checkpoint written before a setting existed is read with its default (apfed.config.with_defaults)
            stored = {k: v for k, v in with_defaults(json.loads(ck["config"])).items() if k != "device"}
            ck = {**ck, "config": json.dumps(stored, sort_keys=True)}
        except (KeyError, TypeError, ValueError):
            pass  # not a config of ours: the comparison below refuses it
        for key, what in (("config", "training configuration"), ("ids", "active party's data"), ("passives", "")):
            if ck.get(key) != mine[key]:
                raise DataError(f"{self.checkpoint} was written for another {what or 'set of passives'}; cannot resume")
        self.run_id = ck["run_id"]
        if self.names and self.sealing is not None:
            self._handshake()
        if self.names:
            self.round = -1
            r = int(ck["passive_round"])
            # a passive that missed round r (gone, or its request expired) has no checkpoint of it: it resumes from
            # its latest earlier one, losing only its own updates since, as in rounds it missed
            back_to = {"resume_round": r, "or_earlier": True}
            replies = self._exchange(RESUME, {n: ({}, back_to) for n in self.names}, lambda i: {})
            for n, reply in replies.items():
                used = reply.config.get("resumed_round", r)
                if used != r:
                    self.log(f"{n} resumes from its checkpoint of round {used}: it has none of round {r}")
        infos = [PassiveInfo(loss, tuple(shape) if shape else None) for loss, shape in json.loads(ck["infos"])]
        rows = [ck[k].cpu().numpy() for k in ("keep", "train", "test")]  # loaded onto the run's device
        # a checkpoint older than unmatched rows (or than validation rows among them) has none of these
        own, own_test, val, own_val = (
            ck[k].cpu().numpy() if k in ck else rows[0][:0] for k in ("own", "own_test", "val", "own_val")
        )
        self._build(*rows, infos, own, own_test, val, own_val)
        self.learner.load_state(ck["learner"])
        if "best_epoch" in ck:
            state = {k: v.to(self.cfg.device) for k, v in ck["best_state"].items()}
            self.best = {"epoch": int(ck["best_epoch"]), "state": state}
        self.round, self.rounds_sent = int(ck["round"]), 0
        self.pending = {n: (v[0].cpu(), v[1] or None, v[2]) for n, v in ck["pending"].items()}
        self.emb_stats = [list(s) if s is not None else None for s in ck["emb_stats"]]
        self.history, self.wire = json.loads(ck["history"]), json.loads(ck["wire"])
        self.faults = json.loads(ck["faults"])
        self.resumed = ck
        self.log(f"resumed run {self.run_id} after round {self.round} ({len(self.history)} epochs done)")

    def _restore_rngs_and_metrics(self, ck: dict) -> RunningMeans:
        self.rounds_sent = int(ck["rounds_sent"])
        self.aug_gen.set_state(ck["aug_rng"].cpu())  # RNG states are host byte tensors
        if "own_aug_rng" in ck:
            self.own_aug_gen.set_state(ck["own_aug_rng"].cpu())
        torch.set_rng_state(ck["torch_rng"].cpu())
        if ck["cuda_rng"]:
            torch.cuda.set_rng_state_all([s.cpu() for s in ck["cuda_rng"]])
        if self.dp.gen is not None:
            self.dp.gen.set_state(ck["dp_rng"].cpu())
        return RunningMeans.from_state(ck["metrics"])
