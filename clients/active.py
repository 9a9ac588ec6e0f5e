"""ActiveClient: the active party and coordinator. It holds the labelled view, drives every round through a
transport (in-process, Flower simulation or Flower deployment: the loop is the same) and ends with the
standalone model."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

import numpy as np
import torch

from apfed.augment import join_augmentations, sample_augmentation
from apfed.config import TrainConfig
from apfed.data.views import PartyData, Preprocessor, View
from apfed.errors import DataError
from apfed.learner import ActiveLearner, PassiveInfo
from apfed.metrics import classification_metrics
from apfed.models import encoder_output_shape
from apfed.standalone import StandaloneModel
from clients.tensors import as_tensor
from protocols.errors import ProtocolError
from protocols.messages import ALIGN, EVALUATE, FINISH, REPLY, SETUP, TRAIN, Message
from protocols.psi import POINT, PsiKey, hash_to_points, match
from protocols.transport import Transport
from protocols.validation import ArraySpec, validate

ACTIVE = "active"


class ActiveClient:
    """Coordinates one training run. ``extra_views`` gives the active party more local views (centralized)."""

    def __init__(
        self,
        data: PartyData,
        cfg: TrainConfig,
        transport: Transport | None,
        passive_names: list[str],
        run_id: str | None = None,
        extra_views: list[View] | None = None,
        log: Callable = print,
    ):
        if data.labels is None or data.train_ids is None:
            raise DataError("the active party needs labels and a train/test split")
        self.data, self.cfg, self.transport = data, cfg, transport
        self.names = list(passive_names)
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.extra_views = extra_views or []
        self.log = log
        self.round = 0
        self.history: list[dict] = []
        self.wire = {"messages": 0, "bytes": 0}
        self.exchange_s = 0.0  # time spent waiting in transport.exchange (round trips plus the passives' compute)

    # --- messaging ------------------------------------------------------------------------------------
    def _submit(self, kind: str, per_passive: dict[str, tuple[dict, dict]]) -> tuple:
        """Queue one request per passive; returns what ``_collect`` needs to wait for and check the replies."""
        self.round += 1
        requests = {n: Message(kind, self.run_id, self.round, ACTIVE, n, a, c) for n, (a, c) in per_passive.items()}
        t0 = time.perf_counter()
        ticket = self.transport.submit(requests)
        self.exchange_s += time.perf_counter() - t0
        return self.round, requests, ticket

    def _collect(self, sent: tuple, reply_arrays: Callable[[int], dict]) -> dict[str, Message]:
        rnd, requests, ticket = sent
        t0 = time.perf_counter()
        replies = self.transport.collect(ticket)
        self.exchange_s += time.perf_counter() - t0
        for n in requests:
            if n not in replies:
                raise ProtocolError(f"no reply from {n} in round {rnd}")
            validate(
                replies[n],
                kind=REPLY,
                run_id=self.run_id,
                round=rnd,
                sender=n,
                receiver=ACTIVE,
                arrays=reply_arrays(self.names.index(n)),
            )
            self.wire["messages"] += 2
            self.wire["bytes"] += requests[n].nbytes() + replies[n].nbytes()
        return replies

    def _exchange(
        self, kind: str, per_passive: dict[str, tuple[dict, dict]], reply_arrays: Callable[[int], dict]
    ) -> dict[str, Message]:
        return self._collect(self._submit(kind, per_passive), reply_arrays)

    # --- setup ----------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Align rows with the passives by ECDH private set intersection, build the models, assign the roles."""
        cfg, d = self.cfg, self.data
        pos = {s: i for i, s in enumerate(d.ids)}
        train_pos = np.asarray([pos[s] for s in d.train_ids])
        test_pos = np.asarray([pos[s] for s in d.test_ids])
        present = np.ones(len(d.ids), dtype=bool)
        spec = {"kind": d.view.kind, "shape": list(d.view.shape)}
        h_shape = encoder_output_shape(spec, cfg.embedding_dim)
        sends = cfg.method in ("tvfl", "apfed-kd")
        matches: dict[str, np.ndarray] = {}
        if self.names:
            psi = PsiKey()  # ECDH-PSI: only blinded IDs travel (protocols/psi.py)
            blinded = psi.blind(hash_to_points(d.ids, self.run_id))
            setup = {}
            for i, n in enumerate(self.names):
                loss = cfg.passive_loss(i) or ""
                received = list(h_shape) if loss == "r" else [cfg.projection_dim] if loss == "c" else []
                setup[n] = (
                    {"psi": blinded},
                    {
                        "train_config": json.dumps(cfg.to_dict()),
                        "salt": self.run_id,
                        "loss": loss,
                        "sends_embedding": sends,
                        "active_shape": list(h_shape),
                        "received_shape": received,
                        "seed": cfg.seed * 1000 + 17 * (i + 1),
                    },
                )
            self.round = -1  # setup and align are round 0
            replies = self._exchange(
                SETUP,
                setup,
                lambda i: {
                    "psi_double": ArraySpec((len(d.ids), POINT), ("uint8",), finite=False),
                    "psi_own": ArraySpec((None, POINT), ("uint8",), finite=False),
                },
            )
            for n in self.names:
                theirs = psi.blind(np.asarray(replies[n].arrays["psi_own"]))
                matches[n] = match(np.asarray(replies[n].arrays["psi_double"]), theirs)
                present &= matches[n] >= 0
        keep = np.flatnonzero(present)
        self.keep = keep  # the active rows in the intersection, in the order every party now uses
        train = np.flatnonzero(np.isin(keep, train_pos))
        test = np.flatnonzero(np.isin(keep, test_pos))
        self.log(
            f"{len(keep)} of {len(d.ids)} active rows are held by every passive ({len(train)} train, {len(test)} test)"
        )
        if len(train) == 0 or len(test) == 0:
            raise DataError("no training or no test rows are shared with the passives; check the ID columns")
        infos = []
        if self.names:
            self.round = -1
            replies = self._exchange(
                ALIGN,
                {n: ({"match": matches[n][keep], "train": train.astype(np.int64)}, {}) for n in self.names},
                lambda i: {},
            )
            for i, n in enumerate(self.names):
                shape = replies[n].config.get("embedding_shape")
                infos.append(PassiveInfo(cfg.passive_loss(i), tuple(shape) if sends else None))
        self.preprocessor = Preprocessor.fit(d.view, keep[train])
        dev = cfg.device
        X = torch.from_numpy(self.preprocessor(d.view.X[keep])).to(dev)
        y = torch.from_numpy(d.labels[keep]).to(dev)
        extra_X = [torch.from_numpy(Preprocessor.fit(v, keep[train])(v.X[keep])).to(dev) for v in self.extra_views]
        extra_specs = [{"kind": v.kind, "shape": list(v.shape)} for v in self.extra_views]
        self.learner = ActiveLearner(spec, cfg, len(d.class_names), X, y, infos, extra_specs, extra_X)
        self.spec, self.infos = spec, infos
        self.sent_shapes = [tuple(h_shape) if p.loss == "r" else (cfg.projection_dim,) for p in infos]
        self.train_idx = torch.from_numpy(train).to(dev)
        self.test_idx = torch.from_numpy(test).to(dev)
        self.y_test = d.labels[keep][test]
        self.n = len(keep)
        self.pending: dict[str, tuple] = {}
        self.emb_stats = [None] * len(self.names)

    # --- training -------------------------------------------------------------------------------------
    def _reply_specs(self, i: int, total: int) -> dict:
        p = self.infos[i]
        specs = {"loss": ArraySpec((None,), required=False)}
        if p.loss is not None:
            specs["grad"] = ArraySpec((total, *self.sent_shapes[i]))
        if p.embedding_shape is not None:
            specs["emb"] = ArraySpec((total, *p.embedding_shape))
        return specs

    def _send_round(self, batches: list[torch.Tensor], progress: list[float]) -> dict:
        """Forward K minibatches and queue the passives' train requests (with any pending embedding gradients)."""
        L = self.learner
        augs = [sample_augmentation(len(b), self.cfg, self.aug_gen, self.cfg.device) for b in batches]
        rnd = {"batches": batches, "progress": progress, "augs": augs, "sent": None}
        if not self.names:
            return rnd
        sent = [L.outgoing(idx, a) for idx, a in zip(batches, augs, strict=True)]
        flat = torch.cat(batches)
        sizes = [len(b) for b in batches]
        joined = join_augmentations(augs, sizes)
        requests = {}
        for i, n in enumerate(self.names):
            arrays = {
                "idx": flat,
                "sizes": torch.tensor(sizes, dtype=torch.int64),
                "progress": np.asarray(progress, dtype=np.float64),
                **(joined or {}),
            }
            if self.infos[i].loss is not None:
                arrays["act"] = torch.cat([s[i] for s in sent])
            if n in self.pending:
                prev_idx, prev_aug, prev_grad = self.pending.pop(n)
                arrays.update(
                    {
                        "prev_idx": prev_idx,
                        "prev_grad": prev_grad,
                        **{f"prev_{k}": v for k, v in (prev_aug or {}).items()},
                    }
                )
            requests[n] = (arrays, {})
        rnd.update(flat=flat, joined=joined, sent=self._submit(TRAIN, requests))
        return rnd

    def _apply_round(self, rnd: dict) -> list[dict]:
        """Wait for the passives' replies to a round and apply its K minibatches."""
        L, batches, progress, augs = self.learner, rnd["batches"], rnd["progress"], rnd["augs"]
        if rnd["sent"] is None:
            return [L.step(idx, [], [], p, a)[0] for idx, p, a in zip(batches, progress, augs, strict=True)]
        flat = rnd["flat"]
        replies = self._collect(rnd["sent"], lambda i: self._reply_specs(i, len(flat)))
        dev = self.cfg.device
        got = [{k: as_tensor(v, dev) for k, v in replies[n].arrays.items()} for n in self.names]
        out, emb_grads = [], [[] for _ in self.names]
        start = 0
        for idx, p, aug in zip(batches, progress, augs, strict=True):
            sl = slice(start, start + len(idx))
            start += len(idx)
            grads = [g["grad"][sl] if "grad" in g else None for g in got]
            embs = [g["emb"][sl] if "emb" in g else None for g in got]
            metrics, eg = L.step(idx, grads, embs, p, aug)
            for i, e in enumerate(eg):
                if e is not None:
                    emb_grads[i].append(e)
                    self._track(i, embs[i])
            if got and "loss" in got[0]:
                metrics["passive_loss"] = torch.stack([g["loss"].mean() for g in got if "loss" in g]).mean()
            out.append(metrics)
        for i, n in enumerate(self.names):
            if emb_grads[i]:
                self.pending[n] = (flat, rnd["joined"], torch.cat(emb_grads[i]))
        return out

    def _track(self, i: int, emb: torch.Tensor) -> None:
        """Running sums of passive embeddings, for the mean/random fills of absent passives (tvfl)."""
        e = emb.flatten(1).double()
        s = self.emb_stats[i]
        stats = (e.sum(0), (e * e).sum(0), len(e))
        self.emb_stats[i] = stats if s is None else (s[0] + stats[0], s[1] + stats[1], s[2] + stats[2])

    def _rounds(self):
        """(epoch, minibatches, progress, last round of the epoch?) for every round of the run, in order."""
        cfg = self.cfg
        gen = torch.Generator().manual_seed(cfg.seed)
        n_train, k = len(self.train_idx), cfg.batches_per_round
        nb = -(-n_train // cfg.batch_size)
        if cfg.pipeline and k > max(1, nb // 2):
            # a pipelined round sends embeddings one round stale: a whole epoch stale breaks training (K sweep)
            k = max(1, nb // 2)
            self.log(f"pipelining: {cfg.batches_per_round} minibatches per round is over half an epoch; using {k}")
        self.k_used = k
        for epoch in range(cfg.epochs):
            perm = self.train_idx[torch.randperm(n_train, generator=gen).to(self.train_idx.device)]
            batches = list(perm.split(cfg.batch_size))
            nb = len(batches)
            for r in range(0, nb, k):
                chunk = batches[r : r + k]
                progress = [(epoch + (r + j) / nb) / cfg.epochs for j in range(len(chunk))]
                yield epoch, chunk, progress, r + k >= nb

    def fit(
        self, on_epoch: Callable[[dict], None] | None = None, on_batch: Callable[[], None] | None = None
    ) -> list[dict]:
        """Train for ``cfg.epochs`` epochs; evaluate on the test rows after each epoch.

        With ``cfg.pipeline`` the next round's request is queued before the current round is applied, so the
        passives compute while the active party steps and a SuperNode never idles between rounds; the
        embeddings the active sends are then one round stale (K = 1 without pipelining is the exact reference).
        """
        cfg = self.cfg
        self.aug_gen = torch.Generator().manual_seed(cfg.seed + 2)
        torch.manual_seed(cfg.seed + 1)  # dropout in the active party's heads
        rounds = self._rounds()
        metrics: list[dict] = []
        t0, x0 = time.perf_counter(), self.exchange_s
        nxt = next(rounds, None)
        inflight = self._send_round(nxt[1], nxt[2]) if nxt else None
        while nxt is not None:
            epoch, chunk, _, last = nxt
            current = inflight
            nxt = next(rounds, None)
            if cfg.pipeline and nxt is not None:
                inflight = self._send_round(nxt[1], nxt[2])
            metrics += self._apply_round(current)
            if on_batch:
                for _ in chunk:
                    on_batch()
            if last:
                row = {
                    "epoch": epoch + 1,
                    "train_time": time.perf_counter() - t0,
                    "exchange_time": self.exchange_s - x0,
                }
                for key in metrics[0]:
                    row[key] = float(torch.stack([torch.as_tensor(m[key]) for m in metrics]).mean())
                row.update(self.evaluate())
                self.history.append(row)
                if on_epoch:
                    on_epoch(row)
                metrics = []
                t0, x0 = time.perf_counter(), self.exchange_s
            if not cfg.pipeline and nxt is not None:
                inflight = self._send_round(nxt[1], nxt[2])
        self._flush()
        return self.history

    def _flush(self) -> None:
        if self.pending:
            requests = {}
            for n, (prev_idx, prev_aug, prev_grad) in self.pending.items():
                requests[n] = (
                    {
                        "idx": torch.zeros(0, dtype=torch.int64),
                        "sizes": torch.zeros(0, dtype=torch.int64),
                        "progress": np.zeros(0),
                        "prev_idx": prev_idx,
                        "prev_grad": prev_grad,
                        **{f"prev_{k}": v for k, v in (prev_aug or {}).items()},
                    },
                    {},
                )
            self.pending = {}
            self._exchange(TRAIN, requests, lambda i: {"loss": ArraySpec((None,), required=False)})

    # --- evaluation -----------------------------------------------------------------------------------
    def passive_embeddings(self, idx: torch.Tensor) -> list[torch.Tensor]:
        replies = self._exchange(
            EVALUATE,
            {n: ({"idx": idx}, {}) for n in self.names},
            lambda i: {"emb": ArraySpec((len(idx), *self.infos[i].embedding_shape))},
        )
        return [as_tensor(replies[n].arrays["emb"], self.cfg.device) for n in self.names]

    def _fills(self, kind: str, n: int) -> list[torch.Tensor]:
        out = []
        g = torch.Generator().manual_seed(self.cfg.seed + 7)
        for i, p in enumerate(self.infos):
            s, ss, cnt = self.emb_stats[i]
            mean = (s / cnt).float()
            std = (ss / cnt - (s / cnt) ** 2).clamp_min(0).sqrt().float()
            shape = (n, *p.embedding_shape)
            if kind == "zero":
                out.append(torch.zeros(shape, device=mean.device))
            elif kind == "mean":
                out.append(mean.expand(n, -1).reshape(shape))
            else:
                noise = torch.randn((n, mean.numel()), generator=g).to(mean.device)
                out.append((mean + std * noise).reshape(shape))
        return out

    def predictions(self) -> dict[str, np.ndarray]:
        """Test-set predicted classes of each model this method yields (standalone, fused, fills)."""
        L, idx, out = self.learner, self.test_idx, {}
        if L.standalone:
            out["standalone"] = L.standalone_logits(idx).argmax(1).cpu().numpy()
        if L.fused:
            embs = self.passive_embeddings(idx) if self.names else []
            out["fused"] = L.fused_logits(idx, embs).argmax(1).cpu().numpy()
            if self.names and self.cfg.method == "tvfl":
                for kind in ("zero", "mean", "rand"):
                    out[f"fill_{kind}"] = L.fused_logits(idx, self._fills(kind, len(idx))).argmax(1).cpu().numpy()
        return out

    def evaluate(self) -> dict:
        """Test accuracy (in %) of every model the method yields; ``accuracy`` is the method's headline."""
        preds = self.predictions()
        acc = {k: float((v == self.y_test).mean() * 100) for k, v in preds.items()}
        row = {f"acc_{k}": v for k, v in acc.items()}
        row["accuracy"] = acc["standalone"] if "standalone" in acc else acc["fused"]
        return row

    def final_metrics(self) -> dict:
        preds = self.predictions()
        main = preds["standalone"] if "standalone" in preds else preds["fused"]
        return classification_metrics(self.y_test, main)

    def finish(self) -> None:
        if self.names:
            self._exchange(FINISH, {n: ({}, {}) for n in self.names}, lambda i: {})

    def standalone_model(self, provenance: dict) -> StandaloneModel:
        """The active party's complete model, ready to save, load and predict with no passive."""
        if not self.learner.standalone:
            raise DataError(f"method {self.cfg.method} needs every party at prediction time: no standalone model")
        net = self.learner.standalone_net()
        return StandaloneModel(
            net=net,
            spec=self.spec,
            preprocessor=self.preprocessor,
            class_names=list(self.data.class_names),
            columns=self.data.view.columns,
            view_name=self.data.view.name,
            config=self.cfg.to_dict(),
            provenance=provenance,
        )
