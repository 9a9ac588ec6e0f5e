"""Training configuration and presets."""

from __future__ import annotations

import difflib
import itertools
import json
import math
import re
from dataclasses import asdict, dataclass, fields

from apfed.errors import ConfigError

METHODS = ("local", "apfed-r", "apfed-c", "apfed-m", "apfed-kd", "tvfl", "centralized")
USES_PASSIVE_LOSSES = ("apfed-m", "apfed-kd")  # methods that read passive_losses
NEEDS_NO_LABEL = ("apfed-r", "apfed-c", "apfed-m", "apfed-kd")  # methods that can also train on rows with no label
DEFAULT_METHODS = ("local", "apfed-c", "apfed-kd", "tvfl")  # what `apfed evaluate` compares by default
STANDALONE = {
    "local": True,
    "apfed-r": True,
    "apfed-c": True,
    "apfed-m": True,
    "apfed-kd": True,
    "tvfl": False,
    "centralized": False,
}


@dataclass
class TrainConfig:
    """Everything that shapes one training run. Presets fill it; CLI options override single fields."""

    method: str = "apfed-c"
    epochs: int = 60
    batch_size: int = 128
    optimizer: str = "adam"  # sgd | adam | adamw
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # constant | cosine
    lam: float = 1.0  # weight of the passives' gradients on the active encoder
    temperature: float = 1.0  # NT-Xent temperature
    kd_temperature: float = 4.0
    kd_weight: float = 1.0
    feature_weight: float = 0.0  # apfed-kd: regress the student's hidden layer onto the teacher's
    teacher_grad: bool = True  # apfed-kd: the teacher's loss also trains the shared active encoder
    kd_student: str = "joint"  # apfed-kd: joint (the student trains beside its teacher) | fresh (after it, anew)
    mixup: float = 0.0  # Beta(a, a) mixup across parties (0: off); teacher and student see the same mix
    shift: int = 0  # image views: random horizontal shift of up to N pixels, the same at every party
    passive_losses: str = ""  # apfed-m / apfed-kd: one of r,c per passive, e.g. "r,c"
    embedding_dim: int = 128  # tabular encoders
    hidden_dim: int = 256  # tabular encoders and decoders
    head_hidden: int = 256
    dropout: float = 0.5
    projection_dim: int = 64
    batches_per_round: int = 1  # K: minibatches carried by one exchange with the passives
    pipeline: bool = False  # queue round r+1 before applying round r (overlaps the parties; one round stale)
    dp_clip: float = 0.0  # > 0: clip each sample's sent embedding to this L2 norm (gradients: dp_clip / batch_size)
    dp_noise: float = 0.0  # Gaussian noise multiplier: std = dp_noise x the clip bound (needs dp_clip)
    seed: int = 0
    device: str = "cpu"
    cuda_graphs: bool = True  # on a GPU, replay each role's training step as a CUDA graph (apfed.graphs)
    payload: str = "float32"  # float32 | float16: the dtype of embeddings and gradients on the wire
    tf32: bool = False  # on a GPU, TF32 matrix multiplies (faster; ~10-bit mantissa products)
    deterministic: bool = False  # on a GPU, deterministic kernels only: the same seed gives the same model
    eval_last: int = 10  # the reported accuracy is the mean test accuracy over the last N epochs
    class_weight: str = "none"  # none | balanced: each class's loss weighted by N / (classes x its training rows)
    huber: float = 0.0  # a regression: > 0, the Huber loss with this threshold on the standardized target (0: MSE)
    target_transform: str = "none"  # a regression: none | log (train on log(1 + y); predictions back in y's units)
    unmatched_rows: str = "train"  # train | drop: the active party's labelled rows that no passive holds
    unlabelled_rows: str = "train"  # train | drop: the rows every party holds that have no label (apfed-r/c/m/kd)
    validation: float = 0.0  # > 0: this share of the training rows is held out to pick the best epoch
    validation_split: str = "random"  # random | latest: the validation rows drawn at random, or the latest by time
    validation_metric: str = "accuracy"  # accuracy | loss | roc_auc | r2: what picks the epoch (and runs out of
    # patience); for a regression, accuracy stands for r2 (the task's headline figure)
    patience: int = 0  # > 0 (needs validation): stop after this many epochs without a better validation figure
    calibrate: bool = False  # (needs validation) temperature scaling of the standalone model on the validation rows
    conformal: float = 0.0  # (needs validation) > 0: prediction intervals or sets covering this share of new rows
    profile: bool = True  # the model file keeps its training rows' columns' and its outputs' distributions (drift)

    def validate(self) -> TrainConfig:
        checks = [
            (self.method in METHODS, f"method must be one of {', '.join(METHODS)}, got {self.method!r}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 2, f"batch_size must be >= 2, got {self.batch_size}"),
            (
                self.optimizer in ("sgd", "adam", "adamw"),
                f"optimizer must be sgd, adam or adamw, got {self.optimizer!r}",
            ),
            (self.lr > 0 and math.isfinite(self.lr), f"lr must be a positive number, got {self.lr}"),
            (self.schedule in ("constant", "cosine"), f"schedule must be constant or cosine, got {self.schedule!r}"),
            (
                self.unmatched_rows in ("train", "drop"),
                f"unmatched_rows must be train or drop, got {self.unmatched_rows!r}",
            ),
            (
                self.unlabelled_rows in ("train", "drop"),
                f"unlabelled_rows must be train or drop, got {self.unlabelled_rows!r}",
            ),
            (self.huber >= 0, f"huber must be >= 0 (0: squared error), got {self.huber}"),
            (
                self.target_transform in ("none", "log"),
                f"target_transform must be none or log, got {self.target_transform!r}",
            ),
            (
                self.class_weight in ("none", "balanced"),
                f"class_weight must be none or balanced, got {self.class_weight!r}",
            ),
            (0 <= self.validation < 0.5, f"validation must be a share in [0, 0.5), got {self.validation}"),
            (self.patience >= 0, f"patience must be >= 0, got {self.patience}"),
            (
                self.validation_metric in ("accuracy", "loss", "roc_auc", "r2"),
                f"validation_metric must be accuracy, loss, roc_auc or r2, got {self.validation_metric!r}",
            ),
            (self.patience == 0 or self.validation > 0, "patience needs validation rows: set validation as well"),
            (
                self.validation_split in ("random", "latest"),
                f"validation_split must be random or latest, got {self.validation_split!r}",
            ),
            (
                self.validation_split == "random" or self.validation > 0,
                "validation_split=latest chooses validation rows: set validation as well",
            ),
            (
                not self.calibrate or self.validation > 0,
                "calibrate fits a temperature on validation rows: set validation as well",
            ),
            (
                not self.calibrate or STANDALONE.get(self.method, True),
                f"calibrate scales the standalone model, and {self.method} has none",
            ),
            (
                0 <= self.conformal < 1,
                f"conformal must be a coverage in (0, 1), e.g. 0.9 (0: off), got {self.conformal}",
            ),
            (
                not self.conformal or self.validation > 0,
                "conformal calibrates on validation rows: set validation as well",
            ),
            (
                not self.conformal or STANDALONE.get(self.method, True),
                f"conformal calibrates the standalone model, and {self.method} has none",
            ),
            (self.lam >= 0, f"lam must be >= 0, got {self.lam}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (
                self.kd_weight >= 0 and self.feature_weight >= 0,
                f"kd_weight and feature_weight must be >= 0, got {self.kd_weight} and {self.feature_weight}",
            ),
            *[
                (getattr(self, k) >= 1, f"{k} must be >= 1, got {getattr(self, k)}")
                for k in ("embedding_dim", "hidden_dim", "head_hidden", "projection_dim", "eval_last")
            ],
            (self.seed >= 0, f"seed must be >= 0, got {self.seed}"),
            (self.mixup >= 0 and self.shift >= 0, "mixup and shift must be >= 0"),
            (
                0 < self.temperature < math.inf and 0 < self.kd_temperature < math.inf,
                "temperatures must be positive numbers",
            ),
            (0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}"),
            (self.batches_per_round >= 1, f"batches_per_round must be >= 1, got {self.batches_per_round}"),
            (self.dp_clip >= 0 and self.dp_noise >= 0, "dp_clip and dp_noise must be >= 0"),
            (self.payload in ("float32", "float16"), f"payload must be float32 or float16, got {self.payload!r}"),
            (self.dp_noise == 0 or self.dp_clip > 0, "dp_noise needs a clip bound: set dp_clip > 0 as well"),
            (
                re.fullmatch(r"cpu|cuda(:\d+)?", self.device) is not None,
                f"device must be cpu, cuda or cuda:N (a GPU's index), got {self.device!r}",
            ),
            (
                self.kd_student in ("joint", "fresh"),
                f"kd_student must be joint or fresh, got {self.kd_student!r}",
            ),
            (
                all(p in ("r", "c") for p in self.passive_loss_list()),
                "passive_losses takes r or c per passive, e.g. r,c",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        return self

    @property
    def fresh_student(self) -> bool:
        """apfed-kd with ``kd_student=fresh``: after the run's epochs, which train the teacher, a fresh standalone
        network trains for as many epochs on the labels and the teacher's soft labels (clients/active_student.py)."""
        return self.method == "apfed-kd" and self.kd_student == "fresh"

    @property
    def teacher_epochs(self) -> int:
        """The first epochs of the history that are not the standalone model's: a fresh student's teacher's."""
        return self.epochs if self.fresh_student else 0

    @property
    def total_epochs(self) -> int:
        """The epochs a run reports: ``epochs``, twice that with a fresh student (the teacher's, then its)."""
        return 2 * self.epochs if self.fresh_student else self.epochs

    @property
    def trains_unmatched(self) -> bool:
        """Whether the run also trains on the active party's rows that no passive holds: a standalone method's
        task loss can (``unmatched_rows=train``); a model that reads every party's data cannot."""
        return self.unmatched_rows == "train" and STANDALONE[self.method]

    @property
    def trains_unlabelled(self) -> bool:
        """Whether the run also trains on the rows every party holds that have no label: the passives' APFed losses
        need none (nor does apfed-kd's distillation from its teacher), so apfed-r, -c, -m and -kd can
        (``unlabelled_rows=train``); a task loss alone (local, tvfl, centralized) cannot."""
        return self.unlabelled_rows == "train" and self.method in NEEDS_NO_LABEL

    @property
    def holds_unmatched(self) -> bool:
        """Whether the active party keeps its rows that some passive lacks at all: to train on (above) or to test
        on (the standalone model, and tvfl with the passives' embeddings filled in); centralized, which trains on
        every party's rows in one place, has no use for them."""
        return self.method != "centralized"

    def passive_loss_list(self) -> list[str]:
        return [p.strip().lower() for p in self.passive_losses.split(",") if p.strip()]

    def check_passives(self, n: int) -> None:
        """``passive_losses`` names at most one loss per passive of a run with ``n`` passives (apfed-m, apfed-kd)."""
        chosen = self.passive_loss_list()
        if self.method in USES_PASSIVE_LOSSES and len(chosen) > n:
            raise ConfigError(
                f"passive_losses names {len(chosen)} losses ({self.passive_losses}) but the run has {n} passive(s); "
                "give one r or c per passive, in order"
            )

    def passive_loss(self, i: int) -> str | None:
        """The APFed loss passive ``i`` trains with: "r", "c", or None (local, tvfl, centralized)."""
        chosen = self.passive_loss_list()
        if self.method == "apfed-r":
            return "r"
        if self.method == "apfed-c":
            return "c"
        if self.method in USES_PASSIVE_LOSSES:
            if i < len(chosen):
                return chosen[i]
            return ("r", "c")[i % 2] if self.method == "apfed-m" else "c"
        return None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(sorted(unknown))}")
        return cls(**d)


def check_task_settings(cfg: TrainConfig, regression: bool) -> None:
    """A ConfigError for a setting that has no meaning for the run's task: weighing or calibrating classes, or
    ranking them, for a regression target; R² for a classification."""
    if not regression:
        if cfg.validation_metric == "r2":
            raise ConfigError("validation_metric=r2 is a regression's figure; this target has classes")
        if cfg.huber > 0 or cfg.target_transform != "none":
            what = "huber is a regression's loss" if cfg.huber > 0 else "target_transform is for a regression's target"
            raise ConfigError(f"{what}; this target has classes")
        return
    if cfg.class_weight != "none":
        raise ConfigError(f"class_weight={cfg.class_weight} weighs classes; a regression target has none")
    if cfg.calibrate:
        raise ConfigError("calibrate fits class probabilities; a regression model predicts numbers")
    if cfg.validation_metric == "roc_auc":
        raise ConfigError("validation_metric=roc_auc ranks classes; for a regression choose r2 or loss")


def with_defaults(settings: dict) -> dict:
    """``settings`` (a ``TrainConfig.to_dict()`` as stored, by this or an earlier apfed) with every setting it lacks
    at its default. A run stored before a setting existed ran as its default does: a new setting's default keeps
    the behaviour from before it, so a stored run or checkpoint is read with it."""
    return {**json.loads(json.dumps(TrainConfig().to_dict())), **settings}


PRESETS: dict[str, dict] = {
    # The reference protocol of arXiv 2409.04111, exactly.
    "paper": dict(
        optimizer="sgd",
        lr=1e-3,
        momentum=0.9,
        weight_decay=1e-4,
        schedule="constant",
        batch_size=128,
        epochs=300,
        lam=1.0,
        temperature=1.0,
    ),
    # Fast recipe: Adam, cosine decay, 60 epochs.
    "default": dict(
        optimizer="adam",
        lr=1e-3,
        weight_decay=1e-4,
        schedule="cosine",
        batch_size=128,
        epochs=60,
        lam=1.0,
        temperature=1.0,
    ),
}


def make_config(preset: str = "default", **overrides) -> TrainConfig:
    """A config from a preset plus overrides (None values are ignored)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    names = {f.name for f in fields(TrainConfig)}
    for key in overrides:
        if key not in names:
            raise ConfigError(unknown_setting(key))
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig(**values).validate()


RUN_KEYS = ("method", "seed", "epochs", "device", "cuda_graphs", "eval_last")  # not the recipe: said apart, or speed


def recipe_settings(config: dict) -> tuple[str, dict]:
    """A stored run's configuration as the preset it differs least from and the settings that differ from that
    preset (the run's own keys, ``RUN_KEYS``, apart): ``("default", {"lam": 2.0})``."""
    stored = with_defaults(config)
    best = None
    for preset in PRESETS:
        base = make_config(preset).to_dict()
        diffs = {k: stored[k] for k in base if k not in RUN_KEYS and k in stored and stored[k] != base[k]}
        if best is None or len(diffs) < len(best[1]):
            best = (preset, diffs)
    return best


def recipe_of(config: dict) -> tuple[str, str]:
    """A stored run's configuration as a preset and a method named as ``evaluate`` names a variant: the preset it
    differs least from, and the method with the settings that differ from that preset
    (``("default", "apfed-c[lam=2,temperature=0.5]")``), which ``train --preset P --method M`` trains again."""
    preset, diffs = recipe_settings(config)
    settings = ",".join(f"{k}={setting_text(v)}" for k, v in diffs.items())
    method = str(with_defaults(config).get("method", "?"))
    return preset, f"{method}[{settings}]" if settings else method


def setting_text(value) -> str:
    """A setting's value as ``--set KEY=VALUE`` writes it: ``true``, ``2``, ``0.0003``; a float's every digit kept
    (``:g`` alone would round 0.00012345678 to 0.000123457)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return str(value)


def unknown_setting(key: str) -> str:
    """The error for a training setting that does not exist, with the nearest names."""
    close = difflib.get_close_matches(key, [f.name for f in fields(TrainConfig)], n=3, cutoff=0.6)
    maybe = f"; did you mean {' or '.join(close)}?" if close else ""
    return f"no training setting {key!r}{maybe} ('apfed settings' lists every one)"


def parse_overrides(pairs: list[str]) -> dict:
    """``["kd_temperature=8", "teacher_grad=false"]`` -> typed overrides, checked against TrainConfig."""
    types = {f.name: f.type for f in fields(TrainConfig)}
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ConfigError(f"--set takes KEY=VALUE, got {pair!r} ('apfed settings' lists the keys)")
        if key not in types:
            raise ConfigError(f"--set {pair}: {unknown_setting(key)}")
        t = types[key]
        try:
            if t in ("bool", bool):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                out[key] = value.lower() in ("true", "1", "yes")
            elif t in ("int", int):
                out[key] = int(value)
            elif t in ("float", float):
                out[key] = float(value)
            else:
                out[key] = value
        except ValueError:
            raise ConfigError(f"--set {key}: {value!r} is not a valid {t}") from None
    return out


def lr_at(cfg: TrainConfig, progress: float) -> float:
    """Learning rate at ``progress`` in [0, 1] of training; both roles compute it the same way."""
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return cfg.lr


_SET_BOUNDARY = re.compile(r",(?=\s*[A-Za-z_][\w-]*\s*=)")


def split_sets(text: str) -> list[str]:
    """``"lam=0.5,passive_losses=r,c"`` -> ``["lam=0.5", "passive_losses=r,c"]``: a comma splits only before a
    ``KEY=``, so a value may hold commas."""
    return [x.strip() for x in _SET_BOUNDARY.split(text) if x.strip()]


def parse_method_list(text: str) -> list[str]:
    """``evaluate --methods``: comma-separated methods, each optionally with its own settings in brackets
    (``"local,apfed-c[lam=0.5],apfed-c[lam=2]"``); each checked (``method_variant``), in order, each once."""
    labels, depth, start = [], 0, 0
    for i, ch in enumerate(text + ","):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ConfigError(f"--methods: a ']' without its '[' in {text!r}")
        elif ch == "," and depth == 0:
            if label := text[start:i].strip():
                labels.append(label)
            start = i + 1
    if depth:
        raise ConfigError(f"--methods: a '[' without its ']' in {text!r}")
    labels = list(dict.fromkeys(_normal_label(x) for label in labels for x in _grid(label)))
    if not labels:
        raise ConfigError(f"--methods names no method; choose from {', '.join(METHODS)}")
    return labels


def _grid(label: str) -> list[str]:
    """``"apfed-c[lam=0.5|1,temperature=0.5|1]"`` -> one label per combination of the values a ``|`` separates,
    the first setting's values outermost: ``apfed-c[lam=0.5,temperature=0.5]``, ``apfed-c[lam=0.5,temperature=1]``,
    ... A label with no ``|`` (or not of the form METHOD[...], which ``method_variant`` names) is itself."""
    method, bracket, rest = label.strip().partition("[")
    inner = rest.rstrip()
    if not bracket or "|" not in inner or not inner.endswith("]") or "[" in inner:
        return [label]
    pairs = [pair.partition("=") for pair in split_sets(inner[:-1])]
    values = [[v.strip() for v in value.split("|")] for _, _, value in pairs]
    return [
        f"{method.strip()}[{','.join(f'{key.strip()}={v}' for (key, _, _), v in zip(pairs, combo, strict=True))}]"
        for combo in itertools.product(*values)
    ]


def _normal_label(label: str) -> str:
    method, over = method_variant(label)
    return method if not over else f"{method}[{','.join(_bracket_pairs(label))}]"


def method_variant(label: str, option: str = "--methods") -> tuple[str, dict]:
    """``"apfed-c[lam=0.5,temperature=0.2]"`` -> ``("apfed-c", {"lam": 0.5, "temperature": 0.2})``: a method and
    its own training settings (as ``--set`` takes them); a plain method has none. ``passives=kar,pix`` is no
    training setting but the views that take part in that variant's runs (``variant_passives``). ``option``:
    how errors name the option that gave ``label``."""
    method, bracket, rest = label.strip().partition("[")
    method = method.strip()
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r} in {option}; choose from {', '.join(METHODS)}")
    if not bracket:
        return method, {}
    inner = rest.rstrip()
    if not inner.endswith("]") or "[" in inner or "]" in inner[:-1]:
        raise ConfigError(f"{option}: {label.strip()!r} is not METHOD[KEY=VALUE,...]")
    pairs = _bracket_pairs(label)
    if not pairs:
        raise ConfigError(f"{option}: {label.strip()!r} has no setting in its brackets")
    named = [p.partition("=")[2].strip() for p in pairs if _names_passives(p)]
    views = {"passives": named[-1]} if named else {}
    try:
        over = parse_overrides([p for p in pairs if not _names_passives(p)])
    except ConfigError as e:
        raise ConfigError(f"{option} {label.strip()!r}: {str(e).removeprefix('--set ')}") from None
    for key in ("method", "seed"):
        if key in over:
            raise ConfigError(f"{option}: {label.strip()!r} sets {key}, which {option} and --seed(s) choose")
    if views and not views["passives"]:
        raise ConfigError(f"{option}: {label.strip()!r} names no passive view")
    return method, {**over, **views}


def variant_config(cfg: TrainConfig, label: str, **more) -> TrainConfig:
    """``cfg`` for one ``--methods`` entry (``method_variant``), with ``more`` settings (the seed), checked. What
    only a standalone model takes (``calibrate``, ``conformal``) is left out of a method that has none, unless the
    entry asks for it itself."""
    method, over = method_variant(label)
    over.pop("passives", None)
    base = cfg.to_dict()
    if not STANDALONE[method]:  # `--set conformal=0.9` for a comparison: tvfl and centralized train without
        base.update(calibrate=False, conformal=0.0)
    return TrainConfig(**{**base, **over, "method": method, **more}).validate()


def variant_passives(label: str) -> str | None:
    """The passive views a ``--methods`` entry names (``"tvfl[passives=kar,pix]"`` -> ``"kar,pix"``), else None:
    every passive of the comparison."""
    return method_variant(label)[1].get("passives")


def variant_sets(label: str) -> list[str]:
    """A method entry's own settings as ``--set`` takes them (``"apfed-c[lam=0.5,passives=kar]"`` -> ``["lam=0.5"]``;
    its passives are not a training setting)."""
    return [p for p in _bracket_pairs(label) if not _names_passives(p)]


def _names_passives(pair: str) -> bool:
    """Whether a bracket's ``KEY=VALUE`` pair is ``passives=...`` (views, not a training setting)."""
    return pair.partition("=")[0].strip() == "passives"


def _bracket_pairs(label: str) -> list[str]:
    """The KEY=VALUE pairs in a method entry's brackets, as written (``"apfed-c[lam=0.5]"`` -> ``["lam=0.5"]``)."""
    inner = label.strip().partition("[")[2].rstrip().removesuffix("]")
    return split_sets(inner) if inner else []
