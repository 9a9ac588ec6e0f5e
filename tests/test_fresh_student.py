"""apfed-kd with kd_student=fresh: the teacher's epochs, then a new standalone network distilled from its fixed
soft labels of the training rows (clients/active_student.py)."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from apfed.augment import mixed_distillation
from apfed.config import make_config
from apfed.data import load_bundled
from apfed.errors import ConfigError
from apfed.losses import distillation, regression_distillation
from apfed.runner import Safety, run
from protocols import decode
from protocols.messages import EVALUATE, TRAIN


@pytest.fixture(scope="module")
def digits():
    return load_bundled("digits")


def test_fixed_teacher_distillation_is_hintons_on_taught_rows_and_nothing_on_the_others():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    every = torch.ones(8)
    assert torch.allclose(mixed_distillation(s, t, every, None, 4.0), distillation(s, t, 4.0), atol=1e-6)
    some = torch.tensor([1.0, 1, 1, 0, 0, 1, 0, 1])
    kept = some.bool()
    # the untaught rows count for nothing, and the mean is over the whole minibatch
    expected = distillation(s[kept], t[kept], 2.0) * kept.sum() / 8
    assert torch.allclose(mixed_distillation(s, t, some, None, 2.0), expected, atol=1e-6)
    out, target = torch.randn(8, 1, generator=g), torch.randn(8, 1, generator=g)
    assert torch.allclose(
        mixed_distillation(out, target, every, None, 4.0, regression=True), regression_distillation(out, target)
    )


def test_under_mixup_the_target_mixes_both_rows_teacher_probabilities_where_both_are_taught():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    aug = {"perm": torch.tensor([1, 0, 3, 2]), "lam": torch.tensor([0.7, 0.2, 0.5, 0.9])}
    taught = torch.tensor([1.0, 1, 1, 0])  # row 3 untaught: rows 2 and 3 (partners) count for nothing
    p = F.softmax(t, 1)
    lam = aug["lam"][:, None]
    target = lam * p + (1 - lam) * p[aug["perm"]]
    kl = (target * (target.log() - F.log_softmax(s, 1))).sum(1)
    expected = (kl * torch.tensor([1.0, 1, 0, 0])).mean()
    assert torch.allclose(mixed_distillation(s, t, taught, aug, 1.0), expected, atol=1e-6)


def test_kd_student_takes_joint_or_fresh():
    with pytest.raises(ConfigError, match="kd_student must be joint or fresh"):
        make_config("default", method="apfed-kd", kd_student="later")
    assert make_config("default", method="apfed-kd", epochs=5, kd_student="fresh").total_epochs == 10
    assert make_config("default", method="apfed-c", epochs=5, kd_student="fresh").total_epochs == 5  # kd's alone


def test_a_fresh_student_follows_its_teacher_and_is_the_model_exported(digits):
    record: list[bytes] = []
    cfg = make_config("default", method="apfed-kd", epochs=4, kd_student="fresh", eval_last=2)
    r = run(digits, 0, cfg, record=record)
    assert [h["epoch"] for h in r.history] == list(range(1, 9))
    teacher, student = r.history[:4], r.history[4:]
    assert all("acc_fused" in h for h in teacher) and not any("acc_fused" in h for h in student)
    assert all("kd_loss" in h and "passive_loss" not in h for h in student)
    # the teacher's figure is the mean over its own last epochs; the headline is the student's
    assert r.extra["acc_fused"] == pytest.approx(np.mean([h["acc_fused"] for h in teacher[-2:]]))
    assert r.accuracy == pytest.approx(np.mean([h["accuracy"] for h in student[-2:]]))
    assert r.accuracy > 50 and r.final["accuracy"] == pytest.approx(student[-1]["accuracy"])
    # the model file is the student: its test predictions give the last epoch's accuracy
    view = digits.views[0]
    pred = r.model.predict(view.X[digits.test_idx])
    truth = np.asarray(digits.class_names)[digits.labels[digits.test_idx]]
    assert (np.asarray(pred) == truth).mean() * 100 == pytest.approx(student[-1]["accuracy"])
    # after the last training round the passive was asked, once, for each training row's embedding, and for nothing
    # else: the student's epochs need no passive
    messages = [decode(b) for b in record]
    last_train = max(i for i, m in enumerate(messages) if m.kind == TRAIN)
    asked = np.concatenate([m.arrays["idx"] for m in messages[last_train:] if m.kind == EVALUATE])
    n_train = len(digits.labels) - len(digits.test_idx)
    assert len(asked) == n_train and len(np.unique(asked)) == n_train


def test_the_soft_labels_count_and_the_same_seed_gives_the_same_student(digits):
    base = make_config("default", method="apfed-kd", epochs=3, kd_student="fresh")
    a, b = run(digits, 0, base), run(digits, 0, base)
    c = run(digits, 0, make_config("default", method="apfed-kd", epochs=3, kd_student="fresh", kd_weight=0.0))
    weights = [list(x.model.net.state_dict().values()) for x in (a, b, c)]
    assert all(torch.equal(x, y) for x, y in zip(weights[0], weights[1], strict=True))
    assert any(not torch.equal(x, y) for x, y in zip(weights[0], weights[2], strict=True))
    # fewer epochs than eval_last (10): the headline is the mean over the student's own, not the teacher's joint
    # student's (the figures of a model thrown away)
    assert len(a.history) == 6 and a.accuracy == pytest.approx(np.mean([h["accuracy"] for h in a.history[3:]]))


def test_validation_picks_the_students_epoch_and_patience_stops_the_student_only(digits):
    cfg = make_config("default", method="apfed-kd", epochs=6, kd_student="fresh", validation=0.2, patience=1)
    r = run(digits, 0, cfg)
    assert r.final["best_epoch"] > 6  # one of the student's
    assert r.validation == r.final["val_accuracy"] and r.to_json()["validation"] == r.validation
    assert len(r.history) >= 7  # the teacher's six epochs all ran


def test_a_run_killed_in_the_students_epochs_resumes_to_the_same_student(tmp_path):
    digits3 = load_bundled("digits", 3)
    cfg = make_config("default", method="apfed-kd", epochs=2, kd_student="fresh", batches_per_round=2, seed=3)
    whole = run(digits3, 0, cfg, safety=Safety(checkpoint_dir=str(tmp_path / "a"), checkpoint_every=3))
    crashed = Safety(checkpoint_dir=str(tmp_path / "b"), checkpoint_every=3)
    seen, teachers = [0], 2 * -(-(len(digits3.labels) - len(digits3.test_idx)) // cfg.batch_size)

    def crash_in_the_students_epochs():
        seen[0] += 1
        if seen[0] == teachers + 5:  # the student's first epoch
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(digits3, 0, cfg, on_batch=crash_in_the_students_epochs, safety=crashed)
    resumed = run(digits3, 0, cfg, safety=dataclasses.replace(crashed, resume=True))
    assert [h["accuracy"] for h in resumed.history] == [h["accuracy"] for h in whole.history]
    a, b = whole.model.net.state_dict(), resumed.model.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_apfed_info_tells_the_teachers_epochs_and_the_students():
    from apfed.cli.model_info import _epochs_line

    cfg = {"method": "apfed-kd", "kd_student": "fresh", "epochs": 60}
    assert _epochs_line(cfg, {"epochs_run": 120}) == "60 epochs of the teacher, then 60 of a fresh student"
    assert _epochs_line(cfg, {"epochs_run": 75, "best_epoch": 70}) == (
        "60 epochs of the teacher, then 15 of a fresh student (stopped early, of 60), the model of epoch 70 (best on"
        " the validation rows)"
    )
    assert _epochs_line({**cfg, "kd_student": "joint"}, {"epochs_run": 60}) == "60 epochs"
