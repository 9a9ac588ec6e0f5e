"""Regression targets (``--task regression``): the split, the loss, the metrics, training every method, the model
file, and the commands."""

import csv
import json

import numpy as np
import pytest
import torch
from conftest import run_cli

import apfed
from apfed.augment import mixed_squared_error
from apfed.data.arrays import from_arrays
from apfed.data.splits import quantile_strata, regression_split
from apfed.errors import ApfedError, ConfigError, DataError
from apfed.metrics import regression_metrics


def _signal(n: int = 600, seed: int = 0):
    """Two views of one target: the active view sees half of its signal, the passive the other half."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4))
    y = 50 + 10 * (z[:, 0] + z[:, 1] + z[:, 2] + z[:, 3])
    a = np.c_[z[:, :2] + 0.1 * rng.normal(size=(n, 2)), rng.normal(size=(n, 2))]
    b = z[:, 2:] + 0.1 * rng.normal(size=(n, 2))
    return a, b, y


def test_a_regression_split_parses_numbers_keeps_missing_ones_apart_and_spans_the_range():
    raw = np.array([str(v) for v in np.arange(100.0)] + ["", "NA", " 7.5 "], dtype=str)
    values, train, test, unlabelled = regression_split(raw, "labels hold", 0.2, seed=0)
    assert values.dtype == np.float32 and np.isnan(values[100:102]).all() and values[102] == 7.5
    assert unlabelled.tolist() == [100, 101]
    assert len(test) == 21 and not set(train) & set(test) and 100 not in set(train) | set(test)
    # stratified by the target's deciles: every decile has test rows, so the test rows span the range
    deciles = quantile_strata(values[np.r_[train, test]], 10)
    assert len(set(deciles[len(train) :])) == 10
    again = regression_split(raw, "labels hold", 0.2, seed=0)
    assert np.array_equal(again[2], test)  # seeded


def test_quantile_strata_are_equal_counts_even_with_ties():
    strata = quantile_strata(np.array([1.0] * 6 + [2.0] * 4), 5)
    assert np.bincount(strata).tolist() == [2, 2, 2, 2, 2] and strata[0] <= strata[-1]


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["1.5", "high", "2", "x"], "'high', not a number \\(and 1 more such label\\)"),
        (["3", "3", "3", ""], "a single value"),
        (["", "NA"], "no label in any row"),
        (["1", "inf", "2"], "must be finite"),
    ],
)
def test_a_regression_target_that_is_not_numbers_is_one_clear_error(labels, message):
    with pytest.raises(DataError, match=message):
        regression_split(np.array(labels), "labels hold", 0.2)


def test_the_squared_error_skips_rows_with_no_label_and_mixes_targets():
    out = torch.tensor([[1.0], [2.0], [0.0], [4.0]])
    y = torch.tensor([0.0, float("nan"), 1.0, 2.0])
    loss = mixed_squared_error(out, y, None, unlabelled=True)
    assert loss.item() == pytest.approx((1 + 1 + 4) / 3)
    full = torch.tensor([0.0, 3.0, 1.0, 2.0])
    assert mixed_squared_error(out, full, None).item() == pytest.approx((1 + 1 + 1 + 4) / 4)
    aug = {"lam": torch.tensor(0.75), "perm": torch.tensor([1, 0, 3, 2])}
    mixed = 0.75 * full + 0.25 * full[[1, 0, 3, 2]]
    assert mixed_squared_error(out, full, aug).item() == pytest.approx(((out[:, 0] - mixed) ** 2).mean().item())
    # a minibatch with no label: 0, not NaN
    none = torch.full((4,), float("nan"))
    assert mixed_squared_error(out, none, None, unlabelled=True).item() == 0.0


def test_regression_metrics_match_scikit_learn():
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    rng = np.random.default_rng(1)
    y, p = rng.normal(size=50), rng.normal(size=50)
    m = regression_metrics(y, p)
    assert m["r2"] == pytest.approx(r2_score(y, p))
    assert m["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y, p)))
    assert m["mae"] == pytest.approx(mean_absolute_error(y, p))


@pytest.fixture(scope="module")
def regression_runs():
    a, b, y = _signal()
    y = y.copy()
    y[::15] = np.nan  # some rows with no label: they train the passives' losses
    ds = from_arrays({"bank": a, "shop": b}, y, task="regression")
    runs = {m: apfed.train(ds, 0, m, epochs=15) for m in ("local", "apfed-c", "apfed-kd", "tvfl")}
    return ds, a, y, runs


def test_every_method_trains_a_regression_and_learns_the_signal(regression_runs):
    ds, _, _, runs = regression_runs
    assert ds.labels.dtype == np.float32 and ds.class_names == [] and len(ds.unlabelled) == 40
    # the active view holds half the signal (R² at most about 0.5); every party together nearly all of it
    for m in ("local", "apfed-c", "apfed-kd"):
        assert 0.3 < runs[m].accuracy < 0.6, (m, runs[m].final)
        assert {"r2", "rmse", "mae"} <= runs[m].final.keys() and "accuracy" not in runs[m].final
    assert runs["tvfl"].accuracy > 0.85 and runs["apfed-kd"].extra["r2_fused"] > 0.85
    assert runs["tvfl"].extra["r2_fill_zero"] < runs["tvfl"].accuracy
    assert runs["local"].to_json()["r2"] == runs["local"].accuracy and "accuracy" not in runs["local"].to_json()


def test_the_regression_model_file_predicts_in_the_targets_units(tmp_path, regression_runs):
    ds, a, y, runs = regression_runs
    r = runs["apfed-kd"]
    path = r.model.save(tmp_path / "m.safetensors")
    m = apfed.StandaloneModel.load(path)
    assert m.regression and m.class_names == [] and m.target["std"] > 1
    pred = m.predict(a[ds.test_idx])
    assert pred.dtype == np.float32 and pred.shape == (len(ds.test_idx),)
    # the run's own test figures, from the file: the target's standardization is folded into the last layer
    expected = regression_metrics(y[ds.test_idx], pred)
    assert expected["rmse"] == pytest.approx(r.final["rmse"], rel=1e-4)
    assert m.score(a[ds.test_idx], y[ds.test_idx]) == pytest.approx(r.final["r2"], rel=1e-4)
    with pytest.raises(ApfedError, match="not class probabilities"):
        m.predict_proba(a[:2])
    with pytest.raises(ApfedError, match="a threshold picks a class"):
        m.predict(a[:2], threshold="x=0.5")
    assert json.loads(json.dumps(m.describe()))["task"] == "regression"


def test_the_regression_onnx_graph_matches_pytorch(tmp_path, regression_runs):
    ort = pytest.importorskip("onnxruntime")
    _, a, _, runs = regression_runs
    path = runs["apfed-c"].model.export_onnx(tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(path))
    (got,) = sess.run(None, {"features": a[:64].astype(np.float32)})
    assert sess.get_outputs()[0].name == "prediction" and got.shape == (64,)
    np.testing.assert_allclose(got, runs["apfed-c"].model.predict(a[:64]), rtol=1e-4, atol=1e-3)


def test_settings_that_need_classes_are_refused_for_a_regression():
    a, b, y = _signal(100)
    ds = from_arrays({"bank": a, "shop": b}, y, task="regression")
    for settings, message in (
        ({"class_weight": "balanced"}, "weighs classes"),
        ({"validation": 0.1, "calibrate": True}, "predicts numbers"),
        ({"validation": 0.1, "validation_metric": "roc_auc"}, "ranks classes"),
    ):
        with pytest.raises(ConfigError, match=message):
            apfed.train(ds, 0, "local", epochs=1, **settings)
    classes = from_arrays({"bank": a, "shop": b}, (y > 50).astype(int))
    with pytest.raises(ConfigError, match="r2 is a regression's figure"):
        apfed.train(classes, 0, "local", epochs=1, validation=0.1, validation_metric="r2")


def test_validation_picks_a_regressions_epoch_by_r2(regression_runs):
    ds = regression_runs[0]
    r = apfed.train(ds, 0, "local", epochs=6, validation=0.2, patience=2)
    assert "val_r2" in r.history[0] and "val_loss" in r.history[0]
    best = max(range(len(r.history)), key=lambda i: r.history[i]["val_r2"])
    assert r.final["best_epoch"] == best + 1 and r.accuracy == r.final["r2"]


def _csvs(tmp_path, n: int = 400):
    a, b, y = _signal(n, seed=3)
    ids = [f"c{i:04d}" for i in range(n)]
    with (tmp_path / "bank.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "a0", "a1", "a2", "a3", "spend"])
        for i in range(n):
            w.writerow([ids[i], *np.round(a[i], 5), "" if i % 20 == 0 else f"{y[i]:.3f}"])
    with (tmp_path / "shop.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "b0", "b1"])
        for i in np.random.default_rng(0).permutation(n):  # aligned by ID, not by position
            w.writerow([ids[i], *np.round(b[i], 5)])
    return tmp_path / "bank.csv", tmp_path / "shop.csv"


def test_the_commands_train_predict_score_and_describe_a_regression(tmp_path):
    bank, shop = _csvs(tmp_path)
    model = tmp_path / "m.safetensors"
    data = ["--data", bank, "--data", shop, "--label-column", "spend", "--task", "regression"]
    code, _, err = run_cli("train", *data, "--method", "apfed-c", "--epochs", "3", "--out", model)
    assert code == 0, err
    assert "test R² 0." in err and "RMSE" in err
    code, _, err = run_cli("predict", "--model", model, "--input", bank, "--output", tmp_path / "p.csv")
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert list(rows[0]) == ["id", "prediction"] and len(rows) == 400
    pred = np.array([float(r["prediction"]) for r in rows])
    assert 30 < pred.mean() < 70  # in the target's units
    code, out, err = run_cli("score", "--model", model, "--input", bank, "--label-column", "spend", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["rows"] == 380 and 0 < report["metrics"]["r2"] < 1 and "20 rows have no label" in err
    code, out, _ = run_cli("info", "--model", model)
    assert code == 0 and "a number (regression; training mean" in out and "test R²" in out
    # permutation importance in R²: a0 and a1 carry the active view's signal, a2 and a3 are noise
    args = ["score", "--model", model, "--input", bank, "--label-column", "spend", "--importance", "--json"]
    code, out, err = run_cli(*args)
    assert code == 0, err
    ranked = json.loads(out)["importance"]
    assert {r["column"] for r in ranked[:2]} == {"a0", "a1"} and ranked[0]["r2_drop"] > 0.05 > ranked[-1]["r2_drop"]
    code, out, _ = run_cli(*args[:-1])
    assert code == 0 and "R² drop" in out and "columns by importance" in out
    # the model in use against a new one, on the same rows: the difference of their squared errors
    newer = tmp_path / "newer.safetensors"
    assert run_cli("train", *data, "--method", "local", "--epochs", "1", "--out", newer)[0] == 0
    score = ["score", "--model", model, "--input", bank, "--label-column", "spend"]
    code, out, err = run_cli(*score, "--against", newer, "--json")
    assert code == 0, err
    c, both = json.loads(out)["against"]["comparison"], json.loads(out)
    rows = np.array([float(r["spend"]) for r in csv.DictReader(bank.open()) if r["spend"]])
    assert c["rows"] == 380 and c["first_closer"] + c["second_closer"] <= 380 and c["ci95"][0] < c["mse_difference"]
    mse = [both["metrics"]["rmse"] ** 2, both["against"]["metrics"]["rmse"] ** 2]
    assert c["mse_difference"] == pytest.approx(mse[0] - mse[1], rel=1e-3) and len(rows) == 380
    code, out, _ = run_cli(*score, "--against", newer)
    assert code == 0 and "mean squared error difference" in out and "paired t-test p =" in out
    classifier = tmp_path / "classes.safetensors"
    assert run_cli("train", "--dataset", "digits", "--method", "local", "--epochs", "1", "--out", classifier)[0] == 0
    for args, message in (
        ([*score, "--against", classifier], "compare like with like"),
        (["predict", "--model", model, "--input", bank, "--threshold", "x=0.5"], "--threshold picks a class"),
    ):
        code, _, err = run_cli(*args)
        assert code == 2 and err.strip().splitlines() == [err.strip()] and message in err, err


def test_evaluate_compares_methods_on_a_regression_by_r2(tmp_path):
    bank, shop = _csvs(tmp_path)
    data = ["--data", bank, "--data", shop, "--label-column", "spend", "--task", "regression"]
    code, out, err = run_cli(
        "evaluate",
        *data,
        "--methods",
        "local,apfed-c,tvfl,centralized",
        "--seeds",
        "2",
        "--epochs",
        "2",
        "--out",
        tmp_path / "r",
    )
    assert code == 0, err
    rep = json.loads((tmp_path / "r" / "results.json").read_text())
    s = rep["summary"]
    assert rep["task"] == "regression" and {"r2_mean", "r2_std", "rmse_mean", "mae_mean"} <= s["local"].keys()
    assert "accuracy_mean" not in s["local"] and s["tvfl"]["gap_closed"] == pytest.approx(1.0)
    local = {r["seed"]: r["r2"] for r in rep["runs"] if r["method"] == "local"}
    diffs = [r["r2"] - local[r["seed"]] for r in rep["runs"] if r["method"] == "apfed-c"]
    assert s["apfed-c"]["vs_local_mean"] == pytest.approx(np.mean(diffs))
    assert "tvfl (passives absent: zero)" in s and "R²" in out and "RMSE" in out
    # centralized's fused model is its headline: no second "teacher" row of the same model
    assert [m for m in s if m.startswith("centralized")] == ["centralized"]
    md = (tmp_path / "r" / "results.md").read_text()
    assert "| R² |" in md and "R² is the test R²" in md and "accuracy" not in md.split("|")[0].lower()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "digits", "--task", "regression"], "--task regression applies to --data files"),
        (["--dataset", "digits", "--task", "ordinal"], "unknown task 'ordinal'"),
    ],
)
def test_a_wrong_task_is_one_clear_line(args, message):
    code, _, err = run_cli("train", *args, "--epochs", "1")
    assert code == 2 and err.strip().splitlines() == [err.strip()] and message in err, err


def test_a_label_that_is_not_a_number_is_one_clear_line(tmp_path):
    bank, shop = _csvs(tmp_path, 60)
    text = bank.read_text().splitlines()
    text[5] = text[5].rsplit(",", 1)[0] + ",lots"
    bank.write_text("\n".join(text) + "\n")
    code, _, err = run_cli(
        "train", "--data", bank, "--data", shop, "--label-column", "spend", "--task", "regression", "--epochs", "1"
    )
    lines = err.strip().splitlines()
    assert code == 2 and "holds 'lots', not a number" in lines[-1] and sum(e.startswith("error") for e in lines) == 1


def test_diabetes_is_a_bundled_regression_of_two_parties():
    ds, a = apfed.load_dataset("diabetes", log=lambda _: None)
    assert [v.name for v in ds.views] == ["clinic", "lab"] and a == 0
    assert ds.views[0].columns == ["age", "sex", "bmi", "bp"] and ds.views[1].X.shape == (442, 6)
    assert ds.labels.dtype == np.float32 and ds.class_names == [] and 25 <= ds.labels.min() < ds.labels.max() <= 346
    assert len(ds.test_idx) == 89 and not set(ds.train_idx) & set(ds.test_idx)
    # the bundled regression takes --task regression (a no-op); a classification set refuses it
    assert apfed.load_dataset("diabetes", task="regression", log=lambda _: None)[0].labels.dtype == np.float32
    with pytest.raises(ConfigError, match="digits is a classification"):
        apfed.load_dataset("digits", task="regression")


def test_a_labelled_share_of_a_regression_hides_the_others_as_nan():
    ds, _ = apfed.load_dataset("diabetes", labelled=0.25, log=lambda _: None)
    hidden = ds.unlabelled
    assert np.isnan(ds.labels[hidden]).all() and not np.isnan(ds.labels[ds.train_idx]).any()
    assert len(ds.train_idx) == pytest.approx(0.25 * (len(ds.train_idx) + len(hidden)), abs=1)
    r = apfed.train(ds, 0, "apfed-c", epochs=2)
    assert r.model.provenance["unlabelled_train_rows"] == len(hidden) and np.isfinite(r.accuracy)


def test_cross_validation_folds_a_regression_by_its_quantiles():
    from apfed.data.splits import fold

    ds, _ = apfed.load_dataset("diabetes", log=lambda _: None)
    tested = np.concatenate([np.asarray(fold(ds, k, 5).test_idx) for k in range(5)])
    assert sorted(tested) == sorted(np.r_[ds.train_idx, ds.test_idx])  # every labelled row tested once


def test_a_resumed_regression_equals_the_uninterrupted_one(tmp_path):
    from conftest import whole_and_resumed

    from apfed.config import make_config

    ds, _ = apfed.load_dataset("diabetes", labelled=0.5, log=lambda _: None)
    cfg = make_config("default", method="apfed-kd", epochs=2, batches_per_round=1, seed=1)
    whole, resumed = whole_and_resumed(ds, 0, cfg, tmp_path, crash_at=3, checkpoint_every=1)
    assert resumed.final == whole.final and "r2" in whole.final
    a, b = whole.model.net.state_dict(), resumed.model.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_preflight_reads_the_active_partys_regression_file_as_its_deployment_will(tmp_path):
    bank, _ = _csvs(tmp_path, 100)
    args = ["preflight", "--data", bank, "--id-column", "id", "--label-column", "spend"]
    code, out, err = run_cli(*args, "--task", "regression")
    assert code == 0, err
    assert "a numeric target from" in out and "(19 held out to test), 5 with no label" in out
    code, _, err = run_cli(*args)  # without the task: read as classes, which these numbers are not
    assert code == 2 and "train a regression (--task regression" in err and len(err.strip().splitlines()) == 1


def test_the_huber_loss_weighs_outliers_linearly_and_skips_rows_with_no_label():
    import torch.nn.functional as F

    out = torch.tensor([[0.0], [0.5], [4.0], [1.0]], requires_grad=True)
    y = torch.tensor([0.0, 0.0, 0.0, float("nan")])
    loss = mixed_squared_error(out, y, None, unlabelled=True, huber=1.0)
    expected = F.huber_loss(out[:3, 0], y[:3], delta=1.0)
    assert loss.item() == pytest.approx(expected.item())  # 0, 0.125 and 3.5 over the 3 labelled rows
    loss.backward()
    assert out.grad[2, 0].item() == pytest.approx(1 / 3) and out.grad[3, 0].item() == 0.0  # linear; no label
    a, b, y = _signal(300)
    ds = from_arrays({"bank": a, "shop": b}, y, task="regression")
    r = apfed.train(ds, 0, "apfed-c", epochs=3, huber=1.0)
    assert r.model.config["huber"] == 1.0 and 0 < r.accuracy < 1
    classes = from_arrays({"bank": a, "shop": b}, (y > 50).astype(int))
    with pytest.raises(ConfigError, match="huber is a regression's loss"):
        apfed.train(classes, 0, "local", epochs=1, huber=1.0)


def test_a_log_target_trains_on_log1p_and_predicts_in_the_targets_units(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    a, b, y = _signal(500)
    amounts = np.exp(y / 20)  # a skewed target: amounts
    ds = from_arrays({"bank": a, "shop": b}, amounts, task="regression")
    r = apfed.train(ds, 0, "apfed-kd", epochs=8, target_transform="log")
    m = r.model
    assert (
        m.logged
        and m.target["transform"] == "log"
        and m.target["mean"] == pytest.approx(np.log1p(amounts[ds.train_idx]).mean(), rel=1e-4)
    )
    pred = m.predict(a[ds.test_idx])
    assert pred.min() > 0  # exp(.) - 1 of the network's output: in the amounts' units
    assert regression_metrics(amounts[ds.test_idx], pred)["rmse"] == pytest.approx(r.final["rmse"], rel=1e-4)
    again = apfed.StandaloneModel.load(m.save(tmp_path / "m.safetensors"))
    np.testing.assert_allclose(again.predict(a[:20]), m.predict(a[:20]), rtol=1e-6)
    sess = ort.InferenceSession(str(m.export_onnx(tmp_path / "m.onnx")))
    (onnx,) = sess.run(None, {"features": a[:20].astype(np.float32)})
    np.testing.assert_allclose(onnx, m.predict(a[:20]), rtol=1e-4)
    negative = from_arrays({"bank": a, "shop": b}, y - 100, task="regression")
    with pytest.raises(DataError, match="every label must be above -1"):
        apfed.train(negative, 0, "local", epochs=1, target_transform="log")


@pytest.mark.parametrize(
    ("tamper", "match"),
    [
        (lambda m: m["target"].update(mean="x"), "'target' has no finite mean and std"),
        (lambda m: m["target"].update(transform="sqrt"), "'target' 'transform' is unknown"),
        (lambda m: m.update(task="ranking"), "'task' is no task apfed knows"),
        (lambda m: m.update(class_names=["a", "b"]), "a regression model has no 'class_names'"),
        (lambda m: m.pop("target"), "'target' is not a mapping"),
    ],
)
def test_a_malformed_regression_model_file_is_one_clear_line(tmp_path, regression_runs, tamper, match):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = regression_runs[3]["local"].model.save(tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["apfed"])
    tensors = load_file(str(path))
    tamper(meta)
    save_file(tensors, str(path), metadata={"apfed": json.dumps(meta)})
    with pytest.raises(ApfedError, match=f"malformed apfed model file: {match}"):
        apfed.StandaloneModel.load(path)
    code, _, err = run_cli("info", "--model", path)
    assert code == 2 and len(err.strip().splitlines()) == 1 and match in err
