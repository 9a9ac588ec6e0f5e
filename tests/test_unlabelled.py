"""Rows with no label: the active party's rows whose label cell is empty. The passives' APFed losses need no label
(nor does apfed-kd's distillation), so apfed-r, -c, -m and -kd also train on them (unlabelled_rows=train); the task
losses skip them, no method is tested on them, and a method that learns from labels alone leaves them out."""

import csv
import json

import numpy as np
import pytest
import torch

import apfed
from apfed.augment import mixed_cross_entropy
from apfed.config import make_config
from apfed.data import load_bundled
from apfed.data.files import active_party_file
from apfed.errors import DataError
from apfed.runner import build_clients
from protocols import decode
from protocols.messages import TRAIN


@pytest.fixture(scope="module")
def halves():
    """digits in 2 strips with the labels of 60 % of its training rows taken away (as None), and the same data
    without those rows: two datasets whose labelled rows, and their split, are the same."""
    ds = load_bundled("digits", 2)
    rng = np.random.default_rng(4)
    train = np.asarray(ds.train_idx)
    hidden = np.sort(rng.choice(train, int(0.6 * len(train)), replace=False))
    raw = np.asarray(ds.class_names, dtype=object)[ds.labels]
    raw[hidden] = None
    views = {v.name: v.X for v in ds.views}
    with_rows = apfed.from_arrays(views, raw, ids=ds.ids)
    keep = np.setdiff1d(np.arange(len(ds.ids)), hidden)
    without = apfed.from_arrays({k: x[keep] for k, x in views.items()}, raw[keep], ids=ds.ids[keep])
    return with_rows, without, hidden


def _run(ds, method: str, epochs: int = 3, **settings):
    record, lines = [], []
    cfg = make_config("default", method=method, epochs=epochs, seed=1, **settings)
    client = build_clients(ds, 0, cfg, serialize=True, record=record, log=lines.append)
    client.setup()
    client.fit()
    out = client.standalone_model({}) if method != "tvfl" else None
    proba = out.predict_proba(ds.views[0].X[np.asarray(ds.test_idx)]) if out is not None else None
    final = client.final_metrics()
    client.finish()
    rows = [np.asarray(m.arrays["idx"]) for m in map(decode, record) if m.kind == TRAIN and "idx" in m.arrays]
    return final, proba, rows, lines, out


def test_rows_with_no_label_are_neither_trained_by_the_labels_nor_tested(halves):
    with_rows, without, hidden = halves
    assert len(with_rows.unlabelled) == len(hidden) and (with_rows.labels[with_rows.unlabelled] == -1).all()
    assert not np.isin(with_rows.unlabelled, np.concatenate([with_rows.train_idx, with_rows.test_idx])).any()
    assert (with_rows.labels[np.asarray(with_rows.train_idx)] >= 0).all()
    # the labelled rows are split as if the others were not there: the same rows train and test
    assert np.array_equal(with_rows.ids[np.asarray(with_rows.test_idx)], without.ids[np.asarray(without.test_idx)])
    assert np.array_equal(with_rows.ids[np.asarray(with_rows.train_idx)], without.ids[np.asarray(without.train_idx)])


@pytest.mark.parametrize("method,settings", [("local", {}), ("tvfl", {}), ("apfed-c", {"unlabelled_rows": "drop"})])
def test_a_run_that_leaves_them_out_is_the_run_without_them(halves, method, settings):
    """Bit for bit: the rows with no label change nothing for local and tvfl, nor for apfed-c told to drop them."""
    with_rows, without, _ = halves
    a, b = _run(with_rows, method, **settings), _run(without, method, **settings)
    assert a[0]["accuracy"] == b[0]["accuracy"]
    if a[1] is not None:
        assert np.array_equal(a[1], b[1])
    assert sum(map(len, a[2])) == sum(map(len, b[2]))
    said = "left out (unlabelled_rows=drop)" if settings else f"left out ({method} learns from labels alone)"
    assert any(f"{len(with_rows.unlabelled)} rows with no label: {said}" in line for line in a[3]), a[3]


@pytest.mark.parametrize("method", ["apfed-c", "apfed-kd"])
def test_the_passives_losses_train_on_the_rows_with_no_label(halves, method):
    """Every epoch's train requests carry the labelled training rows and the rows with no label, which the
    passives cannot tell apart (positions, as for any row); the model is another one than without them."""
    with_rows, without, hidden = halves
    final, proba, rows, lines, model = _run(with_rows, method)
    _, proba_without, rows_without, _, _ = _run(without, method)
    n_train = len(with_rows.train_idx)
    assert sum(map(len, rows)) == 3 * (n_train + len(hidden)) and sum(map(len, rows_without)) == 3 * n_train
    assert any(f"{len(hidden)} rows with no label: the passives' losses train on them too" in x for x in lines)
    assert not np.allclose(proba, proba_without) and np.isfinite(final["accuracy"])
    assert model.provenance["unlabelled_train_rows"] == len(hidden)
    assert model.provenance["train_rows"] == n_train + len(hidden)
    from apfed.cli.model_info import _model_summary  # apfed info's lines

    summary = _model_summary({**model.describe(), "file": {"path": "m", "bytes": 0, "sha256": "0" * 64}})
    assert f"{len(hidden):,} of the training rows had no label" in summary["rows"]


def test_the_task_loss_counts_only_the_rows_with_a_label():
    torch.manual_seed(0)
    logits, y = torch.randn(6, 3), torch.tensor([0, -1, 2, -1, 1, 1])
    has = y >= 0
    plain = torch.nn.functional.cross_entropy(logits[has], y[has])
    assert torch.allclose(mixed_cross_entropy(logits, y, None, None, unlabelled=True), plain)
    weight = torch.tensor([1.0, 2.0, 0.5])
    weighted = torch.nn.functional.cross_entropy(logits[has], y[has], weight=weight)
    assert torch.allclose(mixed_cross_entropy(logits, y, None, weight, unlabelled=True), weighted)
    none = torch.full((6,), -1)
    assert mixed_cross_entropy(logits, none, None, None, unlabelled=True).item() == 0.0  # a minibatch with no label
    perm, lam = torch.tensor([1, 0, 3, 2, 5, 4]), 0.7
    ce = torch.nn.functional.cross_entropy(logits, y.clamp(min=0), reduction="none")
    w1, w2 = lam * has.float(), (1 - lam) * has[perm].float()
    mixed = (w1 * ce + w2 * torch.nn.functional.cross_entropy(logits, y[perm].clamp(min=0), reduction="none")).sum()
    expected = mixed / (w1 + w2).sum()
    got = mixed_cross_entropy(logits, y, {"perm": perm, "lam": lam}, None, unlabelled=True)
    assert torch.allclose(got, expected)


def test_party_files_with_empty_label_cells(tmp_path):
    """A CSV label cell that is empty (or NA) marks a row with no label; such a row that some passive lacks is left
    out (it has nothing to train), and a file with no label at all is one clear error. A deployment's active party
    reads its file the same way."""
    rng = np.random.default_rng(0)
    n = 120
    y = rng.integers(0, 2, n)
    unlabelled = np.arange(n) % 3 == 0  # 40 rows
    with (tmp_path / "bank.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "x0", "x1", "label"])
        for i in range(n):
            w.writerow(
                [f"u{i}", f"{rng.normal() + y[i]:.3f}", f"{rng.normal():.3f}", "" if unlabelled[i] else "ab"[y[i]]]
            )
    lacking = {"u0", "u3"}  # two of the rows with no label
    with (tmp_path / "shop.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "z"])
        w.writerows([f"u{i}", f"{rng.normal() + y[i]:.3f}"] for i in range(n) if f"u{i}" not in lacking)
    lines = []
    ds, _ = apfed.load_dataset(data=[tmp_path / "bank.csv", tmp_path / "shop.csv"], log=lines.append)
    assert len(ds.unlabelled) == 38 and ds.unmatched is None
    assert len(ds.train_idx) + len(ds.test_idx) == 80 and ds.class_names == ["a", "b"]
    assert any(
        "bank.csv: 40 rows have no label (2 of them, which some passive lacks, are left out)" in x for x in lines
    )
    party = active_party_file(tmp_path / "bank.csv", "id", "label")
    assert len(party.unlabelled_rows) == 40 and (party.labels[party.unlabelled_rows] == -1).all()
    assert len(party.train_rows) + len(party.test_rows) == 80
    (tmp_path / "none.csv").write_text("id,x,label\n1,0.5,\n2,0.7,NA\n")
    with pytest.raises(DataError, match="label column 'label' holds no label in any row"):
        active_party_file(tmp_path / "none.csv", "id", "label")


def test_a_study_takes_away_labels_from_the_command_line(tmp_path, party_csvs):
    """--labelled: only a share of the training rows keep their label (stratified, seeded), in evaluate, train and
    simulate's nodes alike; the others become rows with no label. For --data files an empty cell says it."""
    from conftest import run_cli

    from clients.flower_app import RunSettings, load_dataset

    common = ["--dataset", "digits", "--views", "2", "--epochs", "1"]
    code, out, err = run_cli(
        "evaluate", *common, "--seeds", "1", "--methods", "local,apfed-c", "--labelled", "0.25", "--out", tmp_path / "e"
    )
    assert code == 0, err
    ds, _ = load_dataset(RunSettings(dataset="digits", views=2, labelled=0.25))
    kept, hidden = len(ds.train_idx), len(ds.unlabelled)
    assert kept == round(0.25 * (kept + hidden)) and f"{kept} training rows keep their label (25%), {hidden}" in err
    rows = json.loads((tmp_path / "e" / "results.json").read_text())["rows"]
    assert (rows["matched_train"], rows["unlabelled"]) == (kept, hidden)
    said = f"{hidden:,} training rows have no label: apfed-r, -c, -m and -kd also train on them"
    assert said in (tmp_path / "e" / "results.md").read_text() and said in " ".join(out.split()), out
    code, _, err = run_cli("train", *common, "--method", "apfed-kd", "--labelled", "0.25", "--out", tmp_path / "m")
    assert code == 0 and f"{hidden} rows with no label: the passives' losses train on them too" in err, err
    for args, says in (
        (["--labelled", "0"], "the labelled share must be in (0, 1], got 0.0"),
        (["--labelled", "0.5", "--resplit"], "--resplit cannot go with --labelled"),
        (["--labelled", "0.5", "--data", party_csvs["paths"][0]], "labelled applies to a dataset, not to --data files"),
    ):
        base = common if "--data" not in args else ["--epochs", "1", "--id-column", "user_id"]
        code, _, err = run_cli("evaluate", *base, *args, "--out", tmp_path / "x")
        assert code == 2 and len(err.strip().splitlines()) == 1 and says in err, err


def test_validation_rows_and_class_weights_come_from_the_rows_with_a_label(halves):
    with_rows, _, hidden = halves
    cfg = make_config("default", method="apfed-c", epochs=1, seed=0, validation=0.2, class_weight="balanced")
    client = build_clients(with_rows, 0, cfg, log=lambda _: None)
    client.setup()
    labels = client.learner.y.long()
    n_labelled = len(with_rows.train_idx)
    assert len(client.val) == round(0.2 * n_labelled) and (labels[client.val_idx] >= 0).all()
    trained = client.train_idx
    assert len(trained) == n_labelled - len(client.val) + len(hidden)  # the rows with no label all train
    assert int((labels[trained] < 0).sum()) == len(hidden)
    own = labels[trained][labels[trained] >= 0]
    counts = torch.bincount(own, minlength=len(with_rows.class_names)).double()
    expected = len(own) / (len(counts) * counts.clamp(min=1))
    assert torch.allclose(client.learner.class_weights.double(), expected)
    client.fit()
    assert np.isfinite(client.history[-1]["val_accuracy"])
    client.finish()


def test_a_resumed_run_with_rows_with_no_label_equals_the_uninterrupted_one(tmp_path, halves):
    from conftest import whole_and_resumed

    cfg = make_config("default", method="apfed-kd", epochs=2, batches_per_round=2, pipeline=True, seed=3)
    whole, resumed = whole_and_resumed(halves[0], 0, cfg, tmp_path, crash_at=9)
    assert resumed.final == whole.final
    a, b = whole.model.net.state_dict(), resumed.model.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_labelled_share_keeps_every_class_and_the_test_rows():
    from apfed.data.views import hide_labels

    ds = load_bundled("handwritten")
    few = hide_labels(ds, 0.05, seed=0)
    kept = few.labels[np.asarray(few.train_idx)]
    assert len(kept) == 80 and (np.bincount(kept, minlength=10) == 8).all()  # stratified: 8 of each class
    assert np.array_equal(few.test_idx, ds.test_idx) and (few.labels[np.asarray(few.test_idx)] >= 0).all()
    assert len(few.unlabelled) == 1520 and (few.labels[few.unlabelled] == -1).all()
    assert np.array_equal(few.views[0].X, ds.views[0].X) and hide_labels(ds, 1.0) is ds
    with pytest.raises(DataError, match="already has rows with no label"):
        hide_labels(few, 0.5)


def test_a_missing_label_is_none_nan_or_an_empty_or_na_text_in_any_array():
    from apfed.data.splits import missing_labels

    mixed = np.array([1, None, float("nan"), "NA", "x", 2.5, " ", "n/a"], dtype=object)
    assert missing_labels(mixed).tolist() == [False, True, True, True, False, False, True, True]
    assert missing_labels(np.array(["a", "", "NaN", "b"])).tolist() == [False, True, True, False]
    assert missing_labels(np.array([0.0, np.nan, 1.0])).tolist() == [False, True, False]
    assert missing_labels(np.array([3, 1, 2])).tolist() == [False, False, False]
    assert missing_labels(np.array([], dtype=object)).tolist() == []
