"""Running epoch means, the memory gauges the scaling bench reads, and when set-up memory is handed back."""

import numpy as np
import pytest
import torch

from apfed.memory import peak_rss_mb, release_freed_memory, reset_peak_rss, rss_mb
from apfed.metrics import FOLD_EVERY, RunningMeans


def test_running_means_equal_the_plain_means_in_bounded_memory():
    gen = torch.Generator().manual_seed(0)
    n = 3 * FOLD_EVERY + 17
    losses = torch.rand(n, generator=gen)
    means = RunningMeans()
    for i in range(n):
        m = {"loss": losses[i], "accuracy": float(i % 2)}
        if i % 3 == 0:  # a passive that skipped a round leaves its key out
            m["passive_loss"] = losses[i] * 2
        means.add(m)
        assert all(len(b) < FOLD_EVERY for b in means.buffered.values())
    out = means.means()
    assert list(out) == ["loss", "accuracy", "passive_loss"]
    assert out["loss"] == pytest.approx(losses.double().mean().item(), rel=1e-12)
    assert out["accuracy"] == pytest.approx(np.mean([i % 2 for i in range(n)]))
    assert out["passive_loss"] == pytest.approx((losses[::3].double() * 2).mean().item(), rel=1e-6)


def test_running_means_survive_a_checkpoint_round_trip_and_read_old_checkpoints():
    means = RunningMeans()
    for v in (1.0, 2.0, 4.0):
        means.add({"loss": torch.tensor(v)})
    state = means.state()
    assert all(isinstance(t, torch.Tensor) for part in state.values() for t in part.values())
    back = RunningMeans.from_state(state)
    back.add({"loss": torch.tensor(5.0)})
    assert back.means() == {"loss": 3.0}
    old = RunningMeans.from_state([{"loss": torch.tensor(1.0)}, {"loss": torch.tensor(3.0), "acc": 1.0}])
    assert old.means() == {"loss": 2.0, "acc": 1.0}


def test_the_peak_rss_can_be_reset_to_measure_one_phase():
    if not reset_peak_rss():
        pytest.skip("no /proc/self/clear_refs here")
    block = np.ones(64 * 2**20 // 8)  # 64 MB, touched
    now = rss_mb()  # read before the peak: the process may grow between two reads, the peak never falls
    high = peak_rss_mb()
    assert high >= now > 0
    del block
    release_freed_memory()
    assert reset_peak_rss()
    assert peak_rss_mb() < high - 32  # the 64 MB block is no longer in the new phase's peak


def test_the_active_party_trims_the_heap_only_once_every_psi_array_is_freed(monkeypatch):
    """malloc_trim can only hand back what is already freed: when the active party trims after set-up, no
    array the PSI allocated (hashed, blinded, double-blinded points of every id) may still be alive."""
    import tracemalloc

    import clients.active as active_module
    from apfed.config import make_config
    from apfed.data.streamed import streamed_synthetic
    from apfed.runner import build_clients

    alive_at_trim = []

    def trim() -> None:
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, "*protocols/psi.py")])
        alive_at_trim.append(sum(s.size for s in snap.statistics("filename")))

    monkeypatch.setattr(active_module, "release_freed_memory", trim)
    client = build_clients(streamed_synthetic(4000, 1), 0, make_config("default", method="apfed-c", epochs=1))
    tracemalloc.start()
    try:
        client.setup()
    finally:
        tracemalloc.stop()
    assert len(alive_at_trim) == 1
    assert alive_at_trim[0] < 4000 * 32 // 4  # a whole array of points would be 128 kB; none is left


def test_roc_auc_and_average_precision_match_a_hand_computation():
    from apfed.metrics import classification_metrics, ranking_metrics

    y = np.array([0, 0, 1, 1])
    p1 = np.array([0.1, 0.4, 0.35, 0.8])
    proba = np.stack([1 - p1, p1], 1)
    # of the 4 (positive, negative) pairs, the positive scores higher in 3; ranked 0.8+, 0.4-, 0.35+, 0.1-:
    # precision 1 at recall 1/2, then 2/3 at recall 1
    assert ranking_metrics(y, proba) == pytest.approx({"roc_auc": 0.75, "average_precision": 0.5 + 0.5 * 2 / 3})
    m = classification_metrics(y, proba.argmax(1), proba)
    assert m["accuracy"] == 75.0 and m["roc_auc"] == pytest.approx(0.75)
    assert "roc_auc" not in classification_metrics(y, proba.argmax(1))  # no probabilities, no ranking figure


def test_multiclass_roc_auc_is_the_macro_mean_over_the_classes_with_a_curve():
    from apfed.metrics import ranking_metrics

    y = np.array([0, 0, 1, 1, 1])  # class 2 has no test row: no curve, left out of the means
    proba = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.8, 0.1], [0.5, 0.3, 0.2], [0.3, 0.6, 0.1]])
    # class 0 against the rest: its two rows score 0.7 and 0.2 against 0.1, 0.5, 0.3 -> wins 3 + 1 of 6
    # class 1 against the rest: 0.8, 0.3, 0.6 against 0.2, 0.5 -> wins 2 + 1 + 2 of 6
    got = ranking_metrics(y, proba)
    assert got["roc_auc"] == pytest.approx((4 / 6 + 5 / 6) / 2)
    assert ranking_metrics(np.array([1, 1]), proba[:2]) == {}  # one class only: no curve at all


def test_with_two_classes_average_precision_is_of_the_positive_class_and_roc_auc_is_shared():
    from sklearn.metrics import average_precision_score

    from apfed.metrics import ranking_metrics

    rng = np.random.default_rng(0)
    y = (rng.random(200) < 0.2).astype(int)
    p1 = np.clip(0.3 * y + rng.random(200) * 0.7, 0, 1)
    proba = np.stack([1 - p1, p1], 1)
    one, zero = ranking_metrics(y, proba, positive=1), ranking_metrics(y, proba, positive=0)
    assert one["roc_auc"] == pytest.approx(zero["roc_auc"])
    assert one["average_precision"] == pytest.approx(average_precision_score(y == 1, p1))
    assert zero["average_precision"] == pytest.approx(average_precision_score(y == 0, 1 - p1))
    assert zero["average_precision"] > one["average_precision"]  # the common class is easy to find


def test_the_fast_roc_auc_is_sklearns_with_ties():
    from sklearn.metrics import roc_auc_score

    from apfed.metrics import roc_auc

    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 300)
    proba = np.round(rng.random((300, 4)) + 0.3 * np.eye(4)[y], 1)  # rounded: many tied scores
    proba /= proba.sum(1, keepdims=True)
    assert roc_auc(y, proba) == pytest.approx(roc_auc_score(y, proba, multi_class="ovr"), abs=1e-12)
    yb = (y == 1).astype(int)
    pb = np.stack([1 - proba[:, 1], proba[:, 1]], 1)
    assert roc_auc(yb, pb) == pytest.approx(roc_auc_score(yb, pb[:, 1]), abs=1e-12)
    assert roc_auc(np.zeros(5, dtype=int), pb[:5]) is None  # one class: no curve
