"""Console tables of a standalone model scored, explained or watched for drift (apfed score, predict --explain,
drift): rich tables built from the reports those commands return."""

from __future__ import annotations

from pathlib import Path

MAX_CONFUSION_CLASSES = 20  # a wider confusion matrix does not fit a terminal; --json has it whole
MAX_UNSEEN_ROWS = 10  # labels that are no class of the model, each a row of the per-class table
MAX_IMPORTANCE_ROWS = 20  # the most important columns shown; --json has them all


def _cutoff_table(c: dict):
    """How flagging ``c["class"]`` at each cut-off of its probability does on the scored rows."""
    from rich.markup import escape
    from rich.table import Table

    best = c["best_f1"]
    table = Table(
        title=escape(f"cut-offs for class {c['class']!r}"),
        caption=escape(
            f"flagged: rows whose probability of {c['class']!r} is at least the cut-off. The best F1 here is at"
            f" {best['cutoff']:.4f} (chosen on these rows, so optimistic on them): apfed predict --threshold"
            f" '{c['class']}={best['cutoff']:.4f}'"
        ),
    )
    for col in ("cut-off", "flagged", "precision (%)", "recall (%)", "F1 (%)"):
        table.add_column(col, justify="right")
    for r in [*c["cutoffs"], best]:
        cells = ("–" if r[k] is None else f"{r[k]:.2f}" for k in ("precision", "recall", "f1"))
        label = f"{r['cutoff']:.4f} (best F1)" if r is best else f"{r['cutoff']:.1f}"
        table.add_row(label, f"{r['flagged']:,}", *cells)
    return table


def score_tables(report: dict, title: str, repeats: int = 5, model_name: str = "model") -> list:
    """rich tables of ``apfed.scoring.score_report``'s report: the overall metrics, each class, and the confusion
    matrix (left out beyond ``MAX_CONFUSION_CLASSES`` classes); with ``against``, the two models side by side."""
    from rich.markup import escape
    from rich.table import Table

    m = report["metrics"]
    positive = report["positive_class"]
    caption = f"average precision of class {positive!r}, the rarer here" if positive and "roc_auc" in m else None
    if "threshold" in report:
        t = report["threshold"]
        cut = f"predictions: {t['class']!r} wherever its probability is at least {t['cutoff']:g}"
        caption = f"{caption}; {cut}" if caption else cut
    overall = Table(title=escape(title), caption=caption and escape(caption))
    for col in ("rows", "accuracy (%)", "macro-F1 (%)", "weighted-F1 (%)", "ROC-AUC", "average precision", "log-loss"):
        overall.add_column(col, justify="right")
    ranked = [f"{m[k]:.4f}" if k in m else "–" for k in ("roc_auc", "average_precision", "log_loss")]
    overall.add_row(
        f"{report['rows']:,}", f"{m['accuracy']:.2f}", f"{m['macro_f1']:.2f}", f"{m['weighted_f1']:.2f}", *ranked
    )
    per_class = Table(
        title="each class", caption="rows: labelled so; predicted: given the class by the model; –: no such row"
    )
    per_class.add_column("class")
    for col in ("rows", "predicted", "precision (%)", "recall (%)", "F1 (%)"):
        per_class.add_column(col, justify="right")
    unseen = [c for c in report["classes"] if not c["known_to_model"]]
    for c in [c for c in report["classes"] if c["known_to_model"]] + unseen[:MAX_UNSEEN_ROWS]:
        name = c["class"] if c["known_to_model"] else f"{c['class']} (not a class of the model)"
        per_class.add_row(
            escape(name),
            f"{c['rows']:,}",
            f"{c['predicted']:,}",
            *("–" if c[k] is None else f"{c[k]:.2f}" for k in ("precision", "recall", "f1")),
        )
    if len(unseen) > MAX_UNSEEN_ROWS:
        rest = unseen[MAX_UNSEEN_ROWS:]
        per_class.add_row(
            f"{len(rest)} more labels that are no class of the model", f"{sum(c['rows'] for c in rest):,}"
        )
    tables = [overall, per_class]
    conf = report["confusion"]
    if len(conf["true"]) <= MAX_CONFUSION_CLASSES:
        matrix = Table(title="confusion matrix")
        matrix.add_column("label \\ predicted")
        for name in conf["predicted"]:
            matrix.add_column(escape(name), justify="right")
        for name, counts in zip(conf["true"], conf["counts"], strict=True):
            matrix.add_row(escape(name), *(f"{n:,}" for n in counts))
        tables.append(matrix)
    if report.get("cutoffs"):
        tables.append(_cutoff_table(report["cutoffs"]))
    if "importance" in report:
        tables.append(importance_table(report["importance"], repeats))
    if "against" in report:
        tables.append(_against_table(report, model_name))
    return tables


def importance_table(ranked: list[dict], repeats: int):
    """A rich table of ``permutation_importance``'s columns, the most important first: the accuracy (a regression's
    R²) lost when each is shuffled."""
    from rich.markup import escape
    from rich.table import Table

    regression = bool(ranked) and "r2_drop" in ranked[0]
    key, what = ("r2_drop", "R²") if regression else ("accuracy_drop", "accuracy")
    shown = ranked[:MAX_IMPORTANCE_ROWS]
    more = f"; {len(ranked) - len(shown)} more in --json" if len(ranked) > len(shown) else ""
    imp = Table(
        title="columns by importance",
        caption=f"{what} lost when the column's values are shuffled across the rows, mean ± std of {repeats}"
        f" shuffles{more}",
    )
    imp.add_column("column")
    imp.add_column("R² drop" if regression else "accuracy drop (points)", justify="right")
    digits = 4 if regression else 2
    for r in shown:
        imp.add_row(escape(r["column"]), f"{r[key]:.{digits}f} ± {r['std']:.{digits}f}")
    return imp


def drift_table(
    rows: list[dict], names: dict[str, list[str]], most: int = MAX_IMPORTANCE_ROWS, outputs: str | None = None
):
    """``apfed drift``'s table: each column's PSI against the training rows, the largest first, with what moved
    (a numeric column's median, a categorical column's category whose share moved most; ``names``: each
    categorical column's categories) and the shares missing. ``outputs``: the rows are the model's outputs, against
    its outputs on these rows (test, validation or training)."""
    from rich.markup import escape
    from rich.table import Table

    shown = rows[:most]
    more = f"; {len(rows) - len(shown)} more in --json" if len(rows) > len(shown) else ""
    old = outputs or "training"
    t = Table(
        title=f"the model's outputs against its outputs on the {outputs} rows"
        if outputs
        else "columns against the training rows",
        caption=f"PSI: population stability index over the {old} deciles (a category's shares); below 0.1"
        f" stable, 0.1-0.25 moved, above 0.25 shifted{more}",
    )
    first = "output" if outputs else "column"
    for name, justify in ((first, "left"), ("PSI", "right"), ("", "left"), (f"{old} → new", "left")):
        t.add_column(name, justify=justify)
    if not outputs:
        t.add_column("missing, training → new", justify="right")
    for r in shown:
        if r["kind"] == "numeric":
            old, new = r["train_median"], r["new_median"]
            what = f"median {_num(old)} → {_num(new)}"
        else:
            category = names[r["column"]][r["most_moved"]] if names.get(r["column"]) else "?"
            what = f"{escape(category)}: {r['train_share']:.1%} → {r['new_share']:.1%}"
        style = {"shifted": "bold red", "moved": "yellow"}.get(r["verdict"], "")
        missing = [] if outputs else [f"{r['train_missing']:.1%} → {r['new_missing']:.1%}"]
        t.add_row(
            escape(r["column"]),
            f"{r['psi']:.3f}",
            f"[{style}]{r['verdict']}[/]" if style else r["verdict"],
            what,
            *missing,
        )
    return t


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if 1e4 <= abs(x) < 1e15 else f"{x:.4g}"  # an income as 42,013, not 4.2e+04


def _against_table(report: dict, model_name: str):
    """``apfed score --against``: both models' metrics on the same rows, and what the difference is worth."""
    from rich.markup import escape
    from rich.table import Table

    other, c = report["against"], report["against"]["comparison"]
    lo, hi = c["ci95"]
    caption = (
        f"accuracy difference {c['accuracy_difference']:+.2f} points (95 % interval {lo:+.2f} to {hi:+.2f}); only"
        f" the first right on {c['only_first_right']:,} rows, only the second on {c['only_second_right']:,};"
        f" McNemar's exact test p = {c['mcnemar_p']:.3g}"
        + (" (a difference this large is unlikely if the two are equally accurate)" if c["mcnemar_p"] < 0.05 else "")
    )
    t = Table(title=f"two models on the same {c['rows']:,} rows", caption=escape(caption))
    t.add_column("model")
    for col in ("accuracy (%)", "macro-F1 (%)", "ROC-AUC", "log-loss"):
        t.add_column(col, justify="right")
    for name, m in ((model_name, report["metrics"]), (Path(other["model"]).name, other["metrics"])):
        ranked = [f"{m[k]:.4f}" if k in m else "–" for k in ("roc_auc", "log_loss")]
        t.add_row(escape(name), f"{m['accuracy']:.2f}", f"{m['macro_f1']:.2f}", *ranked)
    return t


def group_table(by: dict, regression: bool):
    """A rich table of ``apfed score --by``'s groups (``apfed.scoring.classification_groups`` or
    ``regression_groups``), the largest first."""
    from rich.markup import escape
    from rich.table import Table

    groups = by["groups"]
    held = "conformal_coverage" in groups[0]
    flagged = by.get("flagged_class")
    caption = None
    if flagged is not None:
        caption = (
            f"flagged: the share of the group's rows predicted {flagged!r}; its recall: the share of the group's"
            f" {flagged!r} rows predicted so"
        )
    t = Table(title=escape(f"by {by['column']}"), caption=caption and escape(caption))
    t.add_column(escape(by["column"]))
    if regression:
        cols = ["rows", "R²", "RMSE", "MAE", "mean label", "mean prediction"]
    else:
        cols = ["rows", "accuracy (%)", "macro-F1 (%)", "ROC-AUC"] + (
            [f"flagged {flagged!r} (%)", f"recall of {flagged!r} (%)"] if flagged is not None else []
        )
    for col in cols + (["conformal held (%)"] if held else []):
        t.add_column(escape(col), justify="right")

    def num(v, fmt: str) -> str:
        return "–" if v is None else format(v, fmt)

    for g in groups:
        if regression:
            cells = [num(g["r2"], ".4f"), num(g["rmse"], ".4g"), num(g["mae"], ".4g")]
            cells += [num(g["target_mean"], ".4g"), num(g["prediction_mean"], ".4g")]
        else:
            cells = [num(g["accuracy"], ".2f"), num(g["macro_f1"], ".2f"), num(g.get("roc_auc"), ".4f")]
            if flagged is not None:
                cells += [num(g["flagged_rate"], ".1f"), num(g["flagged_recall"], ".1f")]
        t.add_row(
            escape(g["value"]), f"{g['rows']:,}", *cells, *([num(g["conformal_coverage"], ".1f")] if held else [])
        )
    return t
