"""The standalone model file: the active party's encoder and head as safetensors, plus JSON metadata (view
schema, preprocessing, class names, provenance). Loading never unpickles anything."""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from apfed.checkpoint import atomic_file
from apfed.config import TrainConfig
from apfed.data.encoding import Encoding, as_numbers, as_text
from apfed.data.views import FAR_SDS, Preprocessor, first_nonfinite
from apfed.errors import ApfedError, DataError
from apfed.models import StandaloneNet, encoder_output_shape, make_encoder, make_head

if TYPE_CHECKING:
    from apfed.explain import Explanation

FORMAT = "apfed-standalone"
FORMAT_VERSION = 4  # 2: categorical columns ("encoding") and missing values ("preprocessing" "missing"); 3: "task";
# 4: "conformal" (prediction intervals or sets)
PREDICT_CHUNK = 4096  # rows per forward pass when predicting: bounded memory for any number of rows


@dataclass
class StandaloneModel:
    """Predicts from the active party's view alone: ``predict`` and ``predict_proba`` on raw numpy features. A
    regression model (``task`` ``regression``, no class names) predicts a number per row, in the target's units
    (its standardization is folded into the last layer)."""

    net: StandaloneNet
    spec: dict
    preprocessor: Preprocessor
    class_names: list[str]
    columns: list[str] | None = None
    view_name: str = ""
    config: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    encoding: Encoding | None = None  # categorical columns: how a raw table's columns become ``columns``
    task: str = "classification"
    target: dict | None = None  # regression: the training target's mean and std (for ``describe``)
    conformal: dict | None = None  # ``conformal`` training: its coverage, quantile q and calibration rows
    profile: dict | None = None  # tabular: its training rows' column distributions, for ``drift`` (apfed.drift)
    output_profile: dict | None = None  # its outputs on held-out rows, for ``drift`` (apfed.drift)

    @property
    def regression(self) -> bool:
        return self.task == "regression"

    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self.class_names)

    @property
    def n_features(self) -> int:
        return int(np.prod(self.spec["shape"]))

    @property
    def raw_columns(self) -> list[str]:
        """The columns of the table the model reads (before categorical columns become one feature per value)."""
        return self.encoding.columns if self.encoding else self.columns or []

    def feature_positions(self, header: list[str], skip: tuple[str, ...] = ()) -> tuple[list[int], bool]:
        """Which of a table's columns feed the model, in the model's order (``raw_columns``), and whether they
        were taken in the table's order for want of names: by name when every training column is there (any
        order, others ignored); an error when only some are (never guessed); else every column but those in ``skip``
        (the ID and label columns), in order."""
        cols = self.raw_columns
        missing = [c for c in cols if c not in header]
        if cols and not missing:
            return [header.index(c) for c in cols], False
        if len(missing) < len(cols):
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise DataError(f"missing feature columns the model was trained on: {', '.join(missing[:5])}{more}")
        if self.encoding:
            raise DataError(
                f"no column is named as in training ({', '.join(cols[:5])}{', ...' if len(cols) > 5 else ''}); a model"
                " with categorical columns reads its columns by name"
            )
        take = [j for j, h in enumerate(header) if h not in skip]
        if len(take) != self.n_features:
            hint = f" (named {', '.join(cols[:5])}{', ...' if len(cols) > 5 else ''} in training)" if cols else ""
            raise DataError(f"{len(take)} feature columns, the model expects {self.n_features}{hint}")
        return take, bool(cols)

    def encode(self, numeric: np.ndarray, text: dict[str, np.ndarray]) -> np.ndarray:
        """The model's features from a table's raw columns (its categorical ones as text); a warning counts the
        values that were no category seen in training (they get none, as a missing value does)."""
        X, unknown = self.encoding.expand(numeric, text)
        if unknown:
            shown = ", ".join(f"{c!r}: {n}" for c, n in unknown.items())
            warnings.warn(f"values not seen in training, read as no category: {shown}", stacklevel=3)
        return X

    def _frame(self, X) -> np.ndarray:
        """A DataFrame's features: its columns taken by name; categorical ones encoded from their text."""
        take, positional = self.feature_positions([str(c) for c in X.columns])
        if positional:
            warnings.warn(
                "no column is named as in training; the columns were taken in order as the model's features",
                stacklevel=4,
            )
        values = X.to_numpy()[:, take]
        if not self.encoding:
            return values
        numeric, text = [], {}
        for j, c in enumerate(self.raw_columns):
            if c in self.encoding.categories:
                text[c] = as_text(values[:, j])
            elif (col := as_numbers(values[:, j])) is None:
                raise ApfedError(f"column {c!r} must hold numbers (it did in training)")
            else:
                numeric.append(col)
        return self.encode(np.stack(numeric, 1) if numeric else np.zeros((len(values), 0), np.float32), text)

    def _inputs(self, X) -> torch.Tensor:
        X = self._feature_rows(X)
        if (found := first_nonfinite(X, missing_ok=self.preprocessor.missing)) is not None:
            r, c, n = found
            raise ApfedError(f"X holds NaN or infinite values ({n} rows; the first: row {r}, feature {c})")
        note = self.preprocessor.pixel_range_note(X) or self.far_columns_note(X.reshape(len(X), -1))
        if note is not None:
            warnings.warn(note, stacklevel=3)
        return torch.from_numpy(self.preprocessor(X))

    def _feature_rows(self, X) -> np.ndarray:
        """Raw feature rows in the view's shape from a DataFrame (its columns by name) or a numeric array (rows x
        features, or rows in the view's shape); NaN and infinite values are left for the caller to judge."""
        if hasattr(X, "columns") and hasattr(X, "to_numpy"):  # a DataFrame: its columns are taken by name
            X = self._frame(X)
        X = np.asarray(X)
        if X.dtype == object or not np.issubdtype(X.dtype, np.number):
            hint = "; give a DataFrame for its categorical columns" if self.encoding else ""
            raise ApfedError(f"X must be a numeric array{hint}")
        shape = tuple(self.spec["shape"])
        if X.ndim >= 2 and tuple(X.shape[1:]) == shape:
            pass
        elif X.ndim == 2 and X.shape[1] == self.n_features:
            X = X.reshape(len(X), *shape)
        elif self.spec["kind"] == "image" and X.ndim == 3 and shape[0] == 1 and tuple(X.shape[1:]) == shape[1:]:
            X = X[:, None]
        else:
            forms = dict.fromkeys([f"(n, {self.n_features})", f"(n, {', '.join(map(str, shape))})"])
            raise ApfedError(f"X has shape {X.shape}; this model takes {' or '.join(forms)}")
        return X

    def drift(self, X) -> list[dict]:
        """How far rows ``X`` (as ``predict`` takes them; missing values as NaN) have moved from the training rows,
        column by column: each column's population stability index (``psi``; ``verdict`` stable below 0.1, moved
        to 0.25, shifted above), its training and new shares missing and, for a number, medians; the largest
        first (``apfed.drift``). Then the model's outputs on those rows against its outputs on rows held out from
        training (``output``: True; ``rows``: the rows it could predict, those with no missing value it cannot fill):
        its predicted classes' shares and its score, or its predicted values. No labels needed: a check of new rows
        before trusting the predictions. An image model has its outputs only."""
        from apfed.drift import compare, compare_outputs

        if self.profile is None and self.output_profile is None:
            why = "trained by an earlier apfed, or with profile=false"
            raise ApfedError(f"this model file keeps no profile of its training rows ({why}): nothing to compare")
        X = self._feature_rows(X)
        flat = X.reshape(len(X), -1)
        if np.isinf(flat).any():
            r, c = np.argwhere(np.isinf(flat))[0]
            raise ApfedError(f"X holds infinite values (the first: row {r}, feature {c})")
        rows = compare(self.profile, flat) if self.profile is not None else []
        if self.output_profile is not None:
            unfilled = np.ones(flat.shape[1], dtype=bool)
            unfilled[self.preprocessor.missing] = False
            ready = X[~np.isnan(flat[:, unfilled]).any(1)] if flat.dtype.kind == "f" else X
            if len(ready):
                outputs = self._proba_of_features(torch.from_numpy(self.preprocessor(ready)))
                rows += [
                    r | {"rows": len(ready)} for r in compare_outputs(self.output_profile, outputs, self.regression)
                ]
        return rows

    def far_columns_note(self, X: np.ndarray) -> str | None:
        """A warning naming the numeric columns of raw feature rows ``X`` (rows x features) whose values lie far
        from training's (``Preprocessor.far_features``): most often a column in other units, or another column's
        values under its name; None when there is none. The model predicts all the same."""
        numeric = None
        if self.encoding:
            numeric = [p for c, ps in self.encoding.groups() if c not in self.encoding.categories for p in ps]
        far = self.preprocessor.far_features(X, numeric)
        if not far:
            return None
        names = self.columns or []
        shown = []
        for j, distance, spread in far[:5]:
            name = repr(names[j]) if j < len(names) else f"feature {j}"
            what = f"mean {distance:,.0f} SDs from training's" if distance > FAR_SDS else ""
            wide = f"spread {spread:,.0f}x training's" if spread > FAR_SDS else ""
            shown.append(f"{name} ({', '.join(w for w in (what, wide) if w)})")
        more = f" and {len(far) - 5} more" if len(far) > 5 else ""
        return (
            f"{len(far)} column(s) far from their values in training (other units, or another column's values?):"
            f" {', '.join(shown)}{more}"
        )

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n, n_classes), columns in the order of ``classes_``."""
        if self.regression:
            raise ApfedError("a regression model predicts numbers, not class probabilities: use predict")
        return self._proba_of_features(self._inputs(X))

    @torch.no_grad()
    def _proba_of_features(self, x: torch.Tensor | np.ndarray, raw: bool = False) -> np.ndarray:
        """Probabilities from preprocessed features (what ``_inputs`` returns); a regression model's values, one
        column (``raw``: the network's output, log(1 + y) for a model trained on ``target_transform=log``)."""
        self.net.eval()
        x = torch.as_tensor(x)
        dev = next(self.net.parameters()).device
        # one output array filled chunk by chunk: a small tensor kept per chunk would settle in the heap's hole
        # left by the chunk's freed activations, which then cannot be reused, and the heap grew by a chunk's
        # activations each time (1 GB for a million rows, in some runs)
        out = torch.empty(len(x), self.outputs)
        for start in range(0, len(x), PREDICT_CHUNK):
            chunk = x[start : start + PREDICT_CHUNK].to(dev)
            y = self.net(chunk)
            if self.regression:
                out[start : start + len(chunk)] = y.expm1() if self.logged and not raw else y
            else:
                out[start : start + len(chunk)] = y.softmax(1)
        return out.numpy()

    @property
    def logged(self) -> bool:
        """A regression trained on log(1 + y) (``target_transform=log``): its network's output is that, and
        predicting takes exp(.) - 1 of it."""
        return self.regression and (self.target or {}).get("transform") == "log"

    @property
    def outputs(self) -> int:
        """The network's outputs per row: one per class, or one value."""
        return 1 if self.regression else len(self.class_names)

    def predict(self, X, threshold: str | None = None) -> np.ndarray:
        """Predicted class names: the most probable class, or with ``threshold`` (``"CLASS=T"``) that class wherever
        its probability is at least T. A regression model: the predicted values (float, the target's units)."""
        if self.regression:
            if threshold is not None:
                raise ApfedError("a threshold picks a class; a regression model predicts numbers")
            return self._proba_of_features(self._inputs(X))[:, 0]
        proba = self.predict_proba(X)
        if threshold is None:
            return self.classes_[proba.argmax(1)]
        from apfed.scoring import parse_threshold, thresholded

        return self.classes_[thresholded(proba, *parse_threshold(threshold, self.class_names))]

    def predict_interval(self, X) -> np.ndarray:
        """A regression model trained with ``conformal``: each row's interval (rows x 2: lower, upper, in the
        target's units) that holds the true value for at least ``conformal["coverage"]`` of new rows drawn like
        its validation rows (``apfed.conformal``)."""
        from apfed.conformal import intervals

        self._needs_conformal(regression=True)
        outputs = self._proba_of_features(self._inputs(X), raw=True)[:, 0]  # the units the quantile is in
        return intervals(outputs, self.conformal["q"], self.logged)

    def predict_set(self, X) -> np.ndarray:
        """A classification model trained with ``conformal``: each row's set of classes (rows x classes, bool,
        columns in ``classes_`` order) that holds the true class for at least ``conformal["coverage"]`` of new rows
        drawn like its validation rows: the classes of probability at least 1 - q, and the predicted one."""
        from apfed.conformal import prediction_sets

        self._needs_conformal(regression=False)
        return prediction_sets(self.predict_proba(X), self.conformal["q"])

    def _needs_conformal(self, regression: bool) -> None:
        if self.regression != regression:
            raise ApfedError(
                "a regression model gives intervals: use predict_interval"
                if self.regression
                else "a classification model gives sets of classes: use predict_set"
            )
        if not self.conformal:
            raise ApfedError(
                "this model was trained without conformal: train it with --set conformal=0.9 and validation"
            )

    def score(self, X, y) -> float:
        """Mean accuracy (0–1) of ``predict(X)`` against the labels ``y``, as scikit-learn's ``score``; a regression
        model's R², as a scikit-learn regressor's."""
        m = self.score_report(X, y)["metrics"]
        return m["r2"] if self.regression else m["accuracy"] / 100

    def score_report(self, X, y, threshold: str | None = None) -> dict:
        """Accuracy, macro and weighted F1, ROC-AUC, each class's precision and recall, and the confusion matrix
        of the model on ``X`` against the labels ``y`` (class names, matched as ``apfed.scoring.label_indices``
        says; a label that is no class of the model counts as wrong and is named in ``unseen_labels``), with the
        predictions of ``predict(X, threshold)``; ``cutoffs``: how each cut-off would do (``cutoff_table``)."""
        from apfed.scoring import label_indices, parse_threshold, score_report

        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(X):
            raise ApfedError(f"y must hold one label per row of X ({len(X)}), got shape {y.shape}")
        if self.regression:
            from apfed.scoring import regression_report

            if threshold is not None:
                raise ApfedError("a threshold picks a class; a regression model predicts numbers")
            return regression_report(target_values(y), self.predict(X))
        index, unseen = label_indices(y.astype(str), self.class_names)
        cut = None if threshold is None else parse_threshold(threshold, self.class_names)
        return score_report(index, self.predict_proba(X), self.class_names, unseen, cut)

    def permutation_importance(
        self, X, y, repeats: int = 5, seed: int = 0, progress: Callable[[], object] | None = None
    ) -> list[dict]:
        """Each raw column's importance on these rows: the accuracy (in points; a regression model's R²,
        ``r2_drop``) lost when its values are shuffled across the rows (``apfed.scoring.permutation_importance``),
        largest first. Tabular models only. ``progress`` is called once per column."""
        from apfed.scoring import feature_groups, label_indices, permutation_importance

        if self.spec["kind"] != "tabular":
            raise ApfedError("permutation importance is for tabular models (an image strip's pixels are no columns)")
        features = self._inputs(X).numpy()  # preprocessed; shuffling a column of it shuffles the raw column
        if self.regression:
            index = target_values(y)
        else:
            index, _ = label_indices(np.asarray(y).astype(str), self.class_names)
        groups = feature_groups(self.columns, self.encoding, self.n_features)
        return permutation_importance(
            self._proba_of_features, features, index, groups, repeats, seed, progress, self.regression
        )

    def explain(
        self, X, target: str | None = None, steps: int = 32, progress: Callable[[int], object] | None = None
    ) -> Explanation:
        """Why each row got its prediction: each raw column's effect on the row's explained output against the
        average training row's (integrated gradients from that row, summed per column; ``apfed.explain``). A
        classification explains the probability of the predicted class, or of the class ``target`` for every row;
        a regression its value. Tabular models only. ``progress`` gets the rows done after each pass."""
        from apfed.explain import Explanation, column_effects, integrated_gradients
        from apfed.scoring import feature_groups

        if self.spec["kind"] != "tabular":
            raise ApfedError("explanations are per column, for tabular models (an image strip's pixels are no columns)")
        if steps < 1:
            raise ApfedError(f"steps must be at least 1, got {steps}")
        if target is not None and self.regression:
            raise ApfedError("a target class is for a classification; a regression model explains its value")
        if target is not None and str(target) not in self.class_names:
            raise ApfedError(f"{target!r} is no class of this model ({', '.join(map(repr, self.class_names))})")
        self.net.eval()
        dev = next(self.net.parameters()).device
        x = self._inputs(X).to(dev)
        baseline = torch.zeros(x.shape[1:], device=dev)  # every feature at its training mean

        def output(z: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
            y = self.net(z)
            if self.regression:
                return y[:, 0].expm1() if self.logged else y[:, 0]
            return y.softmax(1).gather(1, cls[:, None])[:, 0]

        outputs, base = self._proba_of_features(x), self._proba_of_features(baseline[None])[0]
        if self.regression:
            cls = np.zeros(len(x), dtype=np.int64)
        elif target is not None:
            cls = np.full(len(x), self.class_names.index(str(target)), dtype=np.int64)
        else:
            cls = outputs.argmax(1)
        attributions = integrated_gradients(output, x, torch.from_numpy(cls).to(dev), baseline, steps, progress)
        groups = feature_groups(self.columns, self.encoding, self.n_features)
        return Explanation(
            columns=[name for name, _ in groups],
            effects=column_effects(attributions, groups),
            value=outputs[np.arange(len(x)), cls],
            baseline=base[cls],
            explained=None if self.regression else self.classes_[cls],
        )

    def metadata(self) -> dict:
        # a model that fills missing values or encodes categorical columns is format 2: an older apfed refuses
        # it rather than read its table wrongly; any other stays format 1, readable by every apfed
        extras = {"encoding": self.encoding.to_json()} if self.encoding else {}
        version = 2 if extras or self.preprocessor.missing else 1
        if self.regression:  # an older apfed would read its one output as a class
            extras.update(task=self.task, target=self.target or {})
            version = 3
        if self.conformal:
            extras["conformal"] = self.conformal
            version = 4
        if self.profile:  # an older apfed reads the file and ignores it
            extras["profile"] = self.profile
        if self.output_profile:
            extras["output_profile"] = self.output_profile
        return {
            "format": FORMAT,
            "format_version": version,
            **extras,
            "spec": self.spec,
            "preprocessing": self.preprocessor.to_json(),
            "class_names": self.class_names,
            "columns": self.columns,
            "view_name": self.view_name,
            "config": self.config,
            "provenance": self.provenance,
        }

    def save(self, path: str | Path) -> Path:
        """Write the model file atomically: a crash never leaves a half-written file at ``path``. Where ``path``
        cannot be written (a full disk, a folder gone or read-only), the model goes to a new file in the temporary
        folder instead and an ``ApfedError`` names both: a run whose last step fails loses nothing."""
        path = Path(path)
        try:
            return self._write(path)
        except (OSError, SafetensorError) as e:
            why = _write_failure(e)
        name = None
        try:
            fd, name = tempfile.mkstemp(prefix=f"{path.stem}-", suffix=path.suffix or ".safetensors")
            os.close(fd)
            self._write(Path(name))
        except (OSError, SafetensorError):
            if name is not None:
                Path(name).unlink(missing_ok=True)
            raise ApfedError(f"cannot write the model file {path}: {why}") from None
        raise ApfedError(f"cannot write the model file {path}: {why}; the model is saved as {name} instead")

    def _write(self, path: Path) -> Path:
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        with atomic_file(path) as tmp:
            save_file(tensors, str(tmp), metadata={"apfed": json.dumps(self.metadata())})
        return path

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> StandaloneModel:
        path = Path(path)
        if not path.is_file():
            raise ApfedError(f"model file not found: {path}")
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {}).get("apfed", "null"))
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise ApfedError(f"{path}: not an apfed model file ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ApfedError(f"{path}: not an apfed standalone model (no apfed metadata)")
        version = meta.get("format_version")
        if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
            raise ApfedError(f"{path}: format version {version} is newer than this apfed supports")
        try:
            return cls._from_parts(meta, tensors, device)
        except (ApfedError, KeyError, TypeError, ValueError) as e:
            why = f"no {e}" if isinstance(e, KeyError) else str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ApfedError(f"{path}: malformed apfed model file: {why}") from None

    @classmethod
    def _from_parts(cls, meta: dict, tensors: dict[str, torch.Tensor], device: str) -> StandaloneModel:
        """The model from checked metadata and weights; the network is first built without memory (on torch's
        meta device), so a metadata that asks for huge layers is refused before any is allocated."""
        _check_metadata(meta)
        cfg = TrainConfig.from_dict(meta["config"]).validate()
        spec = meta["spec"]
        regression = meta.get("task") == "regression"

        def build() -> StandaloneNet:
            d = int(np.prod(encoder_output_shape(spec, cfg.embedding_dim)))
            return StandaloneNet(
                make_encoder(spec, cfg.embedding_dim, cfg.hidden_dim),
                make_head(d, cfg.head_hidden, 1 if regression else len(meta["class_names"]), cfg.dropout),
            )

        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in build().state_dict().items()}
        stored = {k: tuple(v.shape) for k, v in tensors.items()}
        if stored != expected:
            wrong = sorted(set(stored) ^ set(expected)) or [k for k in expected if stored[k] != expected[k]]
            raise ApfedError(f"the weights do not match the stored architecture (first: {wrong[0]})")
        net = build()
        net.load_state_dict(tensors)
        return cls(
            net=net.to(device).eval(),
            spec=spec,
            preprocessor=Preprocessor.from_json(meta["preprocessing"]),
            class_names=meta["class_names"],
            columns=meta["columns"],
            view_name=meta["view_name"],
            config=meta["config"],
            provenance=meta["provenance"],
            encoding=Encoding.from_json(meta["encoding"]) if "encoding" in meta else None,
            task=meta.get("task", "classification"),
            target=meta.get("target"),
            conformal=meta.get("conformal"),
            profile=meta.get("profile"),
            output_profile=meta.get("output_profile"),
        )

    def describe(self) -> dict:
        """What the model takes and where it came from: its metadata plus the parameter count."""
        out = self.metadata()
        out.pop("preprocessing")  # per-feature statistics: in the file, too long to show
        if profile := out.pop("profile", None):  # every column's deciles: as long
            out["profile_rows"] = profile["rows"]
        if outputs := out.pop("output_profile", None):
            out["output_profile_rows"] = {"rows": outputs["rows"], "source": outputs["source"]}
        if self.preprocessor.missing:
            names = self.columns or [f"feature {j}" for j in range(self.n_features)]
            out["fills_missing"] = [names[j] for j in self.preprocessor.missing]
        out["n_features"] = self.n_features
        out["parameters"] = sum(p.numel() for p in self.net.parameters())
        return out

    def export_onnx(self, path: str | Path) -> Path:
        """ONNX graph from raw features (flattened, float32) to class probabilities (a regression model: to its
        predicted values, ``prediction`` of shape (batch,))."""
        path = Path(path)
        wrapper = _OnnxWrapper(self).eval()
        dummy = torch.zeros(2, self.n_features)
        output = "prediction" if self.regression else "probabilities"
        with atomic_file(path) as tmp:  # an export that fails leaves an earlier file at ``path`` as it was
            exporter = _export_graph(wrapper, dummy, tmp, output)
            import onnx

            graph = onnx.load(str(tmp))
            for key, value in {**self.onnx_metadata(output), "exporter": exporter}.items():
                graph.metadata_props.add(key=key, value=value)
            onnx.save(graph, str(tmp))
        return path

    def onnx_metadata(self, output: str) -> dict[str, str]:
        """What an ONNX consumer needs beside the graph, as its metadata properties (text; lists as JSON): the
        features' names in input order, the classes in output order (or the regression's output), which features
        may be NaN (filled with the training mean), a categorical column's values, and a conformal model's q."""
        names = self.columns or [f"feature {j}" for j in range(self.n_features)]
        meta = {
            "apfed_format": f"{FORMAT} (exported)",
            "task": self.task,
            "input_features": json.dumps(names),
            "output": output,
            "view": self.view_name,
        }
        if not self.regression:
            meta["class_names"] = json.dumps(self.class_names)
        if self.preprocessor.missing:
            meta["nan_filled_features"] = json.dumps([names[j] for j in self.preprocessor.missing])
        if self.encoding:
            meta["categorical_columns"] = json.dumps(self.encoding.categories)
        if self.conformal:
            meta["conformal"] = json.dumps(self.conformal)
        if self.logged:
            meta["target_transform"] = "log"  # the output is already in the target's units
        return meta


def _export_graph(wrapper: torch.nn.Module, dummy: torch.Tensor, path: Path, output: str) -> str:
    """Write ``wrapper``'s ONNX graph to ``path`` with a dynamic batch axis; return which exporter wrote it.

    torch's TorchScript-based exporter first: it takes about a second, where the torch.export-based one (torch's
    default since 2.9; it needs onnxscript) takes 4 s on an idle 2-core host. torch deprecates the first and will
    remove it, so where it fails the second is tried, and where that fails too the first one's error is raised."""
    names = {"input_names": ["features"], "output_names": [output]}
    try:
        with warnings.catch_warnings():  # its deprecation: known, and met by the fallback below
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                wrapper, (dummy,), str(path), **names, dynamic_axes={"features": {0: "batch"}, output: {0: "batch"}},
                dynamo=False,
            )  # fmt: skip
        return "torchscript"
    except Exception as legacy:
        try:
            with warnings.catch_warnings():  # torch's notices about its own internals: nothing a user can act on
                warnings.simplefilter("ignore")
                batch = torch.export.Dim("batch")
                torch.onnx.export(
                    wrapper, (dummy,), str(path), **names, dynamic_shapes=({0: batch},), dynamo=True, verbose=False
                )
        except Exception:
            raise legacy from None
        return "torch.export"


class _OnnxWrapper(torch.nn.Module):
    def __init__(self, m: StandaloneModel):
        super().__init__()
        self.net = m.net.cpu()
        self.shape = tuple(m.spec["shape"])
        self.regression, self.logged = m.regression, m.logged
        p = m.preprocessor
        if p.kind == "image":
            self.register_buffer("mean", torch.zeros(()))
            self.register_buffer("scale", torch.tensor(p.scale, dtype=torch.float32))
        else:
            self.register_buffer("mean", torch.from_numpy(p.mean))
            self.register_buffer("scale", torch.from_numpy(1.0 / p.std))
        fill = None
        if p.missing:  # a missing value (NaN) in these features is the training mean, as in predict
            fill = torch.zeros(m.n_features, dtype=torch.bool)
            fill[p.missing] = True
        self.register_buffer("fill", fill)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fill is not None:
            x = torch.where(torch.isnan(x) & self.fill, self.mean, x)
        x = ((x - self.mean) * self.scale).reshape(-1, *self.shape)
        y = self.net(x)
        if self.regression:
            return torch.exp(y[:, 0]) - 1 if self.logged else y[:, 0]  # exp - 1: every ONNX opset has Exp
        return torch.softmax(y, 1)


def _check_metadata(meta: dict) -> None:
    """Raise ApfedError naming the first field of a model file's metadata that is missing or of the wrong form."""

    def ensure(ok: bool, what: str) -> None:
        if not ok:
            raise ApfedError(what)

    def numbers(v, n: int) -> bool:
        return isinstance(v, list) and len(v) == n and all(_is_number(x) and math.isfinite(x) for x in v)

    for key, kind in (("format_version", int), ("spec", dict), ("preprocessing", dict), ("class_names", list)):
        ensure(key in meta, f"no {key!r}")
        ensure(isinstance(meta[key], kind) and not isinstance(meta[key], bool), f"{key!r} is not {_FORMS[kind]}")
    for key, kind in (("config", dict), ("provenance", dict), ("view_name", str)):
        ensure(isinstance(meta.get(key), kind), f"{key!r} is missing or not {_FORMS[kind]}")
    for f in fields(TrainConfig):
        if f.name in meta["config"] and f.default is not MISSING:
            ensure(_same_kind(meta["config"][f.name], f.default), f"config {f.name!r} is {meta['config'][f.name]!r}")
    spec = meta["spec"]
    ensure(spec.get("kind") in ("image", "tabular"), "spec 'kind' is neither image nor tabular")
    shape = spec.get("shape")
    ensure(
        isinstance(shape, list)
        and len(shape) == (3 if spec["kind"] == "image" else 1)
        and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in shape),
        f"spec 'shape' {shape!r} is not a {spec['kind']} shape",
    )
    names = meta["class_names"]
    ensure(meta.get("task", "classification") in ("classification", "regression"), "'task' is no task apfed knows")
    if meta.get("task") == "regression":
        ensure(names == [], "a regression model has no 'class_names'")
        target = meta.get("target")
        ensure(isinstance(target, dict), "'target' is not a mapping")
        ensure(target.get("transform", "none") in ("none", "log"), "'target' 'transform' is unknown")
        ensure(numbers([target.get("mean"), target.get("std")], 2), "'target' has no finite mean and std")
    else:
        ensure(len(names) >= 1 and all(isinstance(c, str) for c in names), "'class_names' is not a list of names")
    if "conformal" in meta:
        c = meta["conformal"]
        ensure(isinstance(c, dict), "'conformal' is not a mapping")
        ok = numbers([c.get("coverage"), c.get("q")], 2) and 0 < c["coverage"] < 1 and c["q"] >= 0
        ensure(ok and isinstance(c.get("rows"), int) and c["rows"] >= 1, "'conformal' has no coverage, q and rows")
    n = math.prod(shape)
    columns = meta.get("columns")
    named = isinstance(columns, list) and len(columns) == n and all(isinstance(c, str) for c in columns)
    ensure(columns is None or named, f"'columns' is not a list of {n} column names")
    pre = meta["preprocessing"]
    ensure(pre.get("kind") == spec["kind"], "'preprocessing' is not for this view's kind")
    if spec["kind"] == "image":
        ensure(_is_number(pre.get("scale")) and 0 < pre["scale"] < math.inf, "'preprocessing' has no valid scale")
    else:
        ok = numbers(pre.get("mean"), n) and numbers(pre.get("std"), n) and all(x > 0 for x in pre["std"])
        ensure(ok, f"'preprocessing' has no valid mean and std for {n} features")
        filled = pre.get("missing", [])
        ok = isinstance(filled, list) and all(isinstance(j, int) and not isinstance(j, bool) for j in filled)
        ensure(ok and all(0 <= j < n for j in filled), f"'preprocessing' 'missing' is not a list of features below {n}")
    if "profile" in meta:
        from apfed.drift import check_profile

        ensure(spec["kind"] == "tabular", "'profile' is for a tabular model")
        check_profile(meta["profile"], n)
    if "output_profile" in meta:
        from apfed.drift import check_output_profile

        check_output_profile(meta["output_profile"], names, meta.get("task") == "regression")
    if "encoding" in meta:
        ensure(isinstance(meta["encoding"], dict), "'encoding' is not a mapping")
        encoding = Encoding.from_json(meta["encoding"])
        ensure(spec["kind"] == "tabular" and encoding.feature_names() == columns, "'encoding' does not give 'columns'")


_FORMS = {int: "an integer", dict: "a mapping", list: "a list", str: "a string"}


def _same_kind(value, default) -> bool:
    """``value`` can stand where a config field's ``default`` does (an int for a float, never a bool for a number)."""
    if isinstance(default, bool) or not isinstance(default, int | float):
        return isinstance(value, type(default))
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    return _is_number(value)


def _is_number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def target_values(y) -> np.ndarray:
    """Labels given to score a regression model, as float64 numbers; an ApfedError when one is not a number."""
    y = np.asarray(y)
    try:
        return y.astype(np.float64)
    except (TypeError, ValueError):
        raise ApfedError("a regression model is scored against numbers; a label is not a number") from None


def _write_failure(e: Exception) -> str:
    """Why a file could not be written, in the operating system's words: ``No space left on device``."""
    if isinstance(e, OSError):
        return e.strerror or str(e)
    found = re.search(r"I/O error: (.*?) \(os error \d+\)", str(e))  # safetensors wraps the OS error in its text
    return found.group(1) if found else str(e).splitlines()[0]
