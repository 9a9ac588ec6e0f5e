"""``apfed bench``: the framework's own performance figures, measured in one command.

Sections (each a list of rows in the report):
- ``epoch``: in-process APFed-C epoch time against the bare forward/backward compute of the same modules
  (mnist5k 2 views with the paper networks and preset; handwritten with all 6 views);
- ``wire``: messages, bytes and rounds per epoch per passive, for each method and K (handwritten);
- ``scaling``: epoch time, bytes per epoch and peak memory against passives, samples (5k to 500k) and embedding
  width, on a streamed synthetic multi-view set with a known signal (500k also held in memory, for contrast; each
  point in a fresh process, so its peak memory is its own);
- ``flower``: epoch time of the Flower simulation engine and of the loopback deployment (TLS and payload
  encryption each off and on; apfed supernode and warm ClientApps, and once Flower's own SuperNode with a fresh
  ClientApp process per message, as Flower runs by itself) against
  in-process, same recipe and seed, in the same run (mnist5k, 1 passive);
- ``inference``: standalone throughput at batch 1, 64 and 4096, p50/p99 latency at batch 1, for PyTorch and,
  when installed, ONNX Runtime;
- ``paper`` (only when asked for, it is meant for a GPU): the paper preset, 300 epochs of APFed-C on mnist5k 2 views,
  per seed, against the reference's 99 s on one H200.

The report opens with the goals it has figures for (apfed.bench_goals).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from apfed.bench_goals import goals, goals_markdown
from apfed.config import make_config
from apfed.data.splits import stratified_split
from apfed.data.views import MultiViewDataset, View
from apfed.spawning import without_main_script


def synthetic(n: int, passives: int, dim: int = 32, classes: int = 10, seed: int = 0) -> MultiViewDataset:
    """``passives + 1`` tabular views of ``dim`` features. Every view holds a noisy linear image of the class
    (so each party alone is informative, and together they are more so)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centers = rng.normal(size=(classes, 8))
    views = []
    for v in range(passives + 1):
        mix = rng.normal(size=(8, dim)) / np.sqrt(8)
        X = (centers[y] @ mix + 1.5 * rng.normal(size=(n, dim))).astype(np.float32)
        views.append(View(f"v{v}", "tabular", X, [f"v{v}_{j}" for j in range(dim)]))
    train, test = stratified_split(y, 0.2, seed)
    ids = np.arange(n, dtype=np.int64)  # customer numbers: 8 bytes each, as the streamed set
    return MultiViewDataset("synthetic", views, y, ids, [str(c) for c in range(classes)], train, test)


GRAPH_FIELDS = (("bare_graph_s", "bare_graph_median_s"), ("ratio_to_graph", "ratio_to_graph"))
SPLIT_FIELDS = (("split_s", "split_median_s"), ("split_ratio", "split_ratio"))  # CPU only

Log = Callable[[str], None]


def _quiet(line: str) -> None:
    pass


def describe(section: str, r: dict) -> str:
    """One measured row as a progress line: what ``apfed bench`` prints as each figure comes in."""
    if section == "epoch":
        what = f"{r['dataset']}, K = {r.get('k', 1)}" if "method" not in r else f"{r['dataset']}, {r['method']}"
        return f"{what}: protocol {r['protocol_s']:.3f} s, bare {r['bare_s']:.3f} s, ratio {r['ratio']:.2f}"
    if section == "wire":
        return (
            f"{r['method']}, K = {r['k']}: {r['messages_per_passive']:.0f} messages, {r['mb_per_passive']:.2f} MB per"
            f" passive and epoch"
        )
    if section == "scaling":
        return (
            f"{r['axis']} {r['value']}: epoch {r['epoch_s']:.2f} s, {r['mb_per_epoch']:.1f} MB sent,"
            f" training peak {r['peak_rss_mb']:.0f} MB"
        )
    if section == "flower":
        return f"{r['transport']}: epoch {r['epoch_s']:.2f} s, accuracy {r['accuracy']:.2f}"
    if section == "inference":
        return f"{r['engine']}, batch {r['batch']}: {r['samples_per_s']:,.0f} samples/s"
    return f"seed {r['seed']}: {r['epochs']} epochs in {r['seconds']:.1f} s, accuracy {r['accuracy']:.2f}"


def _repeats(dataset: str, repeats: int) -> int:
    """handwritten's epochs last a fraction of a second, where a shared host's noise swamps a median of 3."""
    return repeats if dataset == "mnist5k" else 5 * repeats


def epoch_rows(device: str, repeats: int, log: Log = _quiet) -> list[dict]:
    """Protocol epoch against bare compute, interleaved, medians: mnist5k (paper) and handwritten (default)."""
    from apfed.data import load_bundled
    from apfed.speed import compare

    rows = []
    # K = 1 (the default, the reference algorithm) is judged; handwritten also at K = 16, which sends 1/16 of the
    # messages for the same compute, to show how much of the protocol's cost is per message
    for name, preset, k in (("mnist5k", "paper", 1), ("handwritten", "default", 1), ("handwritten", "default", 16)):
        ds = load_bundled(name)
        active = 0 if name == "mnist5k" else ds.view_index("fou")
        cfg = make_config(preset, method="apfed-c", device=device, batches_per_round=k)
        r = compare(ds, active, cfg, repeats=_repeats(name, repeats))
        rows.append(
            {
                "dataset": name,
                "views": len(ds.views),
                "preset": preset,
                "device": device,
                "k": k,
                "protocol_s": r["protocol_median_s"],
                "bare_s": r["bare_median_s"],
                "ratio": r["ratio"],
                **{ours: r[theirs] for ours, theirs in (*GRAPH_FIELDS, *SPLIT_FIELDS) if theirs in r},
            }
        )
        log(describe("epoch", rows[-1]))
    return rows


def method_epoch_rows(device: str, repeats: int, log: Log = _quiet) -> list[dict]:
    """Every method's in-process epoch against its own modules run as one model (apfed.speed.bare_joint_epoch),
    interleaved, medians: mnist5k (paper networks, 2 views) and handwritten (default, 6 views)."""
    from apfed.config import METHODS
    from apfed.data import load_bundled
    from apfed.speed import compare_methods

    rows = []
    for name, preset in (("mnist5k", "paper"), ("handwritten", "default")):
        ds = load_bundled(name)
        active = 0 if name == "mnist5k" else ds.view_index("fou")
        cfg = make_config(preset, device=device)
        for r in compare_methods(ds, active, cfg, list(METHODS), _repeats(name, repeats)):
            rows.append({"dataset": name, "views": len(ds.views), "preset": preset, "device": device, **r})
            log(describe("epoch", rows[-1]))
    return rows


def wire_rows(methods: list[str], ks: list[int], log: Log = _quiet) -> list[dict]:
    """Per method and K, one epoch on handwritten (5 passives): what crosses the wire per passive."""
    from apfed.data import load_bundled
    from apfed.runner import build_clients

    ds = load_bundled("handwritten")
    active = ds.view_index("fou")
    rows = []
    for method in methods:
        for k in ks:
            cfg = make_config("default", method=method, epochs=1, batches_per_round=k)
            client = build_clients(ds, active, cfg)
            client.setup()
            before = dict(client.wire)
            client.evaluate = lambda: {"accuracy": 0.0}  # the training epoch only
            rounds0 = client.round
            client.fit()
            n = len(client.names)
            rows.append(
                {
                    "method": method,
                    "k": k,
                    "passives": n,
                    "messages_per_passive": (client.wire["messages"] - before["messages"]) / n,
                    "mb_per_passive": (client.wire["bytes"] - before["bytes"]) / n / 1e6,
                    "rounds": client.round - rounds0,
                }
            )
            log(describe("wire", rows[-1]))
    return rows


def _scaling_point(kw: dict, q) -> None:
    import torch

    from apfed.data.streamed import streamed_synthetic
    from apfed.memory import heap_mb, peak_rss_mb, per_sample_arrays_bytes, reset_peak_rss, rss_mb
    from apfed.runner import build_clients

    torch.set_num_threads(kw.pop("threads"))
    make = streamed_synthetic if kw["streamed"] else synthetic
    ds = make(kw["n"], kw["passives"], kw["dim"])
    cfg = make_config("default", method="apfed-c", epochs=1, batches_per_round=kw["k"], embedding_dim=kw["width"])
    client = build_clients(ds, 0, cfg)
    client.setup()
    setup_peak_mb, held_mb = peak_rss_mb(), rss_mb()
    bookkeeping = per_sample_arrays_bytes(kw["n"], *_holders(ds, client))
    heap = heap_mb()
    phased = reset_peak_rss()  # from here the peak is the training epoch's own
    client.evaluate = lambda: {"accuracy": 0.0}
    before = client.wire["bytes"]
    t0 = time.perf_counter()
    client.fit()
    seconds = time.perf_counter() - t0
    q.put(
        {
            **({"heap_free_after_setup_mb": heap[1]} if heap else {}),
            "epoch_s": seconds,
            "mb_per_epoch": (client.wire["bytes"] - before) / 1e6,
            "peak_rss_mb": peak_rss_mb() if phased else float("nan"),
            "setup_peak_rss_mb": setup_peak_mb,
            "rss_after_setup_mb": held_mb if held_mb is not None else float("nan"),
            "bookkeeping_bytes": bookkeeping,
        }
    )


def _holders(ds: MultiViewDataset, client) -> list:
    """The objects of an in-process run that may hold per-sample arrays: the dataset, each party, its data, its
    learner and the learner's rows."""
    from apfed.runner import in_process_passives

    parties = [client, *in_process_passives(client)]
    out: list = [ds]
    for p in parties:
        out += [p, p.data, p.learner]
        if hasattr(p.learner.X, "__dict__"):  # streamed rows (DeviceRows), not a resident tensor
            out.append(p.learner.X)
    return out


def scaling_rows(threads: int, log: Log = _quiet) -> list[dict]:
    """Epoch time, bytes and peak memory (each point in a fresh process) against passives, samples, width, on
    the streamed synthetic set (rows generated per minibatch); 500k samples also held in memory, for contrast."""
    base = {"n": 5000, "passives": 1, "dim": 32, "width": 128, "k": 16, "streamed": True}
    points = [("passives", p, {"passives": p}) for p in (1, 2, 4, 8)]
    points += [("samples", n, {"n": n}) for n in (5000, 50000, 500000)]
    points += [("samples, in memory", 500000, {"n": 500000, "streamed": False})]
    points += [("width", w, {"width": w}) for w in (32, 128, 512, 1024)]
    ctx = mp.get_context("spawn")
    rows = []
    for axis, value, change in points:
        kw = {**base, **change, "threads": threads}
        q = ctx.Queue()
        p = ctx.Process(target=_scaling_point, args=(dict(kw), q))
        with without_main_script():
            p.start()
        out = q.get(timeout=3600)
        p.join()
        rows.append({"axis": axis, "value": value, **{k: kw[k] for k in base}, **out})
        log(describe("scaling", rows[-1]))
    return rows


def load_deploy():
    """The loopback deployment helper, examples/deploy-local/deploy.py (a source checkout only)."""
    import importlib.util

    from apfed.errors import ConfigError

    path = Path(__file__).resolve().parents[1] / "examples" / "deploy-local" / "deploy.py"
    if not path.exists():
        raise ConfigError(f"the flower section needs a source checkout: {path} not found")
    spec = importlib.util.spec_from_file_location("apfed_deploy_local", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _sealing_clock():
    """Seconds spent in ``Channel.seal`` and ``Channel.open`` (both parties) while the block runs."""
    from protocols.sealing import Channel

    spent = {"s": 0.0}
    originals = {name: getattr(Channel, name) for name in ("seal", "open")}

    def clocked(f):
        def g(*args, **kw):
            t = time.perf_counter()
            try:
                return f(*args, **kw)
            finally:
                spent["s"] += time.perf_counter() - t

        return g

    for name, f in originals.items():
        setattr(Channel, name, clocked(f))
    try:
        yield spent
    finally:
        for name, f in originals.items():
            setattr(Channel, name, f)


def _flower_row(
    transport: str, accuracy: float, history: list[dict], wire: dict, epochs: int, in_process: bool = False
) -> dict:
    """One transport's epoch time. In process, a pipelined round's request is handled when it is queued, so the
    passives' work on the next epoch's first round falls in this epoch's clock: the first epoch carries K more
    minibatches of it and the last K fewer (at K = 16 on mnist5k, epochs of 9.4, 8.2, 7.5 and 5.9 s). The mean of
    all epochs counts every minibatch once. A deployment's passives compute beside the active party instead, and
    its first epoch carries Flower's start-up: the median of the later epochs."""
    times = [h["train_time"] for h in history]
    steady = statistics.mean(times) if in_process else statistics.median(times[1:] if len(times) > 1 else times)
    return {
        "transport": transport,
        "accuracy": accuracy,
        "epoch_s": steady,
        "epochs_s": times,
        "mb_per_epoch": wire["bytes"] / epochs / 1e6,
        "messages_per_epoch": wire["messages"] / epochs,
    }


def flower_rows(epochs: int = 3, k: int = 16, log: Log = _quiet) -> list[dict]:
    """In-process (plain and sealed), Flower simulation, and the loopback deployment with TLS and payload
    encryption off and on: APFed-C on mnist5k 2 views, K minibatches per round, pipelined, one seed."""
    from apfed.data import load_bundled
    from apfed.runner import Safety, run
    from clients.flower_app import RunSettings, simulate

    deploy = load_deploy()
    ds = load_bundled("mnist5k")
    cfg = make_config("default", method="apfed-c", epochs=epochs, batches_per_round=k, pipeline=True)
    rows = []
    for name, safety in (("in-process", None), ("in-process, encrypted", Safety(encrypt=True))):
        with _sealing_clock() as sealing:
            r = run(ds, 0, cfg, safety=safety)
        rows.append(_flower_row(name, r.final["accuracy"], r.history, r.wire, epochs, in_process=True))
        log(describe("flower", rows[-1]))
        if safety is not None:  # robust to the host's noise: the time spent sealing, against the epoch
            per_epoch = sealing["s"] / epochs
            rows[-1].update(sealing_s_per_epoch=per_epoch, sealing_share=per_epoch / rows[0]["epoch_s"])
    settings = RunSettings(
        dataset="mnist5k", views=2, active="0", method="apfed-c", epochs=epochs, batches_per_round=k, pipeline=True
    )
    sim = simulate(settings, 1)
    rows.append(_flower_row("Flower simulation", sim["final"]["accuracy"], sim["history"], sim["wire"], epochs))
    log(describe("flower", rows[-1]))
    # apfed's: each passive runs apfed supernode (Flower's waits shortened, clients/supernode.py) and forks its
    # ClientApps from a server that imported Flower once (clients/warm_clientapp.py); the last row runs Flower's own
    # flower-supernode, starting a fresh ClientApp process per message, as Flower does by itself
    for tls, enc, ours in ((False, False, True), (True, False, True), (True, True, True), (True, False, False)):
        with tempfile.TemporaryDirectory() as tmp:
            dep = deploy.deploy(
                Path(tmp),
                "apfed-c",
                "mnist5k",
                "top",
                epochs,
                k,
                0,
                timeout=3600,
                pipeline=True,
                tls=tls,
                encrypt=enc,
                warm_clientapps=ours,
                flower_supernode=not ours,
            )
        name = f"deployment, TLS {'on' if tls else 'off'}, encryption {'on' if enc else 'off'}"
        name += "" if ours else ", Flower's own SuperNode, a fresh ClientApp process per message"
        rows.append(_flower_row(name, dep["final"]["accuracy"], dep["history"], dep["wire"], epochs))
        log(describe("flower", rows[-1]))
    base = rows[0]["epoch_s"]
    for r in rows:
        r["ratio"] = r["epoch_s"] / base
    return rows


def inference_rows(repeats: int = 200, log: Log = _quiet) -> list[dict]:
    """Throughput and batch-1 latency of a standalone model (handwritten fou, 1 epoch): PyTorch and ONNX."""

    from apfed.data import load_bundled
    from apfed.runner import run

    ds = load_bundled("handwritten")
    active = ds.view_index("fou")
    model = run(ds, active, make_config("default", method="apfed-c", epochs=1)).model
    X = ds.views[active].X.astype(np.float32)

    engines = {"pytorch": model.predict_proba}  # no_grad inside; the process's autograd setting is untouched
    try:
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as d:
            path = model.export_onnx(Path(d) / "m.onnx")
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        engines["onnxruntime"] = lambda x: sess.run(None, {name: x.astype(np.float32)})[0]
    except ImportError:
        pass
    rows = []
    for engine, fn in engines.items():
        for batch in (1, 64, 4096):
            xb = np.resize(X, (batch, X.shape[1])).astype(np.float32)
            fn(xb)  # warm-up
            n = max(5, repeats if batch < 4096 else repeats // 20)
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                fn(xb)
                times.append(time.perf_counter() - t0)
            row = {"engine": engine, "batch": batch, "samples_per_s": batch / statistics.median(times)}
            if batch == 1:
                row["p50_ms"] = 1000 * float(np.percentile(times, 50))
                row["p99_ms"] = 1000 * float(np.percentile(times, 99))
            rows.append(row)
            log(describe("inference", row))
    return rows


def paper_rows(device: str, seeds: int = 3, epochs: int = 300, log: Log = _quiet) -> list[dict]:
    """The paper preset (APFed-C, mnist5k 2 views, active top), each seed's whole run timed (set-up, training, the
    per-epoch test evaluation), as the reference's figure is."""
    from apfed.data import load_bundled
    from apfed.runner import run

    ds = load_bundled("mnist5k", 2)
    rows = []
    for seed in range(seeds):
        r = run(ds, 0, make_config("paper", method="apfed-c", seed=seed, epochs=epochs, device=device))
        rows.append({"seed": seed, "epochs": epochs, "accuracy": r.accuracy, "seconds": r.seconds})
        log(describe("paper", rows[-1]))
    return rows


SECTIONS = ("epoch", "wire", "scaling", "flower", "inference", "paper")
DEFAULT_SECTIONS = SECTIONS[:-1]  # the paper preset runs only when asked for: 300 epochs take hours on a CPU
SECTION_TITLES = {
    "epoch": "in-process APFed-C epoch against the bare compute of its modules (mnist5k, handwritten)",
    "epoch_methods": "every method's epoch against its modules trained as one model",
    "wire": "messages and bytes per epoch and passive, per method and K (handwritten)",
    "scaling": "passives, samples (5k to 500k, streamed) and embedding width, each point in a fresh process",
    "flower": "Flower simulation and loopback deployments against in-process (mnist5k, K = 16)",
    "inference": "standalone throughput and batch-1 latency",
    "paper": "the paper preset, 300 epochs of APFed-C per seed",
}


def run_bench(
    device: str = "cpu",
    repeats: int = 3,
    quick: bool = False,
    only: tuple[str, ...] = DEFAULT_SECTIONS,
    log: Log = _quiet,
) -> dict:
    """The sections in ``only`` (others are left empty); ``quick`` trims the grids (for tests and smoke runs).
    ``log`` receives a line as each section starts and as each figure comes in."""
    import os

    threads = max(1, os.cpu_count() or 1)
    # local and centralized send nothing
    methods = ["apfed-c", "tvfl"] if quick else ["apfed-r", "apfed-c", "apfed-m", "apfed-kd", "tvfl"]
    ks = [1, 16] if quick else [1, 4, 16]
    # each part of the report, and how it is measured
    plan = {
        "epoch": lambda say: epoch_rows(device, repeats, say),
        "epoch_methods": lambda say: method_epoch_rows(device, repeats, say),
        "wire": lambda say: wire_rows(methods, ks, say),
        "scaling": lambda say: scaling_rows(threads, say),
        # the first epoch is start-up: repeats + 1 epochs leave `repeats` timed ones (at least 2)
        "flower": lambda say: flower_rows(epochs=max(3, repeats + 1), log=say),
        "inference": lambda say: inference_rows(20 if quick else 200, say),
        "paper": lambda say: paper_rows(device, log=say),
    }
    small = {"wire", "inference"}  # the sections a quick run keeps
    report: dict = {"device": device}
    for key, measure in plan.items():
        section = "epoch" if key == "epoch_methods" else key
        if section not in only or (quick and section not in small):
            report[key] = []
            continue
        log(f"{section}: {SECTION_TITLES[key]}")
        report[key] = measure(lambda line, s=section: log(f"{s}: {line}"))
    return report


def markdown(report: dict) -> list[str]:
    md = ["# apfed bench", "", *goals_markdown(goals(report))]
    if report["epoch"]:
        md += [
            "## In-process epoch against bare compute (APFed-C)",
            "",
            "| dataset | views | preset | device | K | protocol epoch (s) | bare epoch (s) | ratio "
            "| bare, one CUDA graph (s) | ratio to it | split floor (s) | split floor / bare |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        md += [
            f"| {r['dataset']} | {r['views']} | {r['preset']} | {r['device']} | {r.get('k', 1)} | "
            f"{r['protocol_s']:.3f} | "
            f"{r['bare_s']:.3f} | {r['ratio']:.2f} | "
            + (f"{r['bare_graph_s']:.3f} | {r['ratio_to_graph']:.2f} |" if "bare_graph_s" in r else "– | – |")
            + (f" {r['split_s']:.3f} | {r['split_ratio']:.2f} |" if "split_s" in r else " – | – |")
            for r in report["epoch"]
        ]
        md += [
            "",
            "Bare: the same modules' forward, backward and optimizer steps in one process, eager. On a GPU the"
            " protocol replays each role's step as a CUDA graph; the last column compares it with all parties'"
            " modules captured as one graph, the floor for these modules. K: minibatches per exchange with the"
            " passives. The goal is judged at K = 1, the default and the reference algorithm; K = 16 (not"
            " pipelined) does the same compute with a sixteenth of the messages. Split floor (CPU): the same modules"
            " with no protocol but one forward, backward and optimizer call per party, as a vertical split requires"
            " (each passive back-propagates its loss alone, the active then applies the passives' gradients), timed"
            " in a pair with each bare epoch, in either order in turn: the floor of any VFL implementation of these"
            " modules.",
        ]
        md.append("")
    if report.get("epoch_methods"):
        md += [
            "## In-process epoch against bare compute, every method",
            "",
            "| dataset | views | preset | device | method | passives | protocol epoch (s) | learners alone (s) "
            "| bare epoch (s) | ratio | learners alone / bare |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        md += [
            f"| {r['dataset']} | {r['views']} | {r['preset']} | {r['device']} | {r['method']} | {r['passives']} | "
            f"{r['protocol_s']:.3f} | "
            + (f"{r['learners_s']:.3f} | " if "learners_s" in r else "– | ")
            + f"{r['bare_s']:.3f} | {r['ratio']:.2f} | "
            + (f"{r['learners_ratio']:.2f} |" if "learners_ratio" in r else "– |")
            for r in report["epoch_methods"]
        ]
        md += [
            "",
            "Bare: each method's own modules (every party's encoder, heads, projections, decoders, the teacher)"
            " trained as one model: one forward per party, one joint backward, every party's optimizer step, eager,"
            " no protocol. With K = 1 the split trains exactly this model (tests/test_exactness.py), but it cannot"
            " run it as fast: each passive back-propagates alone and steps its own optimizer, and the active waits"
            " for its replies. local and centralized send no messages. Learners"
            " alone: the same parties' learner calls (outgoing, train_batch, step) made directly, K = 1, with no"
            " message, codec, validation or transport: the protocol epoch minus the protocol.",
            "",
        ]
    if report["wire"]:
        md += [
            "## Wire cost per epoch and passive (handwritten, 5 passives)",
            "",
            "| method | K | messages | MB | rounds |",
            "|---|---|---|---|---|",
        ]
        md += [
            f"| {r['method']} | {r['k']} | {r['messages_per_passive']:.0f} | {r['mb_per_passive']:.3f} "
            f"| {r['rounds']} |"
            for r in report["wire"]
        ]
        md.append("")
    if report["scaling"]:
        md += [
            "## Scaling (synthetic, APFed-C, K = 16, one epoch, each point in a fresh process)",
            "",
            "| axis | value | epoch (s) | MB per epoch | peak RSS, setup + PSI (MB) | RSS held after setup (MB) "
            "| peak RSS, training (MB) | per-sample arrays (bytes per sample) | heap free after setup (MB) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        md += [
            f"| {r['axis']} | {r['value']} | {r['epoch_s']:.2f} | {r['mb_per_epoch']:.1f} | "
            f"{r.get('setup_peak_rss_mb', float('nan')):.0f} | {r.get('rss_after_setup_mb', float('nan')):.0f} | "
            f"{r['peak_rss_mb']:.0f} | "
            + (f"{r['bookkeeping_bytes'] / r['n']:.1f} |" if "bookkeeping_bytes" in r else "– |")
            + (f" {r['heap_free_after_setup_mb']:.1f} |" if "heap_free_after_setup_mb" in r else " – |")
            for r in report["scaling"]
        ]
        md += [
            "",
            "Rows are generated per minibatch from their index (apfed.data.streamed) except on the 'in memory' row."
            " Peak RSS is the process's own high-water mark (VmHWM; both parties share the process), reset after the"
            " setup, so the training column is the epoch alone. The setup holds the ECDH PSI over every sample id,"
            " O(samples) by nature (about 100 bytes per sample, freed once the rows are aligned); what stays held is"
            " the per-sample bookkeeping: int64 ids, int16 labels, int32 split and alignment positions (the"
            " per-sample arrays column: every such array the dataset and both parties hold after the setup, each"
            " buffer counted once, divided by the samples). Heap free after setup: memory the process freed but"
            " glibc keeps (mallinfo2), in pieces between blocks still in use (what set-up freed; along the samples"
            " axis, mostly the PSI's arrays); the epoch's allocations land there and bring those pages back into"
            " the resident set.",
            "",
        ]
    if report.get("flower"):
        md += [
            "## Flower simulation and loopback deployment against in-process (APFed-C, mnist5k, K = 16, pipelined)",
            "",
            "| transport | accuracy | epoch (s) | ratio to in-process | MB per epoch | messages per epoch |",
            "|---|---|---|---|---|---|",
        ]
        md += [
            f"| {r['transport']} | {r['accuracy']:.2f} | {r['epoch_s']:.2f} | {r['ratio']:.2f} | "
            f"{r['mb_per_epoch']:.2f} | {r['messages_per_epoch']:.0f} |"
            for r in report["flower"]
        ]
        md += [
            "",
            "Epoch: in process, the mean over all epochs (pipelined in one process, each epoch's clock also holds"
            " the passives' work on the next epoch's first round, so the first epoch is K minibatches of it longer"
            " and the last K shorter); over Flower, the median over the epochs after the first (start-up). The"
            " deployment runs every party as its own"
            " processes on this host (SuperLink, a SuperNode per passive, the ServerApp and ClientApps), sharing its"
            " cores; TLS on means TLS plus SuperNode authentication. Each SuperNode is `apfed supernode` (Flower's"
            " own, its fixed waits shortened) and forks its ClientApp processes from a server that has imported"
            " Flower once (`apfed clientapps`), but in the row that says Flower's own SuperNode and a fresh process"
            " per message, which is what Flower does by itself.",
            "",
        ]
        md += [
            f"Payload encryption, timed directly in the encrypted in-process run: {r['sealing_s_per_epoch']:.3f} s"
            f" per epoch sealing and opening (both parties), {100 * r['sealing_share']:.2f} % of the in-process"
            " epoch.\n"
            for r in report["flower"]
            if "sealing_s_per_epoch" in r
        ]
    if report["inference"]:
        md += [
            "## Standalone inference (handwritten, fou view)",
            "",
            "| engine | batch | samples/s | p50 (ms) | p99 (ms) |",
            "|---|---|---|---|---|",
        ]
        md += [
            f"| {r['engine']} | {r['batch']} | {r['samples_per_s']:.0f} | "
            f"{r.get('p50_ms', float('nan')):.3f} | {r.get('p99_ms', float('nan')):.3f} |"
            for r in report["inference"]
        ]
        md.append("")
    if report.get("paper"):
        md += [
            "## Paper preset: APFed-C, mnist5k 2 views (active top), whole run per seed",
            "",
            "| seed | epochs | accuracy (mean of the last 10 epochs) | run (s) |",
            "|---|---|---|---|",
        ]
        md += [f"| {r['seed']} | {r['epochs']} | {r['accuracy']:.2f} | {r['seconds']:.1f} |" for r in report["paper"]]
        md.append("")
    return md


def write_report(
    report: dict, out: Path, sections: tuple[str, ...], quick: bool = False
) -> tuple[list[str], list[Path]]:
    """Write ``out/<date>-bench-<machine>[-<sections>].{json,md}`` and the plots; return the markdown lines and the
    paths written. The machine is described in both files."""
    import datetime
    import json

    from apfed.report import machine

    m = machine()
    report["machine"], report["goals"] = m, goals(report)
    device = report["device"]
    tag = "gpu" if device.startswith("cuda") else f"cpu{m['cpus']}"
    part = "" if set(sections) == set(DEFAULT_SECTIONS) else "-" + "-".join(sections)
    only_arg = (f" --only {','.join(sections)}" if part else "") + (" --quick" if quick else "")
    prefix = out / f"{datetime.date.today()}-bench-{tag}{part}{'-quick' if quick else ''}"
    prefix.with_suffix(".json").write_text(json.dumps(report, indent=1))
    md = [*markdown(report), "", f"Machine: {json.dumps(m)}. Reproduce: `apfed bench --device {device}{only_arg}`.", ""]
    prefix.with_suffix(".md").write_text("\n".join(md))
    return md, [prefix.with_suffix(".json"), prefix.with_suffix(".md"), *write_plots(report, prefix)]


def write_plots(report: dict, prefix: Path) -> list[Path]:
    """PNG plots: every method's epoch against its bare compute, and the scaling section (time, bytes, peak
    memory against each axis)."""
    if not report["scaling"] and not report.get("epoch_methods"):
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    if report.get("epoch_methods"):
        paths.append(_plot_method_epochs(plt, report["epoch_methods"], prefix.with_name(prefix.name + "-epoch.png")))
    if report["scaling"]:
        paths.append(_plot_scaling(plt, report["scaling"], prefix.with_name(prefix.name + "-scaling.png")))
    return paths


def _plot_method_epochs(plt, rows: list[dict], path: Path) -> Path:
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, grid = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for ax, name in zip(grid[0], datasets, strict=True):
        mine = [r for r in rows if r["dataset"] == name]
        ax.bar([r["method"] for r in mine], [r["ratio"] for r in mine])
        ax.axhline(1.15, color="red", linestyle="--", label="goal: 1.15")
        ax.set_title(f"{name} ({mine[0]['device']}): in-process epoch / bare")
        ax.tick_params(axis="x", rotation=45)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_scaling(plt, scaling: list[dict], path: Path) -> Path:
    axes = ["passives", "samples", "width"]
    fig, grid = plt.subplots(3, 3, figsize=(12, 9))
    for col, axis in enumerate(axes):
        rows = [r for r in scaling if r["axis"] == axis]
        x = [r["value"] for r in rows]
        for row_i, (key, label) in enumerate(
            [("epoch_s", "epoch (s)"), ("mb_per_epoch", "MB per epoch"), ("peak_rss_mb", "training peak RSS (MB)")]
        ):
            ax = grid[row_i][col]
            ax.plot(x, [r[key] for r in rows], "o-")
            ax.set_xscale("log", base=2)
            ax.set_xlabel(axis)
            ax.set_ylabel(label)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
