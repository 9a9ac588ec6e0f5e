"""Views (one party's columns), party-local data, image strips and preprocessing."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from apfed.data.encoding import Encoding
from apfed.errors import ConfigError, DataError

CONV_MIN_ROWS = 5  # the fewest rows (and columns) of an image strip for the reference conv encoder (5x5, padding 1)


def compact_index(positions: np.ndarray, bound: int) -> np.ndarray:
    """Row positions (each below ``bound``) as int32 where that holds them: the per-sample bookkeeping a run keeps
    (split, alignment) then costs 4 bytes a row instead of 8. numpy and torch index with either."""
    return np.asarray(positions).astype(np.int32 if bound < 2**31 else np.int64, copy=False)


def first_nonfinite(X: np.ndarray, missing_ok: bool | list[int] = False) -> tuple[int, int, int] | None:
    """Where rows of ``X`` hold NaN or infinite values (NaN marks a missing value, allowed everywhere if
    ``missing_ok`` is True, or in the features it lists): (first such row, its first such feature, how many such
    rows), features flattened; None when none."""
    flat = X.reshape(len(X), -1)
    bad = np.isinf(flat) if missing_ok is True else ~np.isfinite(flat)
    if missing_ok and missing_ok is not True:
        bad[:, missing_ok] = np.isinf(flat[:, missing_ok])
    rows = np.flatnonzero(bad.any(1))
    if not len(rows):
        return None
    return int(rows[0]), int(np.flatnonzero(bad[rows[0]])[0]), len(rows)


def first_empty_column(X: np.ndarray) -> int | None:
    """The first column of a table whose every value is missing (NaN), or None."""
    if X.ndim != 2 or X.dtype.kind != "f" or not len(X):
        return None
    empty = np.flatnonzero(np.isnan(X).all(0))
    return int(empty[0]) if len(empty) else None


def is_regression(labels: np.ndarray) -> bool:
    """Labels that are numbers to predict (float; NaN: no label), not class indices."""
    return np.asarray(labels).dtype.kind == "f"


def compact_labels(labels: np.ndarray) -> np.ndarray:
    """Class indices (-1: no label) as int16 where they fit (int32 otherwise); a loss widens just its minibatch. A
    regression target (``is_regression``) stays float32."""
    labels = np.asarray(labels)
    if is_regression(labels):
        return labels.astype(np.float32, copy=False)
    fits = labels.size == 0 or (labels.min() >= -1 and labels.max() < 2**15)  # -1: no label
    return labels.astype(np.int16 if fits else np.int32, copy=False)


@dataclass
class View:
    """One party's features for every sample, in the dataset's row order.

    ``X`` is ``(N, C, H, W)`` for an image view and ``(N, D)`` for a tabular view, unpreprocessed; a tabular
    view may also be streamed (``apfed.data.streamed.StreamedRows``: rows computed when indexed).
    """

    name: str
    kind: str  # "image" or "tabular"
    X: np.ndarray
    columns: list[str] | None = None
    pixel_scale: float = 1.0  # images: raw value that maps to 1.0 (255 for uint8)
    encoding: Encoding | None = None  # a table with categorical columns: how its raw columns became ``X``

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.X.shape[1:])


@dataclass
class UnmatchedRows:
    """The active party's labelled rows that the passives do not hold (a partial overlap): its view ``view``'s
    features for them, their class indices, their ids and which of them are test rows. Standalone methods also
    train on the others (task loss only, ``TrainConfig.unmatched_rows``) and are also tested on these; they are
    never sent anywhere."""

    view: int  # the index of the active view they belong to
    X: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    test: np.ndarray  # bool per row: a test row
    times: np.ndarray | None = None  # an out-of-time split's time per row (``MultiViewDataset.times``)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class MultiViewDataset:
    """All views of a dataset plus labels; only evaluation and simulation hold this whole. ``views``, ``labels``
    and ``ids`` are the rows every party holds; ``unmatched``, the active party's labelled rows no passive holds;
    ``unlabelled``, the rows (held by every party) with no label, in neither ``train_idx`` nor ``test_idx``."""

    name: str
    views: list[View]
    labels: np.ndarray
    ids: np.ndarray
    class_names: list[str]
    train_idx: np.ndarray
    test_idx: np.ndarray
    notes: dict = field(default_factory=dict)
    unmatched: UnmatchedRows | None = None
    unlabelled: np.ndarray | None = None  # positions of the rows with no label (label -1): never tested, and
    # trained only by the methods that need no label (TrainConfig.unlabelled_rows)
    times: np.ndarray | None = None  # an out-of-time split (notes["test_split"]): each row's time, as a number
    # (apfed.data.timesplit.Times.values), for folds in time (apfed.data.splits.time_fold)

    def select(self, keep: list[int]) -> MultiViewDataset:
        """The same rows with only the views at ``keep`` (in the dataset's order)."""
        kept = sorted(set(keep))
        u = self.unmatched
        unmatched = None if u is None or u.view not in kept else replace(u, view=kept.index(u.view))
        return replace(self, views=[self.views[i] for i in kept], unmatched=unmatched)

    def view_index(self, key: str | int) -> int:
        """Resolve a view given as an index or a name (``fou``) to an index."""
        names = [v.name for v in self.views]
        if isinstance(key, str) and not key.lstrip("-").isdigit():
            if key not in names:
                raise DataError(f"unknown view {key!r} for {self.name}; choose one of {', '.join(names)}")
            return names.index(key)
        i = int(key)
        if not 0 <= i < len(self.views):
            raise DataError(
                f"view index {i} out of range: {self.name} has {len(self.views)} views (0-{len(self.views) - 1})"
            )
        return i


@dataclass
class PartyData:
    """What one party holds: its own view, the sample ids, and (active party only) labels and the split, as
    positions in ``ids``."""

    view: View
    ids: np.ndarray
    labels: np.ndarray | None = None
    class_names: list[str] | None = None
    train_rows: np.ndarray | None = None
    test_rows: np.ndarray | None = None
    unlabelled_rows: np.ndarray | None = None  # rows with no label (label -1), in neither split
    matched: np.ndarray | None = None  # in-process: which rows every passive holds (bool per row), for a run that
    # has no passive to ask (local); a deployment learns it from the private set intersection
    split: dict | None = None  # an out-of-time split's summary (apfed.data.timesplit.describe_split); None: stratified
    times: np.ndarray | None = None  # an out-of-time split: each row's time as a number (validation_split=latest)

    @property
    def train_ids(self) -> np.ndarray | None:
        return None if self.train_rows is None else self.ids[self.train_rows]

    @property
    def test_ids(self) -> np.ndarray | None:
        return None if self.test_rows is None else self.ids[self.test_rows]


def split_parties(ds: MultiViewDataset, active: int, unmatched: bool = True) -> tuple[PartyData, list[PartyData]]:
    """Cut a dataset into the active party's data (with labels and split) and the passives' (without).

    With ``unmatched``, the active party also holds the dataset's unmatched rows of its view, after the matched
    ones, as training or test rows: as in a deployment, its private set intersection with the passives then finds
    that no passive holds them (``matched`` says so to a run without passives)."""
    view, ids, labels, train, test = ds.views[active], ds.ids, ds.labels, ds.train_idx, ds.test_idx
    u, matched, times = ds.unmatched, None, ds.times
    if unmatched and u is not None and u.view == active and len(u):
        n, m = len(ids), len(u)
        view = replace(view, X=np.concatenate([view.X, u.X]))
        if times is not None:
            times = np.concatenate([times, u.times if u.times is not None else np.full(m, np.nan)])
        ids, labels = np.concatenate([ids, u.ids]), np.concatenate([labels, u.labels.astype(labels.dtype)])
        is_test = np.asarray(u.test, dtype=bool)
        train = compact_index(np.concatenate([train, n + np.flatnonzero(~is_test)]), n + m)
        test = compact_index(np.concatenate([test, n + np.flatnonzero(is_test)]), n + m)
        matched = np.arange(n + m) < n
    active_party = PartyData(
        view=view,
        ids=ids,
        labels=labels,
        class_names=ds.class_names,
        train_rows=train,
        test_rows=test,
        unlabelled_rows=ds.unlabelled,
        matched=matched,
        split=ds.notes.get("test_split"),
        times=times,
    )
    passives = [PartyData(view=v, ids=ds.ids) for i, v in enumerate(ds.views) if i != active]
    return active_party, passives


def partial_overlap(ds: MultiViewDataset, active: int, overlap: float, seed: int = 0) -> MultiViewDataset:
    """The same data as if the passives held only a fraction ``overlap`` of the active party's training rows
    (drawn at random, seeded): the others become unmatched rows of the active view. The test rows stay held by
    every party, so every method is tested on the same rows. For studying partial overlaps on bundled data."""
    if not 0 < overlap <= 1:
        raise DataError(f"overlap must be a fraction in (0, 1], got {overlap}")
    if ds.unmatched is not None:
        raise DataError(f"{ds.name} already has unmatched rows; overlap applies to fully matched data")
    if not isinstance(ds.views[active].X, np.ndarray):
        raise DataError("overlap needs the active view's rows in memory, not streamed")
    train = np.asarray(ds.train_idx)
    rng = np.random.default_rng(seed)
    n_keep = max(1, round(overlap * len(train)))
    shuffled = rng.permutation(train)
    kept, moved = np.sort(shuffled[:n_keep]), np.sort(shuffled[n_keep:])
    if not len(moved):
        return ds
    unlabelled = np.asarray(ds.unlabelled if ds.unlabelled is not None else ds.test_idx[:0])
    rows = np.sort(np.concatenate([kept, np.asarray(ds.test_idx), unlabelled]))
    position = np.full(len(ds.ids), -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))
    views = [replace(v, X=v.X[rows]) for v in ds.views]
    a = ds.views[active]
    unmatched = UnmatchedRows(active, a.X[moved], ds.labels[moved], ds.ids[moved], np.zeros(len(moved), dtype=bool))
    notes = {**ds.notes, "overlap": overlap}
    return MultiViewDataset(
        ds.name,
        views,
        ds.labels[rows],
        ds.ids[rows],
        ds.class_names,
        compact_index(position[kept], len(rows)),
        compact_index(position[np.asarray(ds.test_idx)], len(rows)),
        notes,
        unmatched,
        None if ds.unlabelled is None else position[unlabelled],
    )


def image_strips(
    images: np.ndarray, n_views: int, pixel_scale: float, prefix: str = "strip", min_rows: int = 1
) -> list[View]:
    """Cut ``(N, C, H, W)`` or ``(N, H, W)`` images into ``n_views`` horizontal strips of ``floor(H/n)`` rows.

    Leftover bottom rows are dropped, as in the APFed reference code. ``min_rows``: the fewest rows a strip may
    have (the reference conv encoder needs 5).
    """
    if images.ndim == 3:
        images = images[:, None]
    h = images.shape[2]
    most = h // min_rows
    if not 1 <= n_views <= most:
        why = f" (strips of at least {min_rows} rows, for the 5x5 conv encoder)" if min_rows > 1 else ""
        raise DataError(f"--views must be between 1 and {most} for images of height {h}{why}, got {n_views}")
    step = h // n_views
    names = {2: ["top", "bottom"], 3: ["top", "middle", "bottom"]}.get(n_views)
    return [
        View(
            name=names[i] if names else f"{prefix}{i}",
            kind="image",
            X=np.ascontiguousarray(images[:, :, i * step : (i + 1) * step, :]),
            pixel_scale=pixel_scale,
        )
        for i in range(n_views)
    ]


FAR_SDS = 10.0  # Preprocessor.far_features: a column this many training SDs off (or this much wider) is far
FAR_MIN_ROWS = 20
FAR_SAMPLE = 1_000  # rows read, evenly spaced: plenty for a shift of 10 SDs, and cheap


@dataclass
class Preprocessor:
    """Maps a view's raw features to model inputs. Fitted on training rows only; stored in the model file.

    Tabular: each feature standardized by its training mean and std; in the ``missing`` features (those with a
    missing value, NaN, in any row of the party's data) a missing value becomes the training mean (0 once
    standardized)."""

    kind: str
    scale: float = 1.0
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    missing: list[int] = field(default_factory=list)

    @classmethod
    def fit(cls, view: View, rows: np.ndarray) -> Preprocessor:
        if view.kind == "image":
            return cls(kind="image", scale=1.0 / view.pixel_scale)
        missing: list[int] = []
        if hasattr(view.X, "moments"):  # a streamed view: statistics accumulated chunk by chunk
            mean, std = view.X.moments(rows)
        else:
            x = view.X[rows].astype(np.float64)
            missing = np.flatnonzero(np.isnan(view.X).any(0)).tolist() if view.X.dtype.kind == "f" else []
            if missing:
                with np.errstate(invalid="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # a column with no training value
                    mean, std = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
                mean[np.isnan(mean)], std[np.isnan(std)] = 0.0, 1.0
            else:
                mean, std = x.mean(axis=0), x.std(axis=0)
        std[std < 1e-8] = 1.0
        return cls(kind="tabular", mean=mean.astype(np.float32), std=std.astype(np.float32), missing=missing)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "image":
            return (x.astype(np.float32) * np.float32(self.scale)).astype(np.float32)
        z = ((x.astype(np.float32) - self.mean) / self.std).astype(np.float32)
        if self.missing:
            filled = z[:, self.missing]
            filled[np.isnan(filled)] = 0.0
            z[:, self.missing] = filled
        return z

    def far_features(self, x: np.ndarray, positions: list[int] | None = None) -> list[tuple[int, float, float]]:
        """The features of raw rows ``x`` (rows x features) whose values lie far from training's, as (position,
        distance of their mean from the training mean, their spread), both in training standard deviations: a
        distance or a spread over ``FAR_SDS``, the mark of other units or of another column's values. Only
        ``positions`` (default: every feature) of a tabular view, and only with ``FAR_MIN_ROWS`` rows or more (a
        few rows may well be unusual); at most ``FAR_SAMPLE`` rows are read, evenly spaced; missing values are
        ignored."""
        if self.kind != "tabular" or len(x) < FAR_MIN_ROWS:
            return []
        cols = np.arange(x.shape[1]) if positions is None else np.asarray(positions, dtype=np.int64)
        if not len(cols):
            return []
        sample = x[:: -(-len(x) // FAR_SAMPLE)]
        z = (sample[:, cols].astype(np.float32) - self.mean[cols]) / self.std[cols]
        if self.missing:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a column with no value at all
                distance, spread = np.abs(np.nanmean(z, axis=0)), np.nanstd(z, axis=0)
        else:
            distance, spread = np.abs(z.mean(axis=0)), z.std(axis=0)
        far = (distance > FAR_SDS) | (spread > FAR_SDS)
        return [(int(c), float(d), float(s)) for c, d, s in zip(cols[far], distance[far], spread[far], strict=True)]

    def pixel_range_note(self, x: np.ndarray) -> str | None:
        """For an image view: a warning when raw pixels ``x`` seem to be on another scale than training's (the
        model reads raw values from 0 to 1/``scale``, 255 for 8-bit images): all within 0-1 where training's went
        to 255, or beyond 1.5 times training's top; None otherwise, for fewer than ``FAR_MIN_ROWS`` rows, and for
        images trained as floats (``scale`` 1), whose range apfed does not know."""
        top = 1.0 / self.scale
        if self.kind != "image" or len(x) < FAR_MIN_ROWS or top <= 1.5:  # float images may hold any values
            return None
        seen = float(np.nanmax(x[:: -(-len(x) // FAR_SAMPLE)]))
        if 0.0 < seen <= 1.0:
            return f"pixel values lie within 0-1, but the model was trained on 0-{top:g}: multiply them by {top:g}?"
        if seen > 1.5 * top:
            return (
                f"pixel values reach {seen:g}, but the model was trained on 0-{top:g}: divide them by {seen / top:.3g}?"
            )
        return None

    def to_json(self) -> dict:
        if self.kind == "image":
            return {"kind": "image", "scale": self.scale}
        out = {"kind": "tabular", "mean": self.mean.tolist(), "std": self.std.tolist()}
        return {**out, "missing": self.missing} if self.missing else out

    @classmethod
    def from_json(cls, d: dict) -> Preprocessor:
        if d["kind"] == "image":
            return cls(kind="image", scale=float(d["scale"]))
        return cls(
            kind="tabular",
            mean=np.asarray(d["mean"], np.float32),
            std=np.asarray(d["std"], np.float32),
            missing=[int(j) for j in d.get("missing", [])],
        )


def hide_labels(ds: MultiViewDataset, share: float, seed: int = 0) -> MultiViewDataset:
    """The same data as if only a fraction ``share`` of its training rows had a label (drawn at random, seeded,
    stratified by class so every class keeps some): the others become rows with no label (``unlabelled``). The test
    rows keep theirs. For studying how much the rows with no label help, on bundled data."""
    if not 0 < share <= 1:
        raise DataError(f"the labelled share must be in (0, 1], got {share}")
    if ds.unlabelled is not None:
        raise DataError(f"{ds.name} already has rows with no label")
    train = np.asarray(ds.train_idx)
    if share == 1:
        return ds
    from apfed.data.splits import stratified_split

    kept, hidden = stratified_split(ds.labels[train], 1 - share, seed, held_out="unlabelled")
    labels = ds.labels.copy()
    labels[train[hidden]] = np.nan if is_regression(labels) else -1
    n = len(ds.ids)
    return replace(
        ds,
        labels=labels,
        train_idx=compact_index(np.sort(train[kept]), n),
        unlabelled=np.sort(train[hidden]),
        notes={**ds.notes, "labelled_share": share},
    )


def with_passives(ds: MultiViewDataset, active: int, passives: str | list[str | int]) -> tuple[MultiViewDataset, int]:
    """Only the active view and ``passives`` of ``ds`` (names or indices, or one comma-separated string), the same
    rows, and the active view's index among them."""
    keys = [k.strip() for k in passives.split(",")] if isinstance(passives, str) else list(passives)
    try:
        chosen = [ds.view_index(k) for k in keys if str(k)]
    except DataError as e:  # a wrong argument, not wrong data
        raise ConfigError(str(e)) from None
    if not chosen:
        raise ConfigError("passives names no view; leave it out to take every view besides the active one")
    if active in chosen:
        raise ConfigError(f"view {ds.views[active].name!r} is the active party's; passives lists the others")
    if len(set(chosen)) < len(chosen):
        raise ConfigError(f"passives names a view twice: {', '.join(map(str, keys))}")
    keep = sorted({active, *chosen})
    return ds.select(keep), keep.index(active)
