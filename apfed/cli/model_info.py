"""``apfed export`` and ``apfed info``: the commands that read a standalone model file alone (what it takes, where it
came from, its recipe; its ONNX form)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from apfed.cli.common import _output_file, app
from apfed.errors import ApfedError, ConfigError


@app.command()
def export(
    model: Annotated[Path, typer.Option(help="Standalone model file.")],
    onnx: Annotated[
        Path,
        typer.Option(help="Where to write the ONNX model (raw features in, probabilities out; a regression's values)."),
    ],
):
    """Export a standalone model to ONNX."""
    from apfed.standalone import StandaloneModel

    m = StandaloneModel.load(model)
    _output_file(onnx, {"model file": model})
    try:
        m.export_onnx(onnx)
    except ImportError as e:
        raise ApfedError(f"ONNX export needs the onnx extra: pip install 'apfed[onnx]' ({e})") from None
    typer.echo(f"wrote {onnx}", err=True)


@app.command()
def info(
    model: Annotated[Path, typer.Option(help="Standalone model file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print everything as JSON (for scripts).")] = False,
    recipe: Annotated[
        bool,
        typer.Option(
            "--recipe",
            help="Print the model's recipe as a TOML file for 'apfed train --config' or a deployment's recipe= (add"
            " the data).",
        ),
    ] = False,
):
    """Show what a standalone model takes (view, features, classes) and where it came from (method, data, run)."""
    import hashlib
    import json

    from apfed.standalone import StandaloneModel

    if as_json and recipe:
        raise ConfigError("--json and --recipe print different things: give one")
    d = StandaloneModel.load(model).describe()
    if recipe:
        typer.echo(_recipe_toml(d, model), nl=False)
        return
    d["file"] = {"path": str(model), "bytes": model.stat().st_size}
    d["file"]["sha256"] = hashlib.sha256(model.read_bytes()).hexdigest()
    if as_json:
        typer.echo(json.dumps(d, indent=2))
        return
    typer.echo("\n".join(f"{k:<15} {v}" for k, v in _model_summary(d).items()))


def _recipe_toml(d: dict, model: Path) -> str:
    """``apfed info --recipe``: the options that train the model again, as ``train --config`` reads them."""
    from apfed.recipe_file import recipe_toml

    cfg, p = d["config"], d["provenance"]
    options = {"task": "regression"} if d.get("task") == "regression" else {}
    if p.get("test_rows") == 0:
        options["test-fraction"] = 0.0
    comment = (
        f"# the recipe of {model.name}: {cfg.get('method', 'apfed-kd')} on {p.get('dataset', '?')},"
        f" trained {p.get('trained_at', '?')} with apfed {p.get('apfed_version', '?')}"
    )
    return recipe_toml(cfg, [comment], options)


def _recipe_text(cfg: dict) -> str:
    """``apfed-c[lam=2] (preset default)``: what ``train --method M --preset P`` trains again."""
    from apfed.config import recipe_of

    try:
        preset, method = recipe_of(cfg)
    except (ApfedError, TypeError, ValueError):  # a configuration this apfed cannot read: as it is stored
        return str(cfg.get("method", "?"))
    return f"{method} (preset {preset})"


def _epochs_line(cfg: dict, p: dict) -> str:
    """``60 epochs``; ``29 of 60 epochs (stopped early), the model of epoch 18 (best on the validation rows)``."""
    planned, run = cfg.get("epochs", "?"), p.get("epochs_run")
    epochs = "epoch" if planned == 1 else "epochs"
    if cfg.get("method") == "apfed-kd" and cfg.get("kd_student") == "fresh" and isinstance(planned, int):
        # kd_student=fresh: the teacher's epochs, then the student's (numbered on from them)
        student = planned if run is None else run - planned
        line = f"{planned} {epochs} of the teacher, then {student} of a fresh student"
        line += "" if student == planned else f" (stopped early, of {planned})"
    else:
        line = f"{planned} {epochs}" if run is None or run == planned else f"{run} of {planned} epochs (stopped early)"
    if "best_epoch" in p:
        line += f", the model of epoch {p['best_epoch']} (best on the validation rows)"
    return line


def _table_lines(d: dict) -> dict[str, str]:
    """``apfed info``'s lines on how a model reads a table: its raw columns (categorical ones) and missing values."""
    lines = {}
    if enc := d.get("encoding"):
        cats = enc["categories"]
        cols = [f"{c} (categorical, {len(cats[c])} values)" if c in cats else c for c in enc["columns"]]
        lines["reads columns"] = f"{len(cols)}: " + ", ".join(cols[:8]) + (", ..." if len(cols) > 8 else "")
    if filled := d.get("fills_missing"):
        shown = ", ".join(filled[:8]) + (", ..." if len(filled) > 8 else "")
        lines["missing values"] = f"filled with the training mean in {shown}; missing elsewhere is an error"
    return lines


def _target_line(d: dict) -> dict[str, str]:
    """``apfed info``'s line on what the model predicts: its classes, or a regression's target."""
    if d.get("task") == "regression":
        t = d.get("target") or {}
        of = " of log(1 + y)" if t.get("transform") == "log" else ""
        stats = f"; training mean{of} {t['mean']:.4g}, std {t['std']:.4g}" if {"mean", "std"} <= t.keys() else ""
        return {"predicts": f"a number (regression{stats})"}
    names = d["class_names"]
    return {"classes": f"{len(names)}: {', '.join(map(str, names[:20]))}" + (", ..." if len(names) > 20 else "")}


def _model_summary(d: dict) -> dict[str, str]:
    """The lines of ``apfed info``: the ones a user checks before predicting, then the provenance."""
    p, cfg, cols = d["provenance"], d["config"], d["columns"]
    shown = ", ".join(cols[:8]) + (f", ... ({len(cols)} in all)" if len(cols) > 8 else "") if cols else "(no names)"
    lines = {
        "file": f"{d['file']['path']} ({d['file']['bytes']:,} bytes, sha256 {d['file']['sha256'][:16]}...)",
        "format": f"{d['format']} v{d['format_version']}",
        "view": f"{d['view_name'] or '?'}: {d['spec']['kind']}, shape {tuple(d['spec']['shape'])}",
        "features": f"{d['n_features']}: {shown}",
        **_table_lines(d),
        **_target_line(d),
        "method": f"{_recipe_text(cfg)}, seed {cfg.get('seed', '?')}, {_epochs_line(cfg, p)}",
        "parameters": f"{d['parameters']:,}",
    }
    if "test_r2" in p:
        when = f"the model of epoch {p['best_epoch']}" if "best_epoch" in p else "end of training"
        lines["test R²"] = (
            f"{p['test_r2']:.4f}, RMSE {p['test_rmse']:.4g}, MAE {p['test_mae']:.4g} (the active party's test rows,"
            f" {when})"
        )
    elif "test_accuracy" in p:
        auc = f", ROC-AUC {p['test_roc_auc']:.4f}" if "test_roc_auc" in p else ""
        when = f"the model of epoch {p['best_epoch']}" if "best_epoch" in p else "end of training"
        lines["test accuracy"] = f"{p['test_accuracy']:.2f} %{auc} (the active party's test rows, {when})"
    elif p.get("test_rows") == 0:
        lines["test accuracy"] = "none: trained on every labelled row (test fraction 0); apfed score tests it"
    if "calibration_temperature" in p:
        t = p["calibration_temperature"]
        lines["calibrated"] = f"temperature {t:.3f} on the validation rows (its logits are divided by it)"
    if c := d.get("conformal"):
        log = " in log(1 + y)" if (d.get("target") or {}).get("transform") == "log" else ""
        what = (
            f"intervals: the prediction ± {c['q']:.4g}{log}"
            if d.get("task") == "regression"
            else f"sets: the classes of probability at least {max(0.0, 1 - c['q']):.4f}, and the predicted one"
        )
        held = p.get("test_conformal_coverage")
        held = f"; {held:.1f} % of the test rows held the truth" if held is not None else ""
        lines["conformal"] = f"{c['coverage'] * 100:g} % {what} (from {c['rows']:,} validation rows{held})"
    if d.get("profile_rows"):
        lines["profile"] = f"the columns of {d['profile_rows']:,} training rows (apfed drift compares new rows with it)"
    if out := d.get("output_profile_rows"):
        lines["outputs"] = (
            f"its outputs on {out['rows']:,} {out['source']} rows (apfed drift compares its outputs on new rows"
            " with them)"
        )
    if "passives" in p:
        names = ", ".join(p["passives"]) or "none"
        lines["trained with"] = f"{len(p['passives'])} passive(s): {names}"
    if "train_rows" in p:
        apart = p.get("unmatched_validation_rows", 0)  # validation rows among those that some passive lacks
        val = f"{p['validation_rows']:,} validation, " if p.get("validation_rows") and not apart else ""
        lines["rows"] = f"{p['train_rows']:,} training, {val}{p['test_rows']:,} test (aligned with every passive)"
        if p.get("unlabelled_train_rows"):
            lines["rows"] += f"; {p['unlabelled_train_rows']:,} of the training rows had no label"
        if p.get("unmatched_train_rows"):
            lines["rows"] += f"; {p['unmatched_train_rows']:,} more training rows that some passive lacks"
        if apart:
            aligned = p["validation_rows"] - apart
            lines["rows"] += (
                f"; {p['validation_rows']:,} validation rows ({aligned:,} aligned with every passive, {apart:,} that"
                " some passive lacks)"
            )
    if t := p.get("test_split"):
        from apfed.data.timesplit import time_split_text

        lines["split"] = time_split_text(t)
    for key, label in (("dataset", "data"), ("transport", "transport"), ("run_id", "run id")):
        if key in p:
            lines[label] = str(p[key])
    if "trained_at" in p:
        lines["trained"] = f"{p['trained_at']} with apfed {p.get('apfed_version', '?')}"
    return lines
