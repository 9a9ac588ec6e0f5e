"""The comparison's summary and tables: the local→TVFL gap closed is reported only where there is a gap."""

import pytest

from apfed.report import markdown_table, no_gap, rich_table, summarize


def _runs(accuracies: dict[str, list[float]]) -> list[dict]:
    return [
        {
            "method": m,
            "seed": seed,
            "accuracy": a,
            "final": {"macro_f1": a, "roc_auc": 0.9},
            "epoch_seconds": 1.0,
            "extra": {},
        }
        for m, accs in accuracies.items()
        for seed, a in enumerate(accs)
    ]


def test_the_gap_closed_is_the_share_of_local_to_tvfl_and_local_reads_0_not_minus_0():
    s = summarize(_runs({"local": [80.0, 81.0], "apfed-c": [82.0, 82.0], "tvfl": [90.0, 91.0]}))
    assert s["local"]["gap_closed"] == 0 and s["tvfl"]["gap_closed"] == pytest.approx(1.0)
    assert s["apfed-c"]["gap_closed"] == pytest.approx((82.0 - 80.5) / (90.5 - 80.5))
    table = markdown_table(s)
    assert "| 0 % |" in table and "-0 %" not in table and "| 15 % |" in table
    assert no_gap(s) is None and rich_table(s, "t").caption is None


@pytest.mark.parametrize("tvfl", [[70.0, 71.0], [80.0, 81.0]])
def test_where_tvfl_does_no_better_than_local_there_is_no_gap_to_close(tvfl):
    """A short run or a small overlap can leave tvfl at or below local: a ratio over that 'gap' would call a method
    worse than local a partial success (it once read 20 % closed)."""
    s = summarize(_runs({"local": [80.0, 81.0], "apfed-c": [79.0, 79.0], "tvfl": tvfl}))
    assert all(r["gap_closed"] is None for r in s.values())
    assert "%" not in markdown_table(s).splitlines()[2].split("|")[-2]  # local's gap cell is empty
    note = no_gap(s)
    assert note.startswith(f"tvfl ({s['tvfl']['accuracy_mean']:.2f} %) does no better than local (80.50 %)")
    assert rich_table(s, "t").caption == note


def test_results_md_says_why_the_gap_column_is_empty(tmp_path):
    from apfed.report import write_report

    runs = _runs({"local": [80.0, 81.0], "tvfl": [75.0, 76.0]})
    report = {
        "dataset": "d",
        "active_view": "v",
        "preset": "default",
        "epochs": 3,
        "seeds": 2,
        "device": "cpu",
        "eval_last": 10,
        "summary": summarize(runs),
        "runs": runs,
        "machine": {"cpus": 2},
    }
    write_report(tmp_path, report)
    assert (
        "does no better than local (80.50 %) here: there is no local→TVFL gap" in (tmp_path / "results.md").read_text()
    )


def test_one_seed_has_no_spread_and_a_short_run_says_which_epochs_it_averages(tmp_path):
    """One seed's std is unknown, not 0; and a 5-epoch run's headline averages all 5 epochs, not 'the last 10'."""
    from apfed.report import accuracy_note, write_report

    runs = _runs({"local": [80.0], "apfed-c": [82.0], "tvfl": [90.0]})
    s = summarize(runs)
    table = markdown_table(s)
    assert "±" not in table and "| 82.00 |" in table
    assert "±" in markdown_table(summarize(_runs({"local": [80.0, 81.0]})))
    report = {
        **dict(dataset="d", active_view="v", preset="default", seeds=1, device="cpu", machine={}),
        **dict(epochs=5, eval_last=10, summary=s, runs=runs),
    }
    write_report(tmp_path, report)
    md = (tmp_path / "results.md").read_text()
    assert "averaged over all 5 epochs (one seed: no spread)" in md and "last 10" not in md
    assert accuracy_note(5, 10, 1) == "accuracy: test accuracy averaged over all 5 epochs; one seed"
    note = accuracy_note(60, 10, 3, validation=True)
    assert note.startswith("accuracy: test accuracy averaged over the last 10 epochs (a standalone")
    assert note.endswith("; mean ± std over 3 seeds") and rich_table(s, "t", note).caption == note


def test_a_gpu_report_says_when_its_runs_are_not_reproducible_bit_for_bit(tmp_path):
    from apfed.report import write_report

    runs = _runs({"local": [80.0, 81.0], "apfed-c": [81.0, 83.0]})
    base = dict(dataset="d", active_view="v", preset="default", seeds=2, epochs=3, eval_last=10, machine={})
    warning = "without `--set deterministic=true` cuDNN's fastest kernels are not deterministic"
    for device, deterministic, warned in (("cuda", False, True), ("cuda", True, False), ("cpu", False, False)):
        report = {**base, "device": device, "config": {"deterministic": deterministic}, "summary": summarize(runs)}
        write_report(tmp_path, {**report, "runs": runs})
        assert (warning in (tmp_path / "results.md").read_text()) == warned, (device, deterministic)


def test_the_paired_interval_by_hand():
    from apfed.report import paired_interval

    # differences 1, 2, 3: mean 2, sample std 1, t(0.975, 2 dof) = 4.3027
    lo, hi = paired_interval([1.0, 2.0, 3.0])
    assert (lo, hi) == pytest.approx((2 - 4.3027 / 3**0.5, 2 + 4.3027 / 3**0.5), abs=1e-3)
    # with a split per seed, a quarter as many test rows as training rows: variance x (1/3 + 1/4) instead of 1/3
    lo, hi = paired_interval([1.0, 2.0, 3.0], test_share=0.25)
    assert hi - 2 == pytest.approx(4.3027 * (1 / 3 + 0.25) ** 0.5, abs=1e-3)


def test_a_summary_pairs_each_method_with_local_and_gives_the_interval():
    runs = _runs({"local": [80.0, 81.0, 82.0], "apfed-c": [81.0, 83.0, 85.0]})
    plain, widened = summarize(runs)["apfed-c"], summarize(runs, test_share=0.25)["apfed-c"]
    assert plain["vs_local_mean"] == 2.0 and plain["vs_local_wins"] == 3
    assert plain["vs_local_ci95"][0] < 2.0 < plain["vs_local_ci95"][1]
    assert widened["vs_local_ci95"][1] - 2.0 > plain["vs_local_ci95"][1] - 2.0


def _validated(accuracies: dict[str, list[float]], val: dict[str, list[float]], key: str = "val_accuracy") -> list:
    """Runs whose standalone model validation picked: the kept epoch's figure is in ``final``."""
    runs = _runs(accuracies)
    for r in runs:
        r["final"].update(best_epoch=2, **{key: val[r["method"]][r["seed"]]})
        r["history"] = [{"epoch": 1, key: 0.0}, {"epoch": 2, key: val[r["method"]][r["seed"]]}]
    return runs


def test_the_method_to_quote_is_picked_on_the_validation_rows_not_on_the_test_rows():
    """Of several variants, the one with the best test accuracy is an optimistic pick; the report names the one
    with the best validation figure and its test accuracy, and leaves out models that need every party."""
    from apfed.report import validation_note, validation_pick

    accs = {"local": [80.0, 81.0], "apfed-c[lam=0.5]": [84.0, 85.0], "apfed-c[lam=2]": [82.0, 82.0]}
    accs["tvfl"] = [95.0, 95.0]
    val = {
        "local": [79.0, 80.0],
        "apfed-c[lam=0.5]": [80.0, 80.0],
        "apfed-c[lam=2]": [83.0, 84.0],
        "tvfl": [99.0, 99.0],
    }
    runs = _validated(accs, val)
    for r in runs:  # a variant's method is its base name
        r["method"], r["variant"] = r["method"].split("[")[0], r["method"]
    s = summarize(runs)
    assert s["apfed-c[lam=2]"]["val_mean"] == pytest.approx(83.5) and s["local"]["val_std"] == pytest.approx(0.5)
    assert validation_pick(s) == "apfed-c[lam=2]"  # not lam=0.5, the best on the test rows; not tvfl
    note = validation_note(s)
    assert note.startswith("picked on the validation rows: apfed-c[lam=2] (validation accuracy 83.50 %), test accuracy")
    assert "82.00 ± 0.00 %" in note and note.replace("[", "\\[") in rich_table(s, "t").caption  # as text, no markup
    header = markdown_table(s).splitlines()[0]
    assert "validation accuracy (%)" in header and "| 83.50 |" in markdown_table(s)


def test_a_validation_loss_is_picked_lowest_and_without_two_validated_methods_nothing_is_picked():
    from apfed.report import validation_note, validation_pick

    s = summarize(
        _validated({"local": [80.0], "apfed-c": [81.0]}, {"local": [0.4], "apfed-c": [0.6]}, "val_loss"), metric="loss"
    )
    assert validation_pick(s) == "local" and "validation loss 0.4000" in validation_note(s)
    assert "validation loss" in markdown_table(s).splitlines()[0]
    plain = summarize(_runs({"local": [80.0], "apfed-c": [81.0]}))  # no validation rows: no column, no pick
    assert validation_pick(plain) is None and validation_note(plain) is None
    assert "validation" not in markdown_table(plain)
    one = summarize(_validated({"local": [80.0], "tvfl": [90.0]}, {"local": [79.0], "tvfl": [95.0]}))
    assert validation_pick(one) is None  # one standalone method: nothing to choose between


def test_a_runs_validation_figure_goes_with_its_headline_accuracy():
    """The kept epoch's where validation picked the standalone model; else (tvfl, which keeps its last epoch) the
    mean over the same last epochs the accuracy averages."""
    from apfed.metrics import headline_validation

    history = [{"epoch": e, "val_accuracy": float(e), "val_loss": 1.0 / e} for e in range(1, 6)]
    assert headline_validation(history, {"best_epoch": 3, "val_accuracy": 3.0}, 10) == 3.0
    assert headline_validation(history, {}, 2) == pytest.approx(4.5)
    assert headline_validation(history, {}, 10, "loss") == pytest.approx(sum(1.0 / e for e in range(1, 6)) / 5)
    assert headline_validation([{"epoch": 1, "accuracy": 80.0}], {}, 10) is None


def test_the_plot_averages_runs_that_stopped_early_over_the_seeds_still_running(tmp_path):
    """Early stopping gives the seeds' runs different lengths: the plot (which failed on them, so that no
    results.png was written) averages each epoch over the runs that reached it."""
    from apfed.report import mean_curve, write_report

    epochs, mean = mean_curve([[1.0, 2.0, 3.0], [3.0, 4.0]])
    assert list(epochs) == [1, 2, 3] and list(mean) == [2.0, 3.0, 3.0]
    runs = _runs({"local": [80.0, 81.0], "apfed-c": [82.0, 83.0]})
    for r, n in zip(runs, (3, 5, 4, 2), strict=True):
        r["history"] = [{"epoch": e, "accuracy": 70.0 + e} for e in range(1, n + 1)]
    report = {"dataset": "d", "active_view": "v", "preset": "default", "epochs": 5, "seeds": 2, "device": "cpu"}
    report |= {"eval_last": 10, "summary": summarize(runs), "runs": runs, "machine": {"cpus": 2}}
    assert tmp_path / "results.png" in write_report(tmp_path, report)


def test_variants_compared_without_validation_rows_get_a_hint_to_choose_on_them():
    from apfed.report import selection_hint

    runs = _runs({"local": [80.0, 81.0], "apfed-c[lam=0.5]": [82.0, 83.0], "apfed-c[lam=2]": [81.0, 84.0]})
    for r in runs:
        r["method"], r["variant"] = r["method"].split("[")[0], r["method"]
    s = summarize(runs)
    assert "add --set validation=0.1" in selection_hint(s) and "validation=0.1" in rich_table(s, "t").caption
    assert selection_hint(summarize(_runs({"local": [80.0], "apfed-c": [81.0], "tvfl": [90.0]}))) is None
    validated = _validated({"local": [80.0], "apfed-c": [81.0]}, {"local": [79.0], "apfed-c": [80.0]})
    validated[1]["variant"] = "apfed-c[lam=2]"
    validated.append({**validated[1], "variant": "apfed-c[lam=4]"})
    assert selection_hint(summarize(validated)) is None  # the validation rows already pick one
