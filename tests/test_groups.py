"""``apfed score --by COLUMN``: a model's figures for each group of rows (a region, a sex, an age band)."""

import csv
import json

import numpy as np
import pytest
from conftest import run_cli

from apfed.errors import DataError
from apfed.scoring import add_group_coverage, classification_groups, groups_of, regression_groups


def test_groups_are_the_columns_values_largest_first_with_missing_ones_together():
    groups = groups_of(np.array(["north", "south", "", "north", "NA", " north "]), "region")
    assert [(v, m.tolist()) for v, m in groups] == [
        ("north", [True, False, False, True, False, True]),
        ("(missing)", [False, False, True, False, True, False]),
        ("south", [False, True, False, False, False, False]),
    ]
    with pytest.raises(DataError, match="--by 'age': 60 distinct values; it takes a column of at most 50 groups"):
        groups_of(np.arange(60), "age")


def test_bins_cut_a_column_of_numbers_into_bands_of_about_equal_rows():
    ages = np.array([str(a) for a in range(20, 80)] + ["", "NA"])
    groups = groups_of(ages, "age", bins=3)
    assert [v for v, _ in groups] == ["[20, 39.67)", "[39.67, 59.33)", "[59.33, 79]", "(missing)"]
    assert [int(m.sum()) for _, m in groups] == [20, 20, 20, 2]
    assert np.all(np.logical_or.reduce([m for _, m in groups]))  # every row in one band
    assert [v for v, _ in groups_of(np.array(["5", "5", "5"]), "n", bins=4)] == ["[5, 5]"]
    with pytest.raises(DataError, match="--by 'city' --bins: 'Paris' is neither a number nor an ISO date"):
        groups_of(np.array(["1", "Paris"]), "city", bins=2)


def test_bins_cut_a_column_of_dates_into_periods():
    days = np.array([str(np.datetime64("2024-01-01") + np.timedelta64(d, "D")) for d in range(360)] + [""])
    groups = groups_of(days, "opened", bins=4)
    assert [v for v, _ in groups] == [
        "[2024-01-01, 2024-03-31)",
        "[2024-03-31, 2024-06-29)",
        "[2024-06-29, 2024-09-27)",
        "[2024-09-27, 2024-12-25]",
        "(missing)",
    ]
    assert [int(m.sum()) for _, m in groups] == [90, 90, 90, 90, 1]


def test_each_groups_accuracy_flag_rate_and_recall_are_its_own_rows():
    y = np.array([1, 1, 0, 0, 1, 0])
    proba = np.array([[0.2, 0.8], [0.7, 0.3], [0.9, 0.1], [0.4, 0.6], [0.1, 0.9], [0.8, 0.2]])
    groups = [("a", np.array([1, 1, 1, 0, 0, 0], bool)), ("b", np.array([0, 0, 0, 1, 1, 1], bool))]
    a, b = classification_groups(groups, y, proba, 2, flagged=1)
    assert a["rows"] == 3 and a["accuracy"] == pytest.approx(200 / 3) and b["accuracy"] == pytest.approx(200 / 3)
    assert a["flagged_rate"] == pytest.approx(100 / 3) and a["flagged_recall"] == 50.0
    assert b["flagged_rate"] == pytest.approx(200 / 3) and b["flagged_recall"] == 100.0
    assert a["roc_auc"] == 1.0  # in group a, the 1s rank 0.8, 0.3 above the 0's 0.1
    # a cut-off moves the predictions, and so each group's figures
    (a_cut, _) = classification_groups(groups, y, proba, 2, threshold=(1, 0.25), flagged=1)
    assert a_cut["flagged_recall"] == 100.0 and a_cut["accuracy"] == 100.0
    add_group_coverage([a, b], groups, np.array([1, 1, 0, 1, 1, 1], bool))
    assert a["conformal_coverage"] == pytest.approx(200 / 3) and b["conformal_coverage"] == 100.0


def test_each_groups_regression_figures_show_a_bias():
    y = np.array([10.0, 12.0, 20.0, 22.0, 30.0])
    pred = np.array([11.0, 13.0, 18.0, 20.0, 30.0])
    groups = [("x", np.array([1, 1, 0, 0, 0], bool)), ("y", np.array([0, 0, 1, 1, 0], bool)), ("z", y == 30)]
    x, yy, z = regression_groups(groups, y, pred)
    assert x["prediction_mean"] - x["target_mean"] == 1.0 and yy["prediction_mean"] - yy["target_mean"] == -2.0
    assert x["mae"] == 1.0 and yy["rmse"] == 2.0 and z["r2"] is None and z["rows"] == 1


def _churn_files(tmp_path, n: int = 500):
    rng = np.random.default_rng(3)
    region = rng.choice(["north", "south", "east"], n)
    income, visits = rng.normal(size=n), rng.normal(size=n)
    churn = np.where(income + (region == "south") + 0.5 * rng.normal(size=n) > 0.8, "yes", "no")
    with (tmp_path / "bank.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "income", "region", "churn"])
        w.writerows([f"c{i}", f"{income[i]:.4f}", region[i] if i % 50 else "", churn[i]] for i in range(n))
    with (tmp_path / "shop.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "visits"])
        w.writerows([f"c{i}", f"{visits[i]:.4f}"] for i in range(n))
    return tmp_path / "bank.csv", tmp_path / "shop.csv"


def test_score_by_a_column_gives_each_groups_figures(tmp_path):
    bank, shop = _churn_files(tmp_path)
    model = tmp_path / "m.safetensors"
    sets = ["--set", "validation=0.3", "--set", "conformal=0.8"]
    args = ["--data", bank, "--data", shop, "--label-column", "churn", "--method", "local", "--epochs", "5"]
    code, _, err = run_cli("train", *args, *sets, "--out", model)
    assert code == 0, err
    score = ["score", "--model", model, "--input", bank, "--label-column", "churn"]
    code, out, err = run_cli(*score, "--by", "region", "--json")
    assert code == 0, err
    report = json.loads(out)
    by = report["by"]
    assert by["column"] == "region" and by["flagged_class"] == report["positive_class"]
    values = [g["value"] for g in by["groups"]]
    assert set(values) == {"north", "south", "east", "(missing)"} and values[-1] == "(missing)"
    assert sum(g["rows"] for g in by["groups"]) == report["rows"] == 500
    overall = sum(g["accuracy"] * g["rows"] for g in by["groups"]) / 500
    assert overall == pytest.approx(report["metrics"]["accuracy"])
    held = sum(g["conformal_coverage"] * g["rows"] for g in by["groups"]) / 500
    assert held == pytest.approx(report["conformal"]["conformal_coverage"])
    code, out, err = run_cli(*score, "--by", "region")
    assert code == 0, err
    assert "by region" in out and "conformal held (%)" in out and "flagged" in out
    # the errors: a column the file lacks, and --by with --against
    code, _, err = run_cli(*score, "--by", "city")
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: ") and "no --by column 'city'" in err
    code, _, err = run_cli(*score, "--by", "region", "--against", model)
    assert code == 2 and "--by scores one model group by group" in err


def test_score_by_a_column_of_a_regression(tmp_path):
    rng = np.random.default_rng(5)
    n = 300
    a, b = rng.normal(size=(n, 2)), rng.normal(size=n)
    y = 50 + 10 * a[:, 0] + 5 * b + rng.normal(size=n)
    with (tmp_path / "clinic.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "a0", "a1", "site", "cost"])
        w.writerows([f"p{i}", f"{a[i, 0]:.4f}", f"{a[i, 1]:.4f}", f"site{i % 3}", f"{y[i]:.3f}"] for i in range(n))
    with (tmp_path / "lab.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "b"])
        w.writerows([f"p{i}", f"{b[i]:.4f}"] for i in range(n))
    model = tmp_path / "m.safetensors"
    data = ["--data", tmp_path / "clinic.csv", "--data", tmp_path / "lab.csv", "--label-column", "cost"]
    code, _, err = run_cli("train", *data, "--task", "regression", "--method", "local", "--epochs", "3", "--out", model)
    assert code == 0, err
    score = ["score", "--model", model, "--input", tmp_path / "clinic.csv", "--label-column", "cost", "--by", "site"]
    code, out, err = run_cli(*score, "--json")
    assert code == 0, err
    groups = json.loads(out)["by"]["groups"]
    assert sorted(g["value"] for g in groups) == ["site0", "site1", "site2"] and all(g["rows"] == 100 for g in groups)
    assert all({"r2", "rmse", "mae", "target_mean", "prediction_mean"} <= g.keys() for g in groups)
    code, out, _ = run_cli(*score)
    assert code == 0 and "by site" in out and "mean prediction" in out
    code, out, err = run_cli(*score[:-1], "a0", "--bins", "4", "--json")
    assert code == 0, err
    assert [g["rows"] for g in json.loads(out)["by"]["groups"]] == [75, 75, 75, 75]
    code, _, err = run_cli(*score[:-2], "--bins", "4")
    assert code == 2 and "--bins cuts the --by column into bands: give --by COLUMN as well" in err
