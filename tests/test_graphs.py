"""CUDA-graph replay of the learners' steps (apfed.graphs) trains like the eager steps. Needs a GPU: CI skips it;
run it on one with ``pytest tests/test_graphs.py``."""

import pytest
import torch

from apfed.config import make_config
from apfed.data.bundled import load_bundled
from apfed.runner import build_clients

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _run(method: str, graphs: bool, preset: str):
    cfg = make_config(preset, method=method, epochs=3, device="cuda", cuda_graphs=graphs)
    client = build_clients(load_bundled("mnist5k", 2), 0, cfg)
    client.setup()
    client.fit()
    return client


@pytest.mark.parametrize(
    "method,preset",
    [
        ("apfed-c", "paper"),
        ("apfed-r", "default"),
        ("local", "default"),
        ("tvfl", "default"),
        ("apfed-kd", "default"),
        ("centralized", "default"),
    ],
)
def test_graph_replay_trains_like_eager_steps(method, preset):
    eager, graphed = _run(method, False, preset), _run(method, True, preset)
    assert eager.learner.graphs is None
    assert graphed.learner.graphs.replays > 0  # the active's step was captured and replayed
    for name in graphed.names:  # so was every passive's (tvfl, apfed-kd: with the embedding it sends)
        assert graphed.transport.handlers[name].__self__.learner.graphs.replays > 0
    loss = "task_loss" if "task_loss" in eager.history[0] else "fused_loss"
    for e, g in zip(eager.history, graphed.history, strict=True):
        assert abs(e["accuracy"] - g["accuracy"]) < 2.0
        assert abs(e[loss] - g[loss]) < 0.05 * abs(e[loss]) + 1e-3


@pytest.mark.parametrize("method", ["apfed-c", "apfed-kd"])
def test_deterministic_kernels_give_one_model_per_seed(method):
    """``deterministic=true``: two runs with one seed agree bit for bit (the default cuDNN algorithms do not on
    mnist5k's conv nets: benchmarks/results/2026-12-04-gpu-determinism-h200.md)."""
    import numpy as np

    import apfed

    ds = load_bundled("mnist5k", 2)
    X = ds.views[0].X[np.asarray(ds.test_idx)]
    runs = [apfed.train(ds, 0, method, epochs=2, device="cuda", deterministic=True) for _ in range(2)]
    curves = [[{k: v for k, v in row.items() if not k.endswith("_time")} for row in r.history] for r in runs]
    assert curves[0] == curves[1]
    assert np.array_equal(runs[0].model.predict_proba(X), runs[1].model.predict_proba(X))


def test_a_fresh_students_steps_replay_like_eager_ones():
    """kd_student=fresh: the student's step (task loss and distillation from fixed teacher outputs) is captured."""

    def fresh(graphs: bool):
        cfg = make_config("default", method="apfed-kd", epochs=2, kd_student="fresh", device="cuda", cuda_graphs=graphs)
        client = build_clients(load_bundled("mnist5k", 2), 0, cfg)
        client.setup()
        client.fit()
        return client

    eager, graphed = fresh(False), fresh(True)
    assert graphed.learner.own_graphs.replays > 0  # the learner is now the student
    for e, g in zip(eager.history[2:], graphed.history[2:], strict=True):
        assert abs(e["accuracy"] - g["accuracy"]) < 2.0
        assert abs(e["kd_loss"] - g["kd_loss"]) < 0.05 * abs(e["kd_loss"]) + 1e-3
