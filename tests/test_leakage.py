"""``apfed leakage``: the attacks on per-row vectors, the tap on a run's messages, and the command."""

import json

import numpy as np
import pytest
from conftest import run_cli

import apfed
from apfed.attacks import feature_attack, known_per_class, known_share, label_attack, majority_share
from apfed.config import make_config
from apfed.errors import ConfigError
from apfed.leakage import audit


def test_the_label_attack_reads_labels_that_are_there_and_not_those_that_are_not():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 1000)
    known = known_per_class(labels, 4, seed=0)
    assert known.sum() == 20 and all((labels[known] == c).sum() == 4 for c in range(5))
    telling = np.eye(5)[labels] + rng.normal(0, 0.3, (1000, 5))  # the labels, with noise
    noise = rng.normal(size=(1000, 5))
    assert label_attack(telling, labels, known) > 95
    chance = majority_share(labels, known)
    assert 15 < chance < 25 and label_attack(noise, labels, known) < chance + 10
    one = labels == 0  # every known row of one class: nothing to fit, the attacker guesses that class
    assert label_attack(telling, labels, one & known) == majority_share(labels, one & known)


def test_the_attacks_label_new_rows_with_what_they_fitted_on_the_old_ones():
    rng = np.random.default_rng(2)
    labels, later = rng.integers(0, 5, 1000), rng.integers(0, 5, 300)
    known = known_per_class(labels, 4, seed=0)

    def telling(y):  # the same map for old and new rows, far from zero mean and unit scale
        return 50 + 10 * (np.eye(5)[y] + rng.normal(0, 0.3, (len(y), 5)))

    assert label_attack(telling(labels), labels, known, (telling(later), later)) > 90
    # a map that changes for the new rows does not carry over: the attack is fitted once, on the old rows
    assert label_attack(telling(labels), labels, known, (telling((later + 1) % 5), later)) < 10
    assert majority_share(labels, known, later) == (later == 0).mean() * 100  # every class known 4 times: 0 wins
    x, x_new = rng.normal(size=(1000, 4)), rng.normal(size=(300, 4))
    w = rng.normal(size=(4, 2))
    fitted = known_share(1000, 0.2, seed=0)
    assert feature_attack(x, 5 + x @ w, fitted, (x_new, 5 + x_new @ w)) > 0.99
    assert feature_attack(x, 5 + x @ w, fitted, (x_new, 5 - x_new @ w)) < 0  # worse than each feature's mean


def test_the_feature_attack_gives_the_share_of_the_features_it_explains():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 8))
    targets = x[:, :3] @ rng.normal(size=(3, 4)) + rng.normal(0, 0.1, (2000, 4))
    known = known_share(2000, 0.1, seed=0)
    assert known.sum() == 200
    assert feature_attack(x, targets, known) > 0.95
    assert feature_attack(x, targets[:, :1], known) > 0.95  # one feature: sklearn predicts it as a 1-D array
    assert abs(feature_attack(rng.normal(size=(2000, 8)), targets, known)) < 0.05
    half = np.column_stack([x[:, :1], rng.normal(size=(2000, 1))])  # one of the three sources of the targets
    assert 0.1 < feature_attack(half, targets, known) < 0.7


@pytest.mark.parametrize("method", ["tvfl", "apfed-c"])
def test_a_run_s_messages_let_a_party_learn_and_dp_noise_takes_it_away(method):
    ds, a = apfed.load_dataset("digits")
    plain = audit(ds, a, make_config("default", method=method, epochs=3))
    [p] = plain["passives"]
    sent_to_passive = {"tvfl": ["prev_grad"], "apfed-c": ["act"]}[method]
    assert p["received"] == sent_to_passive and p["sent"] == {"tvfl": ["emb"], "apfed-c": ["grad"]}[method]
    assert p["rows"] == len(ds.train_idx)  # every training row crossed in the last epoch
    label, features = p["labels"], p["features"]
    if method == "tvfl":  # the gradient of the task loss in its embedding tells a passive the labels: the classic leak
        assert label["received"] > label["own_features"] + 20 and label["received"] > 90
    else:  # its encoder, trained to agree with the active party's embedding, holds its own encoder only
        assert label["own_encoder"] is not None
    # the encoder it keeps labels rows the run never saw (the test rows) at least as well as its own features do
    new = label["new_rows"]
    assert new["rows"] == len(ds.test_idx) and new["own_encoder"] > new["own_features"] > label["chance"]
    # what a passive sends back tells the active party about the passive's features, beyond what its own tell
    assert features["received"] > features["active_features"] + 0.1 and features["received_epoch"] in (1, 3)
    noisy = audit(ds, a, make_config("default", method=method, epochs=3, dp_clip=1.0, dp_noise=30.0))
    [q] = noisy["passives"]
    assert q["labels"]["received"] < q["labels"]["chance"] + 15  # pure noise at this level, both ways
    assert q["features"]["received"] < 0.05


def test_the_command_writes_its_report_and_refuses_methods_that_send_nothing(tmp_path):
    code, out, err = run_cli(
        "leakage", "--dataset", "digits", "--methods", "tvfl", "--epochs", "1", "--out", tmp_path / "r"
    )
    assert code == 0, err
    report = json.loads((tmp_path / "r/leakage.json").read_text())
    assert [r["method"] for r in report["runs"]] == ["tvfl"] and report["known_labels_per_class"] == 4
    assert "what it received" in (tmp_path / "r/leakage.md").read_text() and "tvfl" in out
    new = report["runs"][0]["passives"][0]["labels"]["new_rows"]
    md = (tmp_path / "r/leakage.md").read_text()
    assert f"{new['own_features']:.1f} · {new['own_encoder']:.1f}" in md
    p = report["runs"][0]["passives"][0]
    gain = p["labels"]["received"] - p["labels"]["own_features"]  # tvfl's gradients: the labels, well above
    line = f"- tvfl: a passive labels its training rows from what it received at up to {gain:+.1f} points"
    assert gain > 0 and line in md and line[2:] in " ".join(out.split())  # the console wraps it
    code, _, err = run_cli("leakage", "--dataset", "digits", "--methods", "local,tvfl", "--out", tmp_path / "r")
    assert code == 2 and err.strip().startswith("error: --methods takes apfed-r") and "not 'local'" in err
    with pytest.raises(ConfigError, match="sends no message"):
        audit(*apfed.load_dataset("digits"), make_config("default", method="local", epochs=1))


def test_a_regression_s_target_is_attacked_by_its_r2():
    rng = np.random.default_rng(3)
    n = 400
    a, b = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    target = a[:, 0] + 2 * b[:, 0] + rng.normal(0, 0.1, n)
    ids = [f"p{i}" for i in range(n)]
    parties = {
        "clinic": {"id": ids, **{f"a{j}": a[:, j] for j in range(3)}, "label": target},
        "lab": {"id": ids, **{f"b{j}": b[:, j] for j in range(3)}},
    }
    ds = apfed.from_parties(parties, task="regression", log=lambda *_: None)
    run = audit(ds, 0, make_config("default", method="tvfl", epochs=3))
    [p] = run["passives"]
    assert run["task"] == "regression" and p["labels"]["chance"] == 0.0
    # the lab's own column b0 explains about 4/5 of the target's variance; the gradients it receives, more
    assert 0.5 < p["labels"]["own_features"] < 0.95 and p["labels"]["received"] > 0.3
    new = p["labels"]["new_rows"]  # the same on the test rows, with the ridge fitted on the known training rows
    assert new["rows"] == 80 and 0.5 < new["own_features"] < 0.95 and new["own_encoder"] is not None
