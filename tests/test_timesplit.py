"""Out-of-time test rows (``--time-column``): the latest labelled rows by a column of the active party's file test."""

import csv
import json

import numpy as np
import pytest
from conftest import run_cli

import apfed
from apfed.data.files import active_party_file
from apfed.data.timesplit import parse_times, time_split
from apfed.errors import ConfigError, DataError


def test_times_read_as_iso_dates_numbers_or_numpy_datetimes():
    t = parse_times(np.array(["2024-03-01", "2024-03-01 14:30", "2024-03", "", "NA"]), "opened", "a.csv")
    assert t.kind == "date" and np.isnan(t.values[3:]).all()
    assert t.values[1] - t.values[0] == 14.5 * 3600 and t.values[0] == t.values[2]
    assert [t.text(v) for v in t.values[:2]] == ["2024-03-01", "2024-03-01 14:30:00"]
    assert (
        parse_times(np.array(["2024-03-01T10:00:00+01:00"]), "c", "f").text(
            parse_times(np.array(["2024-03-01T10:00:00+01:00"]), "c", "f").values[0]
        )
        == "2024-03-01 09:00:00"
    )  # an offset is read as UTC
    n = parse_times(np.array(["3", "12", ""]), "month", "a.csv")
    assert n.kind == "number" and n.values[:2].tolist() == [3.0, 12.0] and np.isnan(n.values[2])
    d = parse_times(np.array(["2024-01-02", "NaT"], dtype="datetime64[D]"), "c", "f")
    assert d.kind == "date" and d.text(d.values[0]) == "2024-01-02" and np.isnan(d.values[1])
    with pytest.raises(DataError, match=r"a.csv: time column 'opened' holds '03/01/2024' \(line 3\), neither"):
        parse_times(np.array(["2024-03-01", "03/01/2024"]), "opened", "a.csv")
    with pytest.raises(DataError, match="holds 'inf'"):
        parse_times(np.array(["1", "inf"]), "opened", "a.csv")


def test_the_test_rows_are_the_latest_and_every_row_tied_with_the_earliest_of_them():
    times = np.array([5, 1, 9, 7, 3, 7, 2, 8, 6, 4], dtype=float)
    train, test = time_split(times, 0.2, "c")
    assert sorted(times[test]) == [8, 9] and times[train].max() < times[test].min()
    assert len(train) + len(test) == 10 and not set(train) & set(test)
    train, test = time_split(times, 0.3, "c")  # 3 rows: 9, 8 and 7, and the other row at 7 with them
    assert sorted(times[test]) == [7, 7, 8, 9] and times[train].max() == 6
    train, test = time_split(np.array([np.nan, 1.0]), 0, "c")  # no test rows: no time needed
    assert len(train) == 2 and len(test) == 0
    with pytest.raises(DataError, match=r"c is empty for ID 'b' \(2 labelled rows have none\)"):
        time_split(np.array([1.0, np.nan, 3.0, np.nan]), 0.2, "c", np.array(["a", "b", "c", "d"]))
    with pytest.raises(DataError, match="holds the same time from the latest 50% of the labelled rows back to"):
        time_split(np.array([2.0, 2.0, 2.0, 2.0]), 0.5, "c")
    assert len(time_split(np.array([1.0, 2.0, 2.0, 2.0]), 0.5, "c")[1]) == 3


def _files(tmp_path, n=240, with_gaps=False):
    """An active file with a date column (a class that appears late) and a passive file, rows shuffled."""
    rng = np.random.default_rng(3)
    days = rng.permutation(n)  # every row a day of its own
    y = rng.integers(0, 2, n)
    y[days >= n - 10] = 2  # class 2 appears only in the last 10 days
    xa, xb = rng.normal(size=(n, 3)) + y[:, None], rng.normal(size=(n, 2)) + y[:, None]
    active, passive = tmp_path / "bank.csv", tmp_path / "shop.csv"
    with active.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "a0", "opened", "a1", "a2", "label"])
        for i in range(n):
            label = "" if with_gaps and i % 10 == 0 else f"c{y[i]}"
            day = np.datetime64("2024-01-01") + np.timedelta64(int(days[i]), "D")
            when = "" if with_gaps and i % 10 == 0 else str(day)
            w.writerow([f"u{i}", xa[i, 0], when, xa[i, 1], xa[i, 2], label])
    with passive.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "b0", "b1"])
        for i in rng.permutation(n):
            w.writerow([f"u{i}", *xb[i]])
    return [active, passive], days


def test_party_files_split_by_time_the_same_in_process_and_in_a_deployment(tmp_path):
    files, days = _files(tmp_path)
    lines = []
    ds, a = apfed.load_dataset(data=files, time_column="opened", log=lines.append, test_fraction=0.25)
    assert ds.views[a].columns == ["a0", "a1", "a2"]  # the time column is not a feature
    index = {f"u{i}": d for i, d in enumerate(days)}
    train_days = [index[i] for i in ds.ids[ds.train_idx]]
    test_days = [index[i] for i in ds.ids[ds.test_idx]]
    assert len(test_days) == 60 and min(test_days) == 180 and max(train_days) == 179
    assert ds.notes["test_split"] == {
        "time_column": "opened",
        "kind": "date",
        "train_from": "2024-01-01",
        "train_until": str(np.datetime64("2024-01-01") + np.timedelta64(179, "D")),
        "test_from": str(np.datetime64("2024-01-01") + np.timedelta64(180, "D")),
        "test_until": str(np.datetime64("2024-01-01") + np.timedelta64(239, "D")),
    }
    assert any(
        "out of time by 'opened': test rows from 2024-06-29" in x and "(60 test, 180 training" in x for x in lines
    )
    assert any("warning: only test rows have class 'c2'" in x for x in lines)
    party = active_party_file(files[0], "id", "label", test_fraction=0.25, time_column="opened")
    assert party.split == ds.notes["test_split"]
    assert sorted(party.ids[party.test_rows]) == sorted(ds.ids[ds.test_idx])
    with pytest.raises(DataError, match="column 'opened' holds dates, not features; name it with --time-column"):
        apfed.load_dataset(data=files, log=lambda _: None)  # read as a feature: 240 categories


def test_rows_with_no_label_need_no_time_and_a_labelled_row_without_one_is_named(tmp_path):
    files, _ = _files(tmp_path, with_gaps=True)  # every 10th row: no label and no time
    ds, _ = apfed.load_dataset(data=files, time_column="opened", log=lambda _: None)
    assert len(ds.unlabelled) == 24 and len(ds.train_idx) + len(ds.test_idx) == 216
    rows = list(csv.reader(files[0].read_text().splitlines()))
    rows[5][2] = ""  # a labelled row (u3) loses its date
    with files[0].open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    with pytest.raises(DataError, match=r"bank.csv: time column 'opened' is empty for ID 'u4'"):
        apfed.load_dataset(data=files, time_column="opened", log=lambda _: None)
    ds, _ = apfed.load_dataset(data=files, time_column="opened", log=lambda _: None, test_fraction=0)
    assert len(ds.test_idx) == 0  # no test rows: no time needed


def test_arrays_parties_and_npz_files_split_by_time_as_csv_files_do(tmp_path):
    n = 100
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(n, 3)), np.arange(n) % 2
    months = rng.permutation(n)  # numbers: a month index
    ds = apfed.from_arrays({"a": X, "b": X[:, :1]}, y, times=months, time_column="month")
    assert sorted(months[ds.test_idx]) == list(range(80, 100)) and ds.notes["test_split"]["test_from"] == "80"
    with pytest.raises(DataError, match=r"times must be one value per row \(100\)"):
        apfed.from_arrays({"a": X}, y, times=months[:5])
    table = {"id": [f"r{i}" for i in range(n)], "x": X[:, 0], "when": months, "label": y}
    parties = apfed.from_parties({"bank": table, "shop": {"id": table["id"], "z": X[:, 1]}}, time_column="when")
    assert sorted(parties.ids[parties.test_idx]) == sorted(f"r{i}" for i in np.flatnonzero(months >= 80))
    assert parties.views[0].columns == ["x"]
    np.savez(tmp_path / "bench.npz", view_a=X, view_b=X[:, :1], label=y, month=months)
    bench, _ = apfed.load_dataset(data=[tmp_path / "bench.npz"], time_column="month", log=lambda _: None)
    assert sorted(bench.test_idx.tolist()) == sorted(ds.test_idx.tolist())
    np.savez(tmp_path / "party.npz", id=np.arange(n), X=X, label=y, month=months)
    party = active_party_file(tmp_path / "party.npz", "id", "label", time_column="month")
    assert sorted(months[party.test_rows]) == list(range(80, 100))
    with pytest.raises(DataError, match="no time array 'day'"):
        active_party_file(tmp_path / "party.npz", "id", "label", time_column="day")


def test_a_regression_splits_by_time_too(tmp_path):
    n = 80
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, 2))
    order = rng.permutation(n)
    ds = apfed.from_arrays({"a": X, "b": X}, X[:, 0] * 3.0, times=order, task="regression")
    assert sorted(order[ds.test_idx]) == list(range(64, 80))


def test_the_cli_trains_on_the_early_rows_and_the_model_says_so(tmp_path):
    files, _ = _files(tmp_path)
    model = tmp_path / "m.safetensors"
    data = ["--data", str(files[0]), "--data", str(files[1]), "--time-column", "opened"]
    code, _, err = run_cli("train", *data, "--method", "apfed-kd", "--epochs", "1", "--out", model)
    assert code == 0 and "out of time by 'opened'" in err, err
    _, out, _ = run_cli("info", "--model", model)
    assert "out of time by 'opened': test rows from 2024-07-11 to 2024-08-27" in out, out
    code, _, err = run_cli("evaluate", *data, "--resplit", "--out", tmp_path / "ev")
    assert code != 0 and err.strip().startswith("error: --resplit cannot go with --time-column"), err
    code, _, err = run_cli("train", "--dataset", "digits", "--time-column", "opened", "--out", model)
    assert code != 0 and err.strip().startswith("error: time column applies to --data files"), err
    code, out, err = run_cli("preflight", "--data", files[0], "--label-column", "label", "--time-column", "opened")
    assert code == 0 and "out of time by 'opened'" in out, err
    code, _, err = run_cli("preflight", "--data", files[1], "--time-column", "opened")
    assert code != 0 and "--time-column goes with --label-column" in err, err
    rows = list(csv.reader(files[0].read_text().splitlines()))
    rows[3][2] = "31/12/2024"
    with files[0].open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    code, _, err = run_cli("train", *data, "--method", "local", "--out", model)
    assert code != 0 and err.strip().endswith(
        "bank.csv: time column 'opened' holds '31/12/2024' (line 4), neither a number nor an ISO date (2024-03-01,"
        " 2024-03-01 14:30, 2024-03)"
    ), err


def test_the_time_column_cannot_be_the_id_or_the_label_column(tmp_path):
    files, _ = _files(tmp_path)
    with pytest.raises(DataError, match="the time column and the label column are both 'label'"):
        apfed.load_dataset(data=files, time_column="label", log=lambda _: None)
    with pytest.raises(ConfigError, match="time column applies to --data files"):
        apfed.load_dataset("digits", time_column="opened")


def test_folds_in_time_test_each_later_period_trained_on_the_past_only(tmp_path):
    from apfed.data.splits import time_fold

    files, days = _files(tmp_path, with_gaps=True)  # rows with no label stay out of every fold
    ds, _ = apfed.load_dataset(data=files, time_column="opened", log=lambda _: None)
    index = {f"u{i}": d for i, d in enumerate(days)}
    tested = []
    for k in range(3):
        f = time_fold(ds, k, 3)
        train = [index[i] for i in f.ids[f.train_idx]]
        test = [index[i] for i in f.ids[f.test_idx]]
        assert max(train) < min(test) and len(test) == 54  # 216 labelled rows in 4 periods of 54
        assert f.notes["fold_period"]["test_from"] == str(np.datetime64("2024-01-01") + np.timedelta64(min(test), "D"))
        tested.append((min(test), max(test)))
        assert len(train) == 54 * (k + 1)  # every labelled row before the period, and none after it
    assert tested[0][1] < tested[1][0] and tested[1][1] < tested[2][0]
    for k in range(3):  # a sliding window of one period: the one just before the tested one trains, alone
        f = time_fold(ds, k, 3, window=1)
        train = [index[i] for i in f.ids[f.train_idx]]
        test = [index[i] for i in f.ids[f.test_idx]]
        assert len(train) == 54 and max(train) < min(test)
        assert k == 0 or (min(train), max(train)) == tested[k - 1]  # the period the fold before tested
        assert (min(test), max(test)) == tested[k]
    code, _, err = run_cli("evaluate", "--data", files[0], "--data", files[1], "--folds", "3", "--window", "1")
    assert code == 2 and "--window slides over periods in time" in err
    code, out, err = run_cli(
        "evaluate",
        "--data",
        files[0],
        "--data",
        files[1],
        "--time-column",
        "opened",
        "--folds",
        "3",
        "--methods",
        "local",
        "--epochs",
        "1",
        "--out",
        tmp_path / "ev",
    )
    assert code == 0, err
    report = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert report["split"].startswith("3 folds in time by 'opened'") and len(report["fold_periods"]) == 3
    assert "periods tested: " in " ".join(out.split())  # under the table, as rich wraps it
    assert "each fold tests a later period, trained only on the past" in (tmp_path / "ev" / "results.md").read_text()


def test_folds_in_time_leave_out_the_later_rows_that_no_passive_holds(tmp_path):
    from apfed.data.splits import time_fold

    files, days = _files(tmp_path)
    lines = files[1].read_text().splitlines()
    files[1].write_text("\n".join(line for line in lines if not line.startswith(("u1,", "u2", "u3"))) + "\n")
    ds, _ = apfed.load_dataset(data=files, time_column="opened", log=lambda _: None)
    assert ds.unmatched is not None and len(ds.unmatched) == 63
    index = {f"u{i}": d for i, d in enumerate(days)}
    f = time_fold(ds, 0, 3)  # the second of four periods: the first trains, the last two are left out
    u = f.unmatched
    test_days = [index[i] for i in f.ids[f.test_idx]] + [index[i] for i in u.ids[u.test]]
    train_days = [index[i] for i in f.ids[f.train_idx]] + [index[i] for i in u.ids[~u.test]]
    assert max(train_days) < min(test_days) and len(train_days) == len(test_days) == 60
    assert len(u) < len(ds.unmatched)  # the unmatched rows of the last two periods are in neither part


def test_validation_rows_can_be_the_latest_training_rows(tmp_path):
    from apfed.config import make_config
    from apfed.runner import build_clients

    files, days = _files(tmp_path, with_gaps=True)
    ds, a = apfed.load_dataset(data=files, time_column="opened", log=lambda _: None)
    index = {f"u{i}": d for i, d in enumerate(days)}
    cfg = make_config("default", method="local", epochs=1, validation=0.25, validation_split="latest")
    client = build_clients(ds, a, cfg)
    client.setup()
    ids = client.data.ids
    val = [index[i] for i in ids[client.keep[client.val]]]
    train = [index[i] for i in ids[client.keep[client.split[0]]]]
    test = [index[i] for i in ids[client.keep[client.split[1]]]]
    assert len(val) == 43 and max(train) < min(val) and max(val) < min(test)  # 25 % of the 172 training rows
    client.finish()
    r = apfed.train(ds, a, "local", epochs=2, validation=0.25, validation_split="latest")
    assert r.model.provenance["validation_rows"] == 43
    with pytest.raises(ConfigError, match="validation_split=latest takes the latest training rows by time"):
        apfed.train(
            apfed.from_arrays({"a": np.ones((40, 2)), "b": np.ones((40, 1))}, np.arange(40) % 2),
            0,
            "local",
            epochs=1,
            validation=0.25,
            validation_split="latest",
        )
    with pytest.raises(ConfigError, match="validation_split=latest chooses validation rows: set validation"):
        make_config("default", validation_split="latest")


def test_a_few_dates_read_as_categories_are_named_in_a_warning(tmp_path):
    rows = ["id,month,x,label"] + [
        f"r{i},2024-0{1 + i % 3},{i * 0.1:.1f},{'yes' if i % 2 else 'no'}" for i in range(40)
    ]
    (tmp_path / "a.csv").write_text("\n".join(rows) + "\n")
    lines = []
    ds, _ = apfed.load_dataset(data=[tmp_path / "a.csv"], log=lines.append)
    assert "month=2024-01" in ds.views[0].columns  # read as asked, one feature per month
    assert any("warning: 'month' holds dates, read as categories; name it with --time-column" in x for x in lines)
    lines.clear()
    apfed.load_dataset(data=[tmp_path / "a.csv"], log=lines.append, time_column="month")
    assert not any("holds dates" in x for x in lines)


def test_a_sliding_window_of_folds_in_time_trains_on_the_latest_periods_only(tmp_path):
    files, _ = _files(tmp_path)
    args = ["--data", files[0], "--data", files[1], "--time-column", "opened", "--folds", "3", "--methods", "local"]
    code, out, err = run_cli("evaluate", *args, "--window", "1", "--epochs", "1", "--out", tmp_path / "ev")
    assert code == 0, err
    report = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert report["window"] == 1 and "trained on the 1 period(s) just before it" in report["split"]
    periods = report["fold_periods"]
    # each fold's training rows start after the previous fold's began: the earlier periods no longer train
    assert all(periods[k]["train_from"] > periods[k - 1]["train_from"] for k in (1, 2))
    assert all(periods[k]["train_until"] < periods[k]["test_from"] for k in range(3))
