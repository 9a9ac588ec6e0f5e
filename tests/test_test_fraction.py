"""The share of labelled rows held out to test (``--test-fraction``): another split, or none at all (0: the model
put to use trains on every labelled row and the run reports no test figure)."""

import json

import numpy as np
import pytest
from conftest import run_cli

import apfed
from apfed.data import load_bundled, load_party_files
from apfed.data.files import active_party_file
from apfed.data.splits import stratified_split
from apfed.errors import ConfigError
from apfed.standalone import StandaloneModel
from clients.flower_app import RunSettings, epoch_line


def test_a_fraction_of_zero_trains_every_row_and_tests_none():
    y = np.array([0, 1, 2] * 7 + [2])  # 22 rows
    train, test = stratified_split(y, 0.0)
    assert sorted(train.tolist()) == list(range(22)) and len(test) == 0
    train, test = stratified_split(y, 0.5, seed=3)  # any other fraction: stratified, disjoint, complete
    assert len(test) == 11 and sorted([*train, *test]) == list(range(22))
    assert np.bincount(y[test]).min() >= 3


def test_bundled_sets_take_another_split_and_keep_the_reference_one_by_default():
    default, same, other = load_bundled("digits"), load_bundled("digits", test_fraction=0.2), load_bundled("digits")
    assert default.test_idx.tolist() == same.test_idx.tolist() == other.test_idx.tolist()
    ds = load_bundled("digits", test_fraction=0.3)
    assert len(ds.test_idx) == int(np.ceil(0.3 * len(ds.labels)))
    assert set(ds.train_idx.tolist()).isdisjoint(ds.test_idx.tolist())
    everything = load_bundled("digits", test_fraction=0)
    assert len(everything.train_idx) == len(everything.labels) and len(everything.test_idx) == 0


def test_a_run_with_no_test_rows_trains_on_every_row_and_reports_no_test_figure():
    ds, a = apfed.load_dataset("digits", test_fraction=0, log=lambda _: None)
    r = apfed.train(ds, a, "apfed-kd", epochs=2)
    assert r.accuracy is None and "accuracy" not in r.final
    assert all("accuracy" not in row and "task_loss" in row for row in r.history)
    p = r.model.provenance
    assert p["train_rows"] == len(ds.labels) and p["test_rows"] == 0 and "test_accuracy" not in p
    # the model is a real one: it classifies the rows it trained on far above chance (10 classes)
    assert r.model.score(ds.views[a].X, np.array(ds.class_names)[ds.labels]) > 0.5
    # with validation rows, the epoch kept is picked on them as usual
    r = apfed.train(ds, a, "apfed-c", epochs=3, validation=0.2)
    assert r.accuracy is None and r.final["best_epoch"] in (1, 2, 3) and "val_accuracy" in r.final
    assert r.model.provenance["train_rows"] + r.model.provenance["validation_rows"] == len(ds.labels)


def test_a_comparison_needs_test_rows():
    ds, a = apfed.load_dataset("digits", test_fraction=0, log=lambda _: None)
    with pytest.raises(ConfigError, match="no test rows"):
        apfed.compare(ds, a, ["local"], seeds=1, epochs=1)
    with pytest.raises(ConfigError, match=r"must be in \[0, 1\)"):
        apfed.load_dataset("digits", test_fraction=1.0, log=lambda _: None)


def test_party_files_and_a_deployed_active_party_split_alike(tmp_path, party_csvs):
    """The rows some passive lacks all train too; a deployed active party (its own file alone) makes the same
    choice: every row trains."""
    paths = party_csvs["paths"]
    ds = load_party_files(paths, "user_id", "label", log=lambda _: None, test_fraction=0)
    assert len(ds.test_idx) == 0 and len(ds.train_idx) == len(ds.ids)
    assert ds.unmatched is not None and not ds.unmatched.test.any()
    deployed = active_party_file(paths[0], "user_id", "label", test_fraction=0)
    assert len(deployed.test_rows) == 0 and len(deployed.train_rows) == len(deployed.ids)
    r = apfed.train(ds, 0, "apfed-c", epochs=1)
    assert r.model.provenance["unmatched_train_rows"] == len(ds.unmatched)
    s = RunSettings.from_run_config({"test-fraction": 0, "data": str(paths[0]), "passives": 2})
    assert s.test_fraction == 0


def test_a_deployments_epoch_line_without_test_rows():
    row = {"epoch": 2, "val_accuracy": 81.25, "task_loss": 0.5, "train_time": 1.25}
    assert epoch_line(row, 5) == "epoch 2/5: validation 81.25 %, task loss 0.5000, 1.2 s"
    assert epoch_line({**row, "accuracy": 80.0}, 5).startswith("epoch 2/5: test accuracy 80.00 %, validation")


def test_cli_trains_on_every_row_and_says_so(tmp_path):
    model = tmp_path / "m.safetensors"
    code, _, err = run_cli(
        "train", "--dataset", "digits", "--method", "local", "--epochs", "1", "--test-fraction", "0", "--out", model
    )
    assert code == 0, err
    assert "no test rows (test fraction 0): trained on every labelled row" in err
    assert StandaloneModel.load(model).provenance["test_rows"] == 0
    code, out, err = run_cli("info", "--model", model)
    assert code == 0 and "none: trained on every labelled row" in out
    # scoring it on labelled rows is its first test
    ds = load_bundled("digits")
    X = ds.views[0].X
    rows = ["id," + ",".join(f"top_px{j}" for j in range(X.shape[1])) + ",label"]
    rows += [f"{i}," + ",".join(map(str, X[i])) + f",{ds.labels[i]}" for i in range(60)]
    (tmp_path / "later.csv").write_text("\n".join(rows) + "\n")
    code, out, err = run_cli("score", "--model", model, "--input", tmp_path / "later.csv")
    assert code == 0, err
    assert "these rows are its test" in out.replace("\n", " ")
    code, out, _ = run_cli("score", "--model", model, "--input", tmp_path / "later.csv", "--json")
    assert "training_test_accuracy" not in json.loads(out)


@pytest.mark.parametrize(
    "args, message",
    [
        (["evaluate", "--test-fraction", "0"], "evaluate ranks methods by their test accuracy"),
        (["train", "--test-fraction", "1", "--out", "m.safetensors"], "test fraction must be in [0, 1)"),
        (["train", "--test-fraction", "-0.1", "--out", "m.safetensors"], "test fraction must be in [0, 1)"),
    ],
)
def test_cli_refuses_a_test_fraction_it_cannot_use_in_one_line(tmp_path, args, message):
    code, out, err = run_cli(*args, cwd=tmp_path)
    assert code == 2
    assert err.strip() == f"error: {message}" or err.strip().startswith(f"error: {message}")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.safetensors").exists() and not (tmp_path / "results").exists()


def test_resplit_draws_another_stratified_split_of_the_same_rows(tmp_path, party_csvs):
    from apfed.data.splits import resplit
    from apfed.data.views import partial_overlap

    ds = load_bundled("digits")
    again = resplit(ds, 1)
    assert len(again.test_idx) == len(ds.test_idx) and len(again.train_idx) == len(ds.train_idx)
    assert sorted([*again.train_idx, *again.test_idx]) == list(range(len(ds.ids)))
    assert set(again.test_idx.tolist()) != set(ds.test_idx.tolist())
    assert np.abs(np.bincount(ds.labels[again.test_idx]) - np.bincount(ds.labels[ds.test_idx])).max() <= 1
    assert resplit(ds, 1).test_idx.tolist() == again.test_idx.tolist()  # seeded
    # the rows no passive holds are split with the others, as a party's whole file is
    files = load_party_files(party_csvs["paths"], "user_id", "label", log=lambda _: None)
    u, v = files.unmatched, resplit(files, 2).unmatched
    assert len(files.test_idx) + u.test.sum() == len(resplit(files, 2).test_idx) + v.test.sum() == 60
    assert (u.test != v.test).any()
    with pytest.raises(apfed.errors.DataError, match="keeps its split"):
        resplit(partial_overlap(ds, 0, 0.5), 1)


def test_a_comparison_with_one_split_per_seed_resumes_and_keeps_seed_0s_split(tmp_path):
    ds, a = apfed.load_dataset("handwritten", passives="kar", log=lambda _: None)
    kw = {"seeds": 2, "epochs": 2, "jobs": 1}
    same = apfed.compare(ds, a, ["local", "apfed-c"], **kw)
    report = apfed.compare(ds, a, ["local", "apfed-c"], out=tmp_path, resplit=True, **kw)
    runs = {(r["method"], r["seed"]): r["accuracy"] for r in report["runs"]}
    before = {(r["method"], r["seed"]): r["accuracy"] for r in same["runs"]}
    assert runs[("local", 0)] == before[("local", 0)] and runs[("apfed-c", 0)] == before[("apfed-c", 0)]
    assert runs[("local", 1)] != before[("local", 1)]  # seed 1 tests on other rows
    assert (
        report["split"].startswith("one per seed")
        and "its own stratified train/test split" in (tmp_path / "results.md").read_text()
    )
    again = apfed.compare(ds, a, ["local", "apfed-c"], out=tmp_path, resplit=True, resume=True, **kw)
    assert again["summary"] == report["summary"]
    parallel = apfed.compare(ds, a, ["local", "apfed-c"], resplit=True, **{**kw, "jobs": 2})  # each worker its split
    assert {(r["method"], r["seed"]): r["accuracy"] for r in parallel["runs"]} == runs
    # seed 1's stored runs came from another split than the data's own: resuming without --resplit refuses them
    with pytest.raises(ConfigError, match="the data"):
        apfed.compare(ds, a, ["local", "apfed-c"], out=tmp_path, resume=True, **kw)


def test_cli_refuses_resplit_with_an_overlap_study(tmp_path):
    code, _, err = run_cli("evaluate", "--resplit", "--overlap", "0.5", cwd=tmp_path)
    assert code == 2 and err.strip().startswith("error: --resplit cannot go with --overlap")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "results").exists()


def test_tables_and_arrays_in_memory_take_the_test_fraction_too(party_csvs):
    import csv

    tables = {}
    for path in party_csvs["paths"]:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        tables[path.stem] = {k: [r[k] for r in rows] for k in rows[0]}
    ds = apfed.from_parties(tables, id_column="user_id", test_size=0, log=lambda _: None)
    files = load_party_files(party_csvs["paths"], "user_id", "label", log=lambda _: None, test_fraction=0)
    assert len(ds.test_idx) == 0 and sorted(ds.ids.tolist()) == sorted(files.ids.tolist())
    X = np.arange(40.0).reshape(20, 2)
    assert len(apfed.from_arrays({"a": X, "b": X}, [0, 1] * 10, test_size=0).test_idx) == 0
    with pytest.raises(ConfigError, match="test fraction must be in"):
        apfed.from_arrays({"a": X, "b": X}, [0, 1] * 10, test_size=1.5)


def test_folds_test_every_labelled_row_once(party_csvs):
    from apfed.data.splits import fold

    files = load_party_files(party_csvs["paths"], "user_id", "label", log=lambda _: None)
    tested = []
    for k in range(4):
        f = fold(files, k, 4)
        ids = [*files.ids[f.test_idx], *f.unmatched.ids[f.unmatched.test]]
        trained = [*files.ids[f.train_idx], *f.unmatched.ids[~f.unmatched.test]]
        assert set(ids).isdisjoint(trained) and len(ids) + len(trained) == 300  # the active party's whole file
        tested += ids
    assert sorted(tested) == sorted([*files.ids, *files.unmatched.ids])  # each row once
    with pytest.raises(apfed.errors.DataError, match="the rarest class has"):
        fold(load_bundled("digits"), 0, 1000)


def test_a_cross_validated_comparison(tmp_path):
    ds, a = apfed.load_dataset("handwritten", passives="kar", log=lambda _: None)
    report = apfed.compare(ds, a, ["local", "apfed-c"], folds=3, epochs=1, out=tmp_path, jobs=1)
    assert sorted({r["seed"] for r in report["runs"]}) == [0, 1, 2] and report["split"].startswith("3-fold")
    assert report["summary"]["apfed-c"]["vs_local_seeds"] == 3
    assert "3-fold cross-validation" in (tmp_path / "results.md").read_text()
    again = apfed.compare(ds, a, ["local", "apfed-c"], folds=3, epochs=1, out=tmp_path, resume=True, jobs=1)
    assert again["summary"] == report["summary"]
    code, _, err = run_cli("evaluate", "--folds", "3", "--seeds", "2", cwd=tmp_path)
    assert code == 2 and err.startswith("error: --folds makes the splits") and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("evaluate", "--folds", "3", "--overlap", "0.5", cwd=tmp_path)
    assert code == 2 and err.startswith("error: --folds cannot go with --overlap")
