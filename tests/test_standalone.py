import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from apfed.config import make_config
from apfed.data import load_bundled
from apfed.errors import ApfedError
from apfed.runner import run
from apfed.standalone import StandaloneModel


@pytest.fixture(scope="module")
def trained():
    ds = load_bundled("digits")
    r = run(ds, 1, make_config("default", method="apfed-c", epochs=3))
    return ds, r


def test_save_load_predict_matches(tmp_path, trained):
    ds, r = trained
    path = r.model.save(tmp_path / "m.safetensors")
    m = StandaloneModel.load(path)
    X = ds.views[1].X[ds.test_idx]
    assert np.allclose(m.predict_proba(X), r.model.predict_proba(X), atol=1e-6)
    pred = m.predict(X)
    assert pred.dtype.kind == "U" and set(pred) <= set(ds.class_names)
    acc = (pred.astype(int) == ds.labels[ds.test_idx]).mean() * 100
    assert abs(acc - r.final["accuracy"]) < 1e-9  # the file predicts exactly what training measured
    assert m.provenance["method"] == "apfed-c" and m.columns == ds.views[1].columns
    assert np.allclose(m.predict_proba(X).sum(1), 1, atol=1e-5)


def test_rows_beyond_one_chunk_are_predicted_as_alone(trained, monkeypatch):
    """Predictions go through the network a chunk of rows at a time (bounded memory); every row's probabilities
    are the network's on that row alone, across the chunks' edges."""
    import apfed.standalone

    ds, r = trained
    X = ds.views[1].X[:300]
    monkeypatch.setattr(apfed.standalone, "PREDICT_CHUNK", 128)
    chunked = r.model.predict_proba(X)
    alone = np.concatenate([r.model.predict_proba(X[i : i + 1]) for i in range(len(X))])
    assert chunked.shape == (300, len(ds.class_names)) and np.allclose(chunked, alone, atol=1e-6)


def test_predicting_from_a_model_file_loads_no_training_dependencies(tmp_path, trained):
    """Loading a model and predicting (the standalone model's whole job, and `apfed predict`) imports neither
    scikit-learn nor Flower: each costs about a second of start-up."""
    ds, r = trained
    path = r.model.save(tmp_path / "m.safetensors")
    np.save(tmp_path / "x.npy", ds.views[1].X[ds.test_idx])
    code = (
        "import sys, numpy as np; from apfed.standalone import StandaloneModel;"
        f"m = StandaloneModel.load({str(path)!r}); print(len(m.predict(np.load({str(tmp_path / 'x.npy')!r}))));"
        "print(sorted({n.split('.')[0] for n in sys.modules} & {'sklearn', 'flwr', 'matplotlib', 'scipy'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(len(ds.test_idx)), "[]"], out.stdout


def test_file_is_safetensors_with_json_metadata_only(tmp_path, trained):
    import json

    from safetensors import safe_open

    path = trained[1].model.save(tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["apfed"])
        assert meta["format"] == "apfed-standalone" and "preprocessing" in meta and "class_names" in meta
        # no categorical column and no missing value: format 1, which every apfed reads
        assert meta["format_version"] == 1 and "encoding" not in meta and "missing" not in meta["preprocessing"]
        assert all(k.startswith(("encoder.", "head.")) for k in f.keys())  # noqa: SIM118 (safe_open is not iterable)  no passive or teacher weights


def test_onnx_parity(tmp_path, trained):
    ort = pytest.importorskip("onnxruntime")
    ds, r = trained
    path = r.model.export_onnx(tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    X = ds.views[1].X[ds.test_idx].astype(np.float32)
    (onnx_p,) = sess.run(None, {"features": X})
    assert np.allclose(onnx_p, r.model.predict_proba(X), atol=1e-5)
    assert (onnx_p.argmax(1) == r.model.predict_proba(X).argmax(1)).all()
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["class_names"]) == r.model.class_names and props["task"] == "classification"
    assert json.loads(props["input_features"]) == (r.model.columns or [f"feature {j}" for j in range(X.shape[1])])


def test_onnx_parity_for_image_strips(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    ds = load_bundled("mnist5k")
    ds.train_idx, ds.test_idx = ds.train_idx[:256], ds.test_idx[:64]  # tiny and fast
    r = run(ds, 0, make_config("default", method="local", epochs=1))
    X = ds.views[0].X[ds.test_idx].reshape(64, -1).astype(np.float32)
    (onnx_p,) = ort.InferenceSession(str(r.model.export_onnx(tmp_path / "i.onnx"))).run(None, {"features": X})
    assert np.allclose(onnx_p, r.model.predict_proba(X), atol=1e-5)


def test_bad_inputs(tmp_path, trained):
    m = trained[1].model
    with pytest.raises(ApfedError, match="shape"):
        m.predict(np.zeros((2, 5)))
    with pytest.raises(ApfedError, match="NaN"):
        m.predict(np.full((1, m.n_features), np.nan))
    X = np.zeros((4, m.n_features))
    X[2, 5], X[3, 0] = np.inf, np.nan
    with pytest.raises(ApfedError, match=r"\(2 rows; the first: row 2, feature 5\)"):
        m.predict(X)
    (tmp_path / "junk.safetensors").write_bytes(b"not a model")
    with pytest.raises(ApfedError, match="not an apfed model"):
        StandaloneModel.load(tmp_path / "junk.safetensors")
    with pytest.raises(ApfedError, match="not found"):
        StandaloneModel.load(tmp_path / "missing.safetensors")


def _tamper(meta: dict, tensors: dict, case: str) -> None:
    if case == "no spec":
        del meta["spec"]
    elif case == "huge layers":  # refused before any layer is allocated (the network is first built on 'meta')
        meta["config"]["hidden_dim"] = 1 << 40
    elif case == "config of another type":
        meta["config"]["embedding_dim"] = "x"
    elif case == "version as text":
        meta["format_version"] = "1"
    elif case == "other shape":
        meta["spec"]["shape"] = [7]
        meta["columns"] = None
        meta["preprocessing"].update(mean=[0.0] * 7, std=[1.0] * 7)
        meta.pop("profile")  # of 32 features: refused first otherwise
    elif case == "bad statistics":
        meta["preprocessing"]["std"][0] = -1.0
    elif case == "a weight missing":
        del tensors[next(iter(tensors))]


@pytest.mark.parametrize(
    "case, match",
    [
        ("no spec", "no 'spec'"),
        ("huge layers", "the weights do not match the stored architecture (first: encoder.0.weight)"),
        ("config of another type", "config 'embedding_dim' is 'x'"),
        ("version as text", "'format_version' is not an integer"),
        ("other shape", "the weights do not match the stored architecture"),
        ("bad statistics", "'preprocessing' has no valid mean and std for 32 features"),
        ("a weight missing", "the weights do not match the stored architecture"),
    ],
)
def test_a_malformed_model_file_is_one_clear_line(tmp_path, trained, case, match):
    """A model file whose metadata or weights were damaged or edited (they were KeyError and TypeError tracebacks)."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = trained[1].model.save(tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["apfed"])
    tensors = load_file(str(path))
    _tamper(meta, tensors, case)
    save_file(tensors, str(path), metadata={"apfed": json.dumps(meta)})
    with pytest.raises(ApfedError, match=f"malformed apfed model file: {re.escape(match)}"):
        StandaloneModel.load(path)
    r = subprocess.run(
        [sys.executable, "-m", "apfed.cli", "info", "--model", str(path)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2 and r.stderr.startswith("error:") and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_save_is_atomic_and_keeps_the_previous_file(tmp_path, trained, monkeypatch):
    import apfed.standalone as sa

    path = trained[1].model.save(tmp_path / "m.safetensors")
    before = path.read_bytes()

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(sa, "save_file", crash)
    spare = tmp_path / "tmp"
    spare.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spare))
    with pytest.raises(ApfedError, match=f"^cannot write the model file {re.escape(str(path))}: disk full$"):
        trained[1].model.save(path)  # the temporary folder's copy failed as well
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "tmp"]  # no temp file left behind
    assert list(spare.iterdir()) == []


def test_a_model_file_that_cannot_be_written_is_saved_in_the_temporary_folder_instead(tmp_path, trained, monkeypatch):
    """A run's last step, writing the model, fails (here: the folder named is a file): the error says why, and
    where the model went instead, so the training is not lost."""
    ds, r = trained
    spare = tmp_path / "tmp"
    spare.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spare))
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(ApfedError) as e:
        r.model.save(blocker / "m.safetensors")
    found = re.fullmatch(r"cannot write the model file (.+): (.+); the model is saved as (.+) instead", str(e.value))
    assert found, str(e.value)
    assert found.group(1) == str(blocker / "m.safetensors") and found.group(2) == "File exists"  # the OS's words
    rescued = Path(found.group(3))
    assert rescued.parent == spare and rescued.name.startswith("m-") and rescued.suffix == ".safetensors"
    X = ds.views[1].X[ds.test_idx]
    assert np.allclose(StandaloneModel.load(rescued).predict_proba(X), r.model.predict_proba(X), atol=1e-6)
    assert [p.name for p in spare.iterdir()] == [rescued.name]  # the model file only, no temporary file beside it


def test_a_save_never_replaces_a_pipe_or_a_device(tmp_path, trained, monkeypatch):
    """An atomic write renames its temporary file over the path: over a named pipe (or, for root, a device such as
    /dev/full) that would replace it with a regular file. Refused; the model goes to the temporary folder."""
    import stat

    from apfed.checkpoint import save_atomic

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    with pytest.raises(OSError, match="not a regular file"):
        save_atomic(pipe, b"x")
    spare = tmp_path / "tmp"
    spare.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spare))
    with pytest.raises(ApfedError, match=r": not a regular file \(a device, pipe or socket\); the model is saved as"):
        trained[1].model.save(pipe)
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode)
    assert len(list(spare.iterdir())) == 1


def test_onnx_export_is_atomic_and_keeps_the_previous_file(tmp_path, trained, monkeypatch):
    """An export that fails half-way (here: part of a file written, then an error) leaves the earlier ONNX file."""
    pytest.importorskip("onnx")
    path = trained[1].model.export_onnx(tmp_path / "m.onnx")
    before = path.read_bytes()

    def half_then_crash(model, args, f, **kw):
        Path(f).write_bytes(before[: len(before) // 2])
        raise RuntimeError("export failed")

    monkeypatch.setattr(torch.onnx, "export", half_then_crash)
    with pytest.raises(RuntimeError):
        trained[1].model.export_onnx(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temp file left behind


def test_onnx_export_falls_back_to_the_torch_export_exporter_where_the_torchscript_one_fails(tmp_path, trained):
    """torch deprecates its TorchScript-based ONNX exporter and will remove it: where it fails (here it refuses as a
    torch without it would), the torch.export-based one writes the same graph, with a batch of any size."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    export = torch.onnx.export
    if "dynamic_shapes" not in inspect.signature(export).parameters:
        pytest.skip("this torch's torch.export-based exporter is older (torch < 2.5); it keeps the TorchScript one")

    def without_torchscript(*args, dynamo=True, **kw):
        if not dynamo:
            raise TypeError("export() got an unexpected keyword argument 'dynamo'")
        return export(*args, dynamo=dynamo, **kw)

    ds, r = trained
    assert _exporter(r.model.export_onnx(tmp_path / "a.onnx")) == "torchscript"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.onnx, "export", without_torchscript)
        path = r.model.export_onnx(tmp_path / "b.onnx")
    assert _exporter(path) == "torch.export"
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for X in (ds.views[1].X[ds.test_idx].astype(np.float32), ds.views[1].X[:1].astype(np.float32)):
        (onnx_p,) = sess.run(None, {"features": X})
        assert np.allclose(onnx_p, r.model.predict_proba(X), atol=1e-5)


def _exporter(path: Path) -> str:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}["exporter"]


def test_info_shows_what_the_model_takes_and_where_it_came_from(tmp_path, trained):
    """`apfed info`: the view, features, classes and provenance a user checks before predicting, as text and as
    JSON; the provenance says which apfed made it, when, with which passives, on how many aligned rows."""
    import datetime
    import json

    from typer.testing import CliRunner

    from apfed import __version__
    from apfed.cli import app

    ds, r = trained
    path = r.model.save(tmp_path / "m.safetensors")
    res = CliRunner().invoke(app, ["info", "--model", str(path), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    p = d["provenance"]
    passives = [f"passive{i}" for i in range(1, len(ds.views))]
    assert p["apfed_version"] == __version__ and p["passives"] == passives
    assert datetime.datetime.fromisoformat(p["trained_at"]).tzinfo is not None
    assert (p["train_rows"], p["test_rows"]) == (len(ds.train_idx), len(ds.test_idx))
    assert p["test_accuracy"] == r.final["accuracy"] and p["active_view"] == ds.views[1].name
    assert d["n_features"] == ds.views[1].X[0].size and d["columns"] == ds.views[1].columns
    assert d["parameters"] == sum(t.numel() for t in r.model.net.parameters())
    assert d["file"]["bytes"] == path.stat().st_size and len(d["file"]["sha256"]) == 64

    res = CliRunner().invoke(app, ["info", "--model", str(path)])
    assert res.exit_code == 0, res.output
    lines = dict(line.split(None, 1) for line in res.output.splitlines() if not line.startswith(("test", "trained")))
    assert lines["features"].startswith(f"{d['n_features']}: ") and lines["classes"].startswith("10: 0, 1, 2")
    assert f"{r.final['accuracy']:.2f} %, ROC-AUC {r.final['roc_auc']:.4f}" in res.output
    assert p["test_roc_auc"] == r.final["roc_auc"]
    assert f"{len(passives)} passive(s): {', '.join(passives)}" in res.output


def test_a_column_far_from_its_training_values_is_named_in_a_warning(trained):
    """A column in other units (or another column's values under its name) gives garbage predictions without an
    error; the model says which column lies far from its training values, and predicts all the same."""
    import warnings

    ds, r = trained
    m = r.model
    X = ds.views[1].X[ds.test_idx].astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rows it was tested on: no warning
        expected = m.predict_proba(X)
    scaled, shifted = X.copy(), X.copy()
    scaled[:, 12] *= 1000  # a spread 1000 times training's (and a mean far off)
    shifted[:, 20] += 100 * m.preprocessor.std[20]
    name12, name20 = m.columns[12], m.columns[20]
    with pytest.warns(UserWarning, match=rf"1 column\(s\) far from their values in training .*'{name12}' \(mean"):
        m.predict_proba(scaled)
    with pytest.warns(UserWarning, match=rf"'{name20}' \(mean 100 SDs from training's\)$") as caught:
        assert m.predict_proba(shifted).shape == expected.shape
    assert len(caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a few rows may well be unusual: too few to judge
        m.predict_proba(scaled[:19])


def test_pixels_on_another_scale_than_training_are_named_in_a_warning():
    """A model trained on 8-bit pixels (0-255) given pixels scaled to 0-1, or 16-bit ones, says so; predicting
    the pixels as training read them does not."""
    import warnings

    ds = load_bundled("mnist5k")
    ds.train_idx, ds.test_idx = ds.train_idx[:256], ds.test_idx[:64]
    m = run(ds, 0, make_config("default", method="local", epochs=1)).model
    X = ds.views[0].X[ds.test_idx]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.predict_proba(X)
        m.predict_proba(X[:19] / 255.0)  # too few rows to judge
    with pytest.warns(UserWarning, match="pixel values lie within 0-1, but the model was trained on 0-255"):
        m.predict_proba(X / 255.0)
    with pytest.warns(UserWarning, match="pixel values reach 65535, .* divide them by 257"):
        m.predict_proba(X.astype(np.float32) * 257)
