"""PassiveClient: a passive party. It holds one view (no labels), answers the active party's requests and
trains its own modules with the APFed loss. It never sees labels, the active's features or its models."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import numpy as np
import torch

from apfed.augment import slice_augmentation
from apfed.checkpoint import ids_digest, save_atomic
from apfed.config import TrainConfig
from apfed.data.streamed import device_rows
from apfed.data.views import PartyData, Preprocessor, compact_index
from apfed.errors import ApfedError
from apfed.learner import PassiveLearner
from apfed.memory import release_freed_memory
from apfed.privacy import Privatizer
from clients.audit import AuditLog
from clients.policy import PassivePolicy
from clients.tensors import as_tensor, from_wire, to_wire
from protocols.errors import ProtocolError
from protocols.messages import ALIGN, ERROR, EVALUATE, FINISH, HELLO, REPLY, RESUME, SETUP, TRAIN, Message
from protocols.psi import POINT, PsiKey, blind_ids
from protocols.sealing import Channel, Handshake, Sealing
from protocols.validation import ArraySpec, validate


class PassiveClient:
    """Answers setup, align, train, evaluate and finish requests. ``handle`` never raises: a problem is
    returned as an error message, so the active party can decide what to do.

    With ``sealing`` every request after the HELLO key agreement must be sealed (protocols/sealing.py), and
    every reply is. Rounds must increase within a session, so a replayed old request is refused."""

    def __init__(
        self,
        name: str,
        data: PartyData,
        device: str = "cpu",
        sealing: Sealing | None = None,
        checkpoint_dir: str | Path | None = None,
        policy: PassivePolicy | None = None,
        audit: AuditLog | None = None,
    ):
        self.name, self.data, self.device, self.sealing = name, data, device, sealing
        self.policy, self.audit = policy or PassivePolicy(), audit
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.channel: Channel | None = None
        self.last_round = 0
        self.fresh = True  # a resume is accepted only as the first request of a session
        self.active_name: str | None = None
        self.run_id: str | None = None
        self.offered_rows: np.ndarray | None = None  # our row behind each entry of the shuffled PSI list we sent
        self.learner: PassiveLearner | None = None
        self._last_idx: tuple | None = None  # the last train request's rows: (as received, on the device)
        self._ids_digest: str | None = None  # of data.ids, for a saved state to name the rows its positions index
        self.cfg: TrainConfig | None = None
        self.n: int = 0

    def handle(self, msg: Message) -> Message:
        if msg.kind == HELLO:
            return self._audited(msg, self._hello(msg))
        if self.sealing is None:
            return self._audited(msg, self._handle(msg))
        if self.channel is None:
            error = f"{self.name}: encryption is on and no key agreement was made"
            return self._audited(msg, msg.reply(ERROR, config={"error": error}))
        try:
            inner = self.channel.open(msg)
        except ProtocolError as e:
            return self.channel.seal(self._audited(msg, msg.reply(ERROR, config={"error": f"{self.name}: {e}"})))
        return self.channel.seal(self._audited(inner, self._handle(inner)))

    def _audited(self, request: Message, reply: Message) -> Message:
        """Record the exchange in the audit log, if there is one; what cannot be recorded is not sent."""
        if self.audit is None:
            return reply
        try:
            self.audit.record(self.name, request, reply)
        except OSError as e:
            return request.reply(ERROR, config={"error": f"{self.name}: cannot write its audit log: {e}"})
        return reply

    def _hello(self, msg: Message) -> Message:
        """Name this party; with encryption requested, answer the key agreement (pinned fingerprints)."""
        config: dict = {"party": self.name}
        try:
            if "seal_key" in msg.config:
                if self.sealing is None:
                    raise ProtocolError("the active party asks for encryption, but this party has no key configured")
                hs = Handshake(self.sealing)
                channel = hs.finish(
                    msg.config, peer=msg.sender, run_id=msg.run_id, active=msg.sender, passive=self.name, own=self.name
                )
                self.channel, self.run_id, self.active_name, self.last_round = channel, None, None, 0
                config.update(hs.offer())
        except ProtocolError as e:
            return msg.reply(ERROR, config={"error": f"{self.name}: {e}"})
        self.fresh = True
        return Message(REPLY, msg.run_id, msg.round, self.name, msg.sender, {}, config)

    def _handle(self, msg: Message) -> Message:
        fresh, self.fresh = self.fresh, False
        try:
            if msg.kind == SETUP:
                return self._setup(msg)
            if msg.kind == RESUME:
                return self._resume(msg, fresh)
            self._check_session(msg)
            if msg.kind != ALIGN:
                if msg.round <= self.last_round:
                    raise ProtocolError(
                        f"round {msg.round} is not after the last round {self.last_round} (replayed or out of order)"
                    )
                self.last_round = msg.round
            if msg.kind == ALIGN:
                return self._align(msg)
            if msg.kind == TRAIN:
                reply = self._train(msg)
                if msg.config.get("checkpoint") is True:
                    self._save_checkpoint(msg.round)
                return reply
            if msg.kind == EVALUATE:
                return self._evaluate(msg)
            if msg.kind == FINISH:
                self.learner = None
                return msg.reply()
            raise ProtocolError(f"unexpected request kind {msg.kind!r}")
        except (ProtocolError, ApfedError, ValueError) as e:
            return msg.reply(ERROR, config={"error": f"{self.name}: {e}"})

    # --- node-local checkpoints, for resuming an interrupted run ------------------------------------------
    def _checkpoint_path(self, run_id: str, round: int) -> Path:
        if self.checkpoint_dir is None:
            raise ProtocolError("checkpoints were asked for, but this party has no checkpoint directory")
        if not run_id.isalnum():
            raise ProtocolError(f"run id {run_id!r} is not alphanumeric")
        return self.checkpoint_dir / f"{run_id}-{round:09d}.pt"

    def _save_checkpoint(self, round: int) -> None:
        """This party's state after ``round``; the last three are kept (the active may resume an older one)."""
        path = self._checkpoint_path(self.run_id, round)
        save_atomic(path, self.state_bytes())
        for old in sorted(self.checkpoint_dir.glob(f"{self.run_id}-*.pt"))[:-3]:
            old.unlink(missing_ok=True)

    def _resume(self, msg: Message, fresh: bool) -> Message:
        if not fresh:
            raise ProtocolError("resume is accepted only as the first request after connecting")
        validate(msg, kind=RESUME, run_id=msg.run_id, round=0, sender=msg.sender, receiver=self.name, arrays={})
        r = msg.config.get("resume_round")
        if not isinstance(r, int) or isinstance(r, bool) or r < 1:
            raise ProtocolError(f"resume needs a positive resume_round, got {r!r}")
        asked, earlier = r, msg.config.get("or_earlier") is True
        path = self._checkpoint_path(msg.run_id, r)
        if not path.exists() and earlier:
            r = self._latest_checkpoint(msg.run_id, r) or r
            path = self._checkpoint_path(msg.run_id, r)
        if not path.exists():
            at = f"at or before round {asked}" if earlier else f"at round {asked}"
            raise ProtocolError(f"no checkpoint of run {msg.run_id} {at} in {self.checkpoint_dir}")
        channel = self.channel
        hint = "; remove it to resume from this party's latest earlier checkpoint" if earlier else ""
        self.restore(path.read_bytes(), check_data=True, source=f"checkpoint {path}", hint=hint)
        self.channel = channel  # the new session's keys, not the ones saved with the checkpoint
        if self.run_id != msg.run_id or self.active_name != msg.sender:
            raise ProtocolError(f"the checkpoint at round {r} belongs to another run")
        self.policy.check_setup(self.cfg, bool(self.setup_config["sends_embedding"]))  # limits set since then
        self.policy.check_rows(self.n)
        return msg.reply(config={"resumed_round": r})

    def _latest_checkpoint(self, run_id: str, r: int) -> int | None:
        """This party's latest checkpoint of ``run_id`` at or before round ``r``: where a party that missed the
        checkpoint round ``r`` (gone, or its request expired) resumes. Its own state then, so only its updates
        since are lost, as in rounds it missed."""
        rounds = []
        for p in self.checkpoint_dir.glob(f"{run_id}-*.pt"):
            tail = p.stem[len(run_id) + 1 :]
            if tail.isdigit() and int(tail) <= r:
                rounds.append(int(tail))
        return max(rounds, default=None)

    def _check_session(self, msg: Message) -> None:
        if self.run_id is None:
            raise ProtocolError("no setup received yet")
        if msg.run_id != self.run_id or msg.sender != self.active_name:
            raise ProtocolError(f"request from {msg.sender}/{msg.run_id} does not belong to this run")

    def _setup(self, msg: Message) -> Message:
        validate(
            msg,
            kind=SETUP,
            run_id=msg.run_id,
            round=0,
            sender=msg.sender,
            receiver=self.name,
            arrays={"psi": ArraySpec((None, POINT), ("uint8",), finite=False)},
        )
        c = msg.config
        cfg = TrainConfig.from_dict(json.loads(c["train_config"]))
        self.policy.check_setup(cfg, bool(c["sends_embedding"]), len(msg.arrays["psi"]))  # before any answer
        self.run_id, self.active_name, self.last_round = msg.run_id, msg.sender, 0
        self.cfg = cfg
        self.cfg.device = self.device
        self.setup_config = c
        # ECDH-PSI (protocols/psi.py): blind the active's blinded IDs in its order, and our own IDs in a secret
        # random order, so the positions we send reveal nothing.
        with PsiKey() as psi:
            double = psi.blind(np.asarray(msg.arrays["psi"]))
            self.offered_rows = np.random.default_rng(secrets.randbits(128)).permutation(len(self.data.ids))
            own = blind_ids(psi, self.data.ids, str(c["salt"]), order=self.offered_rows)
        return msg.reply(arrays={"psi_double": double, "psi_own": own})

    def _align(self, msg: Message) -> Message:
        if self.offered_rows is None:
            raise ProtocolError("align without a set-up, or a second align in this run")
        n_offered = len(self.offered_rows)
        validate(
            msg,
            kind=ALIGN,
            run_id=self.run_id,
            round=0,
            sender=self.active_name,
            receiver=self.name,
            arrays={
                "match": ArraySpec((None,), ("int64",), index_bound=n_offered),
                "train": ArraySpec((None,), ("int64",), index_bound=n_offered),
            },
        )
        chosen, train = np.asarray(msg.arrays["match"]), np.asarray(msg.arrays["train"])
        if len(np.unique(chosen)) != len(chosen) or (len(train) and train.max() >= len(chosen)):
            raise ProtocolError("align names a row twice or a training row outside the intersection")
        self.policy.check_rows(len(chosen))
        rows = self.offered_rows[chosen]
        # keep only the aligned rows and the training statistics: the shuffled PSI order and the training
        # positions are O(samples) and not needed again
        self.offered_rows = None
        self._build(rows, Preprocessor.fit(self.data.view, rows[train]))
        release_freed_memory()  # the PSI's transient arrays: O(samples), not needed again
        return msg.reply(config={"embedding_shape": list(self.learner.embedding_shape)})

    def _build(self, rows: np.ndarray, pre: Preprocessor) -> None:
        """Preprocess the aligned rows (``pre``: statistics of the training rows only) and create the learner."""
        rows = compact_index(rows, len(self.data.ids))  # this party's only O(samples) state: 4 bytes a row
        self.rows, self.preprocessor, self.n = rows, pre, len(rows)
        view = self.data.view
        X = device_rows(view, rows, pre, self.device)
        c = self.setup_config
        spec = {"kind": view.kind, "shape": list(view.shape)}
        active_shape = tuple(c["active_shape"]) if c.get("active_shape") else None
        self.learner = PassiveLearner(
            spec, self.cfg, X, c["loss"] or None, bool(c["sends_embedding"]), active_shape, int(c["seed"])
        )
        self.received_shape = tuple(c["received_shape"]) if c.get("received_shape") else None
        self.dp = Privatizer(self.cfg, int(c["seed"]) + 5)
        self.train_specs = self._train_specs()

    def _train_specs(self) -> dict[str, ArraySpec]:
        """What a train request may carry: fixed once the learner is built."""
        wire = (self.cfg.payload,)
        specs = {
            "idx": ArraySpec((None,), ("int64",), index_bound=self.n),
            "sizes": ArraySpec((None,), ("int64",)),
            "progress": ArraySpec((None,), ("float64",)),
            "prev_idx": ArraySpec((None,), ("int64",), index_bound=self.n, required=False),
            "prev_grad": ArraySpec((None, *self.learner.embedding_shape), wire, required=False),
        }
        if self.received_shape:
            specs["act"] = ArraySpec((None, *self.received_shape), wire, required=False)
        for prefix in ("", "prev_"):  # augmentation parameters
            specs[f"{prefix}shift"] = ArraySpec((None,), ("int64",), required=False)
            specs[f"{prefix}perm"] = ArraySpec((None,), ("int64",), required=False)
            specs[f"{prefix}lam"] = ArraySpec((None,), required=False)
        return specs

    # --- state across processes (Flower recreates the ClientApp for every message) ---------------------
    def state_bytes(self) -> bytes:
        """Everything needed to continue this run in another process, as ``torch.save`` bytes."""
        import io

        state = {
            "run_id": self.run_id,
            "active_name": self.active_name,
            "last_round": self.last_round,
            "channel": json.dumps(self.channel.state() if self.channel else None),
            "setup_config": json.dumps(getattr(self, "setup_config", None)),
        }
        if self.offered_rows is not None:
            state["offered_rows"] = torch.from_numpy(self.offered_rows)
        if self.learner is not None:
            if self._ids_digest is None:
                self._ids_digest = ids_digest(self.data.ids)
            state.update(
                ids=self._ids_digest,
                rows=torch.from_numpy(self.rows),
                preprocessor=json.dumps(self.preprocessor.to_json()),
                learner=self.learner.state(),
                dp_rng=self.dp.gen.get_state() if self.dp.gen is not None else torch.zeros(0, dtype=torch.uint8),
            )
        buf = io.BytesIO()
        torch.save(state, buf)
        return buf.getvalue()

    def restore(self, blob: bytes, check_data: bool = False, source: str = "the saved state", hint: str = "") -> None:
        """Continue from ``state_bytes``; loads with weights_only=True, so no code is ever unpickled. A damaged
        state (``source`` names it in the error) is a ProtocolError.

        ``check_data``: first check that this party's ids are those the state was saved with (its row positions
        index them). Resuming from a checkpoint or a restarted worker's state file checks; a state handed from
        one message's process to the next within a run (Flower's ``context.state``) is trusted."""
        import io

        try:
            state = torch.load(io.BytesIO(blob), weights_only=True, map_location=self.device)
        except Exception as e:  # noqa: BLE001 - torch raises many types for a damaged file
            raise ProtocolError(f"{source} is not readable ({type(e).__name__}){hint}") from None
        try:
            self._apply_state(state, check_data)
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
            what = f"no {e}" if isinstance(e, KeyError) else str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ProtocolError(f"{source} is not a passive party's state ({what}){hint}") from None

    def _apply_state(self, state: dict, check_data: bool) -> None:
        if "ids" in state:  # states written before 2026-12-03 have no digest
            if check_data and state["ids"] != ids_digest(self.data.ids):
                raise ProtocolError(
                    f"{self.name}'s data file is not the one its saved state was trained on (other ids, or in another"
                    " order): resume with that file, or start the run again"
                )
            self._ids_digest = state["ids"]
        self.run_id, self.active_name = state["run_id"], state["active_name"]
        self.last_round = int(state.get("last_round", 0))
        channel = json.loads(state.get("channel", "null"))
        self.channel = Channel.from_state(channel) if channel else None
        setup = json.loads(state["setup_config"])
        if setup is not None:
            self.setup_config = setup
            self.cfg = TrainConfig.from_dict(json.loads(setup["train_config"]))
            self.cfg.device = self.device
        if "offered_rows" in state:
            self.offered_rows = state["offered_rows"].cpu().numpy()  # loaded onto the device
        if "learner" in state:
            rows = state["rows"].cpu().numpy()
            if "preprocessor" in state:
                pre = Preprocessor.from_json(json.loads(state["preprocessor"]))
            else:  # state written before 2026-12-01: the training positions instead of their statistics
                pre = Preprocessor.fit(self.data.view, rows[state["train_rows"].cpu().numpy()])
            self._build(rows, pre)
            self.learner.load_state(state["learner"])
            if self.dp.gen is not None:
                self.dp.gen.set_state(state["dp_rng"].cpu())

    def _train(self, msg: Message) -> Message:
        if self.learner is None:
            raise ProtocolError("train request before align")
        L = self.learner
        validate(
            msg,
            kind=TRAIN,
            run_id=self.run_id,
            round=msg.round,
            sender=self.active_name,
            receiver=self.name,
            arrays=self.train_specs,
        )
        a = msg.arrays
        sizes = [int(s) for s in np.asarray(a["sizes"])]
        idx = as_tensor(a["idx"], self.device)
        if sum(sizes) != len(idx) or len(a["progress"]) != len(sizes) or any(s < 1 for s in sizes):
            raise ProtocolError("batch sizes do not add up to the number of indices")
        act = from_wire(as_tensor(a["act"], self.device)) if "act" in a else None
        if L.loss is not None and sizes and (act is None or len(act) != len(idx)):
            raise ProtocolError("the active embeddings are missing or do not match the indices")
        aug = self._augmentation(a, "", len(idx))
        prev = None
        last, self._last_idx = self._last_idx, (a["idx"], idx)
        if "prev_idx" in a:
            # the rows of the last request come back with their gradient: hand the learner the very tensor it got
            # then, so it knows them without comparing them on the device
            same = last is not None and _host_equal(a["prev_idx"], last[0])
            prev_idx = last[1] if same else as_tensor(a["prev_idx"], self.device)
            prev_grad = from_wire(as_tensor(a["prev_grad"], self.device))
            prev = (prev_idx, self._augmentation(a, "prev_", len(prev_idx)), prev_grad)
            if len(prev[0]) != len(prev[2]):
                raise ProtocolError("prev_idx and prev_grad differ in length")
        grads, embs, losses = [], [], []
        start = 0
        for k, size in enumerate(sizes):
            sl = slice(start, start + size)
            start += size
            g, e, v = L.train_batch(
                idx[sl],
                act[sl] if act is not None else None,
                prev if k == 0 else None,
                float(a["progress"][k]),
                slice_augmentation(aug, sl.start, size),
            )
            grads.append(g)
            embs.append(e)
            losses.append(v)
        if not sizes and prev is not None:  # flush: the last gradients of the run
            L.train_batch(idx[:0], None, prev, 1.0)
        out = {}
        if grads and grads[0] is not None:
            out["grad"] = to_wire(self.dp.gradient(_joined(grads)), self.cfg.payload)
        if embs and embs[0] is not None:
            out["emb"] = to_wire(self.dp.embedding(_joined(embs)), self.cfg.payload)
        if losses and L.loss is not None:  # kept as a tensor: no device sync on the hot path
            dev = self.device
            out["loss"] = _joined([torch.as_tensor(v, dtype=torch.float32, device=dev).reshape(1) for v in losses])
        return msg.reply(arrays=out)

    def _augmentation(self, a: dict, prefix: str, n: int) -> dict | None:
        """Augmentation parameters for ``n`` samples, checked: shifts within the recipe, partners in range."""
        keys = [k for k in ("shift", "perm", "lam") if prefix + k in a]
        if not keys:
            return None
        aug = {k: as_tensor(a[prefix + k], self.device) for k in keys}
        if any(len(v) != n for v in aug.values()) or ("perm" in aug) != ("lam" in aug):
            raise ProtocolError("augmentation parameters do not match the indices")
        if "shift" in aug and len(aug["shift"]) and int(aug["shift"].abs().max()) > self.cfg.shift:
            raise ProtocolError(f"shift beyond the agreed maximum of {self.cfg.shift}")
        if "perm" in aug and len(aug["perm"]) and (int(aug["perm"].min()) < 0 or int(aug["perm"].max()) >= n):
            raise ProtocolError("mixup partner out of range")
        if "lam" in aug and len(aug["lam"]) and not bool(((aug["lam"] >= 0) & (aug["lam"] <= 1)).all()):
            raise ProtocolError("mixup weights must lie in [0, 1]")
        return aug

    def _evaluate(self, msg: Message) -> Message:
        validate(
            msg,
            kind=EVALUATE,
            run_id=self.run_id,
            round=msg.round,
            sender=self.active_name,
            receiver=self.name,
            arrays={"idx": ArraySpec((None,), ("int64",), index_bound=self.n)},
        )
        emb = self.learner.embed(as_tensor(msg.arrays["idx"], self.device))
        return msg.reply(arrays={"emb": to_wire(self.dp.embedding(emb), self.cfg.payload)})


def _joined(parts: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat(parts)``, without the copy when there is one part (K = 1)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _on_host(a) -> bool:
    return isinstance(a, np.ndarray) or a.device.type == "cpu"


def _host_equal(a, b) -> bool:
    """Equal row arrays, compared only when both are on the host (a device comparison would wait for the GPU)."""
    return a is b or (_on_host(a) and _on_host(b) and bool(np.array_equal(np.asarray(a), np.asarray(b))))
