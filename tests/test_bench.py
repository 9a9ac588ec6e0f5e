"""`apfed bench` (quick grid): the sections are filled with sane figures, and the synthetic set has its signal."""

import numpy as np
import pytest

from apfed.bench import run_bench, synthetic


def test_synthetic_views_each_carry_the_class_signal():
    ds = synthetic(2000, passives=3, dim=16)
    assert len(ds.views) == 4 and all(v.X.shape == (2000, 16) for v in ds.views)
    assert len(set(ds.train_idx) & set(ds.test_idx)) == 0
    for v in ds.views:  # nearest class mean on each view alone is far above chance (10 %)
        means = np.stack([v.X[ds.train_idx][ds.labels[ds.train_idx] == c].mean(0) for c in range(10)])
        pred = ((v.X[ds.test_idx][:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
        assert (pred == ds.labels[ds.test_idx]).mean() > 0.3


def test_quick_bench_reports_wire_cost_and_inference():
    lines = []
    r = run_bench(quick=True, log=lines.append)
    # a line as each section starts, then one per figure as it comes in (the bench printed nothing for minutes)
    assert lines[0].startswith("wire: messages and bytes") and lines[1].startswith("wire: apfed-c, K = 1: 26 messages")
    assert len(lines) == 2 + len(r["wire"]) + len(r["inference"])
    assert lines[-1] == f"inference: {r['inference'][-1]['engine']}, batch 4096: " + (
        f"{r['inference'][-1]['samples_per_s']:,.0f} samples/s"
    )
    wire = {(w["method"], w["k"]): w for w in r["wire"]}
    assert wire[("apfed-c", 16)]["messages_per_passive"] < wire[("apfed-c", 1)]["messages_per_passive"]
    assert wire[("apfed-c", 16)]["rounds"] * 16 >= wire[("apfed-c", 1)]["rounds"]
    # tvfl sends embeddings back, apfed-c gradients of the same batch: both move data every round
    assert all(w["mb_per_passive"] > 0 for w in r["wire"])
    engines = {i["engine"] for i in r["inference"]}
    assert "pytorch" in engines
    assert all(i["samples_per_s"] > 0 for i in r["inference"])
    one = [i for i in r["inference"] if i["batch"] == 1]
    assert all(0 < i["p50_ms"] <= i["p99_ms"] for i in one)


def test_the_bench_leaves_autograd_on():
    import torch

    assert torch.is_grad_enabled()  # the quick bench above ran in this process


def test_the_sealing_clock_times_encrypted_runs_only_and_restores_the_channel():
    from apfed.bench import _sealing_clock
    from apfed.config import make_config
    from apfed.data import load_bundled
    from apfed.runner import Safety, run
    from protocols.sealing import Channel

    seal, open_ = Channel.seal, Channel.open
    ds = load_bundled("digits", 2)
    cfg = make_config("default", method="apfed-c", epochs=1, batches_per_round=4)
    with _sealing_clock() as plain:
        run(ds, 0, cfg)
    with _sealing_clock() as sealed:
        run(ds, 0, cfg, safety=Safety(encrypt=True))
    assert plain["s"] == 0.0 and sealed["s"] > 0.0
    assert Channel.seal is seal and Channel.open is open_


@pytest.mark.parametrize("method", ["local", "apfed-r", "apfed-c", "apfed-kd", "tvfl", "centralized"])
@pytest.mark.parametrize("floor", ["bare_joint_epoch", "learners_epoch"])
def test_the_floors_train_every_module_of_the_method_on_copies(method, floor):
    """The floors of the per-method epoch comparison (the modules as one model; the learners called directly):
    every parameter of every party moves (no module is left out), and the protocol run's own modules do not."""
    import torch

    import apfed.speed
    from apfed.config import make_config
    from apfed.data import load_bundled
    from apfed.runner import build_clients

    client = build_clients(load_bundled("digits", 2), 0, make_config("default", method=method, epochs=1))
    client.setup()
    passives = [client.transport.handlers[n].__self__.learner for n in client.names]
    before = [{k: v.clone() for k, v in m.modules.state_dict().items()} for m in (client.learner, *passives)]
    active, copies = apfed.speed.joint_copies(client)
    assert len(copies) == len(passives) == (0 if method in ("local", "centralized") else 1)
    start = [{k: v.clone() for k, v in m.modules.named_parameters()} for m in (active, *copies)]
    assert getattr(apfed.speed, floor)(active, copies, client.train_idx) > 0
    for m, s in zip((active, *copies), start, strict=True):
        for k, p in m.modules.named_parameters():
            assert not torch.equal(p, s[k]), k
    for m, b in zip((client.learner, *passives), before, strict=True):
        assert all(torch.equal(v, b[k]) for k, v in m.modules.state_dict().items())


def test_compare_methods_reports_each_method_against_its_own_floor():
    from apfed.config import make_config
    from apfed.data import load_bundled
    from apfed.speed import compare_methods

    rows = compare_methods(load_bundled("digits", 2), 0, make_config("default"), ["local", "apfed-kd"], repeats=1)
    assert [(r["method"], r["passives"]) for r in rows] == [("local", 0), ("apfed-kd", 1)]
    for r in rows:
        assert min(r["protocol_s"], r["learners_s"], r["bare_s"]) > 0
        assert r["ratio"] == r["protocol_s"] / r["bare_s"] and r["learners_ratio"] == r["learners_s"] / r["bare_s"]


def test_plots_of_the_method_epochs_and_of_the_scaling_are_written(tmp_path):
    from apfed.bench import write_plots

    epochs = [
        {"dataset": d, "device": "cpu", "method": m, "ratio": r}
        for d in ("mnist5k", "handwritten")
        for m, r in (("local", 1.0), ("apfed-c", 1.2))
    ]
    scaling = [
        {"axis": a, "value": v, "epoch_s": 0.1 * v, "mb_per_epoch": v, "peak_rss_mb": 300 + v}
        for a in ("passives", "samples", "width")
        for v in (1, 2, 4)
    ]
    assert write_plots({"scaling": [], "epoch_methods": []}, tmp_path / "r") == []
    paths = write_plots({"scaling": scaling, "epoch_methods": epochs}, tmp_path / "r")
    assert [p.name for p in paths] == ["r-epoch.png", "r-scaling.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)
