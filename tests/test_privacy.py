"""Differential-privacy noise: clipping bounds every sent row, noise has the configured scale, and the
sending party back-propagates through its own clipping."""

import dataclasses

import numpy as np
import pytest
import torch

from apfed.config import make_config
from apfed.data import load_bundled
from apfed.errors import ConfigError
from apfed.privacy import Privatizer, clip_rows
from apfed.runner import run
from protocols import decode


def test_clip_rows_bounds_each_row_and_keeps_small_rows():
    t = torch.tensor([[3.0, 4.0], [0.3, 0.4]], requires_grad=True)
    c = clip_rows(t, 1.0)
    assert torch.allclose(c.norm(dim=1), torch.tensor([1.0, 0.5]))
    c.sum().backward()  # differentiable: the clipped row's gradient is scaled and projected
    assert torch.allclose(t.grad[1], torch.ones(2)) and t.grad[0].norm() < 1


def test_noise_has_the_configured_scale_and_is_seeded():
    cfg = dataclasses.replace(make_config("default"), dp_clip=2.0, dp_noise=0.5)
    x = torch.zeros(20000, 8)
    a, b = Privatizer(cfg, 1).embedding(x), Privatizer(cfg, 1).embedding(x)
    assert torch.equal(a, b)
    assert abs(float(a.std()) - 0.5 * 2.0) < 0.02
    g = Privatizer(cfg, 1).gradient(x)
    assert abs(float(g.std()) - 0.5 * 2.0 / cfg.batch_size) < 0.001


def test_noise_needs_a_clip_bound():
    with pytest.raises(ConfigError, match="dp_noise needs a clip bound"):
        make_config("default", dp_noise=1.0)


def test_every_sent_row_is_clipped_and_noised_on_the_wire():
    ds = load_bundled("digits", 2)
    clip = 0.5
    base = make_config("default", method="apfed-kd", epochs=1, batches_per_round=4)
    plain_rec, dp_rec = [], []
    run(ds, 0, base, record=plain_rec)
    run(ds, 0, dataclasses.replace(base, dp_clip=clip, dp_noise=0.0), record=dp_rec)
    # embeddings both ways; gradients both ways: the passive's of the active's embedding, the active's of the
    # passive's (until 2026-12-05 the active party sent that one unclipped and unnoised: `apfed leakage` showed it)
    sent = {"act": [], "emb": [], "grad": [], "prev_grad": []}
    for data in dp_rec:
        msg = decode(data)
        for k in sent:
            if k in msg.arrays and len(msg.arrays[k]):
                sent[k].append(np.linalg.norm(msg.arrays[k].reshape(len(msg.arrays[k]), -1), axis=1))
    assert all(sent.values())
    for k, norms in sent.items():
        bound = clip / base.batch_size if "grad" in k else clip
        assert np.concatenate(norms).max() <= bound * (1 + 1e-5), k
    plain_norms = [
        np.linalg.norm(decode(d).arrays["act"], axis=1).max() for d in plain_rec if "act" in decode(d).arrays
    ]
    assert max(plain_norms) > clip  # the clipping did something
