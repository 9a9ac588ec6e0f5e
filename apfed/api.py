"""The Python API: load a multi-view dataset (or build one from arrays: ``apfed.from_arrays``), train one method,
compare methods, simulate over Flower. The ``apfed`` CLI loads its data, checks its device and runs
``apfed simulate`` through it.

>>> import apfed
>>> ds, active = apfed.load_dataset("handwritten", active="fou")
>>> result = apfed.train(ds, active, "apfed-kd", epochs=20)
>>> result.accuracy, result.model.predict(ds.views[active].X[:5])

Everything runs in this process over the in-process transport (the same ActiveClient and PassiveClient that
Flower runs use). Errors a caller can cause raise ``apfed.ApfedError`` (``ConfigError``, ``DataError``) with one
clear line. Imports are deferred to the calls, so ``import apfed`` stays light.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from apfed.datasets import check_data_options, load_dataset  # noqa: F401 (the API's, from the core)
from apfed.errors import ConfigError, DataError

if TYPE_CHECKING:
    from apfed.config import TrainConfig
    from apfed.data.views import MultiViewDataset
    from apfed.runner import RunResult, Safety


def _config(preset: str = "default", **settings) -> TrainConfig:
    """A training configuration: ``preset`` (``default`` or ``paper``), then ``settings`` (any ``TrainConfig``
    field, e.g. ``epochs=20, kd_temperature=4``; None values keep the preset's)."""
    from apfed.config import make_config

    return make_config(preset, **settings)


def check_run(ds: MultiViewDataset, active: int | str, cfg: TrainConfig) -> int:
    """The settings' mistakes, as one-line errors; the active view's index (``active``: an index or a name)."""
    from apfed.config import METHODS

    if cfg.method not in METHODS:
        raise ConfigError(f"unknown method {cfg.method!r}; choose from {', '.join(METHODS)}")
    if isinstance(active, bool) or not isinstance(active, int | str):
        raise ConfigError(f"active must be a view index or name, got {active!r}")
    try:
        active = ds.view_index(active)
    except DataError as e:  # a wrong argument, not wrong data
        raise ConfigError(str(e)) from None
    if len(ds.views) < 2 and cfg.method != "local":
        raise ConfigError(
            f"{cfg.method} needs at least 2 views (one passive); {ds.name} has 1: add a passive party's data"
            " (a --data file each), or use the method local"
        )
    cfg.check_passives(len(ds.views) - 1)
    from apfed.config import check_task_settings
    from apfed.data.views import is_regression

    check_task_settings(cfg, is_regression(ds.labels))
    check_shift(ds, cfg)
    check_device(cfg.device)
    return active


def check_shift(ds: MultiViewDataset, cfg: TrainConfig) -> None:
    """The shift augmentation moves image strips sideways; on a dataset with no image view it would do nothing."""
    if cfg.shift > 0 and not any(v.kind == "image" for v in ds.views):
        raise ConfigError(f"shift moves image strips sideways, and {ds.name} has no image view; drop shift")


def check_device(device: str, asked: str = "device='cuda'", instead: str = "device='cpu'") -> None:
    """A CUDA device only where torch sees a GPU (``asked``/``instead``: how the caller names the option)."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"{asked} was asked for but no CUDA GPU is available; use {instead}")
        index, count = device.partition(":")[2], torch.cuda.device_count()
        if index.isdigit() and int(index) >= count:  # a malformed name is the config's error
            raise ConfigError(f"{device} was asked for but this machine has {count} GPU(s): cuda:0 to cuda:{count - 1}")


def train(
    ds: MultiViewDataset,
    active: int | str,
    method: str = "apfed-kd",
    *,
    preset: str = "default",
    safety: Safety | None = None,
    on_epoch: Callable[[dict], object] | None = None,
    log: Callable[[str], object] = lambda *_: None,
    **settings,
) -> RunResult:
    """Train one method with the passives in this process (``active``: the active party's view, an index or a name
    such as ``"fou"``); return a ``RunResult``: ``accuracy`` (the mean over
    the last ``eval_last`` epochs), ``final`` metrics, per-epoch ``history``, ``wire`` counts and, for a
    standalone method, ``model`` (an ``apfed.standalone.StandaloneModel``: ``predict``, ``save``).

    ``settings``: ``seed``, ``epochs``, ``device`` and any other ``TrainConfig`` field. ``safety``
    (``apfed.runner.Safety``): encryption, the bad-message policy, checkpoints. ``on_epoch`` receives each epoch's
    metrics."""
    from apfed.runner import run

    cfg = _config(preset, method=method, **settings)
    active = check_run(ds, active, cfg)
    return run(ds, active, cfg, on_epoch=on_epoch, log=log, safety=safety)


def compare(
    ds: MultiViewDataset,
    active: int | str,
    methods: Sequence[str] | None = None,
    *,
    seeds: int = 3,
    preset: str = "default",
    out: str | Path | None = None,
    jobs: int = 1,
    quiet: bool = True,
    safety: Safety | None = None,
    resume: bool = False,
    resplit: bool = False,
    folds: int = 0,
    **settings,
) -> dict:
    """Train every method with seeds ``0..seeds-1`` (``active``: a view index or name; a method may carry its own
    settings, ``"apfed-c[lam=0.5]"``, or passives, ``"tvfl[passives=kar]"``, a row of its own), as ``apfed
    evaluate`` does; return its report (``summary``: per method ``accuracy_mean``, ``accuracy_std``,
    ``macro_f1_mean``, ``roc_auc_mean``, ``standalone``, ``gap_closed``, and against ``local`` with the same seed
    ``vs_local_mean``, ``vs_local_std``, ``vs_local_wins`` and ``vs_local_seeds``; with validation rows
    (``validation=0.1``) ``val_mean`` and ``val_std``, and the report's ``validation_pick``, the standalone method
    best on them; ``runs``: every run). With ``out`` it also writes ``results.json``, ``results.md`` and
    ``results.png`` there (and, where the validation rows picked a method, its ``recipe.toml`` for ``apfed train
    --config``), and each finished run to ``out/runs/``; ``resume=True`` reuses those made from the same
    data and settings. ``jobs``: runs at a time in worker processes (0: one per core, at most 4). ``resplit``: seed
    s >= 1 also draws its own train/test split (seed 0 keeps the data's own), the same for every method. ``folds``:
    cross-validation instead, seeds ``0..folds-1`` (``seeds`` is then ignored), seed s tested on the s-th of
    ``folds`` stratified folds of the labelled rows and trained on the others."""
    from apfed.config import DEFAULT_METHODS, parse_method_list
    from apfed.evaluate import check_variants, evaluate

    if seeds < 1:
        raise ConfigError(f"seeds must be at least 1, got {seeds}")
    seeds = folds or seeds
    chosen = parse_method_list(",".join(methods or DEFAULT_METHODS))
    cfg = _config(preset, **settings)
    active = check_variants(ds, active, cfg, chosen)  # each on the views it trains on
    return evaluate(
        ds,
        active,
        chosen,
        seeds,
        cfg,
        Path(out) if out else None,
        preset,
        quiet=quiet,
        jobs=jobs,
        safety=safety,
        resume=resume,
        resplit=resplit,
        folds=folds,
    )


def simulate(
    method: str = "apfed-c",
    *,
    dataset: str | None = None,
    views: int | None = None,
    active: str | int | None = None,
    data: Sequence[str | Path] | None = None,
    data_dir: str | Path | None = None,
    id_column: str = "id",
    label_column: str = "label",
    preset: str = "default",
    seed: int = 0,
    epochs: int | None = None,
    batches_per_round: int = 1,
    pipeline: bool = False,
    device: str = "cpu",
    sets: Sequence[str] = (),
    model_out: str | Path | None = None,
    verbose: bool = False,
    on_start: Callable[[int], object] | None = None,
    on_epoch: Callable[[dict], object] | None = None,
    passives: str | Sequence[str | int] | None = None,
    overlap: float | None = None,
    test_fraction: float | None = None,
    labelled: float | None = None,
    task: str = "classification",
    time_column: str | None = None,
    threads: int | None = None,
) -> dict:
    """Train over the Flower simulation engine (Ray, one virtual SuperNode per passive, several processes), as
    ``apfed simulate`` does; the same seed, K and pipelining give the same model as ``train`` on as many torch
    threads. ``threads``: the active party's, which runs in this process (default: the cores the passives' actors
    leave, at least one and at most this process's count; that count is restored afterwards). Every node loads the
    data itself, so it is named (``dataset``/``data``...) rather than passed. Returns the run's summary
    (``final`` metrics, ``history``, ``wire``, ``passives``); ``model_out`` also writes the standalone model.
    ``sets``: ``"KEY=VALUE"`` overrides of ``TrainConfig`` fields. ``on_start`` receives the number of epochs once
    the data and settings are checked, before Flower starts; ``on_epoch`` each epoch's metrics. ``passives``,
    ``overlap``, ``test_fraction``, ``labelled``, ``task`` and ``time_column``: as ``load_dataset``'s."""
    from apfed.config import method_variant

    if method_variant(method, "method")[0] in ("local", "centralized"):  # a variant, 'local[lam=0]', too
        raise ConfigError(f"{method} has no passive parties to simulate; use train() or compare()")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ConfigError(f"threads must be a whole number >= 1, got {threads!r}")
    data = [str(p) for p in data or []]
    ds, a = load_dataset(
        dataset,
        views=views,
        active=active,
        data=data,
        data_dir=data_dir,
        id_column=id_column,
        label_column=label_column,
        log=lambda *_: None,
        default="mnist5k",
        passives=passives,
        overlap=overlap,
        test_fraction=test_fraction,
        labelled=labelled,
        task=task,
        time_column=time_column,
    )
    from clients.flower_app import RunSettings

    if passives is not None:  # every node resolves the views as this call did, from the same arguments
        passives = passives if isinstance(passives, str) else ",".join(map(str, passives))
        chosen = "" if active is None else str(active)
    else:
        chosen = ds.views[a].name if not data else str(a)
    from clients.flower_app import simulate as run_simulation

    s = RunSettings(
        dataset=dataset or "mnist5k",
        views=views or 0,
        active=chosen,
        passive_views=passives or "",
        overlap=overlap or 0.0,
        labelled=labelled or 0.0,
        test_fraction=0.2 if test_fraction is None else test_fraction,
        time_column=time_column or "",
        data=data,
        data_dir=str(data_dir or ""),
        id_column=id_column,
        label_column=label_column,
        task=task,
        method=method,
        preset=preset,
        epochs=epochs or 0,
        seed=seed,
        batches_per_round=batches_per_round,
        pipeline=pipeline,
        device=device,
        sets=list(sets),
        model_out=str(model_out or ""),
    )
    cfg = s.config()
    check_run(ds, a, cfg)  # before Flower starts
    if on_start is not None:
        on_start(cfg.total_epochs)
    result = run_simulation(s, len(ds.views) - 1, verbose=verbose, on_epoch=on_epoch, threads=threads)
    return {**result, "passives": len(ds.views) - 1}
