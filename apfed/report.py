"""Summaries, tables, JSON/markdown reports and plots of evaluation runs; the machine description and report writer
of the benchmarks."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np

from apfed.config import STANDALONE
from apfed.metrics import headline_validation


def machine() -> dict:
    """A short description of where the figures were measured. The CPU's model and the vector instructions torch
    uses on it are part of it: CPU results are bit-for-bit repeatable on one machine, but kernels for other vector
    units round differently, so another host's last digits may differ."""
    import torch  # here: the one-line summaries (final_note) are read where torch is not loaded

    d = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "processor": cpu_model() or platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    if torch.cuda.is_available():
        d["gpu"] = torch.cuda.get_device_name(0)
    return d


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (Linux), or None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return None


def write_benchmark(prefix: Path, report: dict, md: list[str]) -> None:
    """A benchmark's ``PREFIX.json`` (the report, with the machine) and ``PREFIX.md`` (``md`` plus a closing line
    naming the machine and the command in ``report["command"]``); prints the markdown. The suffixes are appended,
    so a prefix may hold a dot (``...-overlap0.25-cpu``); the folder is made if need be."""
    report.setdefault("machine", machine())
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_name(prefix.name + ".json").write_text(json.dumps(report, indent=1))
    text = "\n".join([*md, "", f"Machine: {json.dumps(report['machine'])}. Reproduce: `{report['command']}`.", ""])
    prefix.with_name(prefix.name + ".md").write_text(text)
    print(text)


def final_note(final: dict) -> str:
    """What a run's one-line summary adds after its accuracy: ``, ROC-AUC 0.9871`` when the final metrics have
    it, the epoch that validation picked, then ``; 88.57 % on the 35 test rows that some passive lacks`` when they
    have that figure."""
    note = f", ROC-AUC {final['roc_auc']:.4f}" if "roc_auc" in final else ""
    if "rmse" in final:  # a regression
        note = f", RMSE {final['rmse']:.4g}, MAE {final['mae']:.4g}"
    if "best_epoch" in final:
        best = final["best_epoch"]
        val = f"R² {final['val_r2']:.4f}" if "val_r2" in final else f"accuracy {final['val_accuracy']:.2f} %"
        note += f"; the model of epoch {best}, picked on the validation rows (validation {val})"
    if "calibration_temperature" in final:
        note += f"; probabilities calibrated on them (temperature {final['calibration_temperature']:.3f})"
    if "conformal_coverage" in final:
        what = (
            f"intervals {final['interval_width']:.4g} wide on average"
            if "interval_width" in final
            else f"sets of {final['set_size']:.2f} classes on average"
        )
        note += f"; conformal {what}, holding the truth for {final['conformal_coverage']:.1f} % of the test rows"
    if "unmatched_accuracy" in final:
        note += (
            f"; {final['unmatched_accuracy']:.2f} % on the {final['unmatched_test_rows']} test rows that some"
            " passive lacks"
        )
    if "unmatched_r2" in final:
        note += (
            f"; R² {final['unmatched_r2']:.4f} on the {final['unmatched_test_rows']} test rows that some passive lacks"
        )
    return note


def test_line(final: dict) -> str:
    """A run's one-line summary: its test figures (accuracy and macro-F1, or a regression's R², RMSE and MAE) and
    ``final_note``'s, or ``untested_line`` without test rows."""
    shared = final.get("shared_test_rows")  # given where some test rows are missing at a passive
    on = "" if shared is None else f" on the {shared} test row{'s' * (shared != 1)} every passive holds"
    if "r2" in final:
        return f"test R² {final['r2']:.4f}{on} ({final_note(final).removeprefix(', ')})"
    if "accuracy" in final:
        return f"test accuracy {final['accuracy']:.2f} %{on} (macro-F1 {final['macro_f1']:.2f}{final_note(final)})"
    return untested_line(final)


def untested_line(final: dict) -> str:
    """A run's one-line summary when it had no test rows (test fraction 0), with the epoch validation picked."""
    line = "no test rows (test fraction 0): trained on every labelled row"
    return line + final_note(final)


def epoch_label(row: dict) -> str:
    """What a progress bar shows of an epoch: its test accuracy, else its validation accuracy, else its task
    loss (a run with no test rows)."""
    if "accuracy" in row:
        return f"acc {row['accuracy']:.2f}"
    if "r2" in row:
        return f"R² {row['r2']:.4f}"
    if "val_accuracy" in row:
        return f"val acc {row['val_accuracy']:.2f}"
    if "val_r2" in row:
        return f"val R² {row['val_r2']:.4f}"
    return f"loss {row['task_loss']:.4f}" if "task_loss" in row else f"epoch {row['epoch']}"


def summarize(
    runs: list[dict], test_share: float | None = None, eval_last: int = 10, metric: str = "accuracy"
) -> dict[str, dict]:
    """Per method (and per derived model: tvfl fills, kd teacher): accuracy mean ± std, macro-F1, standalone,
    and the fraction of the local → all-parties-TVFL gap closed. ``test_share``: test rows per training row when
    each seed has a split of its own (``paired_interval``). Where every run of a method had validation rows, also
    ``val_mean``/``val_std``: their ``val_<metric>`` figure (``headline_validation``), to choose a method on. A
    regression's runs (their ``r2``) give ``r2_mean``/``r2_std``, ``rmse_mean`` and ``mae_mean`` instead of the
    accuracy and macro-F1; ``metric`` accuracy then stands for r2."""
    rows: dict[str, dict] = {}
    by_method: dict[str, list[dict]] = {}
    head = "r2" if any("r2" in r for r in runs) else "accuracy"
    if head == "r2" and metric == "accuracy":
        metric = "r2"
    for r in runs:  # a method with its own settings (evaluate --methods 'apfed-c[lam=0.5]') is a row of its own
        by_method.setdefault(r.get("variant", r["method"]), []).append(r)
    for label, rs in by_method.items():
        m = rs[0]["method"]
        acc = [r[head] for r in rs]
        figures = (
            {"rmse_mean": _mean_of(rs, "rmse"), "mae_mean": _mean_of(rs, "mae")}
            if head == "r2"
            else {
                "macro_f1_mean": float(np.mean([r["final"]["macro_f1"] for r in rs])),
                "roc_auc_mean": _mean_of(rs, "roc_auc"),
            }
        )
        rows[label] = {
            f"{head}_mean": float(np.mean(acc)),
            f"{head}_std": float(np.std(acc)),
            **figures,
            "standalone": STANDALONE[m],
            "seeds": len(rs),
            "epoch_seconds": float(np.median([r["epoch_seconds"] for r in rs])),
        }
        val = [  # the runner's own (a fresh student's: over its epochs only); runs saved before it had none
            r["validation"]
            if "validation" in r
            else headline_validation(r.get("history", []), r["final"], eval_last, metric)
            for r in rs
        ]
        if all(v is not None for v in val):
            rows[label].update(val_mean=float(np.mean(val)), val_std=float(np.std(val)), val_metric=metric)
        if all("conformal_coverage" in r["final"] for r in rs):  # conformal=C: how its ranges did on the test rows
            size = "interval_width" if head == "r2" else "set_size"
            rows[label].update(
                conformal_asked=rs[0]["final"].get("conformal_asked"),
                conformal_coverage_mean=_mean_of(rs, "conformal_coverage"),
                **{f"{size}_mean": _mean_of(rs, size)},
            )
        unmatched = f"unmatched_{head}"
        _unmatched_stats(rows[label], rs, unmatched)  # the standalone model
        prefix = "r2_" if head == "r2" else "acc_"
        for model, what, standalone in (
            ("fill_zero", "passives absent: zero", True),
            ("fill_mean", "passives absent: mean", True),
            ("fill_rand", "passives absent: rand", True),
            ("fused", "teacher, all parties", False),
        ):
            key = prefix + model
            # tvfl's fills; apfed-kd's teacher (tvfl's and centralized's fused model is their headline already)
            if (m == "tvfl") != (model != "fused") or m == "centralized" or key not in rs[0]["extra"]:
                continue
            vals = [r["extra"][key] for r in rs]
            derived = f"{label} ({what})"
            rows[derived] = {
                f"{head}_mean": float(np.mean(vals)),
                f"{head}_std": float(np.std(vals)),
                **dict.fromkeys(figures),
                "standalone": standalone,
                "seeds": len(rs),
                "derived": True,
            }
            _unmatched_stats(rows[derived], rs, f"{unmatched}_{model}", unmatched)  # tvfl, embeddings filled in
    _paired_with_local(rows, by_method, test_share, head)
    lo, hi, key = rows.get("local"), rows.get("tvfl"), f"{head}_mean"
    for r in rows.values():
        gap = None  # also where tvfl does no better than local: there is no gap, and a ratio would mislead
        if lo and hi and hi[key] > lo[key]:
            gap = (r[key] - lo[key]) / (hi[key] - lo[key])
        r["gap_closed"] = gap
    return rows


def validation_pick(summary: dict[str, dict]) -> str | None:
    """The standalone method (or variant) whose validation figure is best, where at least two have one: the choice
    that never looked at the test rows (the best test accuracy of many variants is an optimistic estimate)."""
    candidates = [m for m, r in summary.items() if r["standalone"] and not r.get("derived") and "val_mean" in r]
    if len(candidates) < 2 or len({summary[m]["val_metric"] for m in candidates}) > 1:
        return None
    lower_is_better = summary[candidates[0]]["val_metric"] == "loss"
    return (min if lower_is_better else max)(candidates, key=lambda m: summary[m]["val_mean"])


def validation_note(summary: dict[str, dict]) -> str | None:
    """One sentence naming ``validation_pick`` and its test accuracy, the figure to quote for it; else None."""
    m = validation_pick(summary)
    if m is None:
        return None
    r = summary[m]
    head = headline_of(r)
    test = f"test {HEADLINE_NAMES[head]} {_figure(r, head)}" + (" %" if head == "accuracy" else "")
    return (
        f"picked on the validation rows: {m} (validation {_validation_value(r)}), {test}; the best test"
        f" {HEADLINE_NAMES[head]} of several methods or variants overstates what the chosen one will do on new rows"
    )


def conformal_note(summary: dict[str, dict]) -> str | None:
    """One sentence on how each method's conformal intervals or sets did on the test rows, against the coverage
    each asked; None without them."""
    done = [(m, r) for m, r in summary.items() if "conformal_coverage_mean" in r]
    if not done:
        return None
    regression = "interval_width_mean" in done[0][1]
    parts = []
    for m, r in done:
        asked = f"asked {r['conformal_asked'] * 100:g} %, " if r.get("conformal_asked") else ""
        size = f"{r['interval_width_mean']:.4g} wide" if regression else f"{r['set_size_mean']:.2f} classes"
        parts.append(f"{m} {r['conformal_coverage_mean']:.1f} % ({asked}{size})")
    what = "intervals" if regression else "sets of classes"
    return f"conformal {what} held the truth on the test rows for: {', '.join(parts)}"


HEADLINE_NAMES = {"accuracy": "accuracy", "r2": "R²"}
HEADLINE_DIGITS = {"accuracy": 2, "r2": 4}  # decimals a headline figure is shown with


def headline_of(row: dict) -> str:
    """A summary row's headline figure: accuracy, or a regression's r2."""
    return "r2" if "r2_mean" in row else "accuracy"


def _figure(row: dict, head: str) -> str:
    """A summary row's headline, ``mean ± std`` (R² to 4 digits)."""
    return _mean_std(row[f"{head}_mean"], row[f"{head}_std"], row["seeds"], HEADLINE_DIGITS[head])


def selection_hint(summary: dict[str, dict]) -> str | None:
    """Where variants of one method are compared with no validation rows: how to choose among them honestly."""
    standalone = [m for m, r in summary.items() if r["standalone"] and not r.get("derived")]
    bases = [m.partition("[")[0] for m in standalone]
    if any("val_mean" in r for r in summary.values()) or len(bases) == len(set(bases)):
        return None
    return (
        "to choose among the variants without looking at the test rows, add --set validation=0.1: the table then"
        " names the one its validation rows pick"
    )


def _validation_value(r: dict) -> str:
    if r["val_metric"] == "accuracy":
        return f"accuracy {r['val_mean']:.2f} %"
    if r["val_metric"] == "r2":
        return f"R² {r['val_mean']:.4f}"
    return f"{r['val_metric'].replace('_', '-').replace('roc-auc', 'ROC-AUC')} {r['val_mean']:.4f}"


VALIDATION_COLUMNS = {
    "accuracy": "validation accuracy (%)",
    "loss": "validation loss",
    "roc_auc": "validation ROC-AUC",
    "r2": "validation R²",
}


def _paired_with_local(
    rows: dict[str, dict], by_method: dict[str, list[dict]], test_share: float | None, head: str = "accuracy"
) -> None:
    """Each method's accuracy (``head``: or R²) minus local's of the same seed: ``vs_local_mean``, ``vs_local_std``
    and ``vs_local_wins`` (seeds where the method is ahead) over the ``vs_local_seeds`` seeds both ran: whether a
    gain holds seed by seed, or rests on one lucky seed; and ``vs_local_ci95``, the 95 % interval of the mean
    difference (``paired_interval``)."""
    local = {r["seed"]: r[head] for r in by_method.get("local", [])}
    for m, rs in by_method.items():
        diffs = [r[head] - local[r["seed"]] for r in rs if r["seed"] in local]
        if m == "local" or len(diffs) < 2:
            continue
        rows[m].update(
            vs_local_mean=float(np.mean(diffs)),
            vs_local_std=float(np.std(diffs)),
            vs_local_wins=sum(d > 0 for d in diffs),
            vs_local_seeds=len(diffs),
            vs_local_ci95=paired_interval(diffs, test_share),
        )


def interval_basis(resampled: bool) -> str:
    """What ``paired_interval`` covers, in words: on one split, or with a split per seed (``resampled``)."""
    if not resampled:
        return "Student's t over the seeds, on one split: it covers the seeds' randomness, not the split's"
    return "Student's t over the seeds, widened for their overlapping training rows (Nadeau and Bengio)"


def paired_interval(diffs: list[float], test_share: float | None = None) -> list[float]:
    """The 95 % interval of the mean of paired differences, Student's t over the seeds. On one split it covers what
    varies with the seed (initialisation, minibatch order), not the split. With a split per seed (``test_share``:
    test rows per training row, as in ``--resplit`` or ``--folds``) the runs' training rows overlap, which plain t
    intervals ignore (too narrow): the variance is widened by Nadeau and Bengio's correction, 1/n + test_share
    instead of 1/n (Machine Learning 52, 2003)."""
    from scipy.stats import t

    n = len(diffs)
    factor = 1 / n + (test_share or 0.0)
    half = float(t.ppf(0.975, n - 1) * np.sqrt(factor * np.var(diffs, ddof=1)))
    mean = float(np.mean(diffs))
    return [mean - half, mean + half]


def _mean_of(runs: list[dict], key: str) -> float | None:
    """The mean over the runs of final metric ``key``; None when a run lacks it (a report from before it, or a
    test set with one class)."""
    values = [r["final"].get(key) for r in runs]
    return None if None in values else float(np.mean(values))


def _unmatched_stats(row: dict, runs: list[dict], key: str, name: str | None = None) -> None:
    """Mean and std over the runs of final metric ``key``, an accuracy (or R²) on the test rows that some passive
    lacks, when the runs have it, as ``<name>_mean`` and ``<name>_std`` (``name``: ``key`` by default)."""
    values = [r["final"][key] for r in runs if key in r["final"]]
    name = name or key
    if values:
        row[f"{name}_mean"], row[f"{name}_std"] = float(np.mean(values)), float(np.std(values))


UNMATCHED_COLUMN = "unmatched test rows (%)"
PAIRED_COLUMN = "vs local, same seed"


def _mean_std(mean: float, std: float, seeds: int, digits: int = 2) -> str:
    """``mean ± std``; the mean alone for one seed, whose spread is unknown rather than 0."""
    return f"{mean:.{digits}f}" if seeds < 2 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def averaged_over(epochs: int, eval_last: int) -> str:
    """Which epochs the headline accuracy averages: the last ``eval_last``, or every one of a shorter run."""
    if epochs <= 1:
        return "its one epoch"
    return f"all {epochs} epochs" if epochs <= eval_last else f"the last {eval_last} epochs"


def unlabelled_caption(rows: int) -> str:
    """What a comparison did with its training rows that have no label."""
    return (
        f"{rows:,} training rows have no label: apfed-r, -c, -m and -kd also train on them through the passives'"
        " losses (unlabelled_rows=train, the default); local, tvfl and centralized learn from the labelled rows alone"
    )


def accuracy_note(
    epochs: int,
    eval_last: int,
    seeds: int,
    validation: bool = False,
    resplit: bool = False,
    folds: int = 0,
    regression: bool = False,
) -> str:
    """What the accuracy column (a regression's: R²) holds, under the console table."""
    kept = " (a standalone method's: of the epoch its validation rows picked)" if validation else ""
    over = "one seed" if seeds < 2 else f"mean ± std over {seeds} seeds"
    if folds:
        over = f"mean ± std over {folds} folds (cross-validation: seed s tests fold s)"
    elif resplit and seeds > 1:
        over += ", each with its own train/test split (seed 0 the data's own)"
    if regression:
        return (
            f"R²: test R² (1 is perfect, 0 predicts the mean) averaged over {averaged_over(epochs, eval_last)}{kept};"
            f" {over}; RMSE and MAE: the final model's, in the target's units"
        )
    return f"accuracy: test accuracy averaged over {averaged_over(epochs, eval_last)}{kept}; {over}"


def _cells(summary: dict[str, dict], gap_column: str) -> tuple[list[str], list[list[str]]]:
    """The comparison table's header and rows; the test rows that some passive lacks get a column when a run
    had any (the final standalone model's accuracy on them). A regression's table has R², RMSE and MAE instead of
    accuracy, macro-F1 and ROC-AUC."""
    head = headline_of(next(iter(summary.values())))
    digits = HEADLINE_DIGITS[head]
    unmatched = any(f"unmatched_{head}_mean" in r for r in summary.values())
    auc = any(r.get("roc_auc_mean") is not None for r in summary.values())
    paired = any("vs_local_mean" in r for r in summary.values())
    figures = ["RMSE", "MAE"] if head == "r2" else ["macro-F1 (%)"]
    header = ["method", "standalone", "R²" if head == "r2" else "accuracy (%)"] + [PAIRED_COLUMN] * paired + figures
    metrics = {r["val_metric"] for r in summary.values() if "val_mean" in r}
    val_column = [VALIDATION_COLUMNS[next(iter(metrics))]] if len(metrics) == 1 else []
    unmatched_column = UNMATCHED_COLUMN.replace("(%)", "(R²)") if head == "r2" else UNMATCHED_COLUMN
    header += ["ROC-AUC"] * auc + val_column + [gap_column] + [unmatched_column] * unmatched
    rows = []
    for m, r in summary.items():
        row = [m, "yes" if r["standalone"] else "no", _figure(r, head)]
        if paired:
            row.append(
                f"{r['vs_local_mean']:+.{digits}f} ± {r['vs_local_std']:.{digits}f}"
                f" ({r['vs_local_wins']}/{r['vs_local_seeds']})"
                + (" [{:+.{d}f}, {:+.{d}f}]".format(*r["vs_local_ci95"], d=digits) if "vs_local_ci95" in r else "")
                if "vs_local_mean" in r
                else ""
            )
        if head == "r2":
            row += ["" if r.get(k) is None else f"{r[k]:.4g}" for k in ("rmse_mean", "mae_mean")]
        else:
            row.append("" if r["macro_f1_mean"] is None else f"{r['macro_f1_mean']:.2f}")
        if auc:
            row.append("" if r.get("roc_auc_mean") is None else f"{r['roc_auc_mean']:.4f}")
        if val_column:
            places = 2 if "accuracy" in val_column[0] else 4
            row.append(f"{r['val_mean']:.{places}f}" if "val_mean" in r else "")
        row.append("" if r["gap_closed"] is None else f"{round(100 * r['gap_closed'])} %")  # an int: never "-0 %"
        if unmatched:
            u = r.get(f"unmatched_{head}_mean")
            row.append("" if u is None else _mean_std(u, r[f"unmatched_{head}_std"], r["seeds"], digits))
        rows.append(row)
    return header, rows


def no_gap(summary: dict[str, dict]) -> str | None:
    """The note for a comparison whose tvfl does no better than local (no gap to close), else None."""
    lo, hi = summary.get("local"), summary.get("tvfl")
    head = headline_of(lo or {})
    key = f"{head}_mean"

    def shown(value: float) -> str:  # "83.30 %", or "R² 0.3920"
        figure = f"{value:.{HEADLINE_DIGITS[head]}f}"
        return f"R² {figure}" if head == "r2" else f"{figure} %"

    if lo and hi and hi[key] <= lo[key]:
        return (
            f"tvfl ({shown(hi[key])}) does no better than local ({shown(lo[key])}) here: there is no local→TVFL gap"
            " to close, so that column is empty."
        )
    return None


def markdown_table(summary: dict[str, dict]) -> str:
    header, rows = _cells(summary, "local→TVFL gap closed")
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def table_console():
    """A rich console for a result table on stdout: the terminal's width, or 160 columns when piped or redirected
    (rich would wrap at 80, and a log file can take the whole width)."""
    from rich.console import Console

    return Console() if Console().is_terminal else Console(width=160)


def rich_table(summary: dict[str, dict], title: str, note: str | None = None):
    """The comparison table for the console; ``note`` (what the accuracy is) and, where tvfl does no better than
    local, why the gap column is empty, go under it."""
    from rich.markup import escape
    from rich.table import Table

    notes = (
        note,
        no_gap(summary),
        validation_note(summary),
        conformal_note(summary),
        selection_hint(summary),
    )
    caption = "\n".join(c for c in notes if c) or None
    t = Table(title=escape(title), caption=caption and escape(caption))
    header, rows = _cells(summary, "gap closed")
    for col in header:
        t.add_column(col, justify="left" if col == "method" else "right")
    for r in rows:  # as text: a method's own settings, "apfed-c[lam=0.5]", are no markup
        t.add_row(*map(escape, r))
    return t


def write_report(out: Path, report: dict) -> list[Path]:
    """results.json, results.md and results.png (accuracy per method, learning curves) in ``out``."""
    from apfed.checkpoint import save_atomic  # a Ctrl-C while writing keeps the previous report whole

    out.mkdir(parents=True, exist_ok=True)
    save_atomic(out / "results.json", json.dumps(report, indent=1).encode())
    s = report["summary"]
    conformal = conformal_note(s)
    regression = report.get("task") == "regression"
    what = "R² is the test R² (1 is perfect, 0 predicts the mean)" if regression else "Accuracy is the test accuracy"
    figures = (
        "; RMSE and MAE (in the target's units) are the final model's, averaged over seeds."
        if regression
        else "; macro-F1 and ROC-AUC (one class against the rest, averaged over the classes; 0–1) are the final"
        " model's, averaged over seeds."
    )
    md = [
        f"# apfed evaluate: {report['dataset']} (active view {report['active_view']})",
        "",
        f"Preset `{report['preset']}`, {report['epochs']} epochs, seeds {report['seeds']}, device "
        f"`{report['device']}`. {what} averaged over "
        f"{averaged_over(report['epochs'], report['eval_last'])}"
        + (", then mean ± std over seeds" if report["seeds"] > 1 else " (one seed: no spread)")
        + (
            "; each seed s >= 1 also drew its own stratified train/test split (seed 0 the data's own), the same for"
            " every method, so the spread includes the split's"
            if report.get("resplit")
            else f"; {report['split']}: each fold tests a later period, trained only on the past (periods tested: "
            + ", ".join(f"{p['test_from']} to {p['test_until']}" for p in report["fold_periods"])
            + "), and the spread is over the folds"
            if report.get("fold_periods")
            else f"; {report['split']}: every labelled row is tested once per method, and the spread is over the folds"
            if report.get("folds")
            else f"; the test rows are the latest ({report['split']}), the same for every seed"
            if report.get("test_split")
            else ""
        )
        + figures
        + (
            f" {PAIRED_COLUMN}: the method's {'R²' if regression else 'accuracy'} minus local's in the run with the"
            " same seed, mean ± std over"
            " seeds, in how many seeds the method is ahead and, in brackets, the 95 % interval of the mean"
            f" difference ({interval_basis(bool(report.get('resplit') or report.get('folds')))})."
            if any("vs_local_mean" in r for r in s.values())
            else ""
        )
        + (
            " With validation rows, a standalone method's accuracy is instead the test accuracy of its model of the"
            " epoch that did best on them."
            if any("best_epoch" in r["final"] for r in report.get("runs", []))
            else ""
        )
        + (
            f" {UNMATCHED_COLUMN}: the final standalone model's accuracy on the active party's test rows that some"
            " passive lacks (the other columns test the rows every party holds)."
            if any("unmatched_accuracy_mean" in r for r in s.values())
            else ""
        )
        + (f" {no_gap(s)}" if no_gap(s) else "")
        + (f" {unlabelled_caption(report['rows']['unlabelled'])}." if report.get("rows", {}).get("unlabelled") else "")
        + (
            f" The validation column is the figure of the same model on the validation rows; {validation_note(s)}."
            if validation_note(s)
            else ""
        )
        + (f" {conformal[0].upper()}{conformal[1:]}." if conformal else "")
        + (
            " On a GPU without `--set deterministic=true` cuDNN's fastest kernels are not deterministic: a seed's run"
            " is not reproducible bit for bit, and its pairing with local carries that noise."
            if str(report["device"]).startswith("cuda") and not report.get("config", {}).get("deterministic")
            else ""
        ),
        "",
        markdown_table(s),
        "",
        f"Machine: {json.dumps(report['machine'])}",
        "",
    ]
    if "apfed" in report:  # reports written before 2026-12-04 have neither
        md[-1:-1] = [
            "",
            f"apfed {report['apfed']}" + (f"; reproduce: `{report['command']}`" if "command" in report else ""),
        ]
    save_atomic(out / "results.md", "\n".join(md).encode())
    paths = [out / "results.json", out / "results.md"]
    try:
        paths.append(_plot(out / "results.png", report))
    except Exception as e:  # a missing plotting backend must not lose the numbers
        print(f"warning: no plot written ({e})")
    return paths


def mean_curve(curves: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Epochs 1..longest and, at each, the mean over the runs that reached it (a run stopped early by its validation
    rows is shorter than the others)."""
    longest = max(map(len, curves))
    padded = np.full((len(curves), longest), np.nan)
    for i, c in enumerate(curves):
        padded[i, : len(c)] = c
    return np.arange(1, longest + 1), np.nanmean(padded, 0)


def _plot(path: Path, report: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = report["summary"]
    names = list(s)
    head = headline_of(s[names[0]])
    name, top = ("test R²", 1.0) if head == "r2" else ("test accuracy (%)", 100)
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, max(4.5, 0.22 * len(names) + 1.5)))  # a bar's label stays legible
    a.barh(
        names,
        [s[n][f"{head}_mean"] for n in names],
        xerr=[s[n][f"{head}_std"] for n in names],
        color=["tab:green" if s[n]["standalone"] else "tab:gray" for n in names],
    )
    a.invert_yaxis()
    a.set_xlabel(name)
    lo = min(s[n][f"{head}_mean"] for n in names)
    floor = max(0, lo - 10) if head == "accuracy" else min(0.0, lo - 0.1)  # R² may be below 0
    a.set_xlim(floor, top)
    a.set_title(f"{HEADLINE_NAMES[head]} per method (green: standalone)")
    by: dict[str, list] = {}
    for r in report["runs"]:
        by.setdefault(r.get("variant", r["method"]), []).append([h[head] for h in r["history"]])
    for i, (m, curves) in enumerate(by.items()):
        b.plot(*mean_curve(curves), label=m, linestyle=("-", "--", ":", "-.")[i // 10 % 4])  # 10 colours a style
    b.set_xlabel("epoch")
    b.set_ylabel(name)
    b.set_ylim(floor, top)
    b.legend()
    b.set_title("learning curves (mean over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
