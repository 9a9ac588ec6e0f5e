"""ActiveClient: the active party and coordinator. It holds the labelled view, drives every round through a
transport (in-process, Flower simulation or Flower deployment: the loop is the same) and ends with the
standalone model."""

from __future__ import annotations

import copy
import datetime
import json
import time
import uuid
from collections.abc import Callable

import numpy as np
import torch

from apfed.augment import join_augmentations, sample_augmentation
from apfed.checkpoint import refuse_to_overwrite
from apfed.config import NEEDS_NO_LABEL, STANDALONE, TrainConfig, check_task_settings
from apfed.conformal import rows_needed
from apfed.data.splits import stratified_split
from apfed.data.streamed import device_rows
from apfed.data.timesplit import time_split
from apfed.data.views import PartyData, Preprocessor, View, compact_index, compact_labels, is_regression
from apfed.errors import ConfigError, DataError
from apfed.learner import ActiveLearner, PassiveInfo
from apfed.memory import release_freed_memory
from apfed.metrics import RunningMeans
from apfed.models import encoder_output_shape, seed_rng
from apfed.privacy import Privatizer
from apfed.standalone import StandaloneModel
from clients.active_checkpoint import ActiveCheckpoints
from clients.active_evaluation import ActiveEvaluation
from clients.active_student import ActiveStudent
from clients.tensors import as_tensor, from_wire, to_wire
from protocols.errors import ProtocolError
from protocols.messages import ALIGN, FINISH, HELLO, REPLY, SETUP, TRAIN, Message
from protocols.psi import POINT, PsiKey, blind_ids, match, psi_workers
from protocols.sealing import Channel, Handshake, Sealing
from protocols.transport import Transport
from protocols.validation import ArraySpec, first_failures, validate

ACTIVE = "active"
BAD_MESSAGE_POLICIES = ("skip", "fail")


class ActiveClient(ActiveCheckpoints, ActiveEvaluation, ActiveStudent):
    """Coordinates one training run. ``extra_views`` gives the active party more local views (centralized).

    ``sealing`` turns on end-to-end encryption with every passive (a HELLO key agreement before setup).
    ``on_bad_message``: what a training round does with a passive whose reply is missing (deadline missed),
    fails validation or decryption: ``skip`` trains the round without that passive (and counts it in
    ``faults``), ``fail`` stops the run with the error. Setup, alignment and evaluation always fail."""

    def __init__(
        self,
        data: PartyData,
        cfg: TrainConfig,
        transport: Transport | None,
        passive_names: list[str],
        run_id: str | None = None,
        extra_views: list[View] | None = None,
        log: Callable = print,
        sealing: Sealing | None = None,
        on_bad_message: str = "fail",
        checkpoint: str | None = None,
        checkpoint_every: int = 0,
    ):
        if data.labels is None or data.train_rows is None or data.test_rows is None:
            raise DataError("the active party needs labels and a train/test split")
        if on_bad_message not in BAD_MESSAGE_POLICIES:
            raise DataError(f"on_bad_message must be skip or fail, got {on_bad_message!r}")
        check_task_settings(cfg, is_regression(data.labels))
        self.sealing, self.on_bad_message = sealing, on_bad_message
        self.channels: dict[str, Channel] = {}
        self.faults: list[dict] = []  # every skipped contribution: round, passive, reason
        self._missing: dict[str, tuple[int, int]] = {}  # passive -> (first round, rounds) of its current silence
        if checkpoint_every < 0 or (checkpoint_every and not checkpoint):
            raise DataError("checkpoint_every needs a checkpoint path and must be >= 0")
        self.checkpoint, self.checkpoint_every = checkpoint, checkpoint_every
        self.resumed: dict | None = None
        self._ids_digest: str | None = None  # of data.ids, computed at the first checkpoint
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
        wire = {n: self.channels[n].seal(m) if n in self.channels else m for n, m in requests.items()}
        t0 = time.perf_counter()
        ticket = self.transport.submit(wire)
        self.exchange_s += time.perf_counter() - t0
        return self.round, wire, ticket

    def _collect(self, sent: tuple, reply_arrays: Callable[[int], dict]) -> dict[str, Message]:
        rnd, requests, ticket = sent
        t0 = time.perf_counter()
        replies = self.transport.collect(ticket)
        self.exchange_s += time.perf_counter() - t0
        good, deferred = {}, {}
        for n in requests:
            if n not in replies:
                why = getattr(self.transport, "errors", {}).pop(n, None) or "deadline missed"
                self._bad_reply(requests[n], rnd, ProtocolError(f"no reply from {n} in round {rnd} ({why})"), True)
                continue
            try:
                reply = self.channels[n].open(replies[n]) if n in self.channels else replies[n]
                deferred[n] = []
                good[n] = validate(
                    reply,
                    kind=REPLY,
                    run_id=self.run_id,
                    round=rnd,
                    sender=n,
                    receiver=ACTIVE,
                    arrays=reply_arrays(self.names.index(n)),
                    deferred=deferred[n],
                )
            except ProtocolError as e:
                deferred.pop(n, None)
                self._bad_reply(requests[n], rnd, e)
        # the replies' value checks on the device, read back together: one host sync per round, not per passive
        for n, why in first_failures(deferred).items():
            del good[n]
            self._bad_reply(requests[n], rnd, ProtocolError(why))
        for n in good:
            self.wire["messages"] += 2
            self.wire["bytes"] += requests[n].nbytes() + replies[n].nbytes()
            if n in self._missing:  # back after rounds without a reply
                first, count = self._missing.pop(n)
                self.log(f"round {rnd}: {n} answered again, after {count} round(s) without it (from round {first})")
        return good

    def _bad_reply(self, request: Message, rnd: int, e: ProtocolError, missing: bool = False) -> None:
        """A passive's reply is missing or invalid: stop (``fail``, or outside training) or train without it.
        Every skip is in ``faults``; of consecutive rounds without a reply from one passive (a passive that is
        gone) only the first is logged, and the round it answers again."""
        if self.on_bad_message == "fail" or request.kind != TRAIN:
            raise e
        n = request.receiver
        self.faults.append({"round": rnd, "passive": n, "error": str(e)})
        note = ""
        if missing:
            first, count = self._missing.get(n, (rnd, 0))
            self._missing[n] = (first, count + 1)
            if count:
                return
            note = "; rounds without a reply from it are not logged until it answers again"
        self.log(f"round {rnd}: training without {n}: {e}{note}")

    def _handshake(self) -> None:
        """HELLO key agreement with every passive (pinned fingerprints); later messages are sealed."""
        shakes = {n: Handshake(self.sealing) for n in self.names}
        self.round = -1
        replies = self._exchange(HELLO, {n: ({}, shakes[n].offer()) for n in self.names}, lambda i: {})
        for n in self.names:
            self.channels[n] = shakes[n].finish(
                replies[n].config, peer=n, run_id=self.run_id, active=ACTIVE, passive=n, own=ACTIVE
            )

    def _exchange(
        self, kind: str, per_passive: dict[str, tuple[dict, dict]], reply_arrays: Callable[[int], dict]
    ) -> dict[str, Message]:
        return self._collect(self._submit(kind, per_passive), reply_arrays)

    # --- setup ----------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Align rows with the passives by ECDH private set intersection, build the models, assign the roles."""
        if self.checkpoint and self.checkpoint_every:
            refuse_to_overwrite(self.checkpoint)
        self._setup()
        release_freed_memory()  # the PSI's transient arrays (O(samples)), now that _setup's locals are gone

    def _setup(self) -> None:
        cfg, d = self.cfg, self.data
        cfg.check_passives(len(self.names))
        train_pos, test_pos = d.train_rows, d.test_rows
        for what, rows in (("training", train_pos), ("test", test_pos)):
            if len(rows) and (rows.min() < 0 or rows.max() >= len(d.ids)):
                raise DataError(f"the active party's {what} rows are not positions among its {len(d.ids)} rows")
        # a run with no passive (local) has none to ask which rows they hold: in-process, the dataset says
        present = np.ones(len(d.ids), dtype=bool) if self.names or d.matched is None else d.matched.copy()
        spec = {"kind": d.view.kind, "shape": list(d.view.shape)}
        h_shape = encoder_output_shape(spec, cfg.embedding_dim)
        sends = cfg.method in ("tvfl", "apfed-kd")
        matches: dict[str, np.ndarray] = {}
        if self.names and self.sealing is not None:
            self._handshake()
        if self.names:
            self.log(
                f"aligning {len(d.ids)} IDs with {len(self.names)} passive(s) by private set intersection"
                " (ECDH: about 0.1 ms per ID on each side with one core; lists of 20,000 IDs or more are blinded"
                f" by {psi_workers()} process(es) here, APFED_PSI_WORKERS)"
            )
            with PsiKey() as psi:  # ECDH-PSI: only blinded IDs travel (protocols/psi.py)
                blinded = blind_ids(psi, d.ids, self.run_id)
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
                # the PSI's arrays are 32 bytes per id each: let every one go as soon as it has served, so the set-up
                # peak holds as few of them at once as the matching needs
                del blinded, setup
                for n in self.names:
                    reply = replies.pop(n)
                    theirs = psi.blind(np.asarray(reply.arrays["psi_own"]))
                    double = np.asarray(reply.arrays["psi_double"])
                    del reply
                    matches[n] = match(double, theirs)
                    del double, theirs
                    present &= matches[n] >= 0
        keep = np.flatnonzero(present)
        train = np.flatnonzero(np.isin(keep, train_pos))
        test = np.flatnonzero(np.isin(keep, test_pos))
        unlabelled = np.flatnonzero(np.isin(keep, d.unlabelled_rows)) if d.unlabelled_rows is not None else test[:0]
        without = f", {len(unlabelled)} with no label" if len(unlabelled) else ""
        self.log(
            f"{len(keep)} of {len(d.ids)} active rows are held by every passive ({len(train)} train, {len(test)} test"
            f"{without})"
        )
        if len(train) == 0 or (len(test) == 0 and len(test_pos)):  # a split with no test rows trains on every one
            raise DataError("no training or no test rows are shared with the passives; check the ID columns")
        # in the order of the active party's rows, as the matched ones are: its split lists rows in a shuffled order
        # (a deployed party's file split), and the unmatched rows' order sets their minibatches
        unmatched = np.sort(np.asarray(train_pos)[~present[train_pos]])
        own = unmatched if cfg.trains_unmatched else unmatched[:0]
        train, val, own, own_val = self._hold_out(keep, train, own)
        if len(unlabelled):
            self.log(
                f"{len(unlabelled)} rows with no label: "
                + (
                    "the passives' losses train on them too (unlabelled_rows=train)"
                    if cfg.trains_unlabelled
                    else "left out (unlabelled_rows=drop)"
                    if cfg.method in NEEDS_NO_LABEL
                    else f"left out ({cfg.method} learns from labels alone)"
                )
            )
            if cfg.trains_unlabelled:  # training rows like the others, with no task loss (apfed.learner)
                train = np.sort(np.concatenate([train, unlabelled]))
        standalone = STANDALONE[cfg.method]
        tested = standalone or cfg.method == "tvfl"  # tvfl: with the passives' embeddings filled in
        own_test = np.sort(np.asarray(test_pos)[~present[test_pos]]) if tested else np.asarray(test_pos)[:0]
        if len(unmatched):
            self.log(
                f"{len(unmatched)} labelled training rows are missing at some passive: "
                + (
                    "the standalone model also trains on them, by its task loss alone"
                    + (f", but for the {len(own_val)} held out for validation" if len(own_val) else "")
                    + " (unmatched_rows=train)"
                    if cfg.trains_unmatched
                    else "left out (unmatched_rows=drop)"
                    if standalone
                    else f"left out ({cfg.method} reads every party's data)"
                )
            )
        if len(own_test):
            self.log(
                f"{len(own_test)} test rows are missing at some passive: "
                + (
                    "the standalone model is also tested on them (unmatched_accuracy)"
                    if standalone
                    else "tvfl is also tested on them with the passives' embeddings filled in (zero, mean, rand)"
                )
            )
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
        self._build(keep, train, test, infos, own, own_test, val, own_val)

    def _hold_out(
        self, keep: np.ndarray, train: np.ndarray, own: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(training, validation, own training, own validation) positions (``cfg.validation`` > 0): a stratified,
        seeded share of the training rows is held out to pick the best epoch, from the matched training rows
        (``train``, positions in ``keep``) and the rows that no passive holds which the standalone model trains on
        (``own``, positions in the party's rows) together. It trains nothing: no train request carries it, and the
        passives' preprocessing statistics, like the active party's, come from the training rows alone."""
        v = self.cfg.validation
        if v == 0:
            return train, train[:0], own, own[:0]
        labels, times = self.data.labels, self.data.times
        latest = self.cfg.validation_split == "latest"
        if latest and times is None:
            raise ConfigError(
                "validation_split=latest takes the latest training rows by time: split the rows by a time column"
                " (--time-column)"
            )
        try:
            if latest:  # the period just before the test rows
                tr, va = time_split(np.concatenate([times[keep[train]], times[own]]), v, "the time column")
            else:
                tr, va = stratified_split(
                    np.concatenate([labels[keep[train]], labels[own]]), v, self.cfg.seed + 11, held_out="validation"
                )
        except DataError as e:
            raise DataError(f"validation={v}: {e}") from None
        m = len(train)  # positions below m are matched rows, the others rows of ``own``
        train, val, own, own_val = (
            np.sort(train[tr[tr < m]]),
            np.sort(train[va[va < m]]),
            np.sort(own[tr[tr >= m] - m]),
            np.sort(own[va[va >= m] - m]),
        )
        kept = (
            "the standalone model is the epoch that does best on them"
            if STANDALONE[self.cfg.method]
            else f"{self.cfg.method} keeps its last epoch (it has no standalone model to put back)"
        )
        some = f" ({len(own_val)} of them rows that some passive lacks)" if len(own_val) else ""
        which = "the latest " if latest else ""
        self.log(f"{which}{len(val) + len(own_val)} of the training rows are held out for validation{some}; {kept}")
        return train, val, own, own_val

    def _set_conformal_rows(self, matched: int) -> None:
        """``conformal``: half the validation rows (seeded, at random) are kept apart to calibrate the intervals or
        sets; they pick no epoch and fit no temperature, so the coverage holds as conformal prediction promises (rows
        that also picked the epoch would make the intervals a little too narrow). ``matched``: the rows every passive
        holds (the learner's first positions)."""
        n, need = len(self.y_val), rows_needed(self.cfg.conformal)
        order = np.random.default_rng(self.cfg.seed + 13).permutation(n)
        conf, pick = np.sort(order[: (n + 1) // 2]), np.sort(order[(n + 1) // 2 :])
        if len(conf) < need:
            raise DataError(
                f"conformal={self.cfg.conformal:g} calibrates on half the validation rows and needs at least {need} of"
                f" them; the run holds {n} validation rows: raise validation, or ask for a lower coverage"
            )
        idx = self.val_idx.cpu().numpy()
        self.conf_idx, self.y_conf = self.val_idx[torch.from_numpy(conf)], self.y_val[conf]
        self.val_idx, self.y_val = self.val_idx[torch.from_numpy(pick)], self.y_val[pick]
        self.val_rows = torch.from_numpy(idx[pick][idx[pick] < matched])
        self.log(f"{len(conf)} of the {n} validation rows are kept apart to calibrate the conformal predictions")

    def _build(
        self,
        keep: np.ndarray,
        train: np.ndarray,
        test: np.ndarray,
        infos: list[PassiveInfo],
        own: np.ndarray,
        own_test: np.ndarray,
        val: np.ndarray,
        own_val: np.ndarray,
    ) -> None:
        """The active party's side of an aligned run: preprocessed rows on the device, the learner, counters.
        ``own``, ``own_test``: positions (in the active party's rows) of training rows that some passive lacks,
        trained by the task loss alone, and of such test rows, on which the standalone model is also tested; the
        learner holds them after the ``len(keep)`` matched rows. ``val``, ``own_val``: validation positions among
        the matched rows and among the party's rows that some passive lacks (the learner holds these last)."""
        cfg, d = self.cfg, self.data
        spec = {"kind": d.view.kind, "shape": list(d.view.shape)}
        h_shape = encoder_output_shape(spec, cfg.embedding_dim)
        # the intersection, in the order every party now uses; 4-byte positions and 2-byte labels where they fit
        # (set-up and older checkpoints give int64): this bookkeeping is the run's only O(samples) state
        keep, train, test, own, own_test, own_val = (
            compact_index(keep, len(d.ids)),
            compact_index(train, len(keep)),
            compact_index(test, len(keep)),
            compact_index(own, len(d.ids)),
            compact_index(own_test, len(d.ids)),
            compact_index(own_val, len(d.ids)),
        )
        self.keep, self.split, self.own, self.own_test, self.own_val = keep, (train, test), own, own_test, own_val
        unmatched = [own, own_test, own_val]
        held = np.concatenate([keep, *unmatched]) if sum(map(len, unmatched)) else keep  # the learner's rows
        trained = self._trained_rows()
        self.preprocessor = Preprocessor.fit(d.view, trained)
        dev = cfg.device
        X = device_rows(d.view, held, self.preprocessor, dev)
        self.regression, self.target = is_regression(d.labels), None
        y = compact_labels(d.labels[held])
        if self.regression:  # the learner fits the target (log(1 + y) with target_transform=log) standardized
            known = d.labels[trained][~np.isnan(d.labels[trained])]
            if cfg.target_transform == "log":
                if known.min() <= -1:
                    raise DataError(
                        f"target_transform=log takes log(1 + y), and a training label is {known.min():g}: every"
                        " label must be above -1"
                    )
                known, y = np.log1p(known), np.log1p(y)
            self.target = {"mean": float(known.mean()), "std": float(known.std()) or 1.0}
            if cfg.target_transform == "log":
                self.target["transform"] = "log"
            y = (y - self.target["mean"]) / self.target["std"]
        y = torch.from_numpy(y).to(dev)
        self.own_idx = torch.arange(len(keep), len(keep) + len(own), device=dev)
        self.own_test_idx = torch.arange(len(keep) + len(own), len(keep) + len(own) + len(own_test), device=dev)
        self.y_own_test = compact_labels(d.labels[own_test])
        extra_X = [device_rows(v, keep, Preprocessor.fit(v, keep[train]), dev) for v in self.extra_views]
        extra_specs = [{"kind": v.kind, "shape": list(v.shape)} for v in self.extra_views]
        weights = None
        labelled = d.labels[trained]
        labelled = labelled[~np.isnan(labelled)] if self.regression else labelled[labelled >= 0]
        counts = np.zeros(0) if self.regression else np.bincount(labelled, minlength=len(d.class_names)).astype(float)
        # two classes: the rarer in training (fraud, churn, a diagnosis) is the positive class of average precision
        self.positive = 0 if len(counts) == 2 and counts[0] < counts[1] else 1
        if cfg.class_weight == "balanced":  # from the training rows' labels: N / (classes x the class's rows)
            weights = torch.tensor(
                len(labelled) / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32, device=dev
            )
        self.learner = ActiveLearner(
            spec,
            cfg,
            1 if self.regression else len(d.class_names),
            X,
            y,
            infos,
            extra_specs,
            extra_X,
            weights,
            own_rows=len(own) > 0,
            unlabelled=len(labelled) < len(trained),
        )
        self.spec, self.infos = spec, infos
        self.sent_shapes = [tuple(h_shape) if p.loss == "r" else (cfg.projection_dim,) for p in infos]
        # row positions: on the device for the learner, on the host for the messages (a passive checks them there,
        # with no device sync, and a network sends host arrays anyway)
        self.train_rows, self.test_rows = torch.from_numpy(train), torch.from_numpy(test)
        self.train_idx = self.train_rows.to(dev)
        self.test_idx = self.test_rows.to(dev)
        self.y_test = compact_labels(d.labels[keep[test]])
        self.n_unlabelled = len(trained) - len(labelled)
        self.val = compact_index(val, len(keep))
        self.val_rows = torch.from_numpy(self.val)  # the matched ones on the host, for a fused model's passives
        # every validation row in the learner's positions: the matched ones, then those that some passive lacks
        own_val_idx = np.arange(len(held) - len(own_val), len(held))
        self.val_idx = torch.from_numpy(np.concatenate([self.val, own_val_idx]) if len(own_val) else self.val).to(dev)
        self.y_val = compact_labels(d.labels[np.concatenate([keep[self.val], own_val])])
        self.best: dict | None = None  # the epoch of the best validation figure, and its standalone weights
        self.calibration: dict | None = None  # cfg.calibrate: the temperature fitted on the validation rows
        self.conformal: dict | None = None  # cfg.conformal: the coverage and quantile fitted on the validation rows
        self.conf_idx, self.y_conf = self.val_idx[:0], self.y_val[:0]
        if cfg.conformal:
            self._set_conformal_rows(len(keep))
        self.n = len(keep)
        self.pending: dict[str, tuple] = {}
        self.emb_stats = [None] * len(self.names)
        self.dp = Privatizer(cfg, cfg.seed * 1000 + 3)
        self.rounds_sent = 0

    # --- training -------------------------------------------------------------------------------------
    def _reply_specs(self, i: int, total: int) -> dict:
        p = self.infos[i]
        specs = {"loss": ArraySpec((None,), required=False)}
        if p.loss is not None:
            specs["grad"] = ArraySpec((total, *self.sent_shapes[i]), (self.cfg.payload,))
        if p.embedding_shape is not None:
            specs["emb"] = ArraySpec((total, *p.embedding_shape), (self.cfg.payload,))
        return specs

    def _send_round(
        self, batches: list[torch.Tensor], rows: list[torch.Tensor], progress: list[float], own: list | None = None
    ) -> dict:
        """Forward K minibatches and queue the passives' train requests (with any pending embedding gradients).
        ``rows``: the same minibatches' row positions on the host, for the messages; ``own``: each minibatch's
        rows that no passive holds (they stay here)."""
        L = self.learner
        augs = [sample_augmentation(len(b), self.cfg, self.aug_gen, self.cfg.device) for b in batches]
        own = own or []
        own_augs = [sample_augmentation(len(o), self.cfg, self.own_aug_gen, self.cfg.device) for o in own]
        self.rounds_sent += 1
        ckpt = bool(self.checkpoint_every) and self.rounds_sent % self.checkpoint_every == 0
        rnd = {
            "batches": batches,
            "progress": progress,
            "augs": augs,
            "own": own,
            "own_augs": own_augs,
            "sent": None,
            "checkpoint": ckpt,
        }
        if not self.names:
            return rnd
        sent = [L.outgoing(idx, a) for idx, a in zip(batches, augs, strict=True)]
        flat = torch.cat(batches)
        flat_rows = (rows[0] if len(rows) == 1 else torch.cat(rows)).long()  # the wire's positions are int64
        sizes = [len(b) for b in batches]
        joined = join_augmentations(augs, sizes)
        requests = {}
        common = {
            "idx": flat_rows,
            "sizes": torch.tensor(sizes, dtype=torch.int64),
            "progress": np.asarray(progress, dtype=np.float64),
            **(joined or {}),
        }
        for i, n in enumerate(self.names):
            arrays = dict(common)
            if self.infos[i].loss is not None:
                arrays["act"] = to_wire(self.dp.embedding(torch.cat([s[i] for s in sent])), self.cfg.payload)
            if n in self.pending:
                arrays.update(self._pending_gradient(n))
            requests[n] = (arrays, {"checkpoint": True} if ckpt else {})
        rnd.update(flat=flat, rows=flat_rows, joined=joined, sent=self._submit(TRAIN, requests))
        return rnd

    def _apply_round(self, rnd: dict) -> list[dict]:
        """Wait for the passives' replies to a round and apply its K minibatches."""
        L, batches, progress, augs = self.learner, rnd["batches"], rnd["progress"], rnd["augs"]
        if rnd["sent"] is None:
            out = [L.step(idx, [], [], p, a)[0] for idx, p, a in zip(batches, progress, augs, strict=True)]
            return out + self._own_steps(rnd)
        flat = rnd["flat"]
        replies = self._collect(rnd["sent"], lambda i: self._reply_specs(i, len(flat)))
        dev = self.cfg.device
        # a passive skipped this round (no or bad reply) contributes nothing; a teacher sees zeros in its place
        got = [
            {k: from_wire(as_tensor(v, dev)) for k, v in replies[n].arrays.items()} if n in replies else None
            for n in self.names
        ]
        out, emb_grads = [], [[] for _ in self.names]
        start = 0
        for idx, p, aug in zip(batches, progress, augs, strict=True):
            sl = slice(start, start + len(idx))
            start += len(idx)
            grads = [g["grad"][sl] if g and "grad" in g else None for g in got]
            embs = [
                g["emb"][sl] if g and "emb" in g else None if info.embedding_shape is None else self._zeros(idx, info)
                for g, info in zip(got, self.infos, strict=True)
            ]
            metrics, eg = L.step(idx, grads, embs, p, aug)
            for i, e in enumerate(eg):
                if e is not None and got[i] is not None:
                    emb_grads[i].append(e)
                    if self.cfg.method == "tvfl":  # only tvfl fills absent passives
                        self._track(i, embs[i])
            losses = [g["loss"] for g in got if g and "loss" in g]
            if losses:  # every reply has one loss per minibatch of the round
                metrics["passive_loss"] = torch.cat(losses).mean()
            out.append(metrics)
        for i, n in enumerate(self.names):
            if emb_grads[i]:
                self.pending[n] = (rnd["rows"], rnd["joined"], torch.cat(emb_grads[i]))
        return out + self._own_steps(rnd)

    def _own_steps(self, rnd: dict) -> list[dict]:
        """The round's minibatches of rows that no passive holds: local steps of the standalone task loss, taken
        after the round's matched minibatches (pipelined, while the passives compute the next round)."""
        p = rnd["progress"][-1]
        return [self.learner.own_step(o, p, a) for o, a in zip(rnd["own"], rnd["own_augs"], strict=True)]

    def _zeros(self, idx: torch.Tensor, info: PassiveInfo) -> torch.Tensor:
        return torch.zeros((len(idx), *info.embedding_shape), device=self.cfg.device)

    def _track(self, i: int, emb: torch.Tensor) -> None:
        """Running float64 sums of passive i's embeddings and of their squares, for the mean/random fills of
        absent passives (tvfl), accumulated in place: few kernel launches per minibatch."""
        e = emb.flatten(1)
        if self.emb_stats[i] is None:
            zero = torch.zeros(e.shape[1], dtype=torch.float64, device=e.device)
            self.emb_stats[i] = [zero, zero.clone(), 0]
        s = self.emb_stats[i]
        s[0].add_(e.sum(0, dtype=torch.float64))
        s[1].add_(e.square().sum(0, dtype=torch.float64))
        s[2] += len(e)

    def _rounds(self):
        """(epoch, minibatches, their rows on the host, progress, last round of the epoch?, minibatches of rows that
        no passive holds) for every round of the run, in order."""
        cfg = self.cfg
        gen = torch.Generator().manual_seed(cfg.seed)
        n_train, k = len(self.train_rows), cfg.batches_per_round
        nb = -(-n_train // cfg.batch_size)
        if cfg.pipeline and k > max(1, nb // 2):
            # a pipelined round sends embeddings one round stale: a whole epoch stale breaks training (K sweep)
            k = max(1, nb // 2)
            self.log(f"pipelining: {cfg.batches_per_round} minibatches per round is over half an epoch; using {k}")
        self.k_used = k
        # the rows no passive holds: shuffled by a generator of their own (the matched rows' order stays that of a
        # run without them), cut into minibatches and dealt out over the epoch's rounds: an epoch trains each once
        n_own = len(self.own_idx)
        nb_own = -(-n_own // cfg.batch_size)
        own_gen = torch.Generator().manual_seed(cfg.seed + 7)
        for epoch in range(cfg.epochs):
            rows = self.train_rows[torch.randperm(n_train, generator=gen, dtype=self.train_rows.dtype)]
            on_device = as_tensor(rows, self.train_idx.device)
            bs = cfg.batch_size
            own = self.own_idx[torch.randperm(n_own, generator=own_gen).to(self.own_idx.device)] if n_own else None
            for r in range(0, nb, k):  # the minibatches cut a round at a time: no tensor per minibatch of the epoch
                span = slice(r * bs, (r + k) * bs)
                chunk, host = list(on_device[span].split(bs)), list(rows[span].split(bs))
                progress = [(epoch + (r + j) / nb) / cfg.epochs for j in range(len(chunk))]
                dealt = []
                if own is not None:  # most rounds get none when there are fewer such minibatches than rounds
                    first, end = r * nb_own // nb, min(r + k, nb) * nb_own // nb
                    dealt = list(own[first * bs : end * bs].split(bs)) if end > first else []
                yield epoch, chunk, host, progress, r + k >= nb, dealt

    def fit(
        self, on_epoch: Callable[[dict], None] | None = None, on_batch: Callable[[], None] | None = None
    ) -> list[dict]:
        """Train for ``cfg.epochs`` epochs; evaluate on the test rows after each epoch. With a fresh student
        (``cfg.fresh_student``), those epochs train the teacher and the student's follow (clients/active_student.py).

        With ``cfg.pipeline`` the next round's request is queued before the current round is applied, so the
        passives compute while the active party steps and a SuperNode never idles between rounds; the
        embeddings the active sends are then one round stale (K = 1 without pipelining is the exact reference).
        """
        cfg = self.cfg
        self.aug_gen = torch.Generator().manual_seed(cfg.seed + 2)
        self.own_aug_gen = torch.Generator().manual_seed(cfg.seed + 8)
        seed_rng(cfg.seed + 1, cfg.device)  # dropout in the active party's heads
        rounds = self._rounds()
        metrics = RunningMeans()
        if self.resumed is not None:  # replay the round schedule up to the checkpoint, restore the RNGs
            for _ in range(self.resumed["rounds_sent"]):
                next(rounds)
            metrics = self._restore_rngs_and_metrics(self.resumed)
            self.resumed = None
        t0, x0 = time.perf_counter(), self.exchange_s
        # a run resumed from the checkpoint of the epoch that ran out of patience (saved just before it stopped)
        nxt = None if self._patience_spent() else next(rounds, None)
        inflight = self._send_round(*nxt[1:4], nxt[5]) if nxt else None
        stop = False
        while nxt is not None:
            epoch, chunk, _, _, last, _ = nxt
            current = inflight
            nxt = next(rounds, None)
            # a checkpoint round is drained first: no later round may reach the passives before the save
            early = cfg.pipeline and nxt is not None and not current["checkpoint"]
            if early:
                inflight = self._send_round(*nxt[1:4], nxt[5])
            for m in self._apply_round(current):
                metrics.add(m)
            if on_batch:
                for _ in chunk:
                    on_batch()
            if last:
                row = self._end_epoch(epoch + 1, t0, self.exchange_s - x0, metrics)
                # a fresh student's teacher trains all its epochs: validation picks among the student's
                stop = self.n_val > 0 and not cfg.fresh_student and self._keep_best(row) and nxt is not None
                if on_epoch:
                    on_epoch(row)
                metrics = RunningMeans()
                t0, x0 = time.perf_counter(), self.exchange_s
            if current["checkpoint"]:
                self._save_checkpoint(metrics, current["sent"][0] if current["sent"] else 0)
            if stop:
                self._stop_early(inflight if early else None, epoch + 1)
                break
            if not early and nxt is not None:
                inflight = self._send_round(*nxt[1:4], nxt[5])
        self._flush()
        if cfg.fresh_student:
            self._train_fresh_student(on_epoch, on_batch)
        self._restore_best()
        if cfg.calibrate and self.calibration is None:
            self._calibrate()
        if cfg.conformal and self.conformal is None:
            self._conformalize()
        return self.history

    def _end_epoch(self, epoch: int, t0: float, exchange_s: float, metrics: RunningMeans) -> dict:
        """The row of an epoch that has just ended (its time, the minibatches' mean metrics, the evaluation), added
        to the history."""
        if self.cfg.device.startswith("cuda"):  # the epoch's time includes its queued GPU work
            torch.cuda.synchronize(self.cfg.device)
        row = {"epoch": epoch, "train_time": time.perf_counter() - t0, "exchange_time": exchange_s}
        row.update(metrics.means())
        row.update(self.evaluate())
        self.history.append(row)
        return row

    def _stop_early(self, inflight: dict | None, epoch: int) -> None:
        """``patience`` epochs without a better validation figure: the run ends after this epoch. A pipelined
        round already sent (the next epoch's first) is waited for but not applied: its replies are read, so no
        passive is left with an unanswered request, and the active party's model stays this epoch's."""
        if inflight is not None and inflight["sent"] is not None:
            self._collect(inflight["sent"], lambda i: self._reply_specs(i, len(inflight["flat"])))
        self.log(
            f"early stop after epoch {epoch}: no better validation {self.validation_metric} for"
            f" {self.cfg.patience} epoch(s)"
            f" (the best: epoch {self.best['epoch']}, {self._best_figure()})"
        )

    def _pending_gradient(self, name: str) -> dict:
        """The arrays that send passive ``name`` its pending embedding gradient (taken off ``pending``): the rows, their
        augmentation and the gradient, clipped and noised under DP like every row a party sends."""
        prev_idx, prev_aug, prev_grad = self.pending.pop(name)
        return {
            "prev_idx": prev_idx,
            "prev_grad": to_wire(self.dp.gradient(prev_grad), self.cfg.payload),
            **{f"prev_{k}": v for k, v in (prev_aug or {}).items()},
        }

    def _flush(self) -> None:
        if self.pending:
            requests = {}
            for n in list(self.pending):
                empty = {k: torch.zeros(0, dtype=torch.int64) for k in ("idx", "sizes")}
                requests[n] = ({**empty, "progress": np.zeros(0), **self._pending_gradient(n)}, {})
            self._exchange(TRAIN, requests, lambda i: {"loss": ArraySpec((None,), required=False)})

    def finish(self) -> None:
        """Tell the passives the run is over. Best effort: the model is already trained, so a passive that
        is gone only costs a log line (its worker also stops by itself when idle)."""
        if self.names:
            try:
                self._exchange(FINISH, {n: ({}, {}) for n in self.names}, lambda i: {})
            except ProtocolError as e:
                self.log(f"finish: {e}")

    def _trained_rows(self) -> np.ndarray:
        """The party's rows the standalone model trains on: the matched training rows (those with no label too, when
        they train), then its own rows that no passive holds; what the preprocessing statistics and the profile are
        computed from."""
        train = self.keep[self.split[0]]
        return np.concatenate([train, self.own]) if len(self.own) else train

    def _profile(self) -> dict | None:
        """A tabular model's profile of its training rows' columns (``apfed.drift``), for ``apfed drift``."""
        from apfed.drift import profile, sample_rows
        from apfed.scoring import feature_groups

        d = self.data
        if d.view.kind != "tabular" or not self.cfg.profile:
            return None
        trained = self._trained_rows()
        groups = feature_groups(d.view.columns, d.view.encoding, int(np.prod(d.view.shape)))
        categorical = set(d.view.encoding.categories) if d.view.encoding else set()
        return profile(d.view.X[sample_rows(trained, self.cfg.seed)], groups, categorical, len(trained))

    def _output_profile(self, model: StandaloneModel) -> dict | None:
        """The profile of the standalone model's outputs (``apfed.drift.output_profile``) on rows it did not train on:
        the test rows, else the validation rows; the training rows only when every row trained."""
        from apfed.drift import output_profile, sample_rows

        if not self.cfg.profile:
            return None
        test = np.concatenate([self.keep[self.split[1]], self.own_test])
        val = np.concatenate([self.keep[self.val], self.own_val])
        rows, source = (
            (test, "test") if len(test) else (val, "validation") if len(val) else (self._trained_rows(), "training")
        )
        x = self.data.view.X[sample_rows(np.sort(rows), self.cfg.seed)]
        outputs = model._proba_of_features(torch.from_numpy(model.preprocessor(x)))
        positive = self.positive if len(self.data.class_names) == 2 and not self.regression else None
        return output_profile(outputs, list(self.data.class_names), self.regression, source, len(rows), positive)

    def standalone_model(self, provenance: dict) -> StandaloneModel:
        """The active party's complete model, ready to save, load and predict with no passive. ``provenance``
        adds to (or overrides) what this party knows: the apfed version, when, its view, the passives' names and
        how many aligned rows it trained and tested on (and how many rows no passive holds it also trained on)."""
        if not self.learner.standalone:
            raise DataError(f"method {self.cfg.method} needs every party at prediction time: no standalone model")
        from apfed import __version__

        unmatched_val = int((self.val_idx >= self.n).sum())  # validation rows that some passive lacks
        provenance = {
            "apfed_version": __version__,
            "trained_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "active_view": self.data.view.name,
            "passives": list(self.names),
            "train_rows": len(self.train_rows),
            "test_rows": len(self.test_rows),
            **({"test_split": self.data.split} if self.data.split else {}),
            **({"unmatched_train_rows": len(self.own)} if len(self.own) else {}),
            **({"unlabelled_train_rows": self.n_unlabelled} if self.n_unlabelled else {}),
            "epochs_run": len(self.history),
            **({"validation_rows": self.n_val, "best_epoch": self.best["epoch"]} if self.best else {}),
            **({"unmatched_validation_rows": unmatched_val} if self.best and unmatched_val else {}),
            **({"calibration_temperature": self.calibration["temperature"]} if self.calibration else {}),
            **provenance,
        }
        net = self.learner.standalone_net()
        if self.regression:  # the model file predicts in the target's units: its standardization folded in
            net = copy.deepcopy(net)
            last = [m for m in net.head.modules() if isinstance(m, torch.nn.Linear)][-1]
            with torch.no_grad():
                last.weight.mul_(self.target["std"])
                last.bias.mul_(self.target["std"]).add_(self.target["mean"])
        model = StandaloneModel(
            net=net,
            spec=self.spec,
            profile=self._profile(),
            preprocessor=self.preprocessor,
            class_names=list(self.data.class_names),
            columns=self.data.view.columns,
            view_name=self.data.view.name,
            config=self.cfg.to_dict(),
            provenance=provenance,
            encoding=self.data.view.encoding,
            task="regression" if self.regression else "classification",
            target=self.target,
            conformal=self.conformal,
        )
        model.output_profile = self._output_profile(model)
        return model
