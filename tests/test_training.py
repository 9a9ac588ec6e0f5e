import json
import os

import numpy as np
import pytest
import torch

from apfed.config import make_config
from apfed.data import load_bundled
from apfed.errors import ConfigError
from apfed.runner import build_clients, run
from protocols import decode


@pytest.fixture(scope="module")
def digits():
    return load_bundled("digits")


@pytest.mark.parametrize("method", ["local", "apfed-r", "apfed-c", "apfed-m", "apfed-kd", "tvfl", "centralized"])
def test_every_method_trains_and_beats_chance(digits, method):
    r = run(digits, 0, make_config("default", method=method, epochs=4))
    assert r.accuracy > 30  # 10 classes: chance is 10 %
    assert len(r.history) == 4
    assert (r.model is not None) == (method not in ("tvfl", "centralized"))


def test_tvfl_reports_fills_and_kd_reports_teacher(digits):
    r = run(digits, 0, make_config("default", method="tvfl", epochs=3))
    assert {"acc_fused", "acc_fill_zero", "acc_fill_mean", "acc_fill_rand"} <= set(r.extra)
    r = run(digits, 0, make_config("default", method="apfed-kd", epochs=3))
    assert {"acc_standalone", "acc_fused"} <= set(r.extra)


@pytest.mark.parametrize("method", ["apfed-c", "apfed-kd"])
def test_same_seed_same_result_and_other_seed_differs(digits, method):
    cfg = make_config("default", method=method, epochs=3, mixup=0.4)
    a, b = run(digits, 0, cfg), run(digits, 0, cfg)
    assert a.accuracy == b.accuracy
    for x, y in zip(a.model.net.state_dict().values(), b.model.net.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    c = run(digits, 0, make_config("default", method=method, epochs=3, mixup=0.4, seed=1))
    assert any(
        not torch.equal(x, y)
        for x, y in zip(a.model.net.state_dict().values(), c.model.net.state_dict().values(), strict=True)
    )


def test_the_deterministic_setting_switches_torchs_kernels_for_a_gpu_run_and_back(monkeypatch):
    """What ``deterministic=true`` asks of torch on a GPU (the same-seed check itself needs one: tests/test_graphs.py);
    the settings are process-wide, so a later run without it gets the fast kernels again, and a CPU run changes
    nothing."""
    from apfed.graphs import configure_cuda

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    try:
        configure_cuda("cpu", False, True)
        assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before
        configure_cuda("cuda", False, True)
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        configure_cuda("cuda:0", False, False)
        assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
        assert torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark = before[1]
        torch.backends.cudnn.deterministic = False


@pytest.mark.parametrize("method", ["apfed-r", "apfed-kd"])
def test_serialized_transport_gives_the_same_model_as_direct(digits, method):
    cfg = make_config("default", method=method, epochs=2, shift=1, mixup=0.3)
    a, b = run(digits, 0, cfg), run(digits, 0, cfg, serialize=True)
    for x, y in zip(a.model.net.state_dict().values(), b.model.net.state_dict().values(), strict=True):
        assert torch.allclose(x, y, atol=1e-6)


@pytest.mark.parametrize("method", ["apfed-r", "apfed-c", "apfed-kd", "tvfl"])
def test_no_raw_features_or_labels_in_any_message(digits, method):
    record: list[bytes] = []
    run(digits, 0, make_config("default", method=method, epochs=1, batch_size=64), record=record)
    assert record
    raw_rows = [np.ascontiguousarray(v.X.astype(np.float32)) for v in digits.views]
    labels = digits.labels
    for data in record:
        m = decode(data)
        for name, a in m.arrays.items():
            if a.dtype.kind == "f" and a.ndim == 2:
                for X in raw_rows:
                    if a.shape[1] == X.shape[1]:  # same width as a feature matrix: must not be any of its rows
                        hits = (np.abs(a[:, None, :] - X[None, :, :]).max(-1) < 1e-6).any()
                        assert not hits, f"{name} carries raw feature rows"
            if a.dtype.kind in "iu" and a.ndim == 1 and len(a) >= 16:
                assert not np.array_equal(a, labels[: len(a)]), f"{name} carries labels"
                assert not np.array_equal(a % 10, labels[a % len(labels)]), f"{name} carries labels"
        config = dict(m.config)
        train_config = json.loads(config.pop("train_config", "{}"))
        assert "label" not in str(config).lower()
        assert "label" not in str(list(train_config.values())).lower()  # a setting's name (unlabelled_rows) is none


def test_k_minibatches_per_round_trains_and_cuts_messages(digits):
    r1 = run(digits, 0, make_config("default", method="apfed-c", epochs=2))
    r4 = run(digits, 0, make_config("default", method="apfed-c", epochs=2, batches_per_round=4))
    assert r4.wire["messages"] <= r1.wire["messages"] / 3
    assert r4.accuracy > 30


def test_passive_refuses_a_bad_request_and_active_raises(digits):
    from protocols import ProtocolError

    client = build_clients(digits, 0, make_config("default", method="apfed-c", epochs=1))
    client.setup()
    passive = client.transport.handlers["passive1"]
    bad = {
        "idx": torch.tensor([0, 10**6]),
        "sizes": torch.tensor([2]),
        "progress": np.zeros(1),
        "act": torch.zeros(2, 64),
    }
    from protocols.messages import TRAIN, Message

    reply = passive(Message(TRAIN, client.run_id, 1, "active", "passive1", bad, {}))
    assert reply.kind == "error" and "outside" in reply.config["error"]
    client.transport.handlers["passive1"] = lambda m: m.reply(
        arrays={"grad": torch.full((len(m.arrays["idx"]), 64), float("nan"))}
    )
    with pytest.raises(ProtocolError, match="NaN"):
        client.fit()


def test_the_passive_keeps_only_the_aligned_rows_and_refuses_a_second_align(digits):
    from protocols.messages import ALIGN

    cfg = make_config("default", method="apfed-c", epochs=1)
    client = build_clients(digits, 0, cfg)
    sent = []
    passive = client.transport.handlers["passive1"]
    client.transport.handlers["passive1"] = lambda m: (sent.append(m), passive(m))[1]
    client.setup()
    party = passive.__self__
    assert party.offered_rows is None  # the shuffled PSI order is O(samples) and is not needed after align
    assert len(party.rows) == client.n
    (align,) = (m for m in sent if m.kind == ALIGN)
    reply = passive(align)  # replayed: it would rebuild the passive's model mid-run
    assert reply.kind == "error" and "second align" in reply.config["error"]
    client.fit()  # the passive trained on, unharmed
    assert client.history[-1]["acc_standalone"] > 20


def test_a_passive_restores_state_saved_with_training_positions_by_the_previous_version(digits):
    import io

    from clients.passive import PassiveClient

    client = build_clients(digits, 0, make_config("default", method="apfed-c", epochs=1))
    client.setup()
    party = client.transport.handlers["passive1"].__self__
    state = torch.load(io.BytesIO(party.state_bytes()), weights_only=True)
    del state["preprocessor"]  # the earlier format: the training positions, not their statistics
    state["train_rows"] = torch.from_numpy(client.split[0])
    old = io.BytesIO()
    torch.save(state, old)
    restored = PassiveClient("passive1", party.data)
    restored.restore(old.getvalue())
    assert np.array_equal(restored.rows, party.rows)
    assert np.allclose(restored.preprocessor.mean, party.preprocessor.mean)
    assert np.allclose(restored.preprocessor.std, party.preprocessor.std)


class _OrderLog:
    """Wraps a transport and notes, per train round, when it was submitted and when its replies were collected."""

    def __init__(self, inner):
        self.inner, self.events = inner, []

    def submit(self, requests):
        msg = next(iter(requests.values()))
        self.events.append(("submit", msg.kind, msg.round))
        return msg.kind, msg.round, self.inner.submit(requests)

    def collect(self, ticket):
        kind, rnd, inner = ticket
        self.events.append(("collect", kind, rnd))
        return self.inner.collect(inner)

    def exchange(self, requests):
        return self.collect(self.submit(requests))


@pytest.mark.parametrize("pipeline", [False, True])
def test_pipelining_queues_the_next_round_before_applying_this_one(digits, pipeline):
    cfg = make_config("default", method="apfed-c", epochs=2, batches_per_round=4, pipeline=pipeline)
    client = build_clients(digits, 0, cfg)
    client.setup()
    client.transport = log = _OrderLog(client.transport)
    client.fit()
    train = [(e, r) for e, k, r in log.events if k == "train"]
    rounds = sorted({r for _, r in train})
    assert len(rounds) > 4
    for r in rounds[:-1]:
        queued_early = train.index(("submit", r + 1)) < train.index(("collect", r))
        assert queued_early == pipeline, f"round {r + 1} vs round {r}"


def test_pipelined_training_is_deterministic_and_differs_from_strict(digits):
    cfg = make_config("default", method="apfed-c", epochs=3, batches_per_round=4, pipeline=True)
    a, b = run(digits, 0, cfg), run(digits, 0, cfg, serialize=True)
    assert a.accuracy > 30 and a.accuracy == b.accuracy
    strict = run(digits, 0, make_config("default", method="apfed-c", epochs=3, batches_per_round=4))
    assert any(
        not torch.equal(x, y)
        for x, y in zip(a.model.net.state_dict().values(), strict.model.net.state_dict().values(), strict=True)
    )


def test_pipelining_caps_k_at_half_an_epoch_and_says_so(digits):
    logs = []
    cfg = make_config("default", method="apfed-c", epochs=1, batches_per_round=100, pipeline=True)
    client = build_clients(digits, 0, cfg, log=logs.append)
    client.setup()
    client.fit()
    n_batches = -(-len(client.train_idx) // cfg.batch_size)
    assert client.k_used == n_batches // 2
    assert any("over half an epoch" in m for m in logs)


@pytest.mark.parametrize("method", ["apfed-c", "apfed-kd"])
def test_float16_payload_halves_embedding_and_gradient_bytes(digits, method):
    full, half = [], []
    a = run(digits, 0, make_config("default", method=method, epochs=2), record=full)
    b = run(digits, 0, make_config("default", method=method, epochs=2, payload="float16"), record=half)
    assert b.accuracy > 30
    assert abs(a.accuracy - b.accuracy) < 10

    def payload_dtypes(record):
        out = {}
        for data in record:
            for name, arr in decode(data).arrays.items():
                if name in ("act", "grad", "emb", "prev_grad"):
                    out.setdefault(name, set()).add(str(arr.dtype))
        return out

    assert set(payload_dtypes(full)) == set(payload_dtypes(half)) and payload_dtypes(full)
    assert all(d == {"float32"} for d in payload_dtypes(full).values())
    assert all(d == {"float16"} for d in payload_dtypes(half).values())
    # only those arrays shrink: the wire total drops by their half
    assert b.wire["bytes"] < 0.75 * a.wire["bytes"]


def _passive_learners(client):
    return [client.transport.handlers[n].__self__.learner for n in client.names]


@pytest.mark.parametrize("method", ["tvfl", "apfed-kd"])
def test_a_passive_that_sends_embeddings_runs_its_encoder_once_per_row(digits, method):
    """K = 1: the embedding sent and the APFed loss come from one encoder pass, whose graph serves the update
    when the active's gradient comes back; K = 2 recomputes the embedding of every earlier minibatch."""

    def rows_encoded(k: int) -> int:
        cfg = make_config("default", method=method, epochs=2, batches_per_round=k)
        client = build_clients(digits, 0, cfg)
        client.setup()
        client.evaluate = lambda: {"accuracy": 0.0}
        enc = _passive_learners(client)[0].modules["encoder"]
        calls = []
        enc.register_forward_hook(lambda m, i, o: calls.append(len(i[0])) if m.training else None)
        client.fit()
        return sum(calls)

    n_train = 2 * _train_rows(digits, make_config("default"))  # rows over the 2 epochs
    assert rows_encoded(1) == n_train
    # K = 2: every minibatch's embedding is computed after its update and recomputed when its gradient comes back
    # (apfed-kd also runs the encoder for its NT-Xent)
    assert rows_encoded(2) == (2 if method == "tvfl" else 3) * n_train


def _train_rows(ds, cfg) -> int:
    client = build_clients(ds, 0, cfg)
    client.setup()
    return len(client.train_idx)


@pytest.mark.parametrize("method", ["apfed-m", "apfed-kd"])
def test_more_passive_losses_than_passives_is_refused_before_training(digits, method):
    """The active party refuses a run config naming a loss for a passive it does not have (a deployment
    reaches this check without the CLI's)."""
    client = build_clients(digits, 0, make_config("default", method=method, passive_losses="r,c"))
    with pytest.raises(ConfigError, match="names 2 losses .* has 1 passive"):
        client.setup()
    assert client.round == 0  # nothing was sent
    run(digits, 0, make_config("default", method=method, passive_losses="r", epochs=1))  # one per passive is fine


def test_balanced_class_weights_weigh_each_class_by_its_training_rows():
    """class_weight=balanced: each class's loss weighted by N / (classes x its training rows). On labels 9:1 the
    unweighted model predicts the majority class for every row; the weighted one finds most of the minority."""
    import apfed
    from apfed.augment import mixed_cross_entropy

    rng = np.random.default_rng(0)
    n = 1000
    y = (rng.random(n) < 0.1).astype(int)
    ds = apfed.from_arrays({"a": rng.normal(size=(n, 4)) + 0.8 * y[:, None], "b": rng.normal(size=(n, 3))}, y)
    client = build_clients(ds, 0, make_config("default", method="apfed-c", class_weight="balanced"))
    client.setup()
    counts = np.bincount(ds.labels[ds.train_idx])
    assert np.allclose(client.learner.class_weights.numpy(), len(ds.train_idx) / (2 * counts))
    plain = apfed.train(ds, "a", "apfed-c", epochs=10).final
    weighted = apfed.train(ds, "a", "apfed-c", epochs=10, class_weight="balanced").final
    assert plain["macro_recall"] == 50.0  # every test row called the majority class
    assert weighted["macro_recall"] > plain["macro_recall"] + 15 and weighted["macro_f1"] > plain["macro_f1"] + 5
    # ROC-AUC ranks the rows whatever the cut-off: the unweighted model, though it calls every row the majority
    # class, ranks the minority well (0.83 measured), and weighting moves the cut-off more than the ranking
    assert plain["roc_auc"] > 0.75 and abs(weighted["roc_auc"] - plain["roc_auc"]) < 0.05
    # the loss: the weighted mean, as F.cross_entropy's; a mixup batch mixes both labels' weights the same way
    logits, labels, w = torch.randn(6, 2), torch.tensor([0, 0, 0, 0, 1, 1]), torch.tensor([0.5, 2.0])
    per_row = -torch.log_softmax(logits, 1)[torch.arange(6), labels]
    want = (w[labels] * per_row).sum() / w[labels].sum()
    assert torch.allclose(mixed_cross_entropy(logits, labels, None, w), want)
    perm = torch.tensor([5, 4, 3, 2, 1, 0])
    assert torch.allclose(mixed_cross_entropy(logits, labels, {"perm": perm, "lam": 1.0}, w), want)
    with pytest.raises(ConfigError, match="class_weight must be none or balanced, got 'auto'"):
        make_config("default", class_weight="auto")


def test_average_precision_of_two_classes_is_of_the_rarer_one_in_training():
    """With labels 'fraud' (rare) and 'ok', 'fraud' sorts first (class 0): average precision is still fraud's, the
    figure a user of a rare-event model reads, not the common class's (always high)."""
    from sklearn.metrics import average_precision_score

    import apfed

    rng = np.random.default_rng(1)
    n = 600
    y = rng.random(n) < 0.15
    ds = apfed.from_arrays(
        {"a": rng.normal(size=(n, 4)) + y[:, None], "b": rng.normal(size=(n, 3))}, np.where(y, "fraud", "ok")
    )
    assert ds.class_names == ["fraud", "ok"]
    r = apfed.train(ds, "a", "apfed-c", epochs=3)
    test = ds.test_idx
    p_fraud = r.model.predict_proba(ds.views[0].X[test])[:, 0]
    assert r.final["average_precision"] == pytest.approx(average_precision_score(y[test], p_fraud), abs=1e-6)
