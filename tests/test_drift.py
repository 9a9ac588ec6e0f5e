"""``apfed drift``: each column's population stability index of new rows against the model's training rows."""

import csv
import json
import re

import numpy as np
import pytest
from conftest import run_cli

import apfed
from apfed.drift import chance_level, compare, profile, psi, verdict
from apfed.errors import ApfedError
from apfed.standalone import StandaloneModel


def test_psi_is_zero_for_the_same_shares_and_matches_a_hand_computation():
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0
    by_hand = (0.7 - 0.5) * np.log(0.7 / 0.5) + (0.3 - 0.5) * np.log(0.3 / 0.5)
    assert psi([0.5, 0.5], [0.7, 0.3]) == pytest.approx(by_hand)
    assert np.isfinite(psi([0.5, 0.5, 0.0], [0.4, 0.4, 0.2]))  # an empty bin is floored, not infinite
    assert [verdict(v) for v in (0.05, 0.1, 0.2, 0.3)] == ["stable", "moved", "moved", "shifted"]


def test_rows_like_the_training_rows_are_stable_and_a_moved_column_is_named():
    rng = np.random.default_rng(0)
    n = 20_000
    city = rng.choice(3, n, p=[0.6, 0.3, 0.1])
    X = np.column_stack([rng.normal(50, 10, n), rng.exponential(2, n), np.eye(3)[city]])
    X[rng.random(n) < 0.05, 1] = np.nan
    groups = [("income", [0]), ("debt", [1]), ("city", [2, 3, 4])]
    prof = profile(X, groups, {"city"}, rows=n)
    assert prof["rows"] == n and [c["column"] for c in prof["columns"]] == ["income", "debt", "city"]
    assert sum(prof["columns"][1]["shares"]) + prof["columns"][1]["missing"] == pytest.approx(1, abs=1e-4)
    assert prof["columns"][2]["shares"] == pytest.approx([0.6, 0.3, 0.1], abs=0.01)
    m = 5000
    same = np.column_stack(
        [rng.normal(50, 10, m), rng.exponential(2, m), np.eye(3)[rng.choice(3, m, p=[0.6, 0.3, 0.1])]]
    )
    same[rng.random(m) < 0.05, 1] = np.nan
    assert all(r["verdict"] == "stable" and r["psi"] < 0.02 for r in compare(prof, same))
    moved = same.copy()
    moved[:, 0] += 8  # incomes up by 0.8 standard deviations
    moved[: m // 4, 1] = np.nan  # a quarter of the debts missing
    rows = compare(prof, moved)
    by = {r["column"]: r for r in rows}
    assert rows[0]["column"] in ("income", "debt") and by["city"]["verdict"] == "stable"
    assert by["income"]["verdict"] == "shifted" and by["income"]["new_median"] == pytest.approx(58, abs=0.6)
    assert by["debt"]["psi"] > 0.25 and by["debt"]["new_missing"] > 0.25 and by["debt"]["train_missing"] < 0.06
    flipped = same.copy()
    flipped[:, 2:] = np.eye(3)[rng.choice(3, m, p=[0.2, 0.3, 0.5])]
    city_row = next(r for r in compare(prof, flipped) if r["column"] == "city")
    assert city_row["verdict"] == "shifted" and city_row["most_moved"] in (0, 2)
    assert city_row["new_share"] == pytest.approx([0.2, 0.3, 0.5][city_row["most_moved"]], abs=0.02)


def test_the_chance_level_is_what_rows_drawn_like_the_training_rows_read():
    rng = np.random.default_rng(1)
    prof = profile(rng.normal(size=(2000, 1)), [("x", [0])], set(), rows=2000)
    for n in (100, 400):
        reads = [compare(prof, rng.normal(size=(n, 1)))[0]["psi"] for _ in range(200)]
        assert np.mean(reads) == pytest.approx(chance_level(n, 2000), rel=0.2)


def _frames(tmp_path, n=600):
    rng = np.random.default_rng(2)
    ids = [f"c{i}" for i in range(n)]
    income = rng.normal(50, 10, n)
    y = np.where(income + rng.normal(0, 5, n) > 52, "yes", "no")
    active = {
        "id": ids,
        "income": income,
        "age": rng.normal(40, 8, n),
        "city": rng.choice(["Paris", "Lyon", "Nice"], n),
        "label": y,
    }
    passive = {"id": ids, "b": rng.normal(size=n) + (y == "yes")}
    return active, passive


def _write(path, table, rows):
    keys = list(table)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        for i in rows:
            w.writerow(["" if isinstance(table[k][i], float) and np.isnan(table[k][i]) else table[k][i] for k in keys])


def test_the_model_file_keeps_its_profile_and_drift_reads_new_rows_with_gaps(tmp_path):
    active, passive = _frames(tmp_path)
    ds = apfed.from_parties({"bank": active, "shop": passive})
    r = apfed.train(ds, 0, "apfed-c", epochs=1)
    path = r.model.save(tmp_path / "m.safetensors")
    m = StandaloneModel.load(path)
    assert m.profile == r.model.profile and m.profile["rows"] == len(ds.train_idx)
    assert [c["column"] for c in m.profile["columns"]] == ["income", "age", "city"]
    X = ds.views[0].X[ds.test_idx].copy()
    X[:10, 0] = np.nan  # income had no gap in training: a prediction refuses it, drift counts it
    rows = {d["column"]: d for d in m.drift(X)}
    assert rows["income"]["new_missing"] == pytest.approx(10 / len(X))
    assert "income" in rows and "city" in rows
    with pytest.raises(ApfedError, match="NaN"):
        m.predict(X)
    bare = apfed.train(ds, 0, "apfed-c", epochs=1, profile=False).model
    assert bare.profile is None and "profile" not in bare.metadata()
    with pytest.raises(ApfedError, match="keeps no profile of its training rows"):
        bare.drift(X)


def test_a_tampered_profile_is_a_malformed_model_file(tmp_path):
    import safetensors.torch

    active, passive = _frames(tmp_path)
    model = apfed.train(apfed.from_parties({"bank": active, "shop": passive}), 0, "local", epochs=1).model
    meta = model.metadata()
    meta["profile"]["columns"][0]["edges"] = [3.0, 1.0]  # not in order
    tensors = {k: v.contiguous() for k, v in model.net.state_dict().items()}
    safetensors.torch.save_file(tensors, str(tmp_path / "bad.safetensors"), metadata={"apfed": json.dumps(meta)})
    with pytest.raises(ApfedError, match="malformed apfed model file: 'profile' column 'income' is malformed"):
        StandaloneModel.load(tmp_path / "bad.safetensors")


def test_the_drift_command_flags_a_shift_and_fails_above_a_threshold(tmp_path):
    active, passive = _frames(tmp_path)
    n = len(active["id"])
    _write(tmp_path / "bank.csv", active, range(n))
    _write(tmp_path / "shop.csv", passive, range(n))
    model = tmp_path / "m.safetensors"
    data = ["--data", tmp_path / "bank.csv", "--data", tmp_path / "shop.csv"]
    code, _, err = run_cli("train", *data, "--method", "local", "--epochs", "1", "--out", model)
    assert code == 0, err
    _, out, _ = run_cli("info", "--model", model)
    assert "apfed drift compares new rows with it" in out
    rng = np.random.default_rng(5)
    new = {k: np.asarray(v)[:400].copy() for k, v in active.items() if k != "label"}
    new["income"] = new["income"] + 15
    new["city"] = np.where(rng.random(400) < 0.7, "Nice", new["city"])
    new["age"] = new["age"].astype(float)
    new["age"][:40] = np.nan
    _write(tmp_path / "new.csv", new, range(400))
    code, out, err = run_cli("drift", "--model", model, "--input", tmp_path / "new.csv")
    assert code == 0, err
    # age: the same values, but a tenth now missing, where training had none: a shift too
    assert "400 rows against 480 training rows: 3 column(s) shifted (PSI > 0.25)" in out, out
    assert "Nice" in out and "median" in out
    code, out, _ = run_cli("drift", "--model", model, "--input", tmp_path / "new.csv", "--json")
    report = json.loads(out)
    assert report["rows"] == 400 and {c["column"] for c in report["columns"]} == {"income", "age", "city"}
    assert report["chance_level"] == pytest.approx(9 * (1 / 400 + 1 / 480))
    assert next(c for c in report["columns"] if c["column"] == "age")["new_missing"] == pytest.approx(0.1)
    code, _, err = run_cli("drift", "--model", model, "--input", tmp_path / "new.csv", "--fail-above", "0.25")
    assert code == 1 and "has PSI" in err and "above 0.25" in err
    _write(tmp_path / "same.csv", {k: v for k, v in active.items() if k != "label"}, range(n))
    code, out, err = run_cli("drift", "--model", model, "--input", tmp_path / "same.csv", "--fail-above", "0.25")
    assert code == 0 and "0 column(s) shifted" in out, out + err
    code, _, err = run_cli("drift", "--model", model, "--input", tmp_path / "nope.csv")
    assert code != 0 and err.strip() == f"error: input file not found: {tmp_path / 'nope.csv'}"


def test_the_model_file_keeps_its_outputs_on_held_out_rows_and_drift_compares_new_rows_outputs(tmp_path):
    active, passive = _frames(tmp_path)
    ds = apfed.from_parties({"bank": active, "shop": passive}, log=lambda *_: None)
    model = apfed.train(ds, 0, "apfed-c", epochs=3).model
    out = model.output_profile
    assert out["source"] == "test" and out["rows"] == len(ds.test_idx) and out["positive"] == 1  # "yes" is rarer
    assert [c["column"] for c in out["columns"]] == ["predicted class", "P(yes)"]
    m = StandaloneModel.load(model.save(tmp_path / "m.safetensors"))
    assert m.output_profile == out and m.describe()["output_profile_rows"] == {"rows": 120, "source": "test"}
    test = ds.views[0].X[ds.test_idx]
    outputs = {r["column"]: r for r in m.drift(test) if r.get("output")}
    assert all(r["psi"] < 1e-9 and r["rows"] == 120 for r in outputs.values())  # the very rows it was profiled on
    richer = test.copy()
    richer[:, 0] += 15  # incomes up by 1.5 SDs: the label follows income, so the model says "yes" far more often
    richer[:20, 1] = np.nan  # age had no gap in training: those rows cannot be predicted, their columns still count
    outputs = {r["column"]: r for r in m.drift(richer) if r.get("output")}
    assert outputs["P(yes)"]["verdict"] == "shifted" and outputs["P(yes)"]["new_median"] > out["columns"][1]["median"]
    assert outputs["predicted class"]["psi"] > 0.1 and outputs["P(yes)"]["rows"] == 100
    every = apfed.from_parties({"bank": active, "shop": passive}, test_size=0, log=lambda *_: None)
    held = apfed.train(every, 0, "local", epochs=1, validation=0.25).model.output_profile
    assert held["source"] == "validation" and held["rows"] == 150
    assert apfed.train(every, 0, "local", epochs=1).model.output_profile["source"] == "training"
    regression = apfed.from_parties(
        {"bank": {**active, "label": active["income"] * 2.0}, "shop": passive}, task="regression", log=lambda *_: None
    )
    reg = apfed.train(regression, 0, "local", epochs=2).model
    assert [c["column"] for c in reg.output_profile["columns"]] == ["prediction"]
    assert StandaloneModel.load(reg.save(tmp_path / "r.safetensors")).output_profile == reg.output_profile


def test_a_tampered_output_profile_is_a_malformed_model_file(tmp_path):
    import safetensors.torch

    active, passive = _frames(tmp_path)
    model = apfed.train(apfed.from_parties({"bank": active, "shop": passive}), 0, "local", epochs=1).model
    tensors = {k: v.contiguous() for k, v in model.net.state_dict().items()}
    for change, why in (
        (lambda o: o.update(source="somewhere"), "'output_profile' has no source of its rows"),
        (lambda o: o["columns"].reverse(), "'output_profile' does not profile this model's outputs"),
        (lambda o: o["columns"][1].update(feature=7), "'output_profile' column 'P(yes)' is malformed"),
    ):
        meta = json.loads(json.dumps(model.metadata()))  # a copy: the model's own profile stays as it was
        change(meta["output_profile"])
        safetensors.torch.save_file(tensors, str(tmp_path / "bad.safetensors"), metadata={"apfed": json.dumps(meta)})
        with pytest.raises(ApfedError, match=re.escape(f"malformed apfed model file: {why}")):
            StandaloneModel.load(tmp_path / "bad.safetensors")


def test_an_image_model_compares_its_outputs(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(200) % 2
    images = (rng.integers(0, 100, (200, 1, 8, 8)) + 120 * labels[:, None, None, None]).astype(np.uint8)
    ds = apfed.from_arrays({"top": images, "bottom": images[:, :, ::-1]}, labels)
    model = apfed.train(ds, 0, "local", epochs=5).model
    assert model.profile is None and model.output_profile["source"] == "test"
    model.save(tmp_path / "img.safetensors")
    np.savez(tmp_path / "same.npz", X=images[ds.test_idx].reshape(40, -1).astype(np.float32))
    dark = images[ds.test_idx] // 4  # every image darker: the model sees the dim class everywhere
    np.savez(tmp_path / "dark.npz", X=dark.reshape(40, -1).astype(np.float32))
    code, out, err = run_cli("drift", "--model", tmp_path / "img.safetensors", "--input", tmp_path / "same.npz")
    assert code == 0, err
    assert "the model's outputs on 40 rows against its test rows (40): largest PSI 0.000 (stable)" in out, out
    assert "columns against the training rows" not in out
    cmd = ("drift", "--model", tmp_path / "img.safetensors", "--input", tmp_path / "dark.npz", "--fail-above", "0.25")
    code, out, err = run_cli(*cmd)
    assert code == 1 and "drift: the model's output 'P(1)' has PSI" in err and "chance alone reads" in err, out + err
    report = json.loads(run_cli(*cmd[:5], "--json")[1])
    assert "columns" not in report and report["outputs"]["reference"] == "test"
    predicted = next(c for c in report["outputs"]["columns"] if c["column"] == "predicted class")
    assert predicted["verdict"] == "shifted" and predicted["new_share"] == pytest.approx(1.0)
    bare = apfed.train(ds, 0, "local", epochs=1, profile=False).model
    assert bare.output_profile is None
    bare.save(tmp_path / "bare.safetensors")
    code, _, err = run_cli("drift", "--model", tmp_path / "bare.safetensors", "--input", tmp_path / "same.npz")
    assert code != 0 and "keeps no profile of its training rows" in err
