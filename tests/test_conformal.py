"""Conformal prediction (``--set conformal=0.9``): the quantile, the intervals and sets, their coverage on rows the
model never saw, the model file and the commands."""

import csv
import json

import numpy as np
import pytest
from conftest import run_cli

import apfed
from apfed.conformal import class_scores, intervals, prediction_sets, quantile, residual_scores, rows_needed
from apfed.data.arrays import from_arrays
from apfed.errors import ApfedError, ConfigError, DataError
from apfed.standalone import StandaloneModel


def test_the_quantile_is_the_finite_sample_order_statistic():
    scores = np.arange(1, 20, dtype=float)[::-1]  # 19 scores, 1..19
    assert quantile(scores, 0.9) == 18  # ceil(20 * 0.9) = 18th smallest
    assert quantile(scores, 0.5) == 10
    assert rows_needed(0.9) == 9 and rows_needed(0.95) == 19 and rows_needed(0.5) == 1
    assert quantile(np.arange(9.0), 0.9) == 8  # 9 rows: exactly enough
    with pytest.raises(DataError, match="needs at least 9 validation rows, and the run holds 8"):
        quantile(np.arange(8.0), 0.9)


def test_a_new_exchangeable_score_is_below_the_quantile_at_least_as_often_as_asked():
    """The promise itself, by simulation: calibrate on n scores, test on a new one, many times over."""
    rng = np.random.default_rng(0)
    n, trials = 19, 20000
    scores = rng.exponential(size=(trials, n + 1))
    q = np.array([quantile(s[:n], 0.78) for s in scores])
    held = (scores[:, n] <= q).mean()
    # exactly ceil((n + 1) c) / (n + 1) = 16 / 20 of the time: at least c, less than c + 1 / (n + 1)
    assert held == pytest.approx(0.8, abs=0.01)


def test_intervals_and_sets_from_scores():
    out = np.array([1.0, 2.0])
    np.testing.assert_allclose(intervals(out, 0.5, False), [[0.5, 1.5], [1.5, 2.5]])
    np.testing.assert_allclose(intervals(out, 0.5, True), np.expm1([[0.5, 1.5], [1.5, 2.5]]))
    np.testing.assert_allclose(residual_scores(out, np.array([1.5, 0.0]), False), [0.5, 2.0])
    np.testing.assert_allclose(residual_scores(np.log1p([3.0]), np.array([3.0]), True), [0.0], atol=1e-12)
    proba = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.1, 0.1, 0.8]])
    np.testing.assert_allclose(class_scores(proba, np.array([0, 1, 0])), [0.3, 0.65, 0.9])
    sets = prediction_sets(proba, 0.7)  # classes of probability at least 0.3, and the most probable one
    assert sets.tolist() == [[True, False, False], [True, True, False], [False, False, True]]
    assert prediction_sets(proba, 0.0).sum(1).tolist() == [1, 1, 1]  # never empty


def _regression(n: int = 900, seed: int = 0):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(n, 3)), rng.normal(size=(n, 2))
    y = 100 + 30 * a[:, 0] + 20 * b[:, 0] + 10 * rng.normal(size=n)
    return a, b, y


def test_regression_intervals_cover_the_test_rows_as_asked():
    a, b, y = _regression()
    ds = from_arrays({"clinic": a, "lab": b}, y, task="regression")
    logs = []
    r = apfed.train(ds, 0, "apfed-c", epochs=10, validation=0.25, conformal=0.9, log=logs.append)
    f = r.final
    assert any("kept apart to calibrate the conformal predictions" in line for line in logs)
    assert 84 <= f["conformal_coverage"] <= 97 and f["interval_width"] == pytest.approx(2 * f["conformal_q"])
    m = r.model
    assert m.conformal["coverage"] == 0.9 and m.conformal["rows"] == 90  # half of the 180 validation rows
    test = ds.test_idx
    bounds = m.predict_interval(a[test])
    np.testing.assert_allclose(bounds.mean(1), m.predict(a[test]), rtol=1e-5)
    held = ((y[test] >= bounds[:, 0]) & (y[test] <= bounds[:, 1])).mean() * 100
    assert held == pytest.approx(f["conformal_coverage"])
    with pytest.raises(ApfedError, match="gives intervals: use predict_interval"):
        m.predict_set(a[:3])


def test_a_log_target_gets_intervals_asymmetric_in_its_units(tmp_path):
    a, b, y = _regression()
    y = np.exp(y / 40)  # skewed, positive
    ds = from_arrays({"clinic": a, "lab": b}, y, task="regression")
    r = apfed.train(ds, 0, "local", epochs=10, validation=0.25, conformal=0.8, target_transform="log")
    path = r.model.save(tmp_path / "m.safetensors")
    m = StandaloneModel.load(path)
    bounds, pred = m.predict_interval(a[:50]), m.predict(a[:50])
    assert np.all(bounds[:, 0] < pred) and np.all(pred < bounds[:, 1])
    np.testing.assert_allclose(np.log1p(bounds).mean(1), np.log1p(pred), rtol=1e-4)  # symmetric in log(1 + y)
    assert np.all(bounds[:, 1] - pred > pred - bounds[:, 0])


def test_classification_sets_cover_the_test_rows_and_hold_the_predicted_class(tmp_path):
    ds, active = apfed.load_dataset("digits", log=lambda *_: None)
    r = apfed.train(ds, active, "apfed-c", epochs=8, validation=0.2, conformal=0.9, calibrate=True)
    f = r.final
    assert 84 <= f["conformal_coverage"] <= 98 and 1 <= f["set_size"] < 4
    m = StandaloneModel.load(r.model.save(tmp_path / "m.safetensors"))
    X, y = ds.views[active].X[ds.test_idx], ds.labels[ds.test_idx]
    sets = m.predict_set(X)
    assert sets.shape == (len(X), len(m.class_names))
    assert np.all(sets[np.arange(len(X)), m.predict_proba(X).argmax(1)])
    assert sets[np.arange(len(X)), y].mean() * 100 == pytest.approx(f["conformal_coverage"])
    # the rows kept apart pick no epoch: the validation figures are of the other half
    assert m.provenance["validation_rows"] + m.conformal["rows"] == 288  # 20 % of the 1,437 training rows


def test_conformal_needs_validation_rows_enough_of_them_and_a_standalone_model():
    a, b, y = _regression(200)
    ds = from_arrays({"clinic": a, "lab": b}, y, task="regression")
    with pytest.raises(ConfigError, match="conformal calibrates on validation rows: set validation"):
        apfed.train(ds, 0, "local", epochs=1, conformal=0.9)
    with pytest.raises(ConfigError, match="tvfl has none"):
        apfed.train(ds, 0, "tvfl", epochs=1, validation=0.2, conformal=0.9)
    with pytest.raises(ConfigError, match="conformal must be a coverage in"):
        apfed.train(ds, 0, "local", epochs=1, validation=0.2, conformal=1.0)
    with pytest.raises(DataError, match="needs at least 99 of them; the run holds 32 validation rows"):
        apfed.train(ds, 0, "local", epochs=1, validation=0.2, conformal=0.99)


def test_a_model_without_conformal_says_how_to_get_it():
    a, b, y = _regression(200)
    ds = from_arrays({"clinic": a, "lab": b}, y, task="regression")
    m = apfed.train(ds, 0, "local", epochs=1).model
    with pytest.raises(ApfedError, match="trained without conformal"):
        m.predict_interval(a[:3])


@pytest.mark.parametrize(
    "tamper, match",
    [
        ({"coverage": 1.5, "q": 1.0, "rows": 9}, "'conformal' has no coverage, q and rows"),
        ({"coverage": 0.9, "q": -1.0, "rows": 9}, "'conformal' has no coverage, q and rows"),
        ({"coverage": 0.9, "q": 1.0}, "'conformal' has no coverage, q and rows"),
        ([0.9], "'conformal' is not a mapping"),
    ],
)
def test_a_malformed_conformal_block_is_one_clear_line(tmp_path, tamper, match):
    from safetensors.torch import load_file, save_file

    a, b, y = _regression(300)
    ds = from_arrays({"clinic": a, "lab": b}, y, task="regression")
    path = apfed.train(ds, 0, "local", epochs=1, validation=0.3, conformal=0.8).model.save(tmp_path / "m.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["apfed"])
    assert meta["format_version"] == 4
    meta["conformal"] = tamper
    save_file(load_file(str(path)), str(path), metadata={"apfed": json.dumps(meta)})
    with pytest.raises(ApfedError, match=match):
        StandaloneModel.load(path)


def _bank_csvs(tmp_path, n: int = 600):
    a, b, y = _regression(n, seed=4)
    with (tmp_path / "bank.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "a0", "a1", "a2", "spend"])
        w.writerows([f"c{i}", *np.round(a[i], 5), f"{y[i]:.3f}"] for i in range(n))
    with (tmp_path / "shop.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "b0", "b1"])
        w.writerows([f"c{i}", *np.round(b[i], 5)] for i in range(n))
    return tmp_path / "bank.csv", tmp_path / "shop.csv"


def test_the_commands_write_and_score_intervals(tmp_path):
    bank, shop = _bank_csvs(tmp_path)
    model = tmp_path / "m.safetensors"
    data = ["--data", bank, "--data", shop, "--label-column", "spend", "--task", "regression"]
    sets = ["--set", "validation=0.25", "--set", "conformal=0.9"]
    code, _, err = run_cli("train", *data, "--method", "apfed-c", "--epochs", "5", *sets, "--out", model)
    assert code == 0, err
    assert "conformal intervals" in err and "of the test rows" in err
    code, out, _ = run_cli("info", "--model", model)
    assert code == 0 and "90 % intervals: the prediction ± " in out and "60 validation rows" in out
    code, _, err = run_cli("predict", "--model", model, "--input", bank, "--output", tmp_path / "p.csv")
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert list(rows[0]) == ["id", "prediction", "lower", "upper"]
    assert all(float(r["lower"]) < float(r["prediction"]) < float(r["upper"]) for r in rows)
    code, out, err = run_cli("score", "--model", model, "--input", bank, "--label-column", "spend", "--json")
    assert code == 0, err
    c = json.loads(out)["conformal"]
    assert c["coverage"] == 0.9 and c["validation_rows"] == 60 and 80 < c["conformal_coverage"] <= 100
    code, out, _ = run_cli("score", "--model", model, "--input", bank, "--label-column", "spend")
    assert "Its 90 % conformal intervals held the true value for" in out


def test_predict_writes_a_classifiers_sets(tmp_path, party_csvs):
    active, p1, p2 = party_csvs["paths"]
    model = tmp_path / "m.safetensors"
    args = ["--data", active, "--data", p1, "--data", p2, "--id-column", "user_id", "--epochs", "4"]
    args += ["--method", "local"]
    code, _, err = run_cli("train", *args, "--set", "validation=0.3", "--set", "conformal=0.8", "--out", model)
    assert code == 0, err
    out = tmp_path / "p.csv"
    code, _, err = run_cli("predict", "--model", model, "--input", active, "--id-column", "user_id", "--output", out)
    assert code == 0, err
    rows = list(csv.DictReader(out.open()))
    classes = [c.removeprefix("p_") for c in rows[0] if c.startswith("p_")]
    assert list(rows[0])[-1] == "prediction_set"
    for r in rows:
        members = r["prediction_set"].split("|")
        assert r["prediction"] in members and set(members) <= set(classes)
    code, out, err = run_cli("score", "--model", model, "--input", active, "--id-column", "user_id", "--json")
    assert code == 0, err
    assert 1 <= json.loads(out)["conformal"]["set_size"] <= len(classes)


def test_a_comparison_gives_conformal_to_the_standalone_methods_and_says_how_they_did():
    from apfed.config import make_config, variant_config
    from apfed.report import conformal_note, summarize

    cfg = make_config("default", validation=0.25, conformal=0.9)
    assert variant_config(cfg, "local").conformal == 0.9
    assert variant_config(cfg, "tvfl").conformal == 0 and not variant_config(cfg, "centralized").calibrate
    with pytest.raises(ConfigError, match="tvfl has none"):
        variant_config(cfg, "tvfl[conformal=0.8]")  # asked for by the entry itself
    a, b, y = _regression(400)
    ds = from_arrays({"clinic": a, "lab": b}, y, task="regression")
    methods = ["local", "tvfl", "local[conformal=0.8]"]
    report = apfed.compare(ds, 0, methods, seeds=2, epochs=3, validation=0.25, conformal=0.9)
    s = report["summary"]
    assert "conformal_coverage_mean" in s["local"] and "conformal_coverage_mean" not in s["tvfl"]
    finals = [r["final"] for r in report["runs"] if r.get("variant", r["method"]) == "local"]
    assert s["local"]["interval_width_mean"] == pytest.approx(np.mean([f["interval_width"] for f in finals]))
    note = conformal_note(s)
    assert note.startswith("conformal intervals held the truth on the test rows for: local ")
    assert "(asked 90 %, " in note
    assert "local[conformal=0.8] " in note and "(asked 80 %, " in note  # each variant's own coverage
    tvfl_runs = [r for r in report["runs"] if r["method"] == "tvfl"]
    assert "tvfl" not in note and conformal_note(summarize(tvfl_runs)) is None
