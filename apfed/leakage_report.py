"""What a run let each party infer (apfed leakage): the attack report as rich and markdown tables and a summary."""

from __future__ import annotations

LEAKAGE_HEADER = [
    "method",
    "test",
    "passive",
    "labels: chance",
    "its own features",
    "its trained encoder",
    "what it received",
    "new rows: own · its encoder",
    "features R²: active's own",
    "what it sent",
]


def leakage_rows(report: dict) -> list[list[str]]:
    def pct(v: float | None) -> str:
        return "–" if v is None else f"{v:.1f}"

    def r2(v: float | None) -> str:
        return "–" if v is None else f"{v:.3f}"

    rows = []
    for run in report["runs"]:
        regression = run.get("task") == "regression"
        score = r2 if regression else pct
        test = f"R² {r2(run['test'].get('r2'))}" if regression else f"{pct(run['test'].get('accuracy'))} %"
        for p in run["passives"]:
            lab, feat = p["labels"], p["features"]
            new = lab.get("new_rows") or {}  # reports written before 2026-12-05 have none
            rows.append(
                [
                    run["method"],
                    test,
                    p["passive"],
                    score(lab["chance"]),
                    score(lab["own_features"]),
                    score(lab["own_encoder"]),
                    score(lab["received"]) + _epoch(lab["received_epoch"]),
                    f"{score(new.get('own_features'))} · {score(new.get('own_encoder'))}",
                    r2(feat["active_features"]),
                    r2(feat["received"]) + _epoch(feat["received_epoch"]),
                ]
            )
    return rows


def leakage_summary(report: dict) -> list[str]:
    """One line per method: the largest gain of each attack over what the attacking party's own data gave, and
    the passive it came from (points for labels, R² for a regression's target and for features)."""
    lines = []
    for run in report["runs"]:
        regression = run.get("task") == "regression"
        unit = (lambda v: f"{v:+.2f} R²") if regression else (lambda v: f"{v:+.1f} points")
        gains = {"received": [], "new": [], "features": []}
        for p in run["passives"]:
            lab, feat, new = p["labels"], p["features"], p["labels"].get("new_rows") or {}
            if lab["received"] is not None:
                gains["received"].append((lab["received"] - lab["own_features"], p["passive"]))
            if new.get("own_encoder") is not None:
                gains["new"].append((new["own_encoder"] - new["own_features"], p["passive"]))
            if feat["received"] is not None:
                gains["features"].append((feat["received"] - feat["active_features"], p["passive"]))
        parts = []
        verb = "predicts the target of" if regression else "labels"
        what = {
            "received": (f"a passive {verb} its training rows from what it received", unit),
            "new": (f"its trained encoder {verb} new rows", unit),
            "features": ("the active party predicts a passive's features", lambda v: f"{v:+.2f} R²"),
        }
        for key, (text, fmt) in what.items():
            if gains[key]:
                gain, who = max(gains[key])
                parts.append(
                    f"{text} at up to {fmt(gain)} over its own data ({who})"
                    if gain > 0
                    else f"{text} no better than from its own data"
                )
        if parts:
            lines.append(f"{run['method']}: " + "; ".join(parts))
    return lines


def _epoch(epoch: int | None) -> str:
    return "" if epoch is None else f" ({epoch})"


def leakage_caption(report: dict) -> str:
    """What ``apfed leakage``'s figures are."""
    dp = report["dp"]
    noise = f"DP clip {dp['clip']:g}, noise {dp['noise']:g}" if dp["clip"] else "no DP noise"
    return (
        f"{report['dataset']}, active view {report['active_view']}, {report['epochs']} epochs, seed {report['seed']},"
        f" {noise}. Labels: the accuracy (%) with which the passive labels the training rows it was sent, from"
        f" {report['known_labels_per_class']} known labels per class (logistic regression; a regression's target: the"
        f" R² from the targets of {report['known_rows']:.0%} of the rows, ridge regression), with its own features,"
        " its encoder as the run trained it, or what the active party sent it. New rows: the same attack, fitted on"
        " the same known rows, labelling the test rows (rows the run never trained on: future customers) from the"
        " passive's own features or its trained encoder, which it keeps after the run. Features: the R² with which"
        " the active party predicts the passive's features on the training rows, knowing them on"
        f" {report['known_rows']:.0%} of the rows (ridge regression), from its own features or from what the passive"
        " sent it. What was sent is that of the first, the middle or the last epoch, whichever served the attack best"
        " (in brackets). A figure above the one from the party's own data is what the run let it learn."
    )


def leakage_table(report: dict):
    """``apfed leakage``'s console table."""
    from rich.markup import escape
    from rich.table import Table

    t = Table(title="what each party could infer from the run", caption=leakage_caption(report))
    for i, name in enumerate(LEAKAGE_HEADER):
        t.add_column(name, justify="left" if i in (0, 2) else "right")
    for row in leakage_rows(report):
        t.add_row(*map(escape, row))
    return t


def leakage_markdown(report: dict) -> str:
    """``apfed leakage``'s report as markdown: the table, what it measures, and the command."""
    lines = ["# What each party could infer from the run", "", f"`{report['command']}`", ""]
    return "\n".join([*lines, *leakage_markdown_table(report)])


def leakage_markdown_table(report: dict) -> list[str]:
    """The lines of ``apfed leakage``'s markdown table, its caption, and the summary lines (``leakage_summary``)."""
    lines = ["| " + " | ".join(LEAKAGE_HEADER) + " |", "|---" * len(LEAKAGE_HEADER) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in leakage_rows(report)] + ["", leakage_caption(report), ""]
    if summary := leakage_summary(report):
        lines += ["The largest gains over each party's own data:", "", *(f"- {s}" for s in summary), ""]
    return lines
