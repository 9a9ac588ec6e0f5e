"""The same roles over the Flower simulation engine (Ray) give the same model as in-process."""

import numpy as np
import pytest

from apfed.config import make_config
from apfed.data import load_bundled
from apfed.runner import build_clients

flwr = pytest.importorskip("flwr")


@pytest.mark.parametrize("method, k, pipeline", [("apfed-kd", 2, False), ("apfed-c", 3, True)])
def test_simulation_matches_in_process(tmp_path, method, k, pipeline):
    from apfed.standalone import StandaloneModel
    from clients.flower_app import RunSettings, simulate

    s = RunSettings(
        dataset="digits",
        method=method,
        epochs=2,
        seed=3,
        batches_per_round=k,
        pipeline=pipeline,
        model_out=str(tmp_path / "m.safetensors"),
    )
    sim = simulate(s, 1)
    cfg = make_config("default", method=method, epochs=2, seed=3, batches_per_round=k, pipeline=pipeline)
    client = build_clients(load_bundled("digits"), 0, cfg)
    client.setup()
    client.fit()
    local = client.predictions()
    assert np.array_equal(np.asarray(sim["test_predictions"]["standalone"]), local["standalone"])
    if "fused" in local:
        assert np.array_equal(np.asarray(sim["test_predictions"]["fused"]), local["fused"])
    # the exported model predicts with no passive and no Flower
    ds = load_bundled("digits")
    m = StandaloneModel.load(tmp_path / "m.safetensors")
    pred = m.predict(ds.views[0].X[np.sort(ds.test_idx)]).astype(int)  # the client orders test rows by position
    assert np.array_equal(pred, local["standalone"])


def test_simulate_cli(tmp_path):
    from conftest import run_cli

    code, out, err = run_cli(
        "simulate",
        "--dataset",
        "digits",
        "--method",
        "apfed-c",
        "--epochs",
        "1",
        "--k",
        "4",
        "--out",
        tmp_path / "m.safetensors",
        timeout=600,
    )
    assert code == 0, err[-3000:]
    assert "over Flower simulation, 1 passive(s): test accuracy" in out
    assert (tmp_path / "m.safetensors").stat().st_size > 1000
    code, _, err = run_cli("simulate", "--dataset", "digits", "--method", "local")
    assert code == 2 and "no passive parties to simulate" in err
