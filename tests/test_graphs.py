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
