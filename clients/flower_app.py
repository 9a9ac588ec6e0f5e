"""Thin Flower apps around the two roles: the ServerApp is the active party (coordinator), each ClientApp a
passive party on its own SuperNode. The training loop is ActiveClient.fit, unchanged; only the transport
differs. ClientApps are recreated for every message, so a passive's state lives in ``context.state`` (with
an in-process cache when the same worker handles consecutive messages)."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from apfed.config import make_config, method_variant, parse_overrides, split_sets, variant_passives, variant_sets
from apfed.data.views import MultiViewDataset, PartyData, split_parties
from apfed.errors import ApfedError, ConfigError
from apfed.history_file import HistoryWriter
from apfed.metrics import headline_accuracy, standalone_rows, test_provenance
from clients.active import ActiveClient
from clients.run_recipe import apply_recipe
from protocols.errors import ProtocolError
from protocols.flower import Abandoned, FlowerTransport, discover, ends_waits_on_exit


@dataclass
class RunSettings:
    """The active party's run configuration (and, in simulation, the data every virtual node loads)."""

    dataset: str = "mnist5k"
    views: int = 0
    active: str = ""
    data: list[str] = field(default_factory=list)  # party files, the active party's first
    data_dir: str = ""
    id_column: str = "id"
    label_column: str = "label"
    task: str = "classification"  # or regression: the labels are numbers to predict
    method: str = "apfed-c"
    preset: str = "default"
    epochs: int = 0
    seed: int = 0
    batches_per_round: int = 1
    pipeline: bool = False
    device: str = "cpu"
    sets: list[str] = field(default_factory=list)
    model_out: str = ""
    results_out: str = ""
    metrics_out: str = ""  # the per-epoch metrics as CSV, rewritten as epochs end (apfed.history_file)
    timeout: float = 600.0
    passives: int = 0  # with a single `data` file (the active party's own): how many passives to expect
    passive_views: str = ""  # simulation: the views that take part besides the active one (default: all)
    overlap: float = 0.0  # simulation: > 0, the share of the training rows the passives hold (load_dataset)
    labelled: float = 0.0  # simulation: > 0, the share of the training rows that keep their label (load_dataset)
    test_fraction: float = 0.2  # the share of the active party's labelled rows held out to test (0: none)
    time_column: str = ""  # a column of the active party's file: its latest rows are the test rows (out of time)
    simulation: bool = False  # set by simulate(): with several passives, a virtual node may run two messages at once
    seal_key: str = ""  # encryption on: the active party's X25519 key file ...
    pins: list[str] = field(default_factory=list)  # ... and "passiveN=sha256:..." for every passive
    on_bad_message: str = "fail"  # skip | fail
    round_timeout: float = 0.0  # > 0: seconds a passive has for a training round before it is skipped
    checkpoint_dir: str = ""
    checkpoint_every: int = 0
    resume: bool = False
    recipe: str = ""  # deployment: a TOML recipe file on this host whose values the run config's go over
    recipe_note: str = ""  # what the recipe gave, for the log (set from the run config)

    @classmethod
    def from_run_config(cls, rc: dict) -> RunSettings:
        """From ``[tool.flwr.app.config]`` / ``--run-config`` (keys with dashes or underscores), over the values of
        its ``recipe`` file if it names one (clients.run_recipe)."""
        known = {f for f in cls.__dataclass_fields__} - {"recipe", "recipe_note"}
        recipe = str(rc.get("recipe", "") or "")
        merged, note = apply_recipe(rc)
        kw = {"recipe": recipe, "recipe_note": note} if recipe else {}
        for k, v in merged.items():
            key = k.replace("-", "_")
            if key not in known:
                raise ConfigError(f"unknown run-config key {k!r}")
            if key == "sets":  # KEY=VALUE,KEY=VALUE: a comma before no KEY= is a value's (passive_losses=r,c)
                kw[key] = split_sets(str(v))
            else:
                kw[key] = [x for x in str(v).split(",") if x] if key in ("data", "pins") else v
        kw = {k: v for k, v in kw.items() if v != "" or k in ("data", "sets", "pins")}
        return cls(**kw)

    @classmethod
    def from_recipe(cls, path: str | Path) -> RunSettings:
        """The settings a recipe file gives with no run-config pair over it (the app's defaults under it), its method
        and training settings checked: ``preflight --recipe`` and ``deploy.py --recipe``, before anything starts.
        Every mistake is one line naming the file."""
        from clients.run_recipe import app_defaults

        s = cls.from_run_config({**app_defaults(), "recipe": str(path)})
        try:
            s.config()
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
        return s

    def config(self):
        """The training configuration; ``method`` may be a variant as ``apfed evaluate`` names it,
        ``apfed-c[lam=0.25]``, whose settings come after ``sets``."""
        base, _ = method_variant(self.method, "the run config's method")
        if variant_passives(self.method) is not None:
            raise ConfigError(
                f"the run config's method {self.method!r} names passives: a run's passives are its SuperNodes"
                " (in simulation, passive-views)"
            )
        over = {
            "epochs": self.epochs or None,
            "method": base,
            "seed": self.seed,
            "device": self.device,
            "batches_per_round": self.batches_per_round,
            "pipeline": bool(self.pipeline),
            **parse_overrides([*self.sets, *variant_sets(self.method)]),
        }
        return make_config(self.preset, **over)


def load_dataset(s: RunSettings) -> tuple[MultiViewDataset, int]:
    """The dataset named by the settings and the active view index (same rules as the CLI)."""
    from apfed.datasets import load_dataset as load

    return load(
        None if s.data else s.dataset,
        views=s.views or None,
        active=s.active or None,
        data=s.data,
        data_dir=s.data_dir or None,
        id_column=s.id_column,
        label_column=s.label_column,
        log=lambda *_: None,
        default="mnist5k",
        passives=s.passive_views or None,
        overlap=s.overlap or None,
        labelled=s.labelled or None,
        test_fraction=None if s.test_fraction == 0.2 else s.test_fraction,
        task=s.task,
        time_column=s.time_column or None,
    )


def passive_party(s: RunSettings, index: int) -> PartyData:
    """Passive ``index``'s own data (no labels), for simulation and demos on bundled data."""
    ds, a = load_dataset(s)
    _, passives = split_parties(ds, a)
    if not 0 <= index < len(passives):
        raise ConfigError(f"there is no passive party {index + 1}: the dataset has {len(passives)} passive views")
    return passives[index]


def active_sealing(s: RunSettings, names: list[str]):
    """The active party's encryption settings from ``seal-key`` and ``pins`` (None when encryption is off)."""
    if not s.seal_key:
        if s.pins:
            raise ConfigError("pins are set but seal-key is not: give the active party's key to turn encryption on")
        return None
    from protocols.sealing import PartyKey, Sealing, parse_pins

    pins = parse_pins(s.pins, "pins")
    missing = [n for n in names if n not in pins]
    if missing:
        raise ConfigError(f"encryption is on but no fingerprint is pinned for {', '.join(missing)}")
    unknown = sorted(set(pins) - set(names))
    if unknown:
        raise ConfigError(f"pins name parties this run does not have: {', '.join(unknown)} (it has {', '.join(names)})")
    return Sealing(PartyKey.load(s.seal_key), pins)


def epoch_line(row: dict, epochs: int) -> str:
    """One epoch's log line for a deployment, whose operator follows the run in Flower's log (``flwr run
    --stream``): ``epoch 3/60: test accuracy 84.10 %, validation 83.75 %, task loss 0.4121, 12.3 s``."""
    parts = [f"test accuracy {row['accuracy']:.2f} %"] if "accuracy" in row else []
    if "r2" in row:
        parts.append(f"test R² {row['r2']:.4f}")
    if "val_accuracy" in row:
        parts.append(f"validation {row['val_accuracy']:.2f} %")
    if "val_r2" in row:
        parts.append(f"validation R² {row['val_r2']:.4f}")
    if "task_loss" in row:
        parts.append(f"task loss {row['task_loss']:.4f}")
    if "train_time" in row:
        parts.append(f"{row['train_time']:.1f} s")
    return f"epoch {row['epoch']}/{epochs}: " + ", ".join(parts)


def run_active(grid, s: RunSettings, on_epoch=None) -> dict:
    """The active party's whole run over a Flower Grid: align, train, evaluate, write the model."""
    cfg = s.config()
    if s.metrics_out and s.metrics_out in (s.model_out, s.results_out):
        raise ConfigError("metrics-out names the same file as model-out or results-out; give it a file of its own")
    if not s.round_timeout >= 0:  # a negative deadline would drop every training reply
        raise ConfigError(f"round-timeout must be >= 0 seconds (0: no deadline), got {s.round_timeout}")
    from apfed.data.encoding import describe
    from apfed.data.files import active_party_file, multi_view_npz
    from apfed.data.splits import check_task, check_test_fraction

    def log(line: str) -> None:  # the lines `flwr run --stream` shows the active party's operator
        logging.getLogger("flwr").info("apfed: %s", line)

    if s.recipe_note:
        log(s.recipe_note)

    if len(s.data) == 1 and multi_view_npz(s.data[0]) is None:  # a real deployment: the active holds only its file
        if s.passives < 1:
            raise ConfigError("with only the active party's data file, set passives=N (the number of passive parties)")
        test_fraction = check_test_fraction(s.test_fraction)
        active_data = active_party_file(
            s.data[0],
            s.id_column,
            s.label_column,
            test_fraction=test_fraction,
            task=check_task(s.task),
            time_column=s.time_column or None,
            log=log,
        )
        n_passives, name = s.passives, Path(s.data[0]).stem
        for line in describe(Path(s.data[0]).name, active_data.view):
            log(line)
    else:
        ds, a = load_dataset(s)
        active_data, passive_data = split_parties(ds, a, cfg.holds_unmatched)
        n_passives, name = len(passive_data), ds.name
    run_id = uuid.uuid4().hex[:12]
    log(f"waiting for {n_passives} passive party(ies) to connect and name themselves (at most {s.timeout:.0f} s)")
    nodes = discover(grid, run_id, n_passives, timeout=s.timeout)
    names = [f"passive{i + 1}" for i in range(n_passives)]
    missing = [n for n in names if n not in nodes]
    if missing:
        raise ConfigError(f"passive parties {missing} did not connect (connected: {sorted(nodes)})")
    log("connected: " + ", ".join(f"{n} (node {nodes[n]})" for n in names))
    if (s.checkpoint_every or s.resume) and not s.checkpoint_dir:
        raise ConfigError("checkpoint-every and resume need checkpoint-dir")
    transport = FlowerTransport(
        grid,
        nodes,
        s.timeout,
        # simulate() starts one actor per passive: with one, Flower's engine runs the node's messages in order, so a
        # pipelined round may be queued as in a deployment (0.88x the training time of mnist5k's 3 epochs, 2026-12-07);
        # with more, a held round goes to each node once it has answered the last (FlowerTransport)
        queue_per_node=not s.simulation or n_passives == 1,
        round_timeout=s.round_timeout or None,
        pull_each=not s.simulation,
    )
    client = ActiveClient(
        active_data,
        cfg,
        transport,
        names,
        run_id=run_id,
        log=log,
        sealing=active_sealing(s, names),
        on_bad_message="skip" if s.round_timeout else s.on_bad_message,
        checkpoint=str(Path(s.checkpoint_dir) / "active.ckpt") if s.checkpoint_dir else None,
        checkpoint_every=s.checkpoint_every,
    )
    if s.resume:
        client.resume()
    else:
        client.setup()
    show = on_epoch or (lambda row: log(epoch_line(row, cfg.total_epochs)))
    curve = HistoryWriter(s.metrics_out, resume=s.resume, warn=log) if s.metrics_out else None

    def each_epoch(row: dict) -> None:
        show(row)
        if curve:
            curve(row)

    history = client.fit(on_epoch=each_epoch)
    if curve:
        curve.finish(history)
    preds = client.predictions()
    final = client.final_metrics()
    result = {
        "method": cfg.method,
        "seed": cfg.seed,
        "history": history,
        "final": final,
        # a regression's: "r2"; a fresh student's over its own epochs only
        client.headline: headline_accuracy(standalone_rows(history, cfg.teacher_epochs), final, cfg.eval_last),
        "teacher_epochs": cfg.teacher_epochs,
        "wire": client.wire,
        "batches_per_round_used": client.k_used,
        "faults": client.faults,
        "encrypted": bool(client.channels),
        "test_predictions": {k: v.tolist() for k, v in preds.items()},
        "settings": asdict(s),
    }
    if transport.pull_each:  # a deployment's replies pulled mid-upload: each waited for Flower's retry
        result["pulls_held"] = {"count": len(transport.held), "s": round(sum(transport.held), 3)}
    unsaved = None
    if s.model_out and client.learner.standalone:
        provenance = {
            "dataset": name,
            "method": cfg.method,
            "seed": cfg.seed,
            **test_provenance(result["final"]),
            "run_id": client.run_id,  # a resumed run keeps its checkpoint's id
            "transport": "flower",
        }
        try:
            client.standalone_model(provenance).save(s.model_out)
        except ApfedError as e:  # it names where the model went instead; the passives and the results still hear
            unsaved = e
    client.finish()
    if s.results_out:
        Path(s.results_out).write_text(json.dumps(result))
    if unsaved is not None:
        raise unsaved
    return result


def make_server_app(settings: RunSettings | None = None, on_epoch: Callable[[dict], None] | None = None):
    from flwr.serverapp import ServerApp

    app = ServerApp()

    @app.main()
    def main(grid, context) -> None:
        try:
            run_active(grid, settings or RunSettings.from_run_config(dict(context.run_config)), on_epoch)
        except (ApfedError, ProtocolError) as e:  # one line to find in the log (deploy.py reports it), then Flower's
            if not isinstance(e, Abandoned):  # the simulating process is leaving (Ctrl-C): it says so itself
                logging.getLogger("flwr").error("apfed: error: %s", e)
            raise

    return app


def gpu_share(device: str, n_passives: int) -> float:
    """Each virtual SuperNode's share of the GPU on a CUDA run (Ray hides the GPU from actors that reserve none);
    the shares of all passives fit on one GPU."""
    return math.floor(10_000 / n_passives) / 10_000 if device.startswith("cuda") else 0.0


class _NoDeprecationNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("DEPRECATED FEATURE")


def _is_terminal(handler: logging.Handler) -> bool:
    stream = getattr(handler, "stream", None)
    return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _WithoutColour:
    """A text stream that drops ANSI colour sequences from what is written to it; anything else is the stream's."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(_ANSI_ESCAPE.sub("", text))

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


SHARE_CORES = True  # False: the active party keeps torch's threads (benchmarks/simulate_hold_pairs.py)


def active_threads(n_passives: int, threads: int, cores: int) -> int:
    """The active party's torch threads in a simulation: the cores its passives' actors (one torch thread each)
    leave, at least one, at most ``threads``. Once rounds overlap, an OpenMP team on every core contends with the
    actors: on 2 cores this took a 3-epoch mnist5k simulation's training to 0.86x (2 passives) and 0.80x (4)."""
    return max(1, min(threads, cores - n_passives))


def _share_cores(n_passives: int, threads: int | None = None) -> int | None:
    """Set this process's torch threads for the simulation's active party (``threads``, or ``active_threads``);
    the count to restore afterwards, or None if unchanged."""
    import os

    import torch

    before = torch.get_num_threads()
    share = threads or (active_threads(n_passives, before, os.cpu_count() or 1) if SHARE_CORES else before)
    if share == before:
        return None
    torch.set_num_threads(share)
    return before


WORKERS_DONE_S = 10.0  # how long Ray's shutdown waits for Flower's message workers to finish theirs


@contextlib.contextmanager
def stops_stay_ours() -> Iterator[None]:
    """Within the block, a stop (``kill``, ``timeout``, a job scheduler's SIGTERM) ends a simulation as it ends any
    command: this process handles it and shuts Ray down. Three things of Ray's and Flower's are bent for it:

    - ``ray.init`` leaves this process's SIGTERM handler in place. Ray sets its own (an exit with code 15), and its
      core worker then installs a C++ one over it that prints a stack first: ``apfed simulate`` ended with Ray's
      dump and code 15, or by SIGABRT when its whole process group got the signal. Only the main thread can set a
      handler; elsewhere Ray's stay.
    - Ray's processes start in a process group of their own, as Ray starts them on Windows where the system ends
      them with their parent anyway (here: Linux's parent-death signal). A signal to our group (``timeout``, a
      terminal's hang-up) then reaches this process only, which shuts Ray down: Ray's processes used to die under a
      training, Flower logged each passive actor's end with a traceback, and its shutdown of a Ray whose processes
      were gone took about 6 s more.
    - ``ray.shutdown`` first waits (at most ``WORKERS_DONE_S``) for Flower's message workers, whom Flower has told to
      stop, to finish the message each has in hand: a worker still waiting on a passive's actor touched Ray after its
      shutdown, and Ray then ended the process with exit code 1 (1 stop in 14)."""
    import signal
    import threading

    import ray
    from flwr.server.superlink.fleet.vce import vce_api
    from ray._private import services, utils

    init, shutdown, worker = ray.init, ray.shutdown, vce_api.worker

    def init_keeping_handler(*args, **kwargs):
        ours = signal.getsignal(signal.SIGTERM)
        try:
            return init(*args, **kwargs)
        finally:
            if ours is not None and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, ours)

    popen = getattr(services, "ConsolePopen", None)
    if popen is not None and sys.platform.startswith("linux") and utils.detect_fate_sharing_support():

        class GroupOfItsOwn(popen):
            def __init__(self, *args, **kwargs):
                kwargs.setdefault("process_group", 0)
                super().__init__(*args, **kwargs)

        services.ConsolePopen = GroupOfItsOwn
    working: set[int] = set()  # threads inside Flower's message workers

    def tracked_worker(*args, **kwargs):
        working.add(threading.get_ident())
        try:
            return worker(*args, **kwargs)
        finally:
            working.discard(threading.get_ident())

    def shutdown_once_workers_are_done(*args, **kwargs):
        deadline = time.monotonic() + WORKERS_DONE_S
        while working and time.monotonic() < deadline:
            time.sleep(0.02)
        return shutdown(*args, **kwargs)

    ray.init, ray.shutdown, vce_api.worker = init_keeping_handler, shutdown_once_workers_are_done, tracked_worker
    try:
        yield
    finally:
        ray.init, ray.shutdown, vce_api.worker = init, shutdown, worker
        if popen is not None:
            services.ConsolePopen = popen


def simulate(
    settings: RunSettings,
    n_passives: int,
    verbose: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
    threads: int | None = None,
) -> dict:
    """Run one training with the Flower simulation engine (Ray): one virtual SuperNode per passive. ``on_epoch``
    receives each epoch's metrics. The ServerApp runs in this process, with ``threads`` torch threads for the run
    (default ``active_threads``); the caller's count is restored afterwards."""
    import tempfile

    from flwr.simulation import run_simulation

    with tempfile.TemporaryDirectory() as tmp:
        s = RunSettings(**{**asdict(settings), "results_out": str(Path(tmp) / "result.json"), "simulation": True})
        from clients.flower_client import make_client_app

        # Ray's notice about a future default of its GPU hiding: simulate sets every actor's GPU share itself
        warnings.filterwarnings("ignore", message="Tip: In future versions of Ray", category=FutureWarning)
        flower_log = logging.getLogger("flwr")
        quiet = _NoDeprecationNotice()
        if not verbose:  # Flower deprecates calling run_simulation: our call, nothing the user can act on
            flower_log.addFilter(quiet)
        # Flower colours its log lines even into a file or a pipe, where the escape codes show as text
        plain = [h for h in flower_log.handlers if getattr(h, "colored", False) and not _is_terminal(h)]
        for h in plain:
            h.colored = False
        # Ray prints its actors' lines here, coloured (its prefix, and the actors' own Flower log, which apfed's
        # code may not have set up yet: an idle actor's teardown warning); into a file or a pipe, without colour
        streams = {name: getattr(sys, name) for name in ("stdout", "stderr")}
        for name, stream in streams.items():
            if not stream.isatty():
                setattr(sys, name, _WithoutColour(stream))
        restore = _share_cores(n_passives, threads)
        try:
            with stops_stay_ours(), ends_waits_on_exit():  # the ServerApp stops waiting if we leave
                run_simulation(
                    make_server_app(s, on_epoch),
                    make_client_app(s),
                    num_supernodes=n_passives,
                    backend_config={
                        "client_resources": {"num_cpus": 1, "num_gpus": gpu_share(s.device, n_passives)},
                        # the actors' own output (an idle actor's teardown warning) only with --verbose: a passive's
                        # error reaches the ServerApp as its reply and is reported from there. As many CPUs as
                        # passives: Flower starts one actor process per CPU Ray reports, and on a 16-core host all
                        # but n_passives of them would idle. Ray starts its workers at niceness 15, and the actors
                        # are the passives: on a busy host they got almost no CPU (a 2-epoch digits simulation beside
                        # three busy processes took 324-374 s against 52-60 s at niceness 0, 2026-12-07)
                        "init_args": {
                            "log_to_driver": verbose,
                            "num_cpus": n_passives,
                            "_system_config": {"worker_niceness": 0},
                        },
                    },
                    verbose_logging=verbose,
                )
        finally:
            if restore is not None:
                import torch

                torch.set_num_threads(restore)
            flower_log.removeFilter(quiet)
            for h in plain:
                h.colored = True
            for name, stream in streams.items():
                setattr(sys, name, stream)
        out = Path(s.results_out)
        if not out.exists():
            raise ConfigError("the simulation ended without a result; rerun with --verbose to see Flower's log")
        return json.loads(out.read_text())


# The ServerApp named in pyproject.toml [tool.flwr.app.components], for `flwr run` (the ClientApp lives in
# clients.flower_client, which a SuperNode imports without torch).
server_app = make_server_app()
