"""The streamed synthetic set: rows are a function of their index, statistics are chunked, learners read
minibatches through DeviceRows instead of a resident copy of the view."""

import dataclasses

import numpy as np
import pytest
import torch

from apfed.config import make_config
from apfed.data import streamed
from apfed.data.streamed import DeviceRows, streamed_synthetic
from apfed.data.views import Preprocessor, View, compact_index, compact_labels
from apfed.errors import DataError
from apfed.runner import build_clients, run


def test_rows_depend_only_on_their_index():
    v = streamed_synthetic(3000, 1).views[1].X
    a = v[np.array([5, 17, 2999])]
    b = v[np.array([2999, 0, 5])]
    assert a.dtype == np.float32 and a.shape == (3, 32)
    np.testing.assert_array_equal(a[0], b[2])
    np.testing.assert_array_equal(a[2], b[0])
    assert not np.allclose(a[0], a[1])
    other_view = streamed_synthetic(3000, 1).views[0].X[np.array([5])]
    assert not np.allclose(other_view[0], a[0])


def test_chunked_statistics_match_the_materialised_ones(monkeypatch):
    monkeypatch.setattr(streamed, "CHUNK", 256)
    ds = streamed_synthetic(2000, 1)
    view = ds.views[0]
    dense = View("dense", "tabular", view.X[np.arange(2000)])
    a, b = Preprocessor.fit(view, ds.train_idx), Preprocessor.fit(dense, ds.train_idx)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.std, b.std, rtol=1e-5, atol=1e-6)


def test_training_reads_streamed_rows_and_matches_the_materialised_view():
    ds = streamed_synthetic(3000, 1)
    cfg = make_config("default", method="apfed-c", epochs=3)
    client = build_clients(ds, 0, cfg)
    client.setup()
    assert isinstance(client.learner.X, DeviceRows)  # nothing of the view is resident
    idx = client.train_idx[:64]
    dense_views = [dataclasses.replace(v, X=v.X[np.arange(3000)]) for v in ds.views]
    dense = dataclasses.replace(ds, views=dense_views)
    dense_client = build_clients(dense, 0, cfg)
    dense_client.setup()
    torch.testing.assert_close(client.learner.X[idx], dense_client.learner.X[idx], rtol=1e-4, atol=1e-4)
    a, b = run(ds, 0, cfg), run(dense, 0, cfg)
    assert a.accuracy > 50 and abs(a.accuracy - b.accuracy) < 3


def test_what_a_run_holds_per_sample_is_narrow():
    """After set-up the O(samples) state is 4-byte positions and 2-byte labels on both sides (all int64 before:
    about 73 bytes a sample at 500k); minibatches are widened where used, so an epoch still trains."""
    ds = streamed_synthetic(3000, 1)
    assert ds.labels.dtype == np.int16 and ds.train_idx.dtype == ds.test_idx.dtype == np.int32
    client = build_clients(ds, 0, make_config("default", method="apfed-c", epochs=2))
    client.setup()
    passive = client.transport.handlers["passive1"].__self__
    assert client.keep.dtype == np.int32 and all(s.dtype == np.int32 for s in client.split)
    assert client.learner.y.dtype == torch.int16 and client.learner.X.aligned.dtype == torch.int32
    assert passive.rows.dtype == np.int32 and passive.learner.X.aligned.dtype == torch.int32
    history = client.fit()
    assert len(history) == 2 and history[-1]["accuracy"] > 50
    assert compact_index(np.array([0, 5]), 2**31).dtype == np.int64  # more rows than int32 holds
    assert compact_labels(np.array([0, 40000])).dtype == np.int32
    assert compact_labels(np.array([], dtype=np.int64)).dtype == np.int16


def test_a_split_outside_the_active_party_s_rows_is_a_clear_error():
    ds = streamed_synthetic(200, 1)
    bad = dataclasses.replace(ds, test_idx=np.append(ds.test_idx, 200))
    with pytest.raises(DataError, match="test rows are not positions among its 200 rows"):
        build_clients(bad, 0, make_config("default", method="apfed-c", epochs=1)).setup()
