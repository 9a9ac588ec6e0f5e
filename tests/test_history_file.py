"""The per-epoch metrics file of `apfed train --metrics` and `apfed simulate --metrics`."""

import csv

import pytest

from apfed.errors import DataError
from apfed.history_file import HistoryWriter, history_csv, read_history, write_history
from tests.conftest import run_cli


def test_columns_are_the_union_of_the_rows_keys_with_epoch_first():
    rows = [{"train_time": 0.5, "epoch": 1, "accuracy": 50.0}, {"epoch": 2, "train_time": 0.25, "val_accuracy": 1 / 3}]
    lines = history_csv(rows).splitlines()
    assert lines == ["epoch,train_time,accuracy,val_accuracy", "1,0.5,50,", "2,0.25,,0.3333333"]


def test_a_written_file_reads_back_and_a_bad_one_is_one_error(tmp_path):
    p = tmp_path / "m.csv"
    write_history(p, [{"epoch": 1, "task_loss": 2.5}, {"epoch": 2, "task_loss": 1.25, "accuracy": 80.0}])
    assert read_history(p) == [{"epoch": 1, "task_loss": 2.5}, {"epoch": 2, "task_loss": 1.25, "accuracy": 80.0}]
    assert [f.name for f in tmp_path.iterdir()] == ["m.csv"]  # no temporary file left beside it
    (tmp_path / "bad.csv").write_text("epoch,loss\n1,abc\n")
    with pytest.raises(DataError, match="not a metrics file"):
        read_history(tmp_path / "bad.csv")
    (tmp_path / "noepoch.csv").write_text("loss\n1\n")
    with pytest.raises(DataError, match="without an epoch"):
        read_history(tmp_path / "noepoch.csv")


def test_the_file_holds_every_finished_epoch_and_a_resumed_run_keeps_the_earlier_ones(tmp_path):
    p = tmp_path / "m.csv"
    w = HistoryWriter(p, every_s=0)
    for e in (1, 2, 3):
        w({"epoch": e, "task_loss": 1.0 / e})
        assert [r["epoch"] for r in read_history(p)] == list(range(1, e + 1))  # readable while the run goes on
    # the run died after epoch 3 but its last checkpoint was after epoch 2: the resumed run redoes epoch 3
    w = HistoryWriter(p, resume=True)
    w({"epoch": 3, "task_loss": 0.3})  # the first epoch of a process is written at once
    assert read_history(p) == [
        {"epoch": 1, "task_loss": 1.0},
        {"epoch": 2, "task_loss": 0.5},
        {"epoch": 3, "task_loss": 0.3},
    ]
    w.finish([{"epoch": 1, "task_loss": 9.0}])  # the run's own history has the last word
    assert read_history(p) == [{"epoch": 1, "task_loss": 9.0}]
    # without --resume an existing file is replaced from the first epoch; short epochs are written once a second
    w = HistoryWriter(p, every_s=3600)
    w({"epoch": 1, "task_loss": 7.0})
    w({"epoch": 2, "task_loss": 6.0})
    assert read_history(p) == [{"epoch": 1, "task_loss": 7.0}]
    w.finish([{"epoch": 1, "task_loss": 7.0}, {"epoch": 2, "task_loss": 6.0}])
    assert len(read_history(p)) == 2


def test_a_metrics_file_that_cannot_be_written_is_one_warning_and_the_run_goes_on(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    warnings = []
    w = HistoryWriter(blocker / "m.csv", every_s=0, warn=warnings.append)
    for e in (1, 2, 3):
        w({"epoch": e, "task_loss": 1.0})
    w.finish([{"epoch": 1, "task_loss": 1.0}])
    assert len(warnings) == 1 and "cannot write the metrics file" in warnings[0] and "goes on" in warnings[0]


def test_train_writes_one_row_per_epoch_matching_the_model_it_wrote(tmp_path):
    model, metrics = tmp_path / "m.safetensors", tmp_path / "runs" / "m.csv"
    code, _, err = run_cli(
        "train", "--dataset", "digits", "--method", "apfed-kd", "--epochs", "3", "--out", model, "--metrics", metrics
    )
    assert code == 0, err
    with metrics.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert {"train_time", "task_loss", "kd_loss", "passive_loss", "acc_fused", "accuracy"} <= set(rows[0])
    from apfed.standalone import StandaloneModel

    provenance = StandaloneModel.load(model).provenance
    assert provenance["epochs_run"] == len(rows)
    assert float(rows[-1]["accuracy"]) == pytest.approx(provenance["test_accuracy"], abs=1e-4)


def test_a_metrics_path_that_would_overwrite_the_model_or_an_input_is_refused_before_training(tmp_path, party_csvs):
    model = tmp_path / "m.safetensors"
    code, _, err = run_cli("train", "--dataset", "digits", "--out", model, "--metrics", model)
    assert code != 0 and "--metrics and --out are the same file" in err and len(err.strip().splitlines()) == 1
    a = party_csvs["paths"][0]
    code, _, err = run_cli(
        "train", "--data", a, "--id-column", "user_id", "--method", "local", "--out", model, "--metrics", a
    )
    assert code != 0 and "refusing to overwrite" in err and not model.exists()
    code, _, err = run_cli("train", "--dataset", "digits", "--out", model, "--metrics", tmp_path)
    assert code != 0 and "is a directory" in err
