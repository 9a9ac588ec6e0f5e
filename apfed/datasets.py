"""A multi-view dataset and the index of the active party's view, from the data options that the CLI, the Python
API (``apfed.load_dataset``) and the Flower apps take. Imports beyond the dataset names are deferred to the calls,
so the options' mistakes show before torch is imported."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from apfed.catalog import BUNDLED, IMAGE_SETS, REGRESSION_SETS
from apfed.errors import ConfigError, DataError

if TYPE_CHECKING:
    from apfed.data.views import MultiViewDataset


def check_data_options(dataset, views, data, data_dir, default: str = "handwritten") -> None:
    """The data options' mistakes that show without reading any data (found before torch is imported)."""
    if data:
        if dataset or views:
            raise ConfigError("give either --data files or --dataset, not both")
        return
    name = dataset or default
    if name not in BUNDLED + IMAGE_SETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(BUNDLED + IMAGE_SETS)} or give --data")
    if name in IMAGE_SETS and data_dir is None:
        raise DataError(f"{name} is not bundled: give --data-dir with its files (apfed never downloads data)")


def load_dataset(
    dataset: str | None = None,
    *,
    views: int | None = None,
    active: str | int | None = None,
    data: Sequence[str | Path] | None = None,
    data_dir: str | Path | None = None,
    id_column: str = "id",
    label_column: str = "label",
    log: Callable[[str], object] = print,
    default: str = "handwritten",
    passives: str | Sequence[str | int] | None = None,
    overlap: float | None = None,
    test_fraction: float | None = None,
    labelled: float | None = None,
    task: str = "classification",
    time_column: str | None = None,
) -> tuple[MultiViewDataset, int]:
    """A dataset and the index of the active party's view.

    One of: ``dataset`` a bundled set (``mnist5k``, ``handwritten``, ``digits``; ``views`` strips for image sets),
    ``dataset`` a full image set (``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar100``) read from ``data_dir``,
    or ``data``: one CSV/NPZ file per party, the active party's (with ``label_column``) first, aligned by
    ``id_column`` (``log`` receives how many rows matched). ``active``: a view index or name (default: ``fou`` on
    handwritten, else view 0). ``passives``: the views that take part besides the active one (names or indices,
    or one comma-separated string; default: every other view). ``overlap``: a fraction in (0, 1]: the passives hold
    only that share of the active party's training rows (chosen at random, seed 0), as if the organizations shared
    only some customers; the others become unmatched rows (``MultiViewDataset.unmatched``). ``test_fraction``: the
    share of the labelled rows held out to test, stratified and seeded (default 0.2, the bundled sets' reference
    split; 0: every labelled row trains and the run reports no test figure, for the model put to use once a run
    with test rows has been judged; full image sets keep their own test set). ``labelled``: a fraction in (0, 1]:
    only that share of the training rows keep their label (stratified, seed 0), the others become rows with no label
    (``MultiViewDataset.unlabelled``), as if the outcome were known for only some customers (in files, an empty
    label cell marks such a row). ``task``: ``regression`` for ``data`` files whose labels are numbers to predict
    (the bundled and image sets are classifications). ``time_column``: a column of the active party's ``data`` file
    (dates or numbers, not a feature) whose latest ``test_fraction`` of the labelled rows are the test rows, instead
    of a stratified draw: an out-of-time test, as a model put to use meets later rows."""
    from apfed.data.splits import check_task, check_test_fraction

    data, task = [str(p) for p in data or []], check_task(task)
    check_data_options(dataset, views, data, data_dir, default)
    if overlap is not None and data:
        raise ConfigError("overlap applies to a dataset, not to --data files: their IDs say which rows match")
    if time_column is not None and not data:
        raise ConfigError("time column applies to --data files; the bundled and image sets have no time column")
    if labelled is not None and data:
        raise ConfigError(
            "labelled applies to a dataset, not to --data files: an empty label cell marks a row with no label"
        )
    if task == "regression" and not data and (dataset or default) not in REGRESSION_SETS:
        raise ConfigError(
            f"{dataset or default} is a classification; --task regression applies to --data files (and"
            f" {', '.join(REGRESSION_SETS)}, a regression already)"
        )
    from apfed.data import load_bundled, load_image_dir, load_party_files

    split = 0.2 if test_fraction is None else check_test_fraction(test_fraction)
    if data:
        ds = load_party_files(
            data, id_column, label_column, log=log, test_fraction=split, task=task, time_column=time_column
        )
    else:
        name = dataset or default
        if name in IMAGE_SETS and test_fraction is not None:
            raise ConfigError(
                f"{name} keeps its own test set (its standard files); test fraction applies to the"
                " bundled sets and --data files"
            )
        ds = load_image_dir(name, data_dir, views or 2) if name in IMAGE_SETS else load_bundled(name, views, 0, split)
    if active is None:
        active = "fou" if ds.name == "handwritten" else "0"
    a = ds.view_index(active)
    if passives is not None:
        from apfed.data.views import with_passives

        ds, a = with_passives(ds, a, passives)
    if labelled is not None:  # before an overlap, which then draws from the rows that kept their label
        from apfed.data.views import hide_labels

        try:
            ds = hide_labels(ds, labelled)
        except DataError as e:  # a wrong argument, not wrong data
            raise ConfigError(str(e)) from None
        hidden = 0 if ds.unlabelled is None else len(ds.unlabelled)
        log(f"{ds.name}: {len(ds.train_idx)} training rows keep their label ({labelled:.0%}), {hidden} have none")
    if overlap is not None:
        from apfed.data.views import partial_overlap

        try:
            ds = partial_overlap(ds, a, overlap)
        except DataError as e:  # a wrong argument, not wrong data
            raise ConfigError(str(e)) from None
        log(
            f"{ds.name}: the passives hold {overlap:.0%} of the training rows ({len(ds.train_idx)}), the active party"
            f" alone {len(ds.unmatched) if ds.unmatched else 0} more"
        )
    return ds, a
