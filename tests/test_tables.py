"""Tables as organizations hold them: categorical (text) columns and missing values, from a party's CSV file, from
in-memory arrays, and at prediction time through the standalone model, its CLI and its ONNX export."""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import apfed
from apfed.data.encoding import MAX_CATEGORIES
from apfed.data.files import read_party_file
from apfed.data.views import Preprocessor, View
from apfed.errors import ApfedError, DataError
from apfed.standalone import StandaloneModel
from tests.conftest import run_cli

CITIES = ["Lille", "Lyon", "Nice", "Paris"]


def _bank(n: int = 240, seed: int = 0):
    """The active party's table: age (numeric, some missing), city (categorical, some missing), income."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    age = np.round(rng.normal(size=n) + y, 3).astype(np.float32)
    age[rng.random(n) < 0.15] = np.nan
    city = np.array(CITIES, dtype=object)[np.where(rng.random(n) < 0.7, y, 3)]
    city[rng.random(n) < 0.05] = None
    income = np.round(rng.normal(size=n), 3).astype(np.float32)
    shop = np.round(rng.normal(size=(n, 2)) + y[:, None], 3).astype(np.float32)
    return y, age, city, income, shop


def _write_csvs(tmp_path, y, age, city, income, shop, markers=("", "NA")):
    """The same rows as two party files; missing values written as the given markers, in turn."""
    ids = [f"u{i:03d}" for i in range(len(y))]
    with (tmp_path / "bank.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "age", "city", "income", "label"])
        for i in range(len(y)):
            hole = markers[i % len(markers)]
            a = hole if np.isnan(age[i]) else f"{age[i]:.3f}"
            w.writerow([ids[i], a, hole if city[i] is None else city[i], f"{income[i]:.3f}", "abc"[y[i]]])
    with (tmp_path / "shop.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "visits", "spend"])
        w.writerows([ids[i], f"{shop[i, 0]:.3f}", f"{shop[i, 1]:.3f}"] for i in range(len(y)))
    return [tmp_path / "bank.csv", tmp_path / "shop.csv"], ids


class _Frame:
    """A DataFrame as apfed reads one: ``columns`` and ``to_numpy()`` (an object array when columns hold text)."""

    def __init__(self, columns: dict):
        self.columns = list(columns)
        self._values = np.empty((len(next(iter(columns.values()))), len(columns)), dtype=object)
        for j, v in enumerate(columns.values()):
            self._values[:, j] = v

    def to_numpy(self):
        return self._values


def test_a_text_column_is_one_hot_and_a_missing_value_is_nan(tmp_path):
    y, age, city, income, shop = _bank()
    (bank, _), ids = _write_csvs(tmp_path, y, age, city, income, shop, markers=("", "NA", "n/a", "?", "null"))
    t = read_party_file(bank, "id", "label")
    assert t.columns == ["age", "city=Lille", "city=Lyon", "city=Nice", "city=Paris", "income"]
    assert t.encoding.columns == ["age", "city", "income"] and t.encoding.categories == {"city": CITIES}
    assert np.array_equal(np.isnan(t.X[:, 0]), np.isnan(age)) and np.allclose(t.X[:, 0], age, equal_nan=True)
    want = np.array([[c == name for name in CITIES] for c in city], np.float32)  # a missing city: no category
    assert np.array_equal(t.X[:, 1:5], want) and not np.isnan(t.X[:, 1:]).any()
    assert np.allclose(t.X[:, 5], income)
    assert t.describe() == [
        "bank.csv: categorical columns, one feature per value: city (4 values)",
        f"bank.csv: {int(np.isnan(age).sum())} missing values in 1 column (age), filled with each column's training"
        " mean",
    ]
    # a file of numbers only takes numpy's parser; read field by field (a missing value) it gives the same numbers
    plain = tmp_path / "plain.csv"
    plain.write_text("id,x,y\n" + "".join(f"{i}, {i * 0.37:.4f} ,{1e3 / (i + 1):.6e}\n" for i in range(50)))
    holed = tmp_path / "holed.csv"
    holed.write_text(plain.read_text() + "50,,1\n")
    a, b = read_party_file(plain, "id"), read_party_file(holed, "id")
    assert a.encoding is None and np.array_equal(b.X[:50], a.X) and np.isnan(b.X[50, 0])


def test_too_many_categories_is_one_clear_error(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("id,name,label\n" + "".join(f"{i},n{i},{i % 2}\n" for i in range(MAX_CATEGORIES + 1)))
    with pytest.raises(DataError, match=f"column 'name' holds text with {MAX_CATEGORIES + 1} distinct values"):
        read_party_file(f, "id", "label")


def test_missing_values_take_the_training_mean():
    X = np.array([[1.0, 5.0], [np.nan, 7.0], [3.0, 9.0], [100.0, np.nan]], np.float32)
    pre = Preprocessor.fit(View("v", "tabular", X), np.array([0, 1, 2]))  # row 3 is a test row
    assert pre.missing == [0, 1] and pre.mean.tolist() == [2.0, 7.0]  # the training rows' values that are there
    z = pre(X)
    assert z[1, 0] == 0.0 and z[3, 1] == 0.0 and np.allclose(z[0], (X[0] - pre.mean) / pre.std)
    back = Preprocessor.from_json(pre.to_json())
    assert back.missing == [0, 1] and np.array_equal(back(X), z)


def test_a_model_reads_raw_tables_as_training_did(tmp_path):
    """The same rows from CSV files and from arrays give one dataset and one model; the model then predicts from a
    raw table (CLI: a CSV with its columns reordered; API: a DataFrame), filling a missing age with the training
    mean, giving an unseen city no category, and its ONNX export agrees."""
    y, age, city, income, shop = _bank()
    paths, ids = _write_csvs(tmp_path, y, age, city, income, shop)
    from_files, active = apfed.load_dataset(data=paths, log=lambda _: None)
    labels = np.array(list("abc"))[y]
    frame = _Frame({"age": age, "city": city, "income": income})
    shop_frame = _Frame({"visits": shop[:, 0], "spend": shop[:, 1]})
    ds = apfed.from_arrays({"bank": frame, "shop": shop_frame}, labels, ids=ids)
    v, w = ds.views[0], from_files.views[0]
    assert v.columns == w.columns and v.encoding == w.encoding
    assert np.array_equal(v.X, w.X, equal_nan=True) and np.array_equal(ds.train_idx, from_files.train_idx)
    r = apfed.train(from_files, "bank", "apfed-c", epochs=2)
    model = r.model
    assert model.preprocessor.missing == [0] and r.final == apfed.train(ds, "bank", "apfed-c", epochs=2).final
    path = model.save(tmp_path / "m.safetensors")
    loaded = StandaloneModel.load(path)
    assert loaded.encoding == model.encoding and loaded.metadata()["format_version"] == 2

    new = {"income": [0.5, -1.0, 0.2, 1.5], "city": ["Paris", "Tokyo", "", "Lyon"], "age": ["", "1.0", "2.5", "NA"]}
    with (tmp_path / "new.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["id", *new], *zip(["n1", "n2", "n3", "n4"], *new.values(), strict=True)])
    out = tmp_path / "p.csv"
    code, _, err = run_cli("predict", "--model", path, "--input", tmp_path / "new.csv", "--output", out)
    assert code == 0 and "values not seen in training, read as no category: 'city': 1" in err, err
    got = list(csv.DictReader(out.open()))
    mean_age = float(model.preprocessor.mean[0])
    encoded = np.array(
        [[mean_age, 0, 0, 0, 1, 0.5], [1.0, 0, 0, 0, 0, -1.0], [2.5, 0, 0, 0, 0, 0.2], [mean_age, 0, 1, 0, 0, 1.5]],
        np.float32,
    )
    want = loaded.predict_proba(encoded)
    assert np.allclose([[float(row[f"p_{c}"]) for c in "abc"] for row in got], want, atol=1e-6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame_new = _Frame({"age": [None, 1.0, 2.5, np.nan], "city": new["city"], "income": new["income"]})
        assert np.allclose(loaded.predict_proba(frame_new), want, atol=1e-6)
    assert [str(c.message) for c in caught] == ["values not seen in training, read as no category: 'city': 1"]
    with_nan = encoded.copy()
    with_nan[[0, 3], 0] = np.nan
    assert np.allclose(loaded.predict_proba(with_nan), want, atol=1e-6)  # NaN in a filled feature: its mean
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(loaded.export_onnx(tmp_path / "m.onnx")), providers=["CPUExecutionProvider"])
    assert np.allclose(sess.run(None, {"features": with_nan})[0], want, atol=1e-5)


def test_what_a_model_cannot_read_is_one_clear_line(tmp_path):
    y, age, city, income, shop = _bank()
    paths, _ = _write_csvs(tmp_path, y, age, city, income, shop)
    ds, _ = apfed.load_dataset(data=paths, log=lambda _: None)
    model = apfed.train(ds, "bank", "local", epochs=1).model
    path = model.save(tmp_path / "m.safetensors")
    cases = {
        "text.csv": ("id,age,city,income\n1,old,Nice,0.5\n", "column 'age' is not numeric (line 2: 'old')"),
        "hole.csv": (
            "id,age,city,income\n1,2.0,Nice,\n",
            "line 2 (id 1), column 'income': no value (empty, NA or NaN); training had none",
        ),
        "unnamed.csv": ("id,a,b,c\n1,2.0,Nice,0.5\n", "a model with categorical columns reads its columns by name"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        code, _, err = run_cli("predict", "--model", path, "--input", tmp_path / name, "--output", tmp_path / "p.csv")
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and message in lines[0] and "Traceback" not in err, (name, err)
    with pytest.raises(ApfedError, match="give a DataFrame for its categorical columns"):
        model.predict(np.array([["1.0", "Nice", "0.5"]], dtype=object))
    with pytest.raises(ApfedError, match="column 'age' must hold numbers"):
        model.predict(_Frame({"age": ["old"], "city": ["Nice"], "income": [0.5]}))


def test_an_npz_party_file_reads_text_columns_and_missing_values_as_a_csv_file_does(tmp_path):
    y, age, city, income, shop = _bank()
    (bank, _), ids = _write_csvs(tmp_path, y, age, city, income, shop)
    from_csv = read_party_file(bank, "id", "label")
    rows = zip(age, city, income, strict=True)
    text = np.array([["" if np.isnan(a) else f"{a:.3f}", "NA" if c is None else c, f"{m:.3f}"] for a, c, m in rows])
    np.savez(tmp_path / "bank.npz", id=np.array(ids), X=text, columns=np.array(["age", "city", "income"]), label=y)
    t = read_party_file(tmp_path / "bank.npz", "id", "label")
    assert t.columns == from_csv.columns and t.encoding == from_csv.encoding
    assert np.array_equal(t.X, from_csv.X, equal_nan=True)
    bad = {
        "complex.npz": (dict(X=np.ones((2, 2), complex)), "'X' must hold numbers (or text, for categorical columns)"),
        "columns.npz": (dict(X=np.ones((2, 2)), columns=np.array(["u"])), "'columns' names 1 columns but 'X' has 2"),
        "mixed.npz": (dict(X=np.array([["x", "1"], ["y", "z"]])), "column 'x1' mixes numbers and text (e.g. 'z')"),
    }
    for name, (arrays, message) in bad.items():
        np.savez(tmp_path / name, id=np.array(["a", "b"]), **arrays)
        with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
            read_party_file(tmp_path / name, "id")


TOKENS = ["1", "2.5", "-3e2", "", "NA", "nan", "inf", "abc", "Paris", " 4 ", '"x,y"', '"5"', "1_0", "?", "é", "1e400"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.sampled_from(TOKENS), min_size=3, max_size=3), min_size=1, max_size=6))
def test_any_table_of_numbers_text_and_gaps_is_read_or_refused_in_one_line(tmp_path_factory, rows):
    """Whatever mix of numbers, text, NA markers, quotes and overflows a file holds, it is read into finite-or-NaN
    float32 features that match their names, or refused with a DataError; never another exception."""
    f = tmp_path_factory.mktemp("fuzz") / "a.csv"
    f.write_text("id,c0,c1,c2,label\n" + "".join(f"r{i},{','.join(r)},{'ab'[i % 2]}\n" for i, r in enumerate(rows)))
    try:
        t = read_party_file(f, "id", "label")
    except DataError:
        return
    assert t.X.dtype == np.float32 and t.X.shape == (len(rows), len(t.columns)) and not np.isinf(t.X).any()
    categorical = t.encoding.categories if t.encoding else {}
    for j, name in enumerate(["c0", "c1", "c2"]):  # a numeric column holds each field's number, NaN where missing
        if name not in categorical:
            fields = [r[j].strip('"') for r in rows]
            want = [float(v) if v.strip() and v.strip().lower() not in ("na", "?", "nan") else np.nan for v in fields]
            assert np.array_equal(t.X[:, t.columns.index(name)], np.array(want, np.float32), equal_nan=True)
    for c, values in categorical.items():  # each row has at most one category of each categorical column
        block = t.X[:, [t.columns.index(f"{c}={v}") for v in values]]
        assert set(np.unique(block)) <= {0.0, 1.0} and (block.sum(1) <= 1).all()


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_a_semicolon_tab_or_bar_separated_file_reads_as_the_comma_one(tmp_path, delimiter):
    """Spreadsheets where the decimal mark is a comma export semicolons (and write 0,5 for 0.5); the delimiter is
    taken from the header."""
    y, age, city, income, shop = _bank(60)
    (bank, _), _ = _write_csvs(tmp_path, y, age, city, income, shop)
    rows = list(csv.reader(bank.open(newline="")))
    rows[1][2] = "Saint-Denis, Réunion"  # a quoted field holding a comma
    with bank.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    other = tmp_path / "other.csv"
    with other.open("w", newline="") as f:  # with a decimal comma in one column: 0,5 for 0.5
        csv.writer(f, delimiter=delimiter).writerows(
            [rows[0], *([*r[:3], r[3].replace(".", ","), *r[4:]] for r in rows[1:])]
        )
    a, b = read_party_file(bank, "id", "label"), read_party_file(other, "id", "label")
    assert b.columns == a.columns and "city=Saint-Denis, Réunion" in b.columns
    assert np.array_equal(b.X, a.X, equal_nan=True) and list(b.ids) == list(a.ids) and list(b.labels) == list(a.labels)
    model = apfed.train(
        apfed.load_dataset(data=[bank, tmp_path / "shop.csv"], log=lambda _: None)[0], 0, "local", epochs=1
    )
    path = model.model.save(tmp_path / "m.safetensors")
    outputs = []
    for sep, income in ((",", "0.5"), (delimiter, "0,5")):
        new = tmp_path / "new.csv"
        new.write_text(sep.join(["id", "income", "city", "age"]) + "\n" + sep.join(["n1", income, "Lyon", ""]) + "\n")
        code, _, err = run_cli("predict", "--model", path, "--input", new, "--output", tmp_path / "p.csv")
        assert code == 0, err
        outputs.append((tmp_path / "p.csv").read_text())
    assert outputs[0] == outputs[1] and outputs[0].startswith("id,prediction,p_a,p_b,p_c\nn1,")


def test_predict_and_score_name_a_numeric_column_far_from_training_in_one_warning_line(tmp_path):
    """income in other units is one warning line naming it, from predict and score alike; the predictions are
    still written. A categorical column's features are never judged so: rows that all share one city may be a
    subset, not a mistake."""
    y, age, city, income, shop = _bank()
    paths, _ = _write_csvs(tmp_path, y, age, city, income, shop)
    data, _ = apfed.load_dataset(data=paths, log=lambda _: None)
    path = apfed.train(data, "bank", "apfed-c", epochs=1).model.save(tmp_path / "m.safetensors")
    rows = list(csv.reader((tmp_path / "bank.csv").read_text().splitlines()))
    income_col = rows[0].index("income")
    for row in rows[1:]:
        row[income_col] = f"{float(row[income_col]) * 1000:.1f}"
    with (tmp_path / "cents.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    for command in (["predict", "--output", tmp_path / "p.csv"], ["score", "--label-column", "label"]):
        code, _, err = run_cli(*command, "--model", path, "--input", tmp_path / "cents.csv")
        lines = [line for line in err.splitlines() if line.startswith("warning:")]
        assert code == 0 and len(lines) == 1, err
        assert "1 column(s) far from their values in training" in lines[0] and "'income' (" in lines[0], err
    assert len((tmp_path / "p.csv").read_text().splitlines()) == len(rows)
    model = StandaloneModel.load(path)
    X = data.views[0].X[data.test_idx].copy()
    city = [j for j, name in enumerate(model.columns) if name.startswith("city=")]
    X[:, city] = 0.0
    X[:, city[0]] = 1.0  # every row in one city, and as if it had been rare in training
    model.preprocessor.std[city[0]] = model.preprocessor.mean[city[0]] = 0.01
    assert len(city) == 4 and model.far_columns_note(X) is None
    X[:, model.columns.index("income")] *= 1000
    assert "'income' (" in model.far_columns_note(X)
