"""Fault tolerance in-process: checkpoints and deterministic resume, passives that miss a deadline or send a
bad reply (skip or fail), and a crash while a checkpoint is written."""

import dataclasses
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from apfed.checkpoint import load_checkpoint
from apfed.config import make_config
from apfed.data import load_bundled
from apfed.errors import DataError
from apfed.runner import Safety, build_clients, run
from protocols import decode, encode
from protocols.errors import ProtocolError
from protocols.messages import ERROR, TRAIN, Message


@pytest.fixture(scope="module")
def digits3():
    return load_bundled("digits", 3)


class Crash(Exception):
    pass


def _crash_after(n_batches):
    seen = [0]

    def on_batch():
        seen[0] += 1
        if seen[0] == n_batches:
            raise Crash

    return on_batch


def _weights(result):
    return {k: v.clone() for k, v in result.model.net.state_dict().items()}


@pytest.mark.parametrize(
    "method,k,pipeline,encrypt,dp",
    [
        ("apfed-kd", 2, False, False, 0.0),
        ("apfed-c", 2, True, True, 0.5),
        ("apfed-m", 2, False, False, 0.0),
        # K = 1: the passives' deferred minibatch (learner.py) is part of their checkpoint
        ("apfed-kd", 1, False, False, 0.0),
        ("apfed-kd", 1, False, True, 0.5),
    ],
)
def test_killed_and_resumed_run_equals_the_uninterrupted_one(tmp_path, digits3, method, k, pipeline, encrypt, dp):
    cfg = make_config(
        "default", method=method, epochs=3, batches_per_round=k, pipeline=pipeline, seed=3, dp_clip=1.0 if dp else 0.0
    )
    cfg = dataclasses.replace(cfg, dp_noise=dp)
    whole = run(digits3, 0, cfg, safety=Safety(encrypt=encrypt, checkpoint_dir=str(tmp_path / "a"), checkpoint_every=3))
    crashed = Safety(encrypt=encrypt, checkpoint_dir=str(tmp_path / "b"), checkpoint_every=3)
    with pytest.raises(Crash):
        run(digits3, 0, cfg, on_batch=_crash_after(19), safety=crashed)
    # a new process's parties: fresh clients, new keys, the same checkpoint directory
    resumed = run(digits3, 0, cfg, safety=dataclasses.replace(crashed, resume=True))
    assert [h["accuracy"] for h in resumed.history] == [h["accuracy"] for h in whole.history]
    a, b = _weights(whole), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_run_resumes_from_its_checkpoint(tmp_path, digits3):
    # checkpoints load onto the run's device: row positions and RNG states must come back to the host
    cfg = make_config("default", method="apfed-kd", epochs=3, batches_per_round=2, pipeline=True, seed=3)
    cfg = dataclasses.replace(cfg, device="cuda", dp_clip=1.0, dp_noise=0.5)
    crashed = Safety(checkpoint_dir=str(tmp_path / "b"), checkpoint_every=3)
    with pytest.raises(Crash):
        run(digits3, 0, cfg, on_batch=_crash_after(19), safety=crashed)
    resumed = run(digits3, 0, cfg, safety=dataclasses.replace(crashed, resume=True))
    whole = run(digits3, 0, cfg)
    assert len(resumed.history) == 3
    # CUDA kernels need not be bit-reproducible, so compare the outcome, not the bits
    assert abs(resumed.history[-1]["accuracy"] - whole.history[-1]["accuracy"]) < 3.0


def test_a_passive_that_missed_the_last_checkpoint_round_resumes_from_its_latest_earlier_one(tmp_path, digits3):
    """A passive gone at the active's last checkpoint round never saved that round. Before, resuming the run failed
    with 'no checkpoint of run ... at round r'; it now resumes from its own latest earlier checkpoint."""
    cfg = make_config("default", method="apfed-c", epochs=3, batches_per_round=2, seed=3)
    safety = Safety(on_bad_message="skip", checkpoint_dir=str(tmp_path), checkpoint_every=3)
    client = build_clients(digits3, 0, cfg, safety=safety)
    handler = client.transport.handlers["passive2"]
    seen = {"checkpoints": [], "dropped": []}

    def gone_for_a_while(msg):  # passive2's requests are not delivered for 4 rounds after its first checkpoint
        if msg.kind == TRAIN and seen["checkpoints"] and len(seen["dropped"]) < 4:
            seen["dropped"].append(msg.round)
            return None
        if msg.kind == TRAIN and msg.config.get("checkpoint"):
            seen["checkpoints"].append(msg.round)
        return handler(msg)

    client.transport.handlers["passive2"] = gone_for_a_while
    client.setup()
    with pytest.raises(Crash):  # rounds of 2 minibatches, a checkpoint every 3 rounds: the 3rd is never reached
        client.fit(on_batch=_crash_after(15))
    active = load_checkpoint(tmp_path / "active.ckpt")
    assert active["passive_round"] in seen["dropped"]  # the active's last checkpoint: passive2 was gone
    assert not (tmp_path / "passive2" / f"{active['run_id']}-{active['passive_round']:09d}.pt").exists()

    logged: list[str] = []
    resumed = run(digits3, 0, cfg, safety=dataclasses.replace(safety, resume=True), log=logged.append)
    assert len(resumed.history) == 3 and resumed.history[-1]["accuracy"] > 30
    first, last = seen["checkpoints"][0], active["passive_round"]
    assert f"passive2 resumes from its checkpoint of round {first}: it has none of round {last}" in logged
    assert not any("passive1 resumes" in line for line in logged)  # passive1 saved the active's round


def test_a_passive_without_a_checkpoint_directory_stops_the_run_at_the_first_checkpoint_round(tmp_path, digits3):
    # a deployed passive checkpoints only where its node config's checkpoint-dir says; there is no default
    from apfed.runner import in_process_passives

    cfg = make_config("default", method="apfed-c", epochs=1, batches_per_round=2, seed=0)
    client = build_clients(digits3, 0, cfg, safety=Safety(checkpoint_dir=str(tmp_path), checkpoint_every=2))
    in_process_passives(client)[1].checkpoint_dir = None
    client.setup()
    with pytest.raises(ProtocolError, match="passive2: checkpoints were asked for, but this party has no checkpoint"):
        client.fit()
    assert not (tmp_path / "active.ckpt").exists()  # the active party saved nothing the passives cannot match


def test_a_passive_whose_data_changed_since_its_checkpoint_refuses_to_resume(tmp_path, digits3):
    """A passive's checkpoint holds positions in its rows: resumed with its file's rows in another order, it would
    silently pair the active party's rows with other entities. It refuses, naming itself."""
    from apfed.runner import in_process_passives

    cfg = make_config("default", method="apfed-c", epochs=2, batches_per_round=2, seed=0)
    safety = Safety(checkpoint_dir=str(tmp_path), checkpoint_every=2)
    with pytest.raises(Crash):
        run(digits3, 0, cfg, on_batch=_crash_after(9), safety=safety)
    resumed = build_clients(digits3, 0, cfg, safety=dataclasses.replace(safety, resume=True))
    moved = in_process_passives(resumed)[1]
    order = np.random.default_rng(0).permutation(len(moved.data.ids))  # the same ids and rows, in another order
    view = dataclasses.replace(moved.data.view, X=moved.data.view.X[order])
    moved.data = dataclasses.replace(moved.data, ids=moved.data.ids[order], view=view)
    with pytest.raises(ProtocolError, match="passive2's data file is not the one its saved state was trained on"):
        resumed.resume()
    resumed = run(digits3, 0, cfg, safety=dataclasses.replace(safety, resume=True))  # the right file: resumes
    assert len(resumed.history) == 2


def test_a_damaged_passive_checkpoint_stops_the_resume_with_one_line_naming_it(tmp_path, digits3):
    """A passive's latest checkpoint damaged on disk (it was a RuntimeError traceback from torch.load): the resume
    stops naming the file; with the file removed, that passive rolls back to its earlier checkpoint and the run
    completes."""
    cfg = make_config("default", method="apfed-c", epochs=2, batches_per_round=2, seed=0)
    safety = Safety(checkpoint_dir=str(tmp_path), checkpoint_every=2)
    with pytest.raises(Crash):
        run(digits3, 0, cfg, on_batch=_crash_after(9), safety=safety)
    latest = sorted((tmp_path / "passive2").glob("*.pt"))[-1]
    latest.write_bytes(latest.read_bytes()[:1000])
    again = dataclasses.replace(safety, resume=True)
    with pytest.raises(ProtocolError, match=f"passive2: checkpoint {re.escape(str(latest))} is not readable"):
        run(digits3, 0, cfg, safety=again)
    latest.unlink()
    lines = []
    resumed = run(digits3, 0, cfg, safety=again, log=lines.append)
    assert len(resumed.history) == 2
    assert any("passive2 resumes from its checkpoint of round 2" in ln for ln in lines), lines


def test_without_pipelining_checkpoints_do_not_change_training(tmp_path, digits3):
    cfg = make_config("default", method="apfed-c", epochs=2, batches_per_round=2, seed=1)
    plain = run(digits3, 0, cfg)
    ckpt = run(digits3, 0, cfg, safety=Safety(checkpoint_dir=str(tmp_path), checkpoint_every=2))
    assert [h["accuracy"] for h in ckpt.history] == [h["accuracy"] for h in plain.history]


def test_a_crash_while_writing_keeps_the_last_good_checkpoint(tmp_path, digits3, monkeypatch):
    cfg = make_config("default", method="apfed-c", epochs=2, batches_per_round=2, seed=0)
    safety = Safety(checkpoint_dir=str(tmp_path), checkpoint_every=4)
    with pytest.raises(Crash):
        run(digits3, 0, cfg, on_batch=_crash_after(10), safety=safety)
    good = load_checkpoint(tmp_path / "active.ckpt")
    kept = (tmp_path / "active.ckpt").read_bytes()
    # a new run (the same command without --resume) would overwrite it at its first checkpoint round: refused
    with pytest.raises(DataError, match="holds the checkpoint of an earlier run .*: continue it with --resume"):
        run(digits3, 0, cfg, safety=safety)
    assert (tmp_path / "active.ckpt").read_bytes() == kept

    import apfed.checkpoint as ck

    real_replace = ck.os.replace

    def dies_before_rename(src, dst):  # the process dies after writing the temporary file, before the rename
        raise Crash

    monkeypatch.setattr(ck.os, "replace", dies_before_rename)
    with pytest.raises(Crash):  # the resumed run dies writing its next checkpoint
        run(digits3, 0, cfg, safety=dataclasses.replace(safety, resume=True))
    monkeypatch.setattr(ck.os, "replace", real_replace)
    after = load_checkpoint(tmp_path / "active.ckpt")
    assert after["rounds_sent"] == good["rounds_sent"] and after["run_id"] == good["run_id"]
    assert not list(tmp_path.glob(".active.ckpt.tmp*"))  # no stray temporary file either
    resumed = run(digits3, 0, cfg, safety=dataclasses.replace(safety, resume=True))
    assert len(resumed.history) == 2


def test_resume_refuses_a_checkpoint_of_another_recipe_or_a_damaged_file(tmp_path, digits3):
    cfg = make_config("default", method="apfed-c", epochs=2, batches_per_round=4, seed=0)
    safety = Safety(checkpoint_dir=str(tmp_path), checkpoint_every=2)
    resumed = dataclasses.replace(safety, resume=True)
    with pytest.raises(Crash):
        run(digits3, 0, cfg, on_batch=_crash_after(9), safety=safety)
    with pytest.raises(DataError, match="another training configuration"):
        run(digits3, 0, dataclasses.replace(cfg, lr=0.5), safety=dataclasses.replace(safety, resume=True))
    # a checkpoint written by an apfed before a setting existed is read with the setting's default
    import json

    from apfed.checkpoint import save_checkpoint

    ck = load_checkpoint(tmp_path / "active.ckpt")
    written = json.loads(ck["config"])
    del written["calibrate"]
    save_checkpoint(tmp_path / "active.ckpt", {**ck, "config": json.dumps(written, sort_keys=True)})
    with pytest.raises(DataError, match="another training configuration"):  # the default is not this run's value
        run(digits3, 0, dataclasses.replace(cfg, calibrate=True, validation=0.2), safety=resumed)
    assert len(run(digits3, 0, cfg, safety=resumed).history) == 2
    (tmp_path / "active.ckpt").write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable apfed checkpoint"):
        run(digits3, 0, cfg, safety=dataclasses.replace(safety, resume=True))


def _with_faulty_passive(client, name, fault):
    """Wrap one passive's handler: ``fault(msg, reply)`` returns the reply to deliver (or None for no reply)."""
    handler = client.transport.handlers[name]

    def faulty(msg):
        return fault(msg, handler(msg))

    client.transport.handlers[name] = faulty


def _train(client):
    client.setup()
    client.fit()
    return client


class _SlowClock:
    """The in-process transport's clock, plus the seconds a faulty handler says it took: deadlines are tested
    without sleeping, so a loaded host cannot make an on-time round late."""

    def __init__(self):
        import time

        self.real, self.extra = time.perf_counter, 0.0

    def perf_counter(self) -> float:
        return self.real() + self.extra


def _slow_clock(monkeypatch) -> _SlowClock:
    import protocols.transport

    clock = _SlowClock()
    monkeypatch.setattr(protocols.transport, "time", clock)
    return clock


def test_a_slow_passive_is_dropped_from_late_rounds_and_readmitted(digits3, monkeypatch):
    clock = _slow_clock(monkeypatch)
    cfg = make_config("default", method="apfed-c", epochs=2, batches_per_round=2, seed=0)
    client = build_clients(digits3, 0, cfg, safety=Safety(on_bad_message="skip", round_timeout=60.0))
    slow_rounds = set(range(5, 12))

    def slow(msg, reply):
        if msg.kind == TRAIN and msg.round in slow_rounds:
            clock.extra += 3600.0  # an hour late
        return reply

    _with_faulty_passive(client, "passive2", slow)
    logged: list[str] = []
    client.log = logged.append
    _train(client)
    dropped = {(f["round"], f["passive"]) for f in client.faults}
    assert dropped == {(r, "passive2") for r in slow_rounds}
    assert all("deadline" in f["error"] for f in client.faults)
    assert client.history[-1]["accuracy"] > 30  # trained on; 10 classes
    # seven silent rounds in a row: every one is in faults, two lines in the log (gone, back)
    about = [line for line in logged if "passive2" in line]
    assert len(about) == 2, about
    assert about[0].startswith("round 5: training without passive2: no reply from passive2 in round 5")
    assert about[1] == "round 12: passive2 answered again, after 7 round(s) without it (from round 5)"


def test_the_round_deadline_applies_to_training_rounds_only(digits3, monkeypatch):
    """Set-up aligns every ID by PSI (seconds per 10,000 IDs) and evaluation embeds the test rows: a deadline meant
    for a training round must not fail them, in-process as over Flower. Before, a set-up slower than
    ``--round-timeout`` ended the run with 'no reply from passive1 in round 0 (deadline missed)'."""
    clock = _slow_clock(monkeypatch)
    cfg = make_config("default", method="apfed-kd", epochs=1, batches_per_round=4, seed=0)
    client = build_clients(digits3, 0, cfg, safety=Safety(on_bad_message="skip", round_timeout=60.0))

    def slow_outside_training(msg, reply):
        if msg.kind != TRAIN:
            clock.extra += 3600.0
        return reply

    _with_faulty_passive(client, "passive2", slow_outside_training)
    _train(client)
    assert client.faults == []
    assert client.history[-1]["accuracy"] > 30


@pytest.mark.parametrize(
    "corruption",
    ["nan gradient", "wrong shape", "extra array", "wrong round", "error reply"],
)
def test_a_bad_reply_never_reaches_the_optimizer(digits3, corruption):
    cfg = make_config("default", method="apfed-c", epochs=1, batches_per_round=4, seed=0)
    bad_round = 2  # rounds 1-3 train (3 rounds of 4 minibatches)

    def corrupt(msg, reply):
        if msg.kind != TRAIN or msg.round != bad_round:
            return reply
        g = reply.arrays["grad"]
        if corruption == "nan gradient":
            g = g.clone()
            g[0, 0] = float("nan")
            return dataclasses.replace(reply, arrays={**reply.arrays, "grad": g})
        if corruption == "wrong shape":
            return dataclasses.replace(reply, arrays={**reply.arrays, "grad": g[:-1]})
        if corruption == "extra array":
            return dataclasses.replace(reply, arrays={**reply.arrays, "features": np.zeros((3, 3), np.float32)})
        if corruption == "wrong round":
            return dataclasses.replace(reply, round=bad_round - 1)
        return Message(ERROR, reply.run_id, reply.round, reply.sender, reply.receiver, {}, {"error": "disk full"})

    # fail: the run stops with the error, before any optimizer step of that round
    failing = build_clients(digits3, 0, cfg)
    _with_faulty_passive(failing, "passive1", corrupt)
    steps = []
    failing.setup()
    real_step = failing.learner.step
    failing.learner.step = lambda *a, **k: (steps.append(a[1]), real_step(*a, **k))[1]
    with pytest.raises(ProtocolError):
        failing.fit()
    assert all(all(g is None or torch.isfinite(g).all() for g in grads) for grads in steps)

    # skip: that round trains without passive1, the fault is counted, the run completes
    skipping = build_clients(digits3, 0, cfg, safety=Safety(on_bad_message="skip"))
    _with_faulty_passive(skipping, "passive1", corrupt)
    skipping.setup()
    real_step = skipping.learner.step
    grads_seen = []
    skipping.learner.step = lambda *a, **k: (grads_seen.append(a[1]), real_step(*a, **k))[1]
    skipping.fit()
    assert [(f["round"], f["passive"]) for f in skipping.faults] == [(bad_round, "passive1")]
    assert any(g[0] is None and g[1] is not None for g in grads_seen)  # passive2 still contributed
    assert all(g is None or torch.isfinite(g).all() for grads in grads_seen for g in grads)


_SESSION = {}


def _train_request():
    """A passive after setup, and one valid encoded TRAIN request for it (built once)."""
    if not _SESSION:
        cfg = make_config("default", method="apfed-c", epochs=1, batches_per_round=2, seed=0)
        client = build_clients(load_bundled("digits", 2), 0, cfg)
        sent = []
        handler = client.transport.handlers["passive1"]
        client.transport.handlers["passive1"] = lambda m: (sent.append(encode(m)), handler(m))[1]
        client.setup()
        client.fit()
        passive = handler.__self__
        request = next(d for d in sent if decode(d).kind == TRAIN)
        _SESSION.update(passive=passive, request=request, state=passive.state_bytes())
    return _SESSION["passive"], _SESSION["request"], _SESSION["state"]


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=1 << 20), st.integers(min_value=1, max_value=255))
def test_a_mutated_request_gets_an_answer_never_an_exception(pos, flip):
    passive, request, state = _train_request()
    passive.restore(state)
    passive.last_round = 0
    data = bytearray(request)
    data[pos % len(data)] ^= flip
    try:
        msg = decode(bytes(data))
    except ProtocolError:
        return
    reply = passive.handle(msg)  # must not raise: a problem comes back as an error message
    assert reply.kind in ("reply", "error")
    if reply.kind == "reply":  # anything accepted was still valid: finite, right shapes
        assert all(np.isfinite(np.asarray(a)).all() for a in reply.arrays.values())
