"""``apfed predict``, ``apfed score`` and ``apfed drift``: the commands that use a standalone model file on rows of
data (``export`` and ``info``, which read the file alone: ``model_info``)."""

from __future__ import annotations

import csv
import functools
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from apfed.cli.common import THRESHOLD_HELP, _output_file, app
from apfed.errors import ConfigError, DataError

STDIN = Path("-")
_spooled: dict[Path, str] = {}  # a spooled standard input's file -> the name its messages give it


def _shown(path: Path) -> Path | str:
    """How messages name an input file: 'stdin' for standard input (its temporary copy), else the path."""
    return _spooled.get(path, path)


def _name(path: Path) -> str:
    """A file's name in a table's title: 'stdin' for standard input."""
    return _spooled.get(path, path.name)


def reads_stdin(command: Callable) -> Callable:
    """A command whose ``--input -`` reads standard input: kept in a temporary file for the command (an NPZ
    archive by its first bytes, else CSV text), which the command's messages call 'stdin'."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        if kwargs.get("input") != STDIN:
            return command(*args, **kwargs)
        if sys.stdin is None or sys.stdin.isatty():
            raise ConfigError("--input - reads standard input, which is a terminal here; pipe the rows in")
        with tempfile.TemporaryDirectory(prefix="apfed-stdin-") as folder:
            spool = Path(folder) / "stdin"
            with spool.open("wb") as f:
                shutil.copyfileobj(sys.stdin.buffer, f)
            with spool.open("rb") as f:
                suffix = ".npz" if f.read(4) == b"PK\x03\x04" else ".csv"
            spool = spool.rename(spool.with_suffix(suffix))
            _spooled[spool] = "stdin"
            try:
                return command(*args, **(kwargs | {"input": spool}))
            except (DataError, ConfigError) as e:
                raise type(e)(str(e).replace(str(spool), "stdin")) from None
            finally:
                del _spooled[spool]

    return run


@contextmanager
def _echoed_warnings(path: Path) -> Iterator[None]:
    """The warnings of a model reading ``path``'s rows, each said once on stderr as ``warning: PATH: ...``, not
    as Python's warning lines."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for message in dict.fromkeys(str(w.message) for w in caught):
        typer.echo(f"warning: {_shown(path)}: {message}", err=True)


def _read_input(
    path: Path, model, id_column: str, required: bool = False, label_column: str | None = None, complete: bool = True
) -> tuple[np.ndarray | None, np.ndarray]:
    """The IDs (None when the input has no ``id_column``; an error if ``required``) and the feature rows; a
    ``label_column`` is never read as a feature. ``complete``: a missing value the model cannot fill is an error
    (a prediction needs it); else it stays NaN."""
    if not path.is_file():
        raise DataError(f"input file not found: {path}")
    if path.suffix.lower() == ".npz":
        from apfed.data.files import open_npz

        z = open_npz(path)
        if "X" not in z.files:
            raise DataError(f"{path}: an NPZ input needs a feature array named 'X'")
        if required and id_column not in z.files:
            raise DataError(f"{path}: no ID array {id_column!r} (arrays: {', '.join(z.files)})")
        ids = np.asarray(z[id_column]).astype(str) if id_column in z.files else None
        try:
            X = np.asarray(z["X"], dtype=np.float32)
        except (ValueError, TypeError):
            hint = " (its encoded features; or give a CSV file with its categorical columns as text)"
            raise DataError(f"{path}: the feature array 'X' must be numeric{hint if model.encoding else ''}") from None
        _check_finite(path, X, ids, None, model.preprocessor.missing if complete else True)
        return ids, X
    from apfed.data.files import read_csv_columns, read_csv_header

    header = read_csv_header(path)
    if required and id_column not in header:
        more = ", ..." if len(header) > 8 else ""
        raise DataError(f"{path}: no ID column {id_column!r} (columns: {', '.join(header[:8])}{more})")
    try:
        take, positional = model.feature_positions(header, skip=(id_column, label_column or id_column))
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    with_id = [header.index(id_column)] if id_column in header else []
    categorical = model.encoding.categories if model.encoding else {}
    text = [j for j, c in zip(take, model.raw_columns, strict=False) if c in categorical]
    numeric = [j for j in take if j not in text]
    strings, X, _ = read_csv_columns(path, header, with_id + text, numeric)
    if positional:  # after the read: a file that fails says one line, the error
        typer.echo(
            f"warning: {_shown(path)}: no column is named as in training; its {len(take)} other columns were read in"
            " order as the model's features",
            err=True,
        )
    ids = strings[0] if with_id else None
    if model.encoding:
        with _echoed_warnings(path):
            X = model.encode(X, {header[j]: v for j, v in zip(text, strings[len(with_id) :], strict=True)})
    names = model.columns if model.encoding else [header[j] for j in take]
    _check_finite(path, X, ids, names, model.preprocessor.missing if complete else True)
    return ids, X


def _check_finite(
    path: Path, X: np.ndarray, ids: np.ndarray | None, names: list[str] | None, missing: list[int] | bool
) -> None:
    """A prediction needs every feature but those the model fills (``missing``: features that had missing values
    in training; True: any may be missing): name the first row (CSV: its line, the header being line 1) and column
    that lack one, and how many rows do; an infinite value is never read."""
    from apfed.data.views import first_nonfinite

    found = first_nonfinite(X, missing_ok=missing)
    if found is None:
        return
    r, c, n = found
    where = (f"line {r + 2}" if names else f"row {r}") + (f" (id {ids[r]})" if ids is not None else "")
    column = f"column {names[c]!r}" if names else f"feature {c}"
    more = f"; {n} rows lack a feature" if n > 1 else ""
    if np.isinf(X.reshape(len(X), -1)[r, c]):
        raise DataError(f"{path}: {where}, {column}: an infinite value, and the model needs every feature{more}")
    raise DataError(
        f"{path}: {where}, {column}: no value (empty, NA or NaN); training had none missing in this column, so the"
        f" model needs it{more}"
    )


@app.command()
@reads_stdin
def predict(
    model: Annotated[Path, typer.Option(help="Standalone model file from 'apfed train'.")],
    input: Annotated[
        Path, typer.Option("--input", help="Active-view CSV (or NPZ with 'X'); '-' reads standard input.")
    ],
    output: Annotated[
        Path, typer.Option(help="Where to write the predictions CSV; '-' writes them to standard output.")
    ] = Path("predictions.csv"),
    id_column: Annotated[
        str | None,
        typer.Option(help="ID column to carry into the output (default: 'id' when the input has one)."),
    ] = None,
    threshold: Annotated[str | None, typer.Option(help=THRESHOLD_HELP)] = None,
    explain: Annotated[
        int,
        typer.Option(
            help="Also write each row's N columns that moved its prediction most from the average training row's"
            " (integrated gradients; tabular models): reason_1, effect_1, ... and the average row's value, baseline."
            " A classification's effects are on the predicted class's probability (with --threshold C=T, on C's),"
            " named in the column explained; a regression's on its value.",
            min=0,
        ),
    ] = 0,
):
    """Predict from the active party's data alone: no passive party, no Flower, no network."""
    from apfed.scoring import parse_threshold, thresholded
    from apfed.standalone import StandaloneModel

    m = StandaloneModel.load(model)
    if m.regression and threshold is not None:
        raise ConfigError("--threshold picks a class; this regression model predicts numbers")
    if explain and m.spec["kind"] != "tabular":
        raise ConfigError("--explain names columns, for tabular models (an image strip's pixels are no columns)")
    cut = None if threshold is None else parse_threshold(threshold, m.class_names)
    if output != STDIN:
        _output_file(output, {"input file": input, "model file": model})
    required, id_column = id_column is not None, id_column or "id"
    ids, X = _read_input(input, m, id_column, required)
    with _echoed_warnings(input):
        proba = m.predict(X)[:, None] if m.regression else m.predict_proba(X)
    if m.regression:  # one column, the predicted value (as many significant digits as float32 holds)
        pred, proba = [f"{v:.7g}" for v in proba[:, 0]], proba[:, :0]
    else:
        pred = m.classes_[proba.argmax(1) if cut is None else thresholded(proba, *cut)]
    bounds_header, bounds = _conformal_columns(m, X)
    header, extra = _explanations(m, X, explain, None if cut is None else m.class_names[cut[0]])
    header = [f"p_{c}" for c in m.class_names] + bounds_header + header  # a regression has no p_ columns

    def write(f) -> None:
        w = csv.writer(f)
        w.writerow(([id_column] if ids is not None else []) + ["prediction"] + header)
        for i in range(len(pred)):
            cells = [f"{p:.6f}" for p in proba[i]] + bounds(i) + extra(i)
            w.writerow(([ids[i]] if ids is not None else []) + [pred[i]] + cells)

    if output == STDIN:
        write(sys.stdout)
        sys.stdout.flush()  # a reader gone away fails here, as an EPIPE the CLI ends quietly on
    else:
        from apfed.checkpoint import atomic_file

        with atomic_file(output) as tmp, tmp.open("w", newline="") as f:  # a failed write keeps an earlier file
            write(f)
    shown = min(explain, len(m.raw_columns) or m.n_features)
    explained = "" if not explain else f", each with the {shown} column{'s' if shown > 1 else ''} that moved it most"
    where = "standard output" if output == STDIN else output
    typer.echo(f"wrote {len(pred)} predictions{explained} to {where}{_repeated_ids(ids, id_column)}", err=True)


def _repeated_ids(ids: np.ndarray | None, id_column: str) -> str:
    """A note for predict's last line when IDs repeat (each row still gets its own prediction, but a join on the
    ID downstream would pair them wrongly); empty otherwise."""
    from apfed.data.files import repeated_ids

    if ids is None or (repeated := repeated_ids(ids)) is None:
        return ""
    first, times, n = repeated
    return (
        f" (note: {n} value{'s' if n > 1 else ''} of {id_column!r} appear{'' if n > 1 else 's'} more than once,"
        f" {first!r} {times} times: each row has its own prediction)"
    )


def _conformal_columns(m, X: np.ndarray) -> tuple[list[str], Callable[[int], list[str]]]:
    """A model trained with ``conformal``: its interval (``lower``, ``upper``) or set of classes
    (``prediction_set``, the names joined by ``|``) per row; their header, and row i's cells."""
    if not m.conformal:
        return [], lambda i: []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # predicting has shown them
        if m.regression:
            bounds = m.predict_interval(X)
            return ["lower", "upper"], lambda i: [f"{bounds[i, 0]:.7g}", f"{bounds[i, 1]:.7g}"]
        sets = m.predict_set(X)
    names = m.classes_
    return ["prediction_set"], lambda i: ["|".join(names[sets[i]])]


def _explanations(m, X: np.ndarray, k: int, target: str | None) -> tuple[list[str], Callable[[int], list[str]]]:
    """``predict --explain K``'s extra columns: their header, and row i's cells (none when ``k`` is 0)."""
    if not k:
        return [], lambda i: []
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as progress, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # predicting has shown them
        task = progress.add_task(f"explaining {len(X)} predictions", total=len(X))
        e = m.explain(X, target=target, progress=lambda n: progress.advance(task, n))
    names, effects = e.top(k)
    number = "{:.7g}" if m.regression else "{:+.6f}"  # a value in the target's units, or a probability's change
    header = ([] if m.regression else ["explained"]) + ["baseline"]
    header += [f"{what}_{j + 1}" for j in range(names.shape[1]) for what in ("reason", "effect")]

    def cells(i: int) -> list[str]:
        row = ([] if m.regression else [str(e.explained[i])]) + [number.format(e.baseline[i]).lstrip("+")]
        return row + [c for j in range(names.shape[1]) for c in (names[i, j], number.format(effects[i, j]))]

    return header, cells


def _read_labels(
    path: Path, label_column: str, id_column: str | None, what: str = "label"
) -> tuple[np.ndarray | None, np.ndarray]:
    """A file's label column (or another: ``what`` names it in errors) as text, and its ID column (with
    ``id_column``: an error when it is missing)."""
    if not path.is_file():
        raise DataError(f"labels file not found: {path}")
    if path.suffix.lower() == ".npz":
        from apfed.data.files import open_npz

        z = open_npz(path)
        for name, kind in ((label_column, what), (id_column, "ID")):
            if name is not None and name not in z.files:
                raise DataError(f"{path}: no {kind} array {name!r} (arrays: {', '.join(z.files)})")
        labels = np.asarray(z[label_column])
        if labels.ndim != 1:
            raise DataError(f"{path}: the {what} array {label_column!r} must be 1-D, got shape {labels.shape}")
        return (np.asarray(z[id_column]).astype(str) if id_column else None), labels.astype(str)
    from apfed.data.files import read_csv_columns, read_csv_header

    header = read_csv_header(path)
    for name, kind in ((label_column, what), (id_column, "ID")):
        if name is not None and name not in header:
            more = ", ..." if len(header) > 8 else ""
            raise DataError(f"{path}: no {kind} column {name!r} (columns: {', '.join(header[:8])}{more})")
    wanted = [header.index(label_column)] + ([header.index(id_column)] if id_column else [])
    strings, _, _ = read_csv_columns(path, header, wanted, [])
    return (strings[1] if id_column else None), strings[0]


@app.command()
@reads_stdin
def score(
    model: Annotated[Path, typer.Option(help="Standalone model file from 'apfed train'.")],
    input: Annotated[
        Path,
        typer.Option("--input", help="Active-view CSV (or NPZ with 'X') with known labels; '-' reads standard input."),
    ],
    label_column: Annotated[
        str, typer.Option(help="The labels' column (in --labels when given, else in --input).")
    ] = "label",
    labels: Annotated[
        Path | None,
        typer.Option(help="A separate CSV or NPZ of IDs and labels, matched to --input's rows by --id-column."),
    ] = None,
    id_column: Annotated[
        str | None, typer.Option(help="ID column (default: 'id' when the input has one; needed with --labels).")
    ] = None,
    importance: Annotated[
        bool,
        typer.Option(
            "--importance",
            help="Also rank the model's columns: the accuracy (a regression's R²) lost when a column's values are"
            " shuffled across the rows (tabular models).",
        ),
    ] = False,
    repeats: Annotated[int, typer.Option(min=1, help="Shuffles per column for --importance.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of --importance's shuffles.")] = 0,
    threshold: Annotated[str | None, typer.Option(help=THRESHOLD_HELP)] = None,
    against: Annotated[
        Path | None,
        typer.Option(
            help="Another standalone model to compare with --model on the same rows (the model in use against a new"
            " one): both scored, the accuracy difference with its 95 % interval, and McNemar's exact test."
        ),
    ] = None,
    by: Annotated[
        str | None,
        typer.Option(
            help="Also score each group of rows that share a value of this column of --input (a region, a sex, an"
            " age band; any column, used by the model or not; at most 50 values): accuracy, macro-F1 and ROC-AUC (a"
            " regression's R², RMSE, MAE and mean label and prediction), and how a conformal model's ranges held.",
        ),
    ] = None,
    bins: Annotated[
        int,
        typer.Option(
            min=0,
            help="With --by a column of numbers (an age, an income) or of ISO dates: cut it into this many bands of"
            " about equal rows (periods, for dates), each named by its range.",
        ),
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole report as JSON (for scripts).")] = False,
):
    """Score a standalone model on labelled rows of the active party's own data.

    Accuracy, F1, ROC-AUC, each class's precision and recall, and the confusion matrix.
    Rows without a label are left out."""
    import json

    from apfed.data.encoding import is_missing
    from apfed.scoring import label_indices, paired_comparison, parse_threshold, predictions, score_report
    from apfed.standalone import StandaloneModel

    m = StandaloneModel.load(model)
    if m.regression and threshold is not None:
        raise ConfigError("--threshold is for classifiers; this model is a regression (R², RMSE and MAE)")
    cut = None if threshold is None else parse_threshold(threshold, m.class_names)
    other = None if against is None else StandaloneModel.load(against)
    if other is not None and other.regression != m.regression:
        raise ConfigError(
            f"--against {against} is a {other.task} model and --model a {m.task} one: compare like with like"
        )
    other_cut = None
    if threshold is not None and other is not None:
        try:
            other_cut = parse_threshold(threshold, other.class_names)
        except DataError as e:
            raise DataError(f"{e} (the --against model)") from None
    if importance and m.spec["kind"] != "tabular":
        raise ConfigError("--importance ranks the columns of a tabular model; this model reads an image strip")
    if bins and by is None:
        raise ConfigError("--bins cuts the --by column into bands: give --by COLUMN as well")
    if by is not None and other is not None:
        raise ConfigError("--by scores one model group by group; score --against without it")
    required, id_column = id_column is not None or labels is not None, id_column or "id"
    ids, X = _read_input(input, m, id_column, required, None if labels else label_column)
    notes = []  # said once the rows are scored: before, an error is the only line
    if labels is None:
        _, y = _read_labels(input, label_column, None)
    else:
        label_ids, label_values = _read_labels(labels, label_column, id_column)
        found = dict(zip(label_ids.tolist(), label_values.tolist(), strict=True))
        if len(found) < len(label_ids):
            raise DataError(f"{labels}: the ID column {id_column!r} has duplicate values")
        y = np.asarray([found.get(i, "") for i in ids.tolist()], dtype=str)
        if not (matched := len(set(ids.tolist()) & found.keys())):
            raise DataError(f"no ID of {_shown(input)} is in {labels} (ID column {id_column!r})")
        notes.append(f"{labels}: labels for {matched:,} of the {len(ids):,} rows of {_shown(input)}")
    by_values = None if by is None else _read_labels(input, by, None, what="--by")[1]
    unlabelled = is_missing(y)
    if unlabelled.all():
        raise DataError(f"{labels or input}: no row has a label in column {label_column!r}")
    if unlabelled.any():
        n = int(unlabelled.sum())
        notes.append(
            f"warning: {n:,} row{'s have' if n > 1 else ' has'} no label and {'are' if n > 1 else 'is'} left out"
        )
    keep = ~unlabelled
    if (line := _drift_note(m, X[keep])) is not None:
        notes.append(line)
    if m.regression:
        X_other = None
        if other is not None:
            _, X_other = _read_input(input, other, id_column, required, None if labels else label_column)
        importance_args = (repeats, seed) if importance else None
        against_args = None if other is None else (other, against, X_other[keep])
        by_args = None if by is None else (by, by_values[keep], bins)
        _regression_score(m, X[keep], y[keep], model, input, notes, as_json, importance_args, against_args, by_args)
        return
    index, unseen = label_indices(y[keep], m.class_names)
    with _echoed_warnings(input):
        proba = m.predict_proba(X[keep])
    report = score_report(index, proba, m.class_names, unseen, cut)
    if m.conformal:
        from apfed.conformal import prediction_sets, set_hits

        covered, sizes = set_hits(prediction_sets(proba, m.conformal["q"]), index)
        report["conformal"] = _conformal_report(m, covered, sizes)
    if by is not None:
        from apfed.scoring import add_group_coverage, classification_groups, groups_of

        groups = groups_of(by_values[keep], by, bins=bins)
        flagged = cut[0] if cut else None
        if flagged is None and report["positive_class"] is not None:
            flagged = m.class_names.index(report["positive_class"])
        rows = classification_groups(groups, index, proba, len(m.class_names), cut, flagged)
        if m.conformal:
            add_group_coverage(rows, groups, covered)
        report["by"] = {
            "column": by,
            "flagged_class": None if flagged is None else m.class_names[flagged],
            "groups": rows,
        }
    if other is not None:  # the same rows of the same file, each model reading its own columns
        _, X_other = _read_input(input, other, id_column, required, None if labels else label_column)
        other_index, other_unseen = label_indices(y[keep], other.class_names)
        with _echoed_warnings(input):
            other_proba = other.predict_proba(X_other[keep])
        other_report = score_report(other_index, other_proba, other.class_names, other_unseen, other_cut)
        right = predictions(proba, cut) == index  # an unseen label's index is past every class: never right
        other_right = predictions(other_proba, other_cut) == other_index
        report["against"] = {
            "model": str(against),
            "metrics": other_report["metrics"],
            "comparison": paired_comparison(right, other_right),
        }
    if unseen:
        counts = list(report["unseen_labels"].items())
        shown = ", ".join(f"{n!r} ({c:,} row{'s' if c > 1 else ''})" for n, c in counts[:5])
        shown += f" and {len(counts) - 5} more" if len(counts) > 5 else ""
        notes.append(f"warning: labels that are no class of the model count as wrong: {shown}")
    for line in notes:
        typer.echo(line, err=True)
    trained = m.provenance.get("test_accuracy")
    if trained is not None:
        report["training_test_accuracy"] = trained
    if importance:
        with warnings.catch_warnings():  # said above, for the rows as they are
            warnings.simplefilter("ignore")
            report["importance"] = _importance(m, X[keep], y[keep], repeats, seed)
    if as_json:
        typer.echo(json.dumps({"model": str(model), "input": str(_shown(input)), **report}, indent=2))
        return
    from apfed.model_tables import score_tables
    from apfed.report import table_console

    console = table_console()
    for t in score_tables(report, f"{model.name} on {_name(input)}", repeats, model.name):
        console.print(t)
    if (line := _training_line(m, None if trained is None else f"{trained:.2f} %")) is not None:
        console.print(line)
    if "conformal" in report:
        console.print(_conformal_line(report["conformal"]))
    if "by" in report:
        from apfed.model_tables import group_table

        console.print(group_table(report["by"], regression=False))


def _drift_note(m, X: np.ndarray) -> str | None:
    """A line naming the columns of the scored rows that moved from the training rows (``apfed drift``): a reason a
    model scores less well than on its test rows. None when none moved, the model keeps no profile, or the rows
    are too few to tell (their chance level is 0.05 or more)."""
    from apfed.drift import NOISY, chance_level

    if m.profile is None or not len(X) or chance_level(len(X), m.profile["rows"]) >= NOISY:
        return None
    moved = [r for r in m.drift(X) if r["verdict"] != "stable" and not r.get("output")]
    if not moved:
        return None
    shown = ", ".join(f"{r['column']} {r['psi']:.2f}" for r in moved[:5]) + (" ..." if len(moved) > 5 else "")
    return (
        f"note: {len(moved)} column(s) of these rows moved from the training rows (PSI {shown}); apfed drift shows"
        " every column"
    )


def _conformal_report(m, covered: np.ndarray, sizes: np.ndarray) -> dict:
    """How a conformal model's intervals or sets did on the scored rows (``apfed.conformal.coverage_report``), with
    the coverage it was calibrated for."""
    from apfed.conformal import coverage_report

    c = m.conformal
    return {"coverage": c["coverage"], "validation_rows": c["rows"], **coverage_report(covered, sizes, m.regression)}


def _conformal_line(c: dict) -> str:
    """``apfed score``'s line on a conformal model's intervals or sets."""
    what = (
        f"intervals held the true value for {c['conformal_coverage']:.1f} % of these rows, {c['interval_width']:.4g}"
        " wide on average"
        if "interval_width" in c
        else f"sets held the true class for {c['conformal_coverage']:.1f} % of these rows, {c['set_size']:.2f}"
        " classes on average"
    )
    return f"Its {c['coverage'] * 100:g} % conformal {what} (calibrated on {c['validation_rows']:,} validation rows)."


def _training_line(m, figure: str | None) -> str | None:
    """What ``apfed score`` adds after its figures: the model's own test ``figure`` at the end of training, or that
    it trained on every labelled row (None when the file says neither)."""
    if figure is not None:
        rows = m.provenance.get("test_rows")
        on = f" on its {rows:,} test rows" if isinstance(rows, int) else ""
        return f"At the end of training the model scored {figure}{on}."
    if m.provenance.get("test_rows") == 0:
        return "The model trained on every labelled row it had (test fraction 0): these rows are its test."
    return None


def _regression_score(
    m,
    X: np.ndarray,
    y: np.ndarray,
    model: Path,
    input: Path,
    notes: list[str],
    as_json: bool,
    importance: tuple[int, int] | None,
    against: tuple | None = None,
    by: tuple[str, np.ndarray, int] | None = None,
):
    """``apfed score`` of a regression model: R², RMSE and MAE on the labelled rows, and the mean target and
    prediction (with ``importance`` (repeats, seed), each column's R² lost when shuffled; with ``against`` (the
    other model, its path, its features of these rows), both models and the difference of their squared errors;
    with ``by`` (a column's name, values and bins), each group's figures); a label that is not a number is one error
    line."""
    import json

    from apfed.data.encoding import parse_number
    from apfed.scoring import regression_report

    try:
        values = np.char.strip(y.astype(str)).astype(np.float64)
    except ValueError:
        bad = next(v for v in y.tolist() if parse_number(str(v).strip()) is None)
        raise DataError(f"{input}: the label {bad!r} is not a number; this model predicts numbers") from None
    if not np.isfinite(values).all():
        raise DataError(f"{input}: a label is infinite; score a regression model against finite numbers")
    with _echoed_warnings(input):
        pred = m.predict(X)
        report = regression_report(values, pred)
        if m.conformal:
            from apfed.conformal import interval_hits

            covered, widths = interval_hits(m.predict_interval(X), values)
            report["conformal"] = _conformal_report(m, covered, widths)
        if by is not None:
            from apfed.scoring import add_group_coverage, groups_of, regression_groups

            groups = groups_of(by[1], by[0], bins=by[2])
            rows = regression_groups(groups, values, pred)
            if m.conformal:
                add_group_coverage(rows, groups, covered)
            report["by"] = {"column": by[0], "groups": rows}
        if against is not None:
            from apfed.scoring import paired_regression_comparison

            other_pred = against[0].predict(against[2])
            report["against"] = {
                "model": str(against[1]),
                "metrics": regression_report(values, other_pred)["metrics"],
                "comparison": paired_regression_comparison(values, pred, other_pred),
            }
    for line in notes:
        typer.echo(line, err=True)
    trained = m.provenance.get("test_r2")
    if trained is not None:
        report["training_test_r2"] = trained
    if importance is not None:
        with warnings.catch_warnings():  # said above, for the rows as they are
            warnings.simplefilter("ignore")
            report["importance"] = _importance(m, X, values, *importance)
    if as_json:
        typer.echo(json.dumps({"model": str(model), "input": str(_shown(input)), **report}, indent=2))
        return
    r = report["metrics"]
    typer.echo(
        f"{model.name} on {_name(input)}: {report['rows']:,} rows, R² {r['r2']:.4f}, RMSE {r['rmse']:.4g}, MAE"
        f" {r['mae']:.4g} (mean label {report['target_mean']:.4g}, mean prediction {report['prediction_mean']:.4g})"
    )
    if (line := _training_line(m, None if trained is None else f"R² {trained:.4f}")) is not None:
        typer.echo(line)
    if "conformal" in report:
        typer.echo(_conformal_line(report["conformal"]))
    if "by" in report:
        from apfed.model_tables import group_table
        from apfed.report import table_console

        table_console().print(group_table(report["by"], regression=True))
    if against is not None:
        o, c = report["against"]["metrics"], report["against"]["comparison"]
        lo, hi = c["ci95"]
        typer.echo(
            f"{Path(against[1]).name} on the same rows: R² {o['r2']:.4f}, RMSE {o['rmse']:.4g}, MAE {o['mae']:.4g};"
            f" mean squared error difference {c['mse_difference']:+.4g} (95 % interval {lo:+.4g} to {hi:+.4g}),"
            f" paired t-test p = {c['paired_t_p']:.3g}; the first closer on {c['first_closer']:,} rows, the second"
            f" on {c['second_closer']:,}"
        )
    if importance is not None:
        from apfed.model_tables import importance_table
        from apfed.report import table_console

        table_console().print(importance_table(report["importance"], importance[0]))


def _importance(m, X: np.ndarray, y: np.ndarray, repeats: int, seed: int) -> list[dict]:
    """The model's ``permutation_importance``, with a progress bar on stderr."""
    from rich.console import Console
    from rich.progress import Progress

    columns = len(m.raw_columns) or m.n_features
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(f"shuffling {columns} columns {repeats}x", total=columns)
        return m.permutation_importance(X, y, repeats, seed, lambda: progress.advance(task))


@app.command()
@reads_stdin
def drift(
    model: Annotated[Path, typer.Option(help="Standalone model file from 'apfed train'.")],
    input: Annotated[
        Path,
        typer.Option(
            "--input",
            help="New rows of the active party's columns (CSV, or NPZ with 'X'); no labels. '-' reads standard input.",
        ),
    ],
    id_column: Annotated[str, typer.Option(help="The input's ID column, never read as a feature.")] = "id",
    fail_above: Annotated[
        float | None,
        typer.Option(
            help="Exit with status 1 when some column's PSI is above this (0.25: a shift), for a scheduled check.",
            min=0,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print every column's figures as JSON.")] = False,
):
    """Have new rows, or the model's outputs on them, moved from training? Population stability indexes, no labels.

    Each column's PSI against the training rows, and the model's outputs' against its outputs on its test rows."""
    import json

    from apfed.drift import MOVED, NOISY, SHIFTED, chance_level
    from apfed.standalone import StandaloneModel

    m = StandaloneModel.load(model)
    if m.profile is None and m.output_profile is None:
        raise ConfigError(
            f"{model} keeps no profile of its training rows (trained by an earlier apfed, or with profile=false); train"
            " it again to compare"
        )
    _, X = _read_input(input, m, id_column, complete=False)
    rows = m.drift(X)
    columns = [r for r in rows if not r.get("output")]
    outputs = [r for r in rows if r.get("output")]
    out_ref = m.output_profile or {}
    predicted = outputs[0]["rows"] if outputs else 0
    chance = chance_level(len(X), m.profile["rows"]) if m.profile else None
    out_chance = chance_level(predicted, out_ref["rows"]) if outputs else None
    if as_json:
        report: dict = {"rows": len(X)}
        if m.profile:
            report |= {"training_rows": m.profile["rows"], "chance_level": chance, "columns": columns}
        if m.output_profile:
            report["outputs"] = {"reference": out_ref["source"], "reference_rows": out_ref["rows"]}
            report["outputs"] |= {"rows": predicted, "chance_level": out_chance, "columns": outputs}
        typer.echo(json.dumps(report, indent=1))
    else:
        from apfed.model_tables import drift_table
        from apfed.report import table_console

        console = table_console()
        if m.profile:
            names = m.encoding.categories if m.encoding else {}
            console.print(drift_table(columns, names))
            shifted = sum(r["verdict"] == "shifted" for r in columns)
            moved = sum(r["verdict"] == "moved" for r in columns)
            typer.echo(
                f"{len(X):,} rows against {m.profile['rows']:,} training rows: {shifted} column(s) shifted (PSI >"
                f" {SHIFTED}), {moved} moved ({MOVED}-{SHIFTED}), {len(columns) - shifted - moved} stable;"
                f" rows drawn like the training rows would read about {chance:.3f} by chance"
            )
        if outputs:
            console.print(drift_table(outputs, {"predicted class": m.class_names}, outputs=out_ref["source"]))
            left = f" ({len(X) - predicted:,} rows lack a value the model cannot fill)" if predicted < len(X) else ""
            typer.echo(
                f"the model's outputs on {predicted:,} rows{left} against its {out_ref['source']} rows"
                f" ({out_ref['rows']:,}): largest PSI {outputs[0]['psi']:.3f} ({outputs[0]['verdict']}); rows drawn"
                f" like those would read about {out_chance:.3f} by chance"
            )
        elif m.output_profile:
            typer.echo("no row has every value the model needs: its outputs are not compared", err=True)
        if max(chance or 0, out_chance or 0) >= NOISY:
            level = max(chance or 0, out_chance or 0)
            typer.echo(
                f"note: over {len(X):,} rows chance alone reads about {level:.2f}, so some columns or outputs read"
                " 'moved' by chance: compare more rows",
                err=True,
            )
    worst = max(rows, key=lambda r: r["psi"]) if rows else None
    if fail_above is not None and worst and worst["psi"] > fail_above:
        what = "the model's output" if worst.get("output") else "column"
        typer.echo(f"drift: {what} {worst['column']!r} has PSI {worst['psi']:.3f}, above {fail_above:g}", err=True)
        raise typer.Exit(1)
