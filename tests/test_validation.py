"""Validation rows (``validation``) and early stopping (``patience``): a held-out share of the active party's
training rows picks the standalone model's epoch; nothing else about the run learns from them."""

import dataclasses

import numpy as np
import pytest
import torch
from conftest import run_cli

import apfed
from apfed.config import make_config
from apfed.data import load_bundled
from apfed.errors import ConfigError
from apfed.runner import Safety, build_clients, run
from protocols import decode
from protocols.messages import ALIGN, TRAIN


@pytest.fixture(scope="module")
def digits():
    return load_bundled("digits", 2)


def test_validation_rows_train_nothing_and_pick_the_standalone_models_epoch(digits):
    cfg = make_config("default", method="apfed-c", epochs=12, validation=0.2, seed=3)
    record, lines = [], []
    client = build_clients(digits, 0, cfg, serialize=True, record=record, log=lines.append)
    client.setup()
    val, train = client.val, client.split[0]
    n_train = len(digits.train_idx)
    assert len(val) == int(np.ceil(0.2 * n_train)) and len(train) == n_train - len(val)
    assert not np.isin(val, train).any()
    # stratified: every class keeps its share of the training rows
    y = digits.labels[client.keep]
    assert (
        np.abs(np.bincount(y[val], minlength=10) / len(val) - np.bincount(y[train], minlength=10) / len(train)).max()
        < 0.02
    )
    assert any("held out for validation" in x for x in lines)
    history = client.fit()
    final = client.final_metrics()
    net = client.standalone_model({}).net
    client.finish()
    messages = [decode(m) for m in record]
    sent = np.concatenate([np.asarray(m.arrays["idx"]) for m in messages if m.kind == TRAIN and "idx" in m.arrays])
    assert set(sent.tolist()) == set(train.tolist())  # every training row travels, no validation row does
    aligned = [np.asarray(m.arrays["train"]) for m in messages if m.kind == ALIGN and "train" in m.arrays]
    assert aligned and all(np.array_equal(np.sort(a), np.sort(train)) for a in aligned)  # passives' statistics
    curve = [h["val_accuracy"] for h in history]
    best = int(np.argmax(curve)) + 1  # the first epoch with the best validation accuracy
    assert final["best_epoch"] == best and final["val_accuracy"] == max(curve)
    assert best < len(history), "the test needs a run whose last epoch is not its best"
    # the model kept is exactly that epoch's: its test accuracy is the one measured then, not the last epoch's
    assert final["accuracy"] == history[best - 1]["accuracy"] != history[-1]["accuracy"]
    x_test = torch.from_numpy(client.preprocessor(digits.views[0].X[client.keep[client.split[1]]]))
    with torch.no_grad():
        acc = (net(x_test).argmax(1).numpy() == client.y_test).mean() * 100
    assert acc == pytest.approx(final["accuracy"])


@pytest.mark.parametrize("pipeline", [False, True])
def test_patience_stops_the_run_and_a_pipelined_round_in_flight_is_drained(digits, pipeline):
    kw = {"batches_per_round": 2, "pipeline": True} if pipeline else {}
    cfg = make_config("default", method="apfed-c", epochs=40, validation=0.2, patience=2, **kw)
    lines = []
    r = run(digits, 0, cfg, log=lines.append)
    curve = [h["val_accuracy"] for h in r.history]
    best = r.final["best_epoch"]
    assert len(r.history) == best + 2 < 40  # two epochs without a better validation accuracy, then the end
    assert max(curve[best:]) <= curve[best - 1]
    assert any(f"early stop after epoch {best + 2}" in x for x in lines)
    assert r.accuracy == r.final["accuracy"]  # the headline is the kept model's test accuracy
    p = r.model.provenance
    assert p["test_accuracy"] == r.final["accuracy"] and (p["epochs_run"], p["best_epoch"]) == (best + 2, best)
    assert p["validation_rows"] + p["train_rows"] == len(digits.train_idx)


def test_info_says_which_epoch_a_stopped_run_kept(tmp_path, digits):
    cfg = make_config("default", method="local", epochs=20, lr=3e-3, validation=0.2, patience=2)
    r = run(digits, 0, cfg)
    path = r.model.save(tmp_path / "m.safetensors")
    code, out, err = run_cli("info", "--model", path)
    assert code == 0, err
    best, ran = r.final["best_epoch"], len(r.history)
    assert f"{ran} of 20 epochs (stopped early), the model of epoch {best}" in out
    assert f"{r.model.provenance['validation_rows']} validation, " in out


def test_a_resumed_run_with_validation_equals_the_uninterrupted_one(tmp_path, digits):
    cfg = make_config(
        "default", method="apfed-c", epochs=20, lr=3e-3, validation=0.2, patience=2, batches_per_round=2
    )  # stops after epoch 8, its best being epoch 6 (measured)
    whole = run(digits, 0, cfg)
    assert whole.final["best_epoch"] + 2 == len(whole.history) < 20
    crashed = Safety(checkpoint_dir=str(tmp_path / "c"), checkpoint_every=3)
    n_train = len(digits.train_idx) - int(np.ceil(0.2 * len(digits.train_idx)))
    per_epoch, seen = -(-n_train // 128), [0]

    def crash_late():  # in the last epoch: the checkpoint before it must carry the best epoch's weights
        seen[0] += 1
        if seen[0] == per_epoch * (len(whole.history) - 1) + 1:
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError, match="crash"):
        run(digits, 0, cfg, on_batch=crash_late, safety=crashed)
    resumed = run(digits, 0, cfg, safety=dataclasses.replace(crashed, resume=True))
    assert resumed.final == whole.final and len(resumed.history) == len(whole.history)
    a, b = whole.model.net.state_dict(), resumed.model.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_model_that_needs_every_party_reports_validation_but_keeps_its_last_epoch(digits):
    r = run(digits, 0, make_config("default", method="tvfl", epochs=4, validation=0.2))
    assert all(0 < h["val_accuracy"] <= 100 for h in r.history)
    assert "best_epoch" not in r.final and r.final["accuracy"] == r.history[-1]["accuracy"]


def test_validation_settings_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="patience needs validation rows"):
        make_config("default", patience=3)
    with pytest.raises(ConfigError, match=r"validation must be a share in \[0, 0.5\)"):
        make_config("default", validation=0.7)
    code, _, err = run_cli("train", "--dataset", "digits", "--set", "validation=-0.1", "--out", tmp_path / "m")
    assert code == 2 and err.strip().count("\n") == 0 and "validation must be a share" in err
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 5)  # 40 training rows of 10 classes: 4 validation rows cannot hold every class
    ds = apfed.from_arrays({"a": rng.normal(size=(50, 2)), "b": rng.normal(size=(50, 2))}, y)
    with pytest.raises(apfed.DataError, match=r"validation=0.1: 40 labelled rows are too few .* 10% validation split"):
        apfed.train(ds, "a", "apfed-c", epochs=1, validation=0.1)


@pytest.mark.parametrize("metric, pick", [("loss", np.argmin), ("roc_auc", np.argmax)])
def test_the_validation_metric_picks_the_epoch(digits, metric, pick):
    r = run(digits, 0, make_config("default", method="local", epochs=6, validation=0.2, validation_metric=metric))
    curve = [h[f"val_{metric}"] for h in r.history]
    assert r.final["best_epoch"] == int(pick(curve)) + 1
    assert r.final[f"val_{metric}"] == curve[r.final["best_epoch"] - 1]
    assert all(0 < h["val_roc_auc"] <= 1 and h["val_loss"] > 0 for h in r.history)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_the_best_epoch_is_put_back_under_the_captured_cuda_graphs(digits):
    """The weights go back in place, so the CUDA graphs that replayed the steps still see the model's parameters."""
    cfg = make_config("default", method="apfed-c", epochs=20, lr=3e-3, validation=0.2, patience=2, device="cuda")
    client = build_clients(digits, 0, cfg)
    client.setup()
    history = client.fit()
    assert client.learner.graphs is not None and client.learner.graphs.replays > 0
    best = client.best["epoch"]
    assert best < len(history) < 20
    final = client.final_metrics()
    assert final["best_epoch"] == best and final["accuracy"] == history[best - 1]["accuracy"]


def test_calibration_divides_the_standalone_models_logits_by_the_temperature_its_validation_rows_pick(digits, tmp_path):
    plain = apfed.train(digits, 0, "apfed-kd", epochs=8, validation=0.2)
    lines = []
    calibrated = apfed.train(digits, 0, "apfed-kd", epochs=8, validation=0.2, calibrate=True, log=lines.append)
    t = calibrated.final["calibration_temperature"]
    assert t > 0 and t != 1.0 and calibrated.model.provenance["calibration_temperature"] == t
    X = digits.views[0].X
    p0, p1 = plain.model.predict_proba(X), calibrated.model.predict_proba(X)
    scaled = np.exp(np.log(p0) / t)
    np.testing.assert_allclose(p1, scaled / scaled.sum(1, keepdims=True), atol=1e-5)
    assert (plain.model.predict(X) == calibrated.model.predict(X)).all()  # the same classes: the same accuracy
    assert calibrated.final["accuracy"] == plain.final["accuracy"]
    # the temperature is the validation rows' best: their log-loss drops, and no nearby temperature does better
    assert calibrated.final["val_log_loss_calibrated"] <= plain.final["val_loss"] + 1e-6
    client = build_clients(digits, 0, make_config("default", method="apfed-kd", epochs=8, validation=0.2))
    client.setup()
    client.fit()
    logits = client.learner.standalone_logits(client.val_idx).float()
    y = torch.from_numpy(client.y_val).long()
    loss = [float(torch.nn.functional.cross_entropy(logits / (t * f), y)) for f in (0.9, 1.0, 1.1)]
    assert loss[1] <= min(loss[0], loss[2])
    assert any("calibrated on the" in line and f"temperature {t:.3f}" in line for line in lines)
    # it travels in the model file and shows in apfed info; the ONNX export divides too
    path = calibrated.model.save(tmp_path / "m.safetensors")
    code, out, err = run_cli("info", "--model", path)
    assert code == 0 and f"temperature {t:.3f}" in out, err
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(calibrated.model.export_onnx(tmp_path / "m.onnx")))
    (onnx_p,) = sess.run(None, {"features": X[:50].astype(np.float32)})
    np.testing.assert_allclose(onnx_p, p1[:50], atol=1e-5)


@pytest.mark.parametrize(
    "settings, match",
    [({"calibrate": True}, "calibrate fits a temperature on validation rows"),
     ({"calibrate": True, "validation": 0.2, "method": "tvfl"}, "tvfl has none")],
)  # fmt: skip
def test_calibration_needs_validation_rows_and_a_standalone_model(settings, match):
    with pytest.raises(ConfigError, match=match):
        make_config("default", **{"method": "apfed-c", **settings})


def test_calibration_on_validation_rows_it_gets_all_right_stops_at_the_temperatures_bound():
    from clients.active_evaluation import T_MIN

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 100)
    X = rng.normal(size=(200, 2)) + 8.0 * y[:, None]  # two classes far apart: every row is right
    ds = apfed.from_arrays({"a": X, "b": X[:, ::-1].copy()}, y)
    lines = []
    r = apfed.train(ds, "a", "local", epochs=5, validation=0.2, calibrate=True, log=lines.append)
    assert r.final["val_accuracy"] == 100.0
    assert r.final["calibration_temperature"] == pytest.approx(T_MIN, rel=1e-3)  # not 0: certainty
    assert any("at its bound" in line for line in lines)
