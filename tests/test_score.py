"""Scoring a standalone model on labelled rows of the active party's data: apfed.scoring, StandaloneModel.score
and ``apfed score`` (with ``predict`` and ``drift``, reading standard input)."""

import csv
import json

import numpy as np
import pytest
from conftest import run_cli
from typer.testing import CliRunner

from apfed.cli import app
from apfed.errors import DataError
from apfed.scoring import label_indices, score_report


def test_labels_match_class_names_exactly_then_stripped_then_by_value():
    index, unseen = label_indices(np.array(["1", " 2 ", "1.0", "7", "x", "7", "2"]), ["1", "2", "3"])
    assert index.tolist() == [0, 1, 0, 3, 4, 3, 1]
    assert unseen == ["7", "x"]  # in the order the rows show them
    # text class names are never matched by value
    index, unseen = label_indices(np.array(["yes", "no", "Yes"]), ["no", "yes"])
    assert index.tolist() == [1, 0, 2] and unseen == ["Yes"]


def test_report_by_hand():
    # classes a, b; the rows' labels: a a a b b, then one label the model never saw
    y = np.array([0, 0, 0, 1, 1, 2])
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.6, 0.4], [0.2, 0.8]])
    r = score_report(y, proba, ["a", "b"], ["c"])  # predicted: a a b b a b
    assert r["rows"] == 6
    assert r["confusion"] == {"true": ["a", "b", "c"], "predicted": ["a", "b"], "counts": [[2, 1], [1, 1], [0, 1]]}
    assert r["metrics"]["accuracy"] == pytest.approx(100 * 3 / 6)
    a, b, c = r["classes"]
    assert (a["rows"], a["predicted"], a["precision"], a["recall"]) == (
        3,
        3,
        pytest.approx(200 / 3),
        pytest.approx(200 / 3),
    )
    assert (b["rows"], b["predicted"], b["precision"], b["recall"]) == (2, 3, pytest.approx(100 / 3), 50.0)
    assert (c["rows"], c["known_to_model"], c["recall"]) == (1, False, 0.0)
    f_a, f_b = 200 / 3, 2 * (1 / 3) * 0.5 / (1 / 3 + 0.5) * 100
    assert r["metrics"]["macro_f1"] == pytest.approx((f_a + f_b) / 2)  # over the model's classes only
    assert r["unseen_labels"] == {"c": 1}
    # two classes: average precision of the rarer class among the rows the model has a class for (b: 2 of 5);
    # ROC-AUC over those 5 rows: b's rows score 0.6 and 0.4 for b, a's rows 0.1, 0.2 and 0.7; each of b's rows is
    # above two of a's: 4 of the 6 pairs are in order
    assert r["positive_class"] == "b"
    assert r["metrics"]["roc_auc"] == pytest.approx(4 / 6)
    # calibration over the same 5 rows: the probability of the true class, and the squared distance to one-hot
    assert r["metrics"]["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.3, 0.6, 0.4])))
    assert r["metrics"]["brier"] == pytest.approx((0.02 + 0.08 + 0.98 + 0.32 + 0.72) / 5)


def test_a_class_with_no_row_and_no_prediction_is_left_out_of_the_averages():
    proba = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1]])  # predicted: a b b; c never
    r = score_report(np.array([0, 0, 1]), proba, ["a", "b", "c"], [])
    f_a, f_b = 2 * 1 * 0.5 / 1.5 * 100, 2 * 0.5 * 1 / 1.5 * 100
    assert r["metrics"]["macro_f1"] == pytest.approx((f_a + f_b) / 2)  # over a and b: c says nothing here
    c = r["classes"][2]
    assert (c["rows"], c["predicted"], c["precision"], c["recall"], c["f1"]) == (0, 0, None, None, None)


def test_no_label_that_the_model_knows_is_an_error():
    with pytest.raises(DataError, match="no label is a class of the model"):
        score_report(np.array([2, 3]), np.array([[0.5, 0.5], [0.1, 0.9]]), ["a", "b"], ["c", "d"])


@pytest.fixture(scope="module")
def model_and_rows(tmp_path_factory):
    """A model trained on a bank's CSV file (and a shop's), and the bank's rows with their labels."""
    from apfed.api import load_dataset, train

    tmp = tmp_path_factory.mktemp("score")
    rng = np.random.default_rng(0)
    n = 240
    ids = [f"c{i:03d}" for i in range(n)]
    y = rng.integers(0, 3, n)
    xa = rng.normal(size=(n, 3)) + y[:, None]
    xb = rng.normal(size=(n, 2)) + y[:, None]
    bank, shop = tmp / "bank.csv", tmp / "shop.csv"
    with bank.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "f0", "f1", "f2", "label"])
        w.writerows([ids[i], *np.round(xa[i], 4), f"k{y[i]}"] for i in range(n))
    with shop.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "g0", "g1"])
        w.writerows([ids[i], *np.round(xb[i], 4)] for i in range(n))
    ds, active = load_dataset(data=[bank, shop], log=lambda *_: None)
    path = train(ds, active, "apfed-c", epochs=3).model.save(tmp / "m.safetensors")
    return path, bank, np.array([f"k{v}" for v in y])


def test_score_matches_predictions_against_the_labels(model_and_rows):
    from apfed.standalone import StandaloneModel

    path, bank, labels = model_and_rows
    m = StandaloneModel.load(path)
    rows = list(csv.reader(bank.read_text().splitlines()))[1:]
    X = np.array([[float(v) for v in r[1:4]] for r in rows], dtype=np.float32)
    expected = float(np.mean(m.predict(X) == labels))
    assert m.score(X, labels) == pytest.approx(expected)
    report = m.score_report(X, labels)
    assert sum(map(sum, report["confusion"]["counts"])) == len(labels)
    with pytest.raises(Exception, match="one label per row"):
        m.score(X, labels[:-1])
    ranked = m.permutation_importance(X, labels, repeats=2)
    assert sorted(r["column"] for r in ranked) == ["f0", "f1", "f2"]


def test_cli_scores_labels_in_the_input_or_in_a_file_of_their_own(model_and_rows, tmp_path):
    from apfed.standalone import StandaloneModel

    path, bank, labels = model_and_rows
    runner = CliRunner()
    res = runner.invoke(app, ["score", "--model", str(path), "--input", str(bank), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    rows = list(csv.reader(bank.read_text().splitlines()))[1:]
    X = np.array([[float(v) for v in r[1:4]] for r in rows], dtype=np.float32)
    assert report["rows"] == len(labels)
    assert report["metrics"]["accuracy"] == pytest.approx(
        100 * np.mean(StandaloneModel.load(path).predict(X) == labels)
    )
    assert report["training_test_accuracy"] == pytest.approx(StandaloneModel.load(path).provenance["test_accuracy"])

    # the labels in a file of their own, matched by ID (shuffled; one row unlabelled, one label unknown)
    features, label_file = tmp_path / "x.csv", tmp_path / "y.csv"
    with features.open("w", newline="") as f:
        csv.writer(f).writerows([["id", "f0", "f1", "f2"], *(r[:4] for r in rows)])
    shuffled = [rows[i] for i in np.random.default_rng(1).permutation(len(rows))]
    shuffled[0][4], shuffled[1][4] = "", "k9"
    with label_file.open("w", newline="") as f:
        csv.writer(f).writerows([["label", "id"], *([r[4], r[0]] for r in shuffled)])
    res = runner.invoke(
        app, ["score", "--model", str(path), "--input", str(features), "--labels", str(label_file), "--json"]
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["rows"] == len(labels) - 1
    assert report["unseen_labels"] == {"k9": 1}
    assert "1 row has no label" in res.stderr and "'k9' (1 row)" in res.stderr
    res = runner.invoke(app, ["score", "--model", str(path), "--input", str(bank)])  # the tables
    assert res.exit_code == 0 and "confusion matrix" in res.stdout and "k2" in res.stdout


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--label-column", "nope"], "no label column 'nope'"),
        (["--labels", "missing.csv"], "labels file not found"),
        (["--labels", "{bank}", "--label-column", "f0"], "no label is a class of the model"),
        (["--threshold", "0.3"], "--threshold 0.3: name the class, CLASS=T (the model's classes: 'k0', 'k1', 'k2')"),
        (["--threshold", "k7=0.3"], "'k7' is no class of the model"),
        (["--threshold", "k1=1.5"], "the cut-off must be a probability between 0 and 1, got '1.5'"),
    ],
)
def test_cli_errors_are_one_line(model_and_rows, extra, match):
    path, bank, _ = model_and_rows
    code, _, err = run_cli("score", "--model", path, "--input", bank, *(e.format(bank=bank) for e in extra))
    assert code == 2 and err.strip().count("\n") == 0 and err.startswith("error: ") and match in err, err


def test_permutation_importance_ranks_the_column_the_model_reads():
    from apfed.data.encoding import Encoding
    from apfed.scoring import feature_groups, permutation_importance

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)

    def proba(features):  # reads feature 0 only
        p = (features[:, 0] > 0).astype(np.float64)
        return np.stack([1 - p, p], 1)

    ranked = permutation_importance(proba, X, y, [("a", [0]), ("b", [1]), ("c", [2])], repeats=3)
    assert [r["column"] for r in ranked][0] == "a" and ranked[0]["accuracy_drop"] > 30
    assert {r["column"]: r["accuracy_drop"] for r in ranked[1:]} == {"b": 0.0, "c": 0.0}
    assert np.array_equal(X[:, 0] > 0, y.astype(bool))  # the caller's array is left as it was
    # a categorical column's features move together; unnamed features are numbered
    enc = Encoding(["age", "city", "income"], {"city": ["Lyon", "Nice", "Paris"]})
    assert feature_groups(None, enc, 5) == [("age", [0]), ("city", [1, 2, 3]), ("income", [4])]
    assert feature_groups(None, None, 2) == [("feature 0", [0]), ("feature 1", [1])]


def test_cli_importance_lists_every_column(model_and_rows):
    path, bank, _ = model_and_rows
    code, out, err = run_cli("score", "--model", path, "--input", bank, "--importance", "--repeats", "2", "--json")
    assert code == 0, err
    ranked = json.loads(out)["importance"]
    assert sorted(r["column"] for r in ranked) == ["f0", "f1", "f2"]
    drops = [r["accuracy_drop"] for r in ranked]
    assert drops == sorted(drops, reverse=True) and drops[0] > 0  # every feature carries the label here


def test_cutoffs_by_hand():
    from apfed.scoring import cutoff_table, thresholded

    y = np.array([True, False, True, False, False])
    t = cutoff_table(y, np.array([0.9, 0.8, 0.6, 0.3, 0.1]), cutoffs=(0.5, 0.95))
    half, none = t["cutoffs"]
    assert (half["flagged"], half["precision"], half["recall"], half["f1"]) == (
        3,
        pytest.approx(200 / 3),
        100.0,
        pytest.approx(80.0),
    )
    assert (none["flagged"], none["precision"], none["recall"], none["f1"]) == (0, None, 0.0, 0.0)
    assert t["best_f1"]["cutoff"] == 0.6 and t["best_f1"]["f1"] == pytest.approx(80.0)  # flag the top 3
    # a cut-off cannot flag one of two rows of equal probability: the best is to flag both or neither
    assert cutoff_table(np.array([True, False, False]), np.array([0.5, 0.5, 0.2]))["best_f1"]["flagged"] == 2
    proba = np.array([[0.5, 0.3, 0.2], [0.6, 0.1, 0.3], [0.1, 0.8, 0.1]])
    assert thresholded(proba, 2, 0.25).tolist() == [0, 2, 1]  # class 2 from 0.25 up, else the likelier other
    assert thresholded(proba, 0, 0.55).tolist() == [1, 0, 1]


def test_a_cut_off_in_predict_and_score(model_and_rows, tmp_path):
    from apfed.standalone import StandaloneModel

    path, bank, labels = model_and_rows
    m = StandaloneModel.load(path)
    rows = list(csv.reader(bank.read_text().splitlines()))[1:]
    X = np.array([[float(v) for v in r[1:4]] for r in rows], dtype=np.float32)
    p = m.predict_proba(X)[:, m.class_names.index("k2")]
    flagged = m.predict(X, threshold="k2=0.2") == "k2"
    assert (flagged == (p >= 0.2)).all() and flagged.sum() > (m.predict(X) == "k2").sum()
    out = tmp_path / "p.csv"
    code, _, err = run_cli("predict", "--model", path, "--input", bank, "--output", out, "--threshold", "k2=0.2")
    assert code == 0, err
    written = [r[1] for r in csv.reader(out.read_text().splitlines())][1:]
    assert written == m.predict(X, threshold="k2=0.2").tolist()
    code, stdout, err = run_cli("score", "--model", path, "--input", bank, "--threshold", "k2=0.2", "--json")
    report = json.loads(stdout)
    assert report["threshold"] == {"class": "k2", "cutoff": 0.2}
    assert report["metrics"]["accuracy"] == pytest.approx(100 * np.mean(m.predict(X, threshold="k2=0.2") == labels))
    c = report["cutoffs"]
    assert c["class"] == "k2" and [r["cutoff"] for r in c["cutoffs"]][:2] == [0.1, 0.2]
    assert c["cutoffs"][1]["flagged"] == int(flagged.sum())
    code, stdout, _ = run_cli("score", "--model", path, "--input", bank, "--threshold", "k2=0.2")
    assert code == 0 and "cut-offs for class 'k2'" in stdout and "best F1" in stdout


def test_paired_comparison_by_hand():
    from apfed.scoring import paired_comparison

    a = np.array([True, True, True, False, False, True])
    b = np.array([True, False, False, False, True, False])
    c = paired_comparison(a, b)  # only a right on rows 1, 2 and 5; only b on row 4
    assert (c["rows"], c["only_first_right"], c["only_second_right"]) == (6, 3, 1)
    assert c["accuracy_difference"] == pytest.approx(100 * 2 / 6)
    half = 1.959964 * ((4 / 6 - (2 / 6) ** 2) / 6) ** 0.5
    assert c["ci95"] == pytest.approx([100 * (2 / 6 - half), 100 * (2 / 6 + half)])
    # McNemar, exact: 3 of the 4 discordant rows one way; two-sided P(X <= 1 or X >= 3), X ~ Bin(4, 1/2)
    assert c["mcnemar_p"] == pytest.approx(10 / 16)
    c = paired_comparison(np.ones(10, bool), np.zeros(10, bool))
    assert c["mcnemar_p"] == pytest.approx(2 / 2**10) and c["ci95"] == pytest.approx([100.0, 100.0])
    c = paired_comparison(a, a)  # the same predictions: nothing to tell them apart
    assert (c["accuracy_difference"], c["mcnemar_p"], c["ci95"]) == (0.0, 1.0, [0.0, 0.0])


def test_cli_compares_two_models_on_the_same_rows(model_and_rows, tmp_path):
    """``score --against``: the model in use against a new one, each reading its own columns of the same rows."""
    from apfed.api import load_dataset, train

    path, bank, labels = model_and_rows
    ds, active = load_dataset(data=[bank], log=lambda *_: None)
    other = train(ds, active, "local", epochs=1).model.save(tmp_path / "local.safetensors")
    runner = CliRunner()
    scores = {}
    for p in (path, other):
        res = runner.invoke(app, ["score", "--model", str(p), "--input", str(bank), "--json"])
        scores[p] = json.loads(res.stdout)["metrics"]["accuracy"]
    res = runner.invoke(app, ["score", "--model", str(path), "--input", str(bank), "--against", str(other), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    c = report["against"]["comparison"]
    assert report["metrics"]["accuracy"] == pytest.approx(scores[path])
    assert report["against"]["metrics"]["accuracy"] == pytest.approx(scores[other])
    assert c["rows"] == len(labels)
    assert c["accuracy_difference"] == pytest.approx(scores[path] - scores[other])
    assert c["only_first_right"] - c["only_second_right"] == round((scores[path] - scores[other]) * len(labels) / 100)
    res = runner.invoke(app, ["score", "--model", str(path), "--input", str(bank), "--against", str(other)])
    assert res.exit_code == 0 and "two models on the same 240 rows" in res.stdout and "McNemar" in res.stdout
    code, _, err = run_cli("score", "--model", path, "--input", bank, "--against", tmp_path / "none.safetensors")
    assert code != 0 and err.count("\n") == 1 and "none.safetensors" in err


def test_predict_score_and_drift_read_standard_input_and_predict_writes_standard_output(model_and_rows, tmp_path):
    path, bank, _ = model_and_rows
    code, _, err = run_cli("predict", "--model", path, "--input", bank, "--output", tmp_path / "p.csv")
    assert code == 0, err
    code, out, err = run_cli("predict", "--model", path, "--input", "-", "--output", "-", stdin=bank)
    assert code == 0 and err.strip().endswith("wrote 240 predictions to standard output"), err
    assert out == (tmp_path / "p.csv").read_text()
    assert not (tmp_path / "-").exists() and not (bank.parent / "-").exists()
    # an NPZ archive is told from CSV text by its first bytes
    rows = list(csv.reader(bank.read_text().splitlines()))[1:]
    np.savez(tmp_path / "rows.npz", X=np.array([[float(v) for v in r[1:4]] for r in rows], dtype=np.float32))
    code, out_npz, err = run_cli(
        "predict", "--model", path, "--input", "-", "--output", "-", stdin=tmp_path / "rows.npz"
    )
    assert code == 0, err
    assert list(csv.reader(out_npz.splitlines())) == [r[1:] for r in csv.reader(out.splitlines())]  # no ids in it
    code, from_file, err = run_cli("score", "--model", path, "--input", bank, "--json")
    assert code == 0, err
    code, from_stdin, err = run_cli("score", "--model", path, "--input", "-", "--json", stdin=bank)
    assert code == 0 and json.loads(from_stdin) == json.loads(from_file) | {"input": "stdin"}, err
    code, out, err = run_cli("drift", "--model", path, "--input", "-", "--json", stdin=bank)
    assert code == 0 and json.loads(out)["rows"] == 240, err
    # errors name standard input, never its temporary copy, in one line
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    for source, message in [
        (tmp_path / "other.csv", "error: stdin: no ID column 'id' (columns: a, b)"),
        (None, "error: stdin: needs a header row and at least one data row"),  # nothing piped in
    ]:
        code, out, err = run_cli("predict", "--model", path, "--input", "-", "--id-column", "id", stdin=source)
        assert (code, out, err.strip()) == (2, "", message)
