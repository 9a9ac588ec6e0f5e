"""The Python API (apfed.api): the same data rules, checks and runs as the CLI, with errors as exceptions."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import run_cli

import apfed
from apfed.errors import ConfigError, DataError


def test_import_apfed_stays_light_and_exposes_the_api():
    code = (
        "import sys, apfed; assert 'torch' not in sys.modules, 'import apfed imported torch';"
        "apfed.train; assert 'torch' not in sys.modules; print(sorted(apfed.__all__))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    for name in ("load_dataset", "train", "compare", "simulate", "StandaloneModel"):
        assert name in p.stdout
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        apfed.nope  # noqa: B018


def test_load_dataset_follows_the_cli_rules(party_csvs):
    ds, a = apfed.load_dataset()
    assert ds.name == "handwritten" and ds.views[a].name == "fou"
    ds, a = apfed.load_dataset("digits", active=1)
    assert ds.name == "digits" and a == 1
    logged = []
    ds, a = apfed.load_dataset(data=party_csvs["paths"], id_column="user_id", log=logged.append)
    assert a == 0 and len(ds.views) == 3 and len(ds.labels) == party_csvs["common"]
    assert len(logged) == 4 and all(f"{party_csvs['common']} matched" in m for m in logged[:3])
    n_test = int(ds.unmatched.test.sum())
    assert logged[3] == (
        f"bank.csv: 30 labelled rows are missing at some passive ({30 - n_test} train, {n_test} test): standalone"
        " methods also train and are tested on them (unmatched_rows=train, the default; tvfl and centralized cannot)"
    )
    assert len(ds.unmatched) == 30 and not np.isin(ds.unmatched.ids, ds.ids).any()
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        apfed.load_dataset("nope")
    with pytest.raises(ConfigError, match="either --data files or --dataset"):
        apfed.load_dataset("digits", data=party_csvs["paths"])
    with pytest.raises(DataError, match="not bundled: give --data-dir"):
        apfed.load_dataset("cifar10")
    with pytest.raises(DataError, match="unknown view 'nope'"):
        apfed.load_dataset("handwritten", active="nope")
    # a subset of the passive views: the same rows, the views in the dataset's order
    full, _ = apfed.load_dataset("handwritten")
    ds, a = apfed.load_dataset("handwritten", active="kar", passives="mor, fou")
    assert (
        [v.name for v in ds.views] == ["fou", "kar", "mor"]
        and a == 1
        and np.array_equal(ds.views[2].X, full.views[5].X)
    )
    assert np.array_equal(ds.train_idx, full.train_idx) and np.array_equal(ds.labels, full.labels)
    assert [v.name for v in apfed.load_dataset("handwritten", passives=[1, "zer"])[0].views] == ["fou", "fac", "zer"]
    for passives, message in (
        ("kar,fou", "'fou' is the active party's"),
        ("kar,2", "names a view twice"),
        ("", "no view"),
    ):
        with pytest.raises(ConfigError, match=message):
            apfed.load_dataset("handwritten", passives=passives)


def test_train_returns_a_standalone_model_that_scores_as_the_run_did():
    ds, a = apfed.load_dataset("digits")
    epochs = []
    r = apfed.train(ds, a, "apfed-c", epochs=2, seed=1, on_epoch=epochs.append)
    assert r.method == "apfed-c" and r.seed == 1 and len(r.history) == 2 and len(epochs) == 2
    assert r.wire["messages"] > 0
    X_test = ds.views[a].X[ds.test_idx]  # the active view's raw features, nothing else
    truth = np.asarray(ds.class_names)[ds.labels[ds.test_idx]]
    assert 100 * np.mean(r.model.predict(X_test) == truth) == pytest.approx(r.final["accuracy"])
    from sklearn.metrics import average_precision_score, roc_auc_score  # the ranking figures, computed another way

    proba, y = r.model.predict_proba(X_test), ds.labels[ds.test_idx]
    assert r.final["roc_auc"] == pytest.approx(roc_auc_score(y, proba, multi_class="ovr"), abs=1e-6)
    ap = np.mean([average_precision_score(y == c, proba[:, c]) for c in range(proba.shape[1])])
    assert r.final["average_precision"] == pytest.approx(ap, abs=1e-6)
    again = apfed.train(ds, a, "apfed-c", epochs=2, seed=1)
    assert again.accuracy == r.accuracy  # same seed, same run
    assert apfed.train(ds, a, "tvfl", epochs=1).model is None  # needs every party: no standalone model


def test_train_refuses_what_cannot_run(party_csvs):
    ds, a = apfed.load_dataset("digits")
    with pytest.raises(ConfigError, match="no training setting 'epochz'; did you mean epochs\\?"):
        apfed.train(ds, a, "apfed-c", epochz=2)
    with pytest.raises(ConfigError, match="method must be one of"):
        apfed.train(ds, a, "nope")
    with pytest.raises(ConfigError, match="has 1 passive"):
        apfed.train(ds, a, "apfed-m", passive_losses="r,c")
    with pytest.raises(ConfigError, match="out of range"):
        apfed.train(ds, 5, "local")
    with pytest.raises(ConfigError, match="unknown view 'middle' for digits; choose one of top, bottom"):
        apfed.train(ds, "middle", "local")
    with pytest.raises(ConfigError, match="a view index or name, got 1.0"):
        apfed.compare(ds, 1.0, ["local"])
    by_name = apfed.train(ds, "bottom", "local", epochs=1)  # the active view by its name, as the CLI's --active
    assert by_name.final == apfed.train(ds, 1, "local", epochs=1).final
    alone, a = apfed.load_dataset(data=party_csvs["paths"][:1], id_column="user_id", log=lambda *_: None)
    with pytest.raises(ConfigError, match="apfed-c needs at least 2 views"):
        apfed.train(alone, a, "apfed-c", epochs=1)
    assert apfed.train(alone, a, "local", epochs=1).model is not None


def test_compare_writes_the_evaluate_report(tmp_path):
    ds, a = apfed.load_dataset("digits")
    rep = apfed.compare(ds, a, ["local", "tvfl"], seeds=2, epochs=1, out=tmp_path / "cmp")
    s = rep["summary"]
    assert s["local"]["seeds"] == 2 and s["local"]["standalone"] and not s["tvfl"]["standalone"]
    assert s["tvfl"]["gap_closed"] == pytest.approx(1.0)
    saved = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert saved["summary"]["local"]["accuracy_mean"] == pytest.approx(s["local"]["accuracy_mean"])
    with pytest.raises(ConfigError, match="seeds must be at least 1"):
        apfed.compare(ds, a, ["local"], seeds=0)
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        apfed.compare(ds, a, ["local", "nope"], seeds=1)


def test_simulate_refuses_methods_without_passives():
    with pytest.raises(ConfigError, match="no passive parties to simulate"):
        apfed.simulate("local", dataset="digits")


def test_compare_resumes_an_interrupted_comparison_from_its_stored_runs(tmp_path):
    """Each finished run is stored in OUT/runs/; resume=True reuses the ones made from the same data and
    settings, trains only the missing ones, and refuses a stored run made with other settings or unreadable."""
    ds, a = apfed.load_dataset("digits")
    kw = dict(methods=["local", "apfed-c"], seeds=1, epochs=1, out=tmp_path, jobs=1)
    first = apfed.compare(ds, a, **kw)
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["apfed-c-seed0.json", "local-seed0.json"]
    kept = (runs / "local-seed0.json").read_bytes()
    (runs / "apfed-c-seed0.json").unlink()  # as if interrupted during apfed-c

    again = apfed.compare(ds, a, resume=True, **kw)
    assert again["runs"][0] == first["runs"][0]  # reused as stored: its own timings too
    assert (runs / "local-seed0.json").read_bytes() == kept
    assert (runs / "apfed-c-seed0.json").exists()  # trained again, and stored
    assert again["runs"][1]["accuracy"] == first["runs"][1]["accuracy"]  # same seed, same run
    assert again["summary"]["local"]["accuracy_mean"] == first["summary"]["local"]["accuracy_mean"]

    # a run stored by an apfed before a setting existed ran as its default does: it is reused
    stored = json.loads((runs / "local-seed0.json").read_text())
    del stored["key"]["config"]["calibrate"]
    (runs / "local-seed0.json").write_text(json.dumps(stored))
    assert apfed.compare(ds, a, resume=True, **kw)["runs"][0] == first["runs"][0]
    stored["key"]["config"]["calibrate"] = True  # but not one stored with another value
    (runs / "local-seed0.json").write_text(json.dumps(stored))
    with pytest.raises(ConfigError, match=r"other settings \(calibrate True, now False\)"):
        apfed.compare(ds, a, resume=True, **kw)
    (runs / "local-seed0.json").write_bytes(kept)
    with pytest.raises(ConfigError, match=r"local-seed0.json was made with other settings \(epochs 1, now 2\)"):
        apfed.compare(ds, a, resume=True, **{**kw, "epochs": 2})
    with pytest.raises(ConfigError, match=r"other settings \(the data\)"):
        apfed.compare(*apfed.load_dataset("digits", views=3), resume=True, **kw)
    (runs / "local-seed0.json").write_text("{not json")
    with pytest.raises(DataError, match="not a stored run"):
        apfed.compare(ds, a, resume=True, **kw)
    with pytest.raises(ConfigError, match="needs the output directory"):
        apfed.compare(ds, a, resume=True, **{**kw, "out": None})


class _Frame:
    """What apfed.from_arrays takes from a pandas DataFrame: ``columns`` and ``to_numpy()`` (no pandas here)."""

    def __init__(self, X, columns):
        self.X, self.columns = X, columns

    def to_numpy(self):
        return self.X


def test_from_arrays_is_the_same_dataset_and_model_as_the_same_rows_in_files(tmp_path):
    rng = np.random.default_rng(1)
    n = 240
    y = rng.choice(["low", "mid", "high"], n)
    xa = np.round(rng.normal(size=(n, 4)) + (y == "high")[:, None], 5).astype(np.float32)
    xb = np.round(rng.normal(size=(n, 3)) + 2 * (y == "low")[:, None], 5).astype(np.float32)
    ids = np.array([f"c{i:03d}" for i in range(n)])
    files = []
    for view, X, cols in (("bank", xa, "abcd"), ("shop", xb, ["s0", "s1", "s2"])):
        lines = [",".join(["id", *cols] + (["label"] if view == "bank" else []))]
        for i in range(n):
            lines.append(",".join([ids[i], *(f"{v:.5f}" for v in X[i])] + ([y[i]] if view == "bank" else [])))
        (tmp_path / f"{view}.csv").write_text("\n".join(lines) + "\n")
        files.append(tmp_path / f"{view}.csv")
    from_files, active = apfed.load_dataset(data=files, log=lambda _: None)
    ds = apfed.from_arrays({"bank": _Frame(xa, list("abcd")), "shop": _Frame(xb, ["s0", "s1", "s2"])}, y, ids=ids)
    assert ds.class_names == from_files.class_names == ["high", "low", "mid"]
    assert np.array_equal(ds.labels, from_files.labels) and np.array_equal(ds.ids, from_files.ids)
    assert np.array_equal(ds.train_idx, from_files.train_idx) and np.array_equal(ds.test_idx, from_files.test_idx)
    for v, w in zip(ds.views, from_files.views, strict=True):
        assert v.name == w.name and v.columns == w.columns and np.array_equal(v.X, w.X)
    a = apfed.train(ds, ds.view_index("bank"), "apfed-c", epochs=2)
    b = apfed.train(from_files, active, "apfed-c", epochs=2)
    assert a.final == b.final and a.model.columns == ["a", "b", "c", "d"]
    assert np.array_equal(a.model.predict(xa[:20]), b.model.predict(xa[:20]))
    plain = apfed.from_arrays({"bank": xa, "shop": xb}, y)  # no names given: ids 0..N-1, columns view_j
    assert list(plain.ids[:3]) == [0, 1, 2] and plain.views[1].columns == ["shop_0", "shop_1", "shop_2"]


@pytest.mark.parametrize(
    "views, labels, kw, message",
    [
        ({}, [0, 1], {}, "mapping of view name to array"),
        ([np.zeros((4, 2))], [0, 1, 0, 1], {}, "mapping of view name to array"),
        ({"a": np.zeros((4, 2)), "b": np.zeros((3, 2))}, [0, 1, 0, 1], {}, "view 'b' has 3 rows but there are 4"),
        ({"a": np.zeros(4)}, [0, 1, 0, 1], {}, "view 'a': give a 2-D array"),
        ({"a": np.array([["x", "1"], ["y", "z"]] * 2)}, [0, 1, 0, 1], {}, "column 'a_1' mixes numbers and text"),
        ({"a": np.array([[True, False]] * 4)}, [0, 1, 0, 1], {}, "features must be numbers .*, got bool"),
        ({"a": np.array([[0.0, np.inf]] * 4)}, [0, 1, 0, 1], {}, r"an infinite value at row 0 \(id '0'\), feature 1"),
        ({"a": np.array([[0.0, np.nan]] * 4)}, [0, 1, 0, 1], {}, "feature 1 has no value in any row; drop it"),
        ({"a": np.full((4, 4, 5, 5), np.nan)}, [0, 1, 0, 1], {}, r"view 'a': NaN or infinite value at row 0"),
        ({"a": np.zeros((4, 1, 3, 3))}, [0, 1, 0, 1], {}, "too small for the conv encoder"),
        ({"a": np.zeros((4, 2))}, [[0], [1], [0], [1]], {}, "labels must be one value per row"),
        ({"a": np.zeros((4, 2))}, [np.nan] * 4, {}, "the labels hold no label in any row"),
        ({"a": np.zeros((4, 2))}, [None, "", "NA", None], {}, "the labels hold no label in any row"),
        ({"a": np.zeros((4, 2))}, [1, 1, 1, 1], {}, r"the labels hold a single class \('1'\)"),
        ({"a": np.zeros((4, 2))}, [0, 1, 0, 1], {"ids": [1, 2, 2, 3]}, "ids must be distinct: '2' appears 2 times"),
        ({"a": np.zeros((4, 2))}, [0, 1, 0, 1], {"ids": [1, 2]}, "ids must be one value per row"),
        ({"a": np.zeros((6, 2))}, [0, 0, 1, 1, 2, 2], {}, "too few for a stratified 20% test split"),
        ({"a": np.zeros((8, 2))}, [0, 1, 1, 1, 2, 2, 2, 3], {}, r"2 classes with a single row \('0', '3'\): .* merge"),
        (
            {"a": np.zeros((200, 2))},
            np.linspace(0, 1, 200),
            {},
            "200 distinct labels in 200 rows look like a continuous target: train a regression",
        ),
    ],
)
def test_from_arrays_refuses_bad_input_with_one_clear_line(views, labels, kw, message):
    with pytest.raises(DataError, match=message) as e:
        apfed.from_arrays(views, labels, **kw)
    assert "\n" not in str(e.value)


def test_a_multi_view_npz_file_is_a_whole_benchmark_for_every_command(tmp_path):
    """One --data NPZ file with an array view_<name> per view (rows aligned) and the labels is the dataset that
    from_arrays makes of the same arrays; train and evaluate take it, and its mistakes are one line."""
    rng = np.random.default_rng(2)
    n = 200
    y = rng.choice(["a", "b"], n)
    xs = {"left": rng.normal(size=(n, 3)) + (y == "a")[:, None], "right": rng.normal(size=(n, 2))}
    path = tmp_path / "bench.npz"
    np.savez(path, **{f"view_{k}": v for k, v in xs.items()}, label=y)
    logged = []
    ds, active = apfed.load_dataset(data=[path], active="right", log=logged.append)
    same = apfed.from_arrays(xs, y, name="bench")
    assert (
        active == 1
        and ds.name == "bench"
        and logged == ["bench.npz: 200 rows, 2 views (left, right) aligned in the file"]
    )
    assert np.array_equal(ds.labels, same.labels) and np.array_equal(ds.train_idx, same.train_idx)
    assert [v.name for v in ds.views] == ["left", "right"] and np.array_equal(ds.views[0].X, same.views[0].X)
    code, _, err = run_cli("train", "--data", path, "--method", "apfed-c", "--epochs", "1", "--out", tmp_path / "m")
    assert code == 0 and "2 views (left, right)" in err, err
    np.savez(tmp_path / "nolabel.npz", view_left=xs["left"])
    with pytest.raises(DataError, match="nolabel.npz: a multi-view NPZ file needs its labels in an array 'label'"):
        apfed.load_dataset(data=[tmp_path / "nolabel.npz"])
    np.savez(tmp_path / "short.npz", view_left=xs["left"], view_right=xs["right"][:-1], label=y)
    code, _, err = run_cli("evaluate", "--data", tmp_path / "short.npz", "--out", tmp_path / "r")
    assert code == 2 and err.strip().splitlines() == [
        f"error: {tmp_path / 'short.npz'}: view 'right' has 199 rows but there are 200 labels; every view needs one row"
        " per label"
    ], err


def test_a_standalone_model_takes_a_frames_columns_by_name_as_predict_does_a_csv():
    rng = np.random.default_rng(3)
    n = 200
    y = rng.choice(["p", "q"], n)
    xa = (rng.normal(size=(n, 3)) + (y == "p")[:, None]).astype(np.float32)
    ds = apfed.from_arrays({"bank": _Frame(xa, ["age", "income", "debt"]), "shop": rng.normal(size=(n, 2))}, y)
    model = apfed.train(ds, 0, "apfed-c", epochs=1).model
    want = model.predict_proba(xa)
    shuffled = _Frame(np.column_stack([xa[:, 2], np.ones(n), xa[:, 0], xa[:, 1]]), ["debt", "other", "age", "income"])
    assert np.array_equal(model.predict_proba(shuffled), want)  # by name, any order, other columns ignored
    with pytest.raises(DataError, match="missing feature columns the model was trained on: income"):
        model.predict(_Frame(xa[:, [0, 2]], ["age", "debt"]))
    with pytest.warns(UserWarning, match="no column is named as in training"):
        assert np.array_equal(model.predict_proba(_Frame(xa, ["a", "b", "c"])), want)  # no names: in order
    with pytest.raises(DataError, match="2 feature columns, the model expects 3 .named age, income, debt"):
        model.predict(_Frame(xa[:, :2], ["a", "b"]))


def test_a_method_with_its_own_settings_is_a_row_of_its_own(tmp_path):
    """evaluate --methods 'apfed-c[lam=0.5],apfed-c[lam=2]': each variant trains with its settings (the same run as
    the plain method with those settings), is a row compared with local, and is stored and resumed on its own."""
    from apfed.config import parse_method_list

    ds, a = apfed.load_dataset("digits")
    kw = dict(seeds=1, epochs=1, out=tmp_path, jobs=1)
    methods = ["local", "apfed-c[lam=0.5]", "apfed-c[lam=2]", "apfed-kd[kd_weight=2]"]
    report = apfed.compare(ds, a, methods, **kw)
    assert list(report["summary"]) == [*methods, "apfed-kd[kd_weight=2] (teacher, all parties)"]
    runs = {r.get("variant", r["method"]): r for r in report["runs"]}
    assert runs["apfed-c[lam=2]"]["method"] == "apfed-c" and "variant" not in runs["local"]
    alone = apfed.train(ds, a, "apfed-c", epochs=1, lam=2.0)  # the variant is that run, exactly
    assert runs["apfed-c[lam=2]"]["accuracy"] == alone.accuracy
    assert runs["apfed-c[lam=0.5]"]["accuracy"] != runs["apfed-c[lam=2]"]["accuracy"]
    assert "vs_local_mean" not in report["summary"]["apfed-c[lam=2]"]  # one seed: no paired spread
    stored = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert "apfed-c[lam=0.5]-seed0.json" in stored and "apfed-c[lam=2]-seed0.json" in stored
    again = apfed.compare(ds, a, methods, resume=True, **kw)  # every run is reused: the same report
    assert again["summary"] == report["summary"]
    # the methods list: spaces and duplicates go, a value may hold commas, mistakes are one line
    assert parse_method_list(" local , apfed-m[passive_losses=r,c, lam=2],local") == [
        "local",
        "apfed-m[passive_losses=r,c,lam=2]",
    ]
    # a grid: each combination of the values that '|' separates is a variant, the first setting outermost
    assert parse_method_list("local,apfed-c[lam=0.5|2,temperature=0.5|1],apfed-m[passive_losses=r,c|c,r]") == [
        "local",
        "apfed-c[lam=0.5,temperature=0.5]",
        "apfed-c[lam=0.5,temperature=1]",
        "apfed-c[lam=2,temperature=0.5]",
        "apfed-c[lam=2,temperature=1]",
        "apfed-m[passive_losses=r,c]",
        "apfed-m[passive_losses=c,r]",
    ]
    for bad, message in (
        ("apfed-c[lam=0.5|]", "lam: '' is not a valid float"),
        ("apfed-c[lam=0.5", "a '[' without its ']'"),
        ("apfed-c]", "a ']' without its '['"),
        ("apfed-c[]", "has no setting"),
        ("apfed-c[seed=1]", "sets seed"),
        ("apfed-c[lamb=1]", "no training setting 'lamb'; did you mean lam?"),
        ("apfed-x[lam=1]", "unknown method 'apfed-x'"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            parse_method_list(bad)


def test_compare_with_validation_rows_names_the_method_they_pick(tmp_path):
    """With validation rows every row gets the validation figure of the model behind its accuracy, and the report
    names the standalone method best on them (what to quote: chosen without looking at the test rows)."""
    ds, a = apfed.load_dataset("digits")
    report = apfed.compare(ds, a, ["local", "apfed-c", "tvfl"], seeds=1, epochs=2, out=tmp_path, validation=0.2)
    s, runs = report["summary"], {r["method"]: r for r in report["runs"]}
    for m in ("local", "apfed-c"):  # the epoch validation kept
        assert s[m]["val_mean"] == runs[m]["final"]["val_accuracy"]
    assert s["tvfl"]["val_mean"] == np.mean([h["val_accuracy"] for h in runs["tvfl"]["history"]])  # its last epochs
    assert report["validation_pick"] == max(("local", "apfed-c"), key=lambda m: s[m]["val_mean"])
    md = (tmp_path / "results.md").read_text()
    assert f"picked on the validation rows: {report['validation_pick']} (validation accuracy" in md


def test_a_variant_may_name_its_passives_to_measure_each_ones_contribution(tmp_path):
    """'tvfl[passives=middle|bottom]': each passive alone, a row each, on the same rows as the others; each such run
    is the run of a dataset holding only those views (as --passives makes it). Mistakes name the variant."""
    from apfed.api import _config
    from apfed.config import parse_method_list, variant_config, variant_passives

    ds, a = apfed.load_dataset("digits", views=3)
    methods = parse_method_list("tvfl,tvfl[passives=middle|bottom]")
    assert methods == ["tvfl", "tvfl[passives=middle]", "tvfl[passives=bottom]"]
    assert [variant_passives(m) for m in methods] == [None, "middle", "bottom"]
    assert variant_config(_config(), "apfed-c[lam=2,passives=middle,bottom]").lam == 2.0  # no training setting
    report = apfed.compare(ds, a, methods, seeds=1, epochs=2, out=tmp_path, jobs=1)
    runs = {r.get("variant", r["method"]): r for r in report["runs"]}
    alone = apfed.train(*apfed.load_dataset("digits", views=3, passives="bottom"), "tvfl", epochs=2)
    assert runs["tvfl[passives=bottom]"]["accuracy"] == alone.accuracy
    assert runs["tvfl[passives=bottom]"]["accuracy"] != runs["tvfl[passives=middle]"]["accuracy"]
    assert runs["tvfl"]["wire"]["messages"] == 2 * runs["tvfl[passives=bottom]"]["wire"]["messages"]  # 2 passives
    assert set(report["summary"]) >= set(methods)
    again = apfed.compare(ds, a, methods, seeds=1, epochs=2, out=tmp_path, jobs=1, resume=True)  # stored apart
    assert again["summary"] == report["summary"]
    for bad, says in (
        ("tvfl[passives=left]", "unknown view 'left'"),
        ("tvfl[passives=top]", "view 'top' is the active party's"),
        ("tvfl[passives=]", "names no passive view"),
        ("local[passives=bottom]", "local trains with no passive"),
        ("apfed-m[passive_losses=r,c,passives=bottom]", r"^--methods 'apfed-m\[.*\]': passive_losses names 2 losses"),
    ):
        with pytest.raises(ConfigError, match=says):
            apfed.compare(ds, a, ["local", bad], seeds=1, epochs=1)


def test_apfed_jobs_sets_how_many_runs_go_at_once_when_none_is_asked(monkeypatch):
    """``APFED_JOBS`` (the suite sets 1): the default of ``--jobs 0``, never more than the runs; a bad value is one
    clear error."""
    from apfed.evaluate import auto_jobs

    monkeypatch.setenv("APFED_JOBS", "3")
    assert auto_jobs(8, "cpu") == 3 and auto_jobs(2, "cpu") == 2 and auto_jobs(8, "cuda") == 3
    monkeypatch.delenv("APFED_JOBS")
    assert auto_jobs(8, "cuda") == 1 and auto_jobs(1, "cpu") == 1
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("APFED_JOBS", bad)
        with pytest.raises(ConfigError, match="APFED_JOBS must be a positive whole number of processes"):
            auto_jobs(8, "cpu")
