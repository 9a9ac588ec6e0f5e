"""A partial overlap: the active party's labelled rows that no passive holds train its standalone model (task loss
only, never sent), and nothing else about the run changes."""

import dataclasses
import json
import re

import numpy as np
import pytest
import torch
from conftest import run_cli, whole_and_resumed

import apfed
from apfed.config import make_config
from apfed.data import load_bundled, load_party_files
from apfed.data.views import partial_overlap, split_parties
from apfed.errors import ConfigError, DataError
from apfed.runner import build_clients
from protocols import decode
from protocols.messages import TRAIN


@pytest.fixture(scope="module")
def sparse():
    """digits in 2 strips, the passive holding a fifth of the training rows (the test rows are held by both)."""
    ds = load_bundled("digits", 2)
    return ds, partial_overlap(ds, 0, 0.2, seed=1)


def _train_messages(record):
    """The train requests among a run's recorded messages (encoded bytes, both directions)."""
    return [m for m in map(decode, record) if m.kind == TRAIN and "idx" in m.arrays]


def test_rows_no_passive_holds_train_the_standalone_model_and_never_travel(sparse):
    full, ds = sparse
    n, m = len(ds.ids), len(ds.unmatched)
    assert n + m == len(full.ids) and len(ds.test_idx) == len(full.test_idx)
    assert not np.isin(ds.unmatched.ids, ds.ids).any()
    results, records = {}, {}
    for rows in ("train", "drop"):
        cfg = make_config("default", method="apfed-c", epochs=6, seed=2, unmatched_rows=rows)
        records[rows] = []
        lines = []
        client = build_clients(ds, 0, cfg, serialize=True, record=records[rows], log=lines.append)
        client.setup()
        said = "trains on them" if rows == "train" else "left out (unmatched_rows=drop)"
        assert any(f"{m} labelled training rows are missing at some passive" in x and said in x for x in lines)
        assert client.learner.X.shape[0] == (n + m if rows == "train" else n)
        client.fit()
        results[rows] = client.final_metrics()["accuracy"]
        model = client.standalone_model({})
        assert model.provenance.get("unmatched_train_rows", 0) == (m if rows == "train" else 0)
        client.finish()
    # four times the labelled rows: the standalone model is far better for them
    assert results["train"] > results["drop"] + 5, results
    # the passives' work and the wire are those of the matched rows alone: the same messages, no position past them
    sent = {k: _train_messages(r) for k, r in records.items()}
    assert len(sent["train"]) == len(sent["drop"]) > 0
    assert all(int(np.asarray(msg.arrays["idx"]).max()) < n for msg in sent["train"])
    assert [np.asarray(a.arrays["idx"]).tolist() for a in sent["train"]] == [
        np.asarray(b.arrays["idx"]).tolist() for b in sent["drop"]
    ]


@pytest.mark.parametrize("overlap", [0.2, 0.9])
def test_an_epoch_trains_every_unmatched_row_once(sparse, monkeypatch, overlap):
    # 0.9: fewer minibatches of unmatched rows than rounds, so most rounds deal none (each dealt an empty
    # minibatch, an optimizer step on no rows and a NaN task loss in the epoch's metrics)
    ds = sparse[1] if overlap == 0.2 else partial_overlap(sparse[0], 0, overlap, seed=1)
    cfg = make_config("default", method="apfed-kd", epochs=2, seed=0, batches_per_round=3)
    client = build_clients(ds, 0, cfg)
    client.setup()
    seen = []
    real = client.learner.own_step
    monkeypatch.setattr(
        client.learner, "own_step", lambda idx, p, a=None: (seen.append(idx.clone()), real(idx, p, a))[1]
    )
    client.fit()
    n, m = len(ds.ids), len(ds.unmatched)
    per_epoch = np.split(torch.cat(seen).numpy(), 2)
    for rows in per_epoch:
        assert sorted(rows.tolist()) == list(range(n, n + m))
    assert all(0 < len(s) <= cfg.batch_size for s in seen) and len(seen) == 2 * -(-m // cfg.batch_size)
    assert all(np.isfinite(h["task_loss"]) for h in client.history)
    client.finish()


@pytest.mark.parametrize("method", ["tvfl", "centralized"])
def test_a_method_that_reads_every_party_leaves_unmatched_rows_out(sparse, method):
    _, ds = sparse
    lines = []
    client = build_clients(ds, 0, make_config("default", method=method, epochs=1), log=lines.append)
    client.setup()
    assert client.learner.X.shape[0] == len(ds.ids) and len(client.own) == 0
    if method == "tvfl":  # the private set intersection finds them, and the log says why they are not used
        assert any(line.endswith("left out (tvfl reads every party's data)") for line in lines), lines
    client.finish()
    active, _ = split_parties(ds, 0, unmatched=False)
    assert len(active.ids) == len(ds.ids)


def test_a_deployed_active_party_trains_and_tests_on_its_rows_that_no_passive_holds(sparse):
    """In a deployment the active party splits its whole file; its private set intersection finds the rows no
    passive holds: its unmatched training rows train the standalone model, its unmatched test rows test it."""
    _, ds = sparse
    active, passives = split_parties(ds, 0)
    n = len(ds.ids)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(active.ids))  # the file's own row order, its own split
    active = dataclasses.replace(
        active,
        view=dataclasses.replace(active.view, X=active.view.X[order]),
        ids=active.ids[order],
        labels=active.labels[order],
        train_rows=np.arange(len(order) - 300),
        test_rows=np.arange(len(order) - 300, len(order)),
    )
    lines = []
    cfg = make_config("default", method="apfed-c", epochs=1)
    from clients.active import ActiveClient
    from clients.passive import PassiveClient
    from protocols.transport import InProcessTransport

    p = PassiveClient("passive1", passives[0], "cpu")
    client = ActiveClient(active, cfg, InProcessTransport({"passive1": p.handle}), ["passive1"], log=lines.append)
    client.setup()
    held = np.isin(active.ids, ds.ids)
    unmatched_train = int((~held[: len(order) - 300]).sum())
    assert len(client.own) == unmatched_train > 0
    assert set(active.ids[client.own].tolist()).isdisjoint(ds.ids.tolist())
    assert len(client.test_rows) == int(held[len(order) - 300 :].sum())
    assert any(f"{unmatched_train} labelled training rows are missing at some passive" in line for line in lines)
    unmatched_test = int((~held[len(order) - 300 :]).sum())
    assert len(client.own_test) == unmatched_test > 0
    assert any(f"{unmatched_test} test rows are missing at some passive" in line for line in lines)
    assert client.learner.X.shape[0] == n + unmatched_train + unmatched_test == len(active.ids)
    client.fit()
    client.finish()


def test_the_rows_no_passive_holds_train_in_the_same_order_whatever_order_the_split_lists_them(sparse):
    """A deployed active party's split lists its rows in a shuffled order (train_test_split's); in process they come
    in file order. The rows no passive holds are taken in the order of the party's rows either way, so their
    minibatches, and the model, are the same (they once were not: a deployment ended a few ranks of ROC-AUC away)."""
    from clients.active import ActiveClient
    from clients.passive import PassiveClient
    from protocols.transport import InProcessTransport

    _, ds = sparse
    active, passives = split_parties(ds, 0)
    finals, owns = [], []
    for shuffle in (False, True):
        rng = np.random.default_rng(5)
        party = active
        if shuffle:
            party = dataclasses.replace(active, train_rows=rng.permutation(active.train_rows))
        cfg = make_config("default", method="apfed-c", epochs=2, seed=4)
        p = PassiveClient("passive1", passives[0], "cpu")
        client = ActiveClient(party, cfg, InProcessTransport({"passive1": p.handle}), ["passive1"])
        client.setup()
        owns.append(client.own.copy())
        client.fit()
        finals.append(client.final_metrics())
        client.finish()
    assert len(owns[0]) > 0 and np.array_equal(owns[0], owns[1])
    assert finals[0] == finals[1]


@pytest.mark.parametrize("validation", [0.0, 0.2])
def test_a_resumed_run_with_unmatched_rows_equals_the_uninterrupted_one(tmp_path, sparse, validation):
    _, ds = sparse
    cfg = make_config(
        "default", method="apfed-kd", epochs=3, batches_per_round=2, pipeline=True, seed=3, validation=validation
    )
    whole, resumed = whole_and_resumed(ds, 0, cfg, tmp_path, crash_at=5)
    figures = [[(h["accuracy"], h.get("val_loss")) for h in r.history] for r in (resumed, whole)]
    assert figures[0] == figures[1] and resumed.final == whole.final
    assert ("val_accuracy" in whole.final) == (validation > 0)
    a, b = whole.model.net.state_dict(), resumed.model.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_files_split_the_active_partys_whole_file_as_a_deployment_does(tmp_path):
    """The rows some passive lacks keep their class and their side of the active file's own 80/20 split, the split
    a deployed active party makes of its file (``active_party_file``): both train and test on the same rows."""
    from apfed.data.files import active_party_file

    rng = np.random.default_rng(0)
    ids = np.arange(200)
    y = np.array([2, 10, 7, 5] * 50)
    xa = rng.normal(size=(200, 2))
    lines = ["id,label,a0,a1"] + [f"{i},{y[i]},{xa[i, 0]},{xa[i, 1]}" for i in ids]
    (tmp_path / "a.csv").write_text("\n".join(lines) + "\n")
    held = ids[ids % 4 != 0]  # the passive lacks every fourth id
    (tmp_path / "b.csv").write_text("\n".join(["id,b0"] + [f"{i},{i * 0.5}" for i in held]) + "\n")
    log = []
    ds = load_party_files([str(tmp_path / "a.csv"), str(tmp_path / "b.csv")], "id", "label", log=log.append)
    u = ds.unmatched
    rows = u.ids.astype(int)  # ids are read as text
    assert sorted(rows.tolist()) == list(range(0, 200, 4))
    assert [ds.class_names[c] for c in u.labels] == [str(y[i]) for i in rows]
    np.testing.assert_allclose(u.X, xa[rows].astype(np.float32), rtol=1e-6)
    deployed = active_party_file(tmp_path / "a.csv", "id", "label")
    assert deployed.class_names == ds.class_names
    test_ids = set(deployed.ids[deployed.test_rows].tolist())
    assert set(ds.ids[ds.test_idx].tolist()) | set(u.ids[u.test].tolist()) == test_ids
    assert set(ds.ids[ds.train_idx].tolist()) | set(u.ids[~u.test].tolist()) == set(ids.astype(str)) - test_ids
    n_test = int(u.test.sum())
    assert 0 < n_test < len(u)
    assert f"a.csv: 50 labelled rows are missing at some passive ({50 - n_test} train, {n_test} test)" in log[-1]


def test_the_standalone_model_is_also_tested_on_the_test_rows_some_passive_lacks(tmp_path, party_csvs):
    ds, _ = apfed.load_dataset(data=party_csvs["paths"], id_column="user_id", log=lambda _: None)
    n_test = int(ds.unmatched.test.sum())
    assert n_test > 0
    report = apfed.compare(ds, 0, ["local", "apfed-c", "tvfl"], seeds=1, epochs=2, out=tmp_path)
    runs = {r["method"]: r for r in report["runs"]}
    for m in ("local", "apfed-c"):
        assert runs[m]["final"]["unmatched_test_rows"] == n_test
        assert 0 <= runs[m]["final"]["unmatched_accuracy"] <= 100
        assert report["summary"][m]["unmatched_accuracy_mean"] == runs[m]["final"]["unmatched_accuracy"]
    # tvfl cannot serve them without the passives: it is tested on them with their embeddings filled in
    assert "unmatched_accuracy" not in runs["tvfl"]["final"] and runs["tvfl"]["final"]["unmatched_test_rows"] == n_test
    for kind in ("zero", "mean", "rand"):
        filled = report["summary"][f"tvfl (passives absent: {kind})"]
        assert filled["unmatched_accuracy_mean"] == runs["tvfl"]["final"][f"unmatched_accuracy_fill_{kind}"]
    assert "unmatched_accuracy_mean" not in report["summary"]["tvfl"]
    # every method is tested on the same rows, held by every party: local, which has no passive to ask, too
    for m in ("local", "apfed-c"):
        client = build_clients(ds, 0, make_config("default", method=m, epochs=1))
        client.setup()
        assert sorted(ds.ids[client.keep[client.test_rows.numpy()]]) == sorted(ds.ids[ds.test_idx])
        assert len(client.own_test) == n_test and len(client.own) == len(ds.unmatched) - n_test
        client.finish()
    assert "| unmatched test rows (%) |" in (tmp_path / "results.md").read_text()


def test_partial_overlap_and_unmatched_rows_refuse_bad_values():
    ds = load_bundled("digits", 2)
    for bad in (0, 1.5, -0.1):
        with pytest.raises(DataError, match="overlap must be a fraction in"):
            partial_overlap(ds, 0, bad)
    assert partial_overlap(ds, 0, 1.0) is ds
    with pytest.raises(DataError, match="already has unmatched rows"):
        partial_overlap(partial_overlap(ds, 0, 0.5), 0, 0.5)
    with pytest.raises(ConfigError, match="unmatched_rows must be train or drop, got 'keep'"):
        apfed.train(ds, 0, "apfed-c", epochs=1, unmatched_rows="keep")


def test_evaluate_studies_a_partial_overlap_of_a_bundled_set(tmp_path):
    from tests.conftest import run_cli

    code, out, err = run_cli(
        "evaluate", "--dataset", "digits", "--overlap", "0.3", "--methods", "local,apfed-c", "--epochs", "2",
        "--seeds", "1", "--jobs", "2", "--out", tmp_path,
    )  # fmt: skip
    assert code == 0, err
    assert "digits: the passives hold 30% of the training rows (431), the active party alone 1006 more" in err
    assert "1006 labelled training rows are missing at some passive" not in err  # runs in workers log quietly
    for run in ("local seed 0", "apfed-c seed 0"):  # each worker's run, as it ends
        assert re.search(rf"^{run} done: acc \d+\.\d\d at epoch 2$", err, re.M), err
    report = json.loads((tmp_path / "results.json").read_text())
    rows = {"matched_train": 431, "test": 360, "unmatched_train": 1006, "unmatched_test": 0, "unlabelled": 0}
    assert report["rows"] == rows
    for args, line in [
        (["--overlap", "1.5"], "error: overlap must be a fraction in (0, 1], got 1.5"),
        (
            ["--overlap", "0.5", "--data", tmp_path / "x.csv"],
            "error: overlap applies to a dataset, not to --data files: their IDs say which rows match",
        ),
    ]:
        code, out, err = run_cli("evaluate", *args, "--epochs", "1", "--out", tmp_path)
        assert code == 2 and err.strip() == line, err


def test_a_comparison_resumes_only_on_the_same_unmatched_rows(sparse):
    """evaluate --resume reuses runs made from the same data: the rows no passive holds are part of it."""
    from apfed.run_store import data_digest

    _, ds = sparse
    u = ds.unmatched
    fewer = dataclasses.replace(
        ds, unmatched=dataclasses.replace(u, X=u.X[1:], labels=u.labels[1:], ids=u.ids[1:], test=u.test[1:])
    )
    assert data_digest(ds, 0) == data_digest(dataclasses.replace(ds), 0)
    assert data_digest(fewer, 0) != data_digest(ds, 0)
    assert data_digest(dataclasses.replace(ds, unmatched=None), 0) != data_digest(ds, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", ["apfed-c", "apfed-kd"])
def test_on_a_gpu_the_unmatched_rows_steps_replay_as_cuda_graphs(sparse, method):
    """The standalone model's own optimizer keeps one step count, so both kinds of step are captured and
    replayed; the result is the eager one, within the GPU's non-bit-reproducible kernels."""
    _, ds = sparse
    acc = {}
    for graphs in (True, False):
        cfg = make_config("default", method=method, epochs=4, seed=0, device="cuda", cuda_graphs=graphs)
        client = build_clients(ds, 0, cfg)
        client.setup()
        client.fit()
        acc[graphs] = client.final_metrics()["accuracy"]
        if graphs:
            assert client.learner.graphs.replays > 0 and client.learner.own_graphs.replays > 0
        client.finish()
    assert abs(acc[True] - acc[False]) < 3, acc


def test_train_says_how_the_model_does_on_the_test_rows_some_passive_lacks(tmp_path, party_csvs):
    from tests.conftest import run_cli

    ds, _ = apfed.load_dataset(data=party_csvs["paths"], id_column="user_id", log=lambda _: None)
    n_test = int(ds.unmatched.test.sum())
    args = [f"--data={p}" for p in party_csvs["paths"]]
    code, out, err = run_cli(
        "train", *args, "--id-column", "user_id", "--method", "apfed-c", "--epochs", "1", "--out", tmp_path / "m.st"
    )
    assert code == 0, err
    said = " ".join((out + err).split())  # rich wraps its lines
    assert re.search(rf"% on the {n_test} test rows that some passive lacks\); wrote", said), said
    # the headline figure says which rows it is on: those every passive holds, as the set-up counted them
    shared = re.search(r"held by every passive \(\d+ train, (\d+) test", said)
    assert shared and int(shared[1]) > 0, said
    assert re.search(rf"test accuracy [\d.]+ % on the {shared[1]} test rows every passive holds \(", said), said
    code, out, err = run_cli("info", "--model", tmp_path / "m.st")
    assert f"; {len(ds.unmatched) - n_test} more training rows that some passive lacks" in out


class _Columns:
    """What apfed.from_parties takes from a pandas DataFrame: ``columns`` and a column by label (no pandas here)."""

    def __init__(self, data: dict):
        self.data, self.columns = data, list(data)

    def __getitem__(self, key):
        return self.data[key]


def _read_columns(path) -> dict:
    import csv

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {c: np.array([r[c] for r in rows], dtype=object) for c in rows[0]}


def test_tables_in_memory_are_the_party_files_dataset(party_csvs):
    """from_parties: each party's own table, aligned by ID as its file would be: the same rows, split and
    unmatched rows, and so the same model."""
    paths = party_csvs["paths"]
    files = load_party_files([str(p) for p in paths], "user_id", "label", log=lambda _: None)
    tables = {p.stem: _read_columns(p) for p in paths}
    tables["shop"] = _Columns(tables["shop"])  # a DataFrame-like table; the others are mappings of columns
    log = []
    mem = apfed.from_parties(tables, id_column="user_id", log=log.append)
    assert log[0] == "bank: 300 rows, 270 matched by 'user_id'"
    assert mem.class_names == files.class_names and np.array_equal(mem.ids, files.ids)
    for a in ("labels", "train_idx", "test_idx"):
        assert np.array_equal(getattr(mem, a), getattr(files, a)), a
    for v, w in zip(mem.views, files.views, strict=True):
        assert v.columns == w.columns and np.array_equal(v.X, w.X)
    for a in ("X", "labels", "ids", "test"):
        assert np.array_equal(getattr(mem.unmatched, a), getattr(files.unmatched, a)), a
    a, b = (apfed.train(d, 0, "apfed-c", epochs=1) for d in (mem, files))
    assert a.final == b.final


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda t: t["bank"].pop("label"), "party 'bank' \\(the active party\\): no label column 'label'"),
        (lambda t: t["shop"].update(label=t["bank"]["label"][:280]), "a passive party's table has the label column"),
        (lambda t: t["telco"].pop("user_id"), "party 'telco': no ID column 'user_id'"),
        (lambda t: t.update(telco=np.zeros((3, 3))), "party 'telco': give a DataFrame or a mapping"),
        (lambda t: t["shop"].update(shop_f0=t["shop"]["shop_f0"][:5]), "its columns have different lengths"),
    ],
)
def test_tables_in_memory_refuse_what_files_refuse(party_csvs, change, match):
    tables = {p.stem: _read_columns(p) for p in party_csvs["paths"]}
    change(tables)
    with pytest.raises(DataError, match=match):
        apfed.from_parties(tables, id_column="user_id", log=lambda _: None)


def test_validation_rows_are_drawn_from_the_rows_no_passive_holds_too_and_train_nothing(sparse, monkeypatch, tmp_path):
    """With a partial overlap the standalone model trains on every labelled row, so its validation rows are a share
    of all of them (stratified): some are rows that no passive holds. None of them trains, locally or remotely, and
    each epoch's validation figures are the model's on exactly those rows."""
    _, ds = sparse
    n, m = len(ds.ids), len(ds.unmatched)
    cfg = make_config("default", method="apfed-c", epochs=4, seed=2, validation=0.2)
    record, lines = [], []
    client = build_clients(ds, 0, cfg, serialize=True, record=record, log=lines.append)
    client.setup()
    train, val, own, own_val = client.split[0], client.val, client.own, client.own_val
    n_train = len(ds.train_idx) + m
    assert client.n_val == len(val) + len(own_val) == int(np.ceil(0.2 * n_train))
    assert len(own_val) > 0 and len(own) + len(own_val) == m
    assert not np.isin(own_val, own).any() and not np.isin(val, train).any()
    assert any(
        f"{client.n_val} of the training rows are held out for validation ({len(own_val)} of them" in x for x in lines
    )
    assert any(f"{m} labelled training rows" in x and f"but for the {len(own_val)} held out" in x for x in lines)
    # stratified over every training row, matched or not
    labels = client.data.labels
    y_val = np.concatenate([labels[client.keep[val]], labels[own_val]])
    y_train = np.concatenate([labels[client.keep[train]], labels[own]])
    share = np.bincount(y_val, minlength=10) / len(y_val) - np.bincount(y_train, minlength=10) / len(y_train)
    assert np.abs(share).max() < 0.02
    assert np.array_equal(client.y_val, y_val)
    # the learner holds the unmatched validation rows last; local steps take the other unmatched rows only
    X = client.learner.X
    assert X.shape[0] == n + m + len(client.own_test)
    raw = torch.from_numpy(client.preprocessor(client.data.view.X[own_val]))
    assert torch.equal(X[-len(own_val) :], raw)
    seen = []
    real = client.learner.own_step
    monkeypatch.setattr(
        client.learner, "own_step", lambda idx, p, a=None: (seen.append(idx.clone()), real(idx, p, a))[1]
    )
    history = client.fit()
    local = set(torch.cat(seen).tolist())
    assert local == set(range(n, n + len(own)))  # every unmatched training row, no validation row
    sent = np.concatenate([np.asarray(msg.arrays["idx"]) for msg in _train_messages(record)])
    assert set(sent.tolist()) == set(train.tolist())
    # the last epoch's validation accuracy is the final model's on those rows, read from the raw features
    net = client.learner.standalone_net()
    rows = np.concatenate([client.keep[val], own_val])
    with torch.no_grad():
        pred = net(torch.from_numpy(client.preprocessor(client.data.view.X[rows]))).argmax(1).numpy()
    final = client.final_metrics()  # the kept model is the best epoch's: its figure on those rows is that epoch's
    assert history[final["best_epoch"] - 1]["val_accuracy"] == pytest.approx((pred == y_val).mean() * 100)
    assert final["val_accuracy"] == max(h["val_accuracy"] for h in history)
    model = client.standalone_model({})
    p = model.provenance
    assert p["validation_rows"] == client.n_val and p["unmatched_validation_rows"] == len(own_val)
    assert p["train_rows"] + p["unmatched_train_rows"] + client.n_val == n_train
    client.finish()
    code, out, err = run_cli("info", "--model", model.save(tmp_path / "m.safetensors"))
    assert code == 0, err
    said = f"{client.n_val} validation rows ({len(val)} aligned with every passive, {len(own_val)} that some passive"
    assert said in " ".join(out.split()), out


def test_no_validation_row_is_in_the_active_partys_preprocessing_statistics(party_csvs):
    ds, _ = apfed.load_dataset(data=party_csvs["paths"], id_column="user_id", log=lambda _: None)
    client = build_clients(ds, 0, make_config("default", method="local", epochs=1, validation=0.25))
    client.setup()
    assert len(client.own_val) > 0 and len(client.val) > 0
    trained = np.concatenate([client.keep[client.split[0]], client.own])
    X = client.data.view.X
    assert np.allclose(client.preprocessor.mean, X[trained].mean(0))
    assert not np.allclose(client.preprocessor.mean, X[np.concatenate([trained, client.own_val])].mean(0))
    client.finish()


def test_resume_refuses_a_run_stored_with_the_old_validation_draw(sparse, tmp_path):
    """Before 2026-12-03 validation rows came from the matched rows alone: such a stored run, with a partial
    overlap and validation, is refused by --resume rather than mixed into a report; tvfl's draw did not change."""
    import json

    import apfed
    from apfed.errors import ConfigError

    _, ds = sparse
    kw = dict(methods=["local", "tvfl"], seeds=1, epochs=1, out=tmp_path, jobs=1, validation=0.2)
    apfed.compare(ds, 0, **kw)
    stored = {m: json.loads((tmp_path / "runs" / f"{m}-seed0.json").read_text()) for m in ("local", "tvfl")}
    assert stored["local"]["key"]["validation_rows"] == "every training row"
    assert "validation_rows" not in stored["tvfl"]["key"]  # it trains on matched rows only: the same draw as before
    apfed.compare(ds, 0, resume=True, **kw)  # runs of this apfed resume
    old = stored["local"]
    del old["key"]["validation_rows"]  # as an apfed before the change stored it
    (tmp_path / "runs" / "local-seed0.json").write_text(json.dumps(old))
    with pytest.raises(ConfigError, match="validation rows drawn from the rows every party holds, by an apfed before"):
        apfed.compare(ds, 0, resume=True, **kw)
    full = apfed.compare(dataclasses.replace(ds, unmatched=None), 0, **{**kw, "out": tmp_path / "full"})
    key = json.loads((tmp_path / "full" / "runs" / "local-seed0.json").read_text())["key"]
    assert "validation_rows" not in key and full["runs"]  # no unmatched rows: the draw never changed
