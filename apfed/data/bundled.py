"""Bundled offline datasets: mnist5k, handwritten (UCI Multiple Features), digits and diabetes (scikit-learn's; a
regression)."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import numpy as np

from apfed.catalog import BUNDLED
from apfed.data.splits import stratified_split
from apfed.data.views import CONV_MIN_ROWS, MultiViewDataset, View, image_strips
from apfed.errors import DataError

HANDWRITTEN_VIEWS = ("fou", "fac", "kar", "pix", "zer", "mor")
# diabetes (Efron et al., 2004): a clinic's measurements and a lab's blood serum tests of 442 patients
DIABETES_VIEWS = {"clinic": ("age", "sex", "bmi", "bp"), "lab": ("tc", "ldl", "hdl", "tch", "ltg", "glu")}


def _npz(name: str) -> np.lib.npyio.NpzFile:
    """The bundled file, from this package or, when this copy of the code carries no data (a Flower app
    bundle ships only code), from an installed apfed on sys.path."""
    here = resources.files("apfed.data").joinpath("bundled", f"{name}.npz")
    candidates = [Path(str(here))] + [Path(p) / "apfed" / "data" / "bundled" / f"{name}.npz" for p in sys.path if p]
    for path in candidates:
        if path.is_file():
            return np.load(path)
    raise DataError(f"bundled dataset file {name}.npz is missing; reinstall apfed (pip install -e .)")


def load_bundled(
    name: str, n_views: int | None = None, split_seed: int = 0, test_fraction: float = 0.2
) -> MultiViewDataset:
    """Load a bundled dataset. ``n_views`` sets the number of strips for image sets (default 2); ``test_fraction``
    of the rows test (stratified, seeded: 0.2 and seed 0 give the reference's mnist5k split; 0: none)."""
    if name not in BUNDLED:
        raise DataError(f"unknown dataset {name!r}; bundled datasets are {', '.join(BUNDLED)}")
    if name == "diabetes":
        return _diabetes(n_views, split_seed, test_fraction)
    if name == "handwritten":
        if n_views not in (None, 6):
            raise DataError("handwritten has exactly 6 natural views (fou, fac, kar, pix, zer, mor); drop --views")
        z = _npz(name)
        labels = z["labels"]
        views = [
            View(name=v, kind="tabular", X=z[v], columns=[f"{v}_{j}" for j in range(z[v].shape[1])])
            for v in HANDWRITTEN_VIEWS
        ]
    else:
        if name == "mnist5k":
            z = _npz(name)
            images, labels = z["images"], z["labels"]
        else:
            from sklearn.datasets import load_digits

            d = load_digits()
            images, labels = d.images.astype(np.uint8), d.target.astype(np.int64)
        pixel_scale = 255.0 if name == "mnist5k" else 16.0
        views = image_strips(images, n_views or 2, pixel_scale, min_rows=CONV_MIN_ROWS if name == "mnist5k" else 1)
        if name == "digits":  # 8x8 strips are too small for the reference conv nets: use MLPs on pixels
            views = [
                View(
                    name=v.name,
                    kind="tabular",
                    X=v.X.reshape(len(v.X), -1).astype(np.float32) / pixel_scale,
                    columns=[f"{v.name}_px{j}" for j in range(int(np.prod(v.shape)))],
                )
                for v in views
            ]
    train, test = stratified_split(labels, test_fraction, split_seed)
    return MultiViewDataset(
        name=name,
        views=views,
        labels=labels.astype(np.int64),
        ids=np.arange(len(labels)).astype(str),
        class_names=[str(c) for c in range(int(labels.max()) + 1)],
        train_idx=train,
        test_idx=test,
    )


def _diabetes(n_views: int | None, split_seed: int, test_fraction: float) -> MultiViewDataset:
    """scikit-learn's diabetes set in its original units as two parties: the clinic (age, sex, BMI, blood pressure)
    and the lab (six blood serum measurements); the target, a measure of disease progression one year later, is a
    regression's, split stratified by its quantiles."""
    from sklearn.datasets import load_diabetes

    if n_views not in (None, 2):
        raise DataError("diabetes has exactly 2 natural views (clinic, lab); drop --views")
    d = load_diabetes(scaled=False)
    X, y = d.data.astype(np.float32), d.target.astype(np.float32)
    views, start = [], 0
    for view, columns in DIABETES_VIEWS.items():
        views.append(View(name=view, kind="tabular", X=X[:, start : start + len(columns)], columns=list(columns)))
        start += len(columns)
    train, test = stratified_split(y, test_fraction, split_seed)
    return MultiViewDataset(
        name="diabetes",
        views=views,
        labels=y,
        ids=np.arange(len(y)).astype(str),
        class_names=[],
        train_idx=train,
        test_idx=test,
    )
