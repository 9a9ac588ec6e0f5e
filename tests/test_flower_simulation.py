"""The same roles over the Flower simulation engine (Ray) give the same model as in-process."""

import contextlib
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from apfed.config import make_config
from apfed.data import load_bundled
from apfed.runner import build_clients

flwr = pytest.importorskip("flwr")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """simulate() gives the active party the cores its passives leave (clients.flower_app.active_threads): one
    thread on 2 cores. The in-process runs compared with it bit for bit take as many: float sums depend on them."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_the_active_party_gets_the_cores_its_passives_leave_and_the_caller_its_threads_back():
    import os

    import torch

    from clients.flower_app import RunSettings, active_threads, simulate

    assert [active_threads(n, 2, 2) for n in (1, 2, 4)] == [1, 1, 1]
    assert [active_threads(n, 16, 16) for n in (1, 4, 15, 20)] == [15, 12, 1, 1]
    assert active_threads(2, 4, 16) == 4  # never more than the caller had
    torch.set_num_threads(2)
    seen = []
    simulate(RunSettings(dataset="digits", epochs=1), 1, on_epoch=lambda _: seen.append(torch.get_num_threads()))
    assert seen == [active_threads(1, 2, os.cpu_count() or 1)]
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)  # threads=N: the active party's count whatever the cores (apfed simulate --threads)
    simulate(
        RunSettings(dataset="digits", epochs=1), 1, on_epoch=lambda _: seen.append(torch.get_num_threads()), threads=3
    )
    assert seen[1:] == [3] and torch.get_num_threads() == 1


@pytest.mark.parametrize("method, k, pipeline", [("apfed-kd", 2, False), ("apfed-c", 3, True)])
def test_simulation_matches_in_process(tmp_path, method, k, pipeline):
    from apfed.standalone import StandaloneModel
    from clients.flower_app import RunSettings, simulate

    s = RunSettings(
        dataset="digits",
        method=method,
        epochs=2,
        seed=3,
        batches_per_round=k,
        pipeline=pipeline,
        model_out=str(tmp_path / "m.safetensors"),
    )
    sim = simulate(s, 1)
    cfg = make_config("default", method=method, epochs=2, seed=3, batches_per_round=k, pipeline=pipeline)
    client = build_clients(load_bundled("digits"), 0, cfg)
    client.setup()
    client.fit()
    local = client.predictions()
    assert np.array_equal(np.asarray(sim["test_predictions"]["standalone"]), local["standalone"])
    if "fused" in local:
        assert np.array_equal(np.asarray(sim["test_predictions"]["fused"]), local["fused"])
    # the exported model predicts with no passive and no Flower
    ds = load_bundled("digits")
    m = StandaloneModel.load(tmp_path / "m.safetensors")
    pred = m.predict(ds.views[0].X[np.sort(ds.test_idx)]).astype(int)  # the client orders test rows by position
    assert np.array_equal(pred, local["standalone"])


def test_simulate_cli(tmp_path):
    from conftest import run_cli

    code, out, err = run_cli(
        "simulate",
        "--dataset",
        "digits",
        "--method",
        "apfed-c",
        "--epochs",
        "1",
        "--k",
        "4",
        "--out",
        tmp_path / "m.safetensors",
        "--metrics",
        tmp_path / "curve.csv",
        timeout=600,
    )
    assert code == 0, err[-3000:]
    assert "over Flower simulation, 1 passive(s): test accuracy" in out
    from apfed.history_file import read_history

    (row,) = read_history(tmp_path / "curve.csv")  # the learning curve: one epoch
    assert row["epoch"] == 1 and f"test accuracy {row['accuracy']:.2f} %" in out
    assert "ClientAppActor" not in err  # Ray forwards its actors' own lines only with --verbose
    assert "apfed-c acc" in err and "100%" in err  # the epoch progress bar reached its end
    assert "apfed passive1 train" not in err + out  # per-message lines only with --verbose
    assert "DEPRECATED FEATURE" not in err  # Flower's notice about apfed's own run_simulation call
    assert "apfed: aligning" in err and "\x1b[" not in err  # Flower's log lines, without colour codes in a pipe
    assert (tmp_path / "m.safetensors").stat().st_size > 1000
    code, _, err = run_cli("simulate", "--dataset", "digits", "--method", "local")
    assert code == 2 and "no passive parties to simulate" in err


def test_a_simulated_passive_runs_on_the_runs_device_and_a_deployed_one_on_its_own():
    from clients.flower_app import RunSettings, gpu_share
    from clients.flower_client import passive_from_node_config

    s = RunSettings(dataset="digits", method="apfed-c", device="cuda")
    assert passive_from_node_config({"partition-id": 0, "num-partitions": 1}, s).device == "cuda"
    assert passive_from_node_config({"party": "passive1", "dataset": "digits"}).device == "cpu"
    assert passive_from_node_config({"party": "passive1", "dataset": "digits", "device": "cuda:1"}).device == "cuda:1"
    # Ray hides the GPU from an actor that reserves none: on CUDA every virtual node reserves a share, all on one GPU
    assert gpu_share("cpu", 3) == 0.0
    assert gpu_share("cuda", 3) > 0 and 3 * gpu_share("cuda", 3) <= 1.0
    assert gpu_share("cuda:0", 1) == 1.0


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("method", ["apfed-kd", "tvfl"])
def test_a_cuda_simulation_trains_the_in_process_model(tmp_path, method):
    from clients.flower_app import RunSettings, simulate

    s = RunSettings(dataset="digits", method=method, epochs=2, seed=1, device="cuda")
    sim = simulate(s, 1)
    client = build_clients(
        load_bundled("digits"), 0, make_config("default", method=method, epochs=2, seed=1, device="cuda")
    )
    client.setup()
    client.fit()
    local = client.predictions()
    for k in local:
        agree = np.mean(np.asarray(sim["test_predictions"][k]) == local[k])
        assert agree >= 0.99, (k, agree)


def test_the_run_configs_sets_split_at_each_key_not_at_a_values_comma():
    from clients.flower_app import RunSettings

    s = RunSettings.from_run_config({"sets": "passive_losses=r,c, validation=0.1,patience=3"})
    assert s.sets == ["passive_losses=r,c", "validation=0.1", "patience=3"]
    cfg = s.config()
    assert (cfg.passive_losses, cfg.validation, cfg.patience) == ("r,c", 0.1, 3)
    assert RunSettings.from_run_config({"sets": ""}).sets == []


def test_the_run_configs_method_may_be_the_variant_evaluate_picked():
    """method='apfed-c[lam=0.25]' in a deployment's run config trains apfed-c with that setting, after sets; its
    passives are its SuperNodes, so a variant naming passives is refused."""
    from apfed.errors import ConfigError
    from clients.flower_app import RunSettings

    cfg = RunSettings.from_run_config({"method": "apfed-c[lam=0.25,temperature=0.5]", "sets": "lam=4"}).config()
    assert (cfg.method, cfg.lam, cfg.temperature) == ("apfed-c", 0.25, 0.5)
    with pytest.raises(ConfigError, match="names passives: a run's passives are its SuperNodes"):
        RunSettings.from_run_config({"method": "apfed-c[passives=kar]"}).config()
    with pytest.raises(ConfigError, match="unknown method 'apfed-x' in the run config's method"):
        RunSettings.from_run_config({"method": "apfed-x[lam=1]"}).config()


@pytest.mark.parametrize("timeout", [-1.0, float("nan")])
def test_a_negative_round_timeout_in_the_run_config_is_refused_before_anything_runs(timeout):
    from apfed.errors import ConfigError
    from clients.flower_app import RunSettings, run_active

    s = RunSettings.from_run_config({"dataset": "digits", "method": "apfed-c", "round-timeout": timeout})
    with pytest.raises(ConfigError, match="round-timeout must be >= 0"):
        run_active(None, s)  # refused before the Grid is touched


def test_a_metrics_out_naming_the_model_or_results_file_is_refused_before_anything_runs(tmp_path):
    from apfed.errors import ConfigError
    from clients.flower_app import RunSettings, run_active

    for key in ("model-out", "results-out"):
        f = str(tmp_path / "x")
        s = RunSettings.from_run_config({"dataset": "digits", key: f, "metrics-out": f})
        with pytest.raises(ConfigError, match="metrics-out names the same file"):
            run_active(None, s)


def test_a_reply_missing_past_the_timeout_names_the_run_config_key():
    """A grid that never answers: outside training rounds (set-up's PSI over every ID, evaluation) the wait ends
    after ``timeout`` with an error that names the run config key to raise."""
    from protocols.errors import ProtocolError
    from protocols.flower import FlowerTransport

    class SilentGrid:
        def pull_messages(self, ids):
            return []

    t = FlowerTransport(SilentGrid(), {"passive1": 1}, timeout=0.05, round_timeout=0.01)
    with pytest.raises(ProtocolError, match=r"within 0 s \(the run config's 'timeout'"):
        t._pull(["message1"])  # pushing needs a running ServerApp; the wait is what is checked


def test_a_wait_ends_at_once_when_the_simulating_thread_leaves_early():
    """A simulation's ServerApp runs in a thread the process waits for at exit: when the thread that runs the
    simulation leaves by an exception (Ctrl-C), the ServerApp's waits end at once, not after their timeouts."""
    import threading

    from protocols.flower import Abandoned, FlowerTransport, ends_waits_on_exit

    class SilentGrid:
        def pull_messages(self, ids):
            return []

    t = FlowerTransport(SilentGrid(), {"passive1": 1}, timeout=60)
    ended = {}

    def server_app():
        t0 = time.monotonic()
        try:
            t._pull(["message1"])
        except Abandoned as e:
            ended["after"], ended["error"] = time.monotonic() - t0, e

    th = threading.Thread(target=server_app)
    with pytest.raises(KeyboardInterrupt), ends_waits_on_exit():
        th.start()
        time.sleep(0.3)  # the ServerApp is polling
        raise KeyboardInterrupt
    th.join(10)
    assert not th.is_alive() and ended["after"] < 5, ended
    with ends_waits_on_exit():  # a block that ends normally leaves the next waits alone
        pass
    t.timeout = 0.05
    from protocols.errors import ProtocolError

    with pytest.raises(ProtocolError, match="within 0 s"):  # a new simulation's waits are not abandoned
        t._pull(["message2"])


def test_a_subset_of_the_passive_views_simulates_like_the_in_process_run(tmp_path):
    """A multi-view npz file and --passives: each virtual SuperNode reads the benchmark file and takes its own view,
    the same views as the in-process run selects from the same arguments, and the active party's ServerApp reads the
    whole file too (it used to take one file for the active party's alone and ask for passives=N)."""
    import apfed

    rng = np.random.default_rng(5)
    n = 240
    y = rng.choice(["x", "y"], n)
    views = {f"view_{k}": rng.normal(size=(n, 3)) + (k == "c") * (y == "x")[:, None] for k in "abcd"}
    np.savez(tmp_path / "bench.npz", **views, label=y)
    data = [tmp_path / "bench.npz"]
    sim = apfed.simulate("apfed-c", data=data, active="b", passives="d,c", epochs=2, seed=1)
    ds, active = apfed.load_dataset(data=data, active="b", passives="d,c", log=lambda _: None)
    local = apfed.train(ds, active, "apfed-c", epochs=2, seed=1)
    assert [v.name for v in ds.views] == ["b", "c", "d"] and sim["passives"] == 2
    assert sim["final"] == local.final, (sim["final"], local.final)


def _ray_workers_niceness() -> dict[int, int]:
    """The niceness of every Ray worker process running now (``ray::IDLE``, ``ray::ClientAppActor``...), by PID."""
    seen = {}
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError, IndexError, ValueError):
            comm = (proc / "comm").read_text().strip()
            if comm.startswith("ray::") and ("Actor" in comm or comm == "ray::IDLE"):
                seen[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[16])
    return seen


def test_a_partial_overlap_simulates_like_the_in_process_run():
    """--overlap: every virtual SuperNode makes the same partial overlap; the active party's rows that no passive
    holds train its standalone model in the simulation as in-process. The passives' actors run at the niceness of
    the rest (Ray starts its workers at 15: beside three busy processes, a 2-epoch simulation took 324-374 s against
    52-60 s)."""
    import apfed

    seen, done = {}, threading.Event()

    def sample():
        while not done.wait(0.2):
            seen.update(_ray_workers_niceness())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        sim = apfed.simulate("apfed-c", dataset="digits", views=2, overlap=0.3, epochs=2, seed=1)
    finally:
        done.set()
        sampler.join(5)
    assert seen and set(seen.values()) == {0}, seen
    ds, active = apfed.load_dataset("digits", views=2, overlap=0.3, log=lambda _: None)
    local = apfed.train(ds, active, "apfed-c", epochs=2, seed=1)
    assert len(ds.unmatched) > 0 and local.model.provenance["unmatched_train_rows"] == len(ds.unmatched)
    assert sim["final"] == local.final, (sim["final"], local.final)


def test_early_stopping_simulates_like_the_in_process_run():
    """Validation rows and patience over Flower: a pipelined round already in flight when the run stops is drained,
    and the model kept is the same epoch's as in-process."""
    import apfed

    kw = {"epochs": 30, "batches_per_round": 4, "pipeline": True, "seed": 0}
    sets = {"validation": 0.2, "patience": 2, "lr": 0.003}  # stops after epoch 8, its best being 6 (measured)
    sim = apfed.simulate("apfed-c", dataset="digits", sets=[f"{k}={v}" for k, v in sets.items()], **kw)
    ds, active = apfed.load_dataset("digits", log=lambda _: None)
    local = apfed.train(ds, active, "apfed-c", **kw, **sets)
    assert len(local.history) == local.final["best_epoch"] + 2 < 30
    assert sim["final"] == local.final and len(sim["history"]) == len(local.history)


def test_what_ray_prints_of_its_actors_loses_its_colour_codes_in_a_pipe():
    """Ray prints its actors' lines (its coloured prefix, an idle actor's own coloured Flower warning) on the
    driver's streams: simulate writes them without colour into a file or a pipe (a fresh CI run caught them)."""
    import io

    from clients.flower_app import _WithoutColour

    out = io.StringIO()
    plain = _WithoutColour(out)
    plain.write("\x1b[36m(ClientAppActor pid=9121)\x1b[0m \x1b[93mWARNING \x1b[0m:   Manually terminating\n")
    assert out.getvalue() == "(ClientAppActor pid=9121) WARNING :   Manually terminating\n"
    assert plain.isatty() is False and plain.getvalue() == out.getvalue()  # the rest is the stream's


def test_no_test_rows_rows_with_no_label_and_a_fresh_student_simulate_like_the_in_process_run(tmp_path, party_csvs):
    """Party files over Flower with ``test-fraction=0`` and empty label cells in the active file: the ServerApp
    trains on every row of its file (no test metric anywhere), sends the rows with no label to the passives with
    the others, and apfed-kd's fresh student (``kd_student=fresh``: after the teacher's epochs the active party asks
    each passive once for its embeddings of the training rows) is the model the same files make in one process."""
    import csv

    import apfed
    from apfed.standalone import StandaloneModel

    bank, shop, telco = party_csvs["paths"]
    rows = list(csv.reader(bank.read_text().splitlines()))
    for i, row in enumerate(rows[1:]):
        if i % 4 == 0:
            row[-1] = ""
    partial = tmp_path / "bank.csv"
    with partial.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    files = [partial, shop, telco]
    kw = {"epochs": 2, "batches_per_round": 2, "pipeline": True, "seed": 1}
    sim = apfed.simulate(
        "apfed-kd", data=files, id_column="user_id", test_fraction=0, model_out=tmp_path / "m.safetensors",
        sets=["kd_student=fresh", "kd_temperature=3"], **kw,
    )  # fmt: skip
    ds, active = apfed.load_dataset(data=files, id_column="user_id", test_fraction=0, log=lambda _: None)
    here = apfed.train(ds, active, "apfed-kd", kd_student="fresh", kd_temperature=3.0, **kw)
    assert sim["passives"] == 2 and len(sim["history"]) == 4  # 2 epochs of the teacher, then 2 of the student
    assert "accuracy" not in sim["final"] and all("accuracy" not in row for row in sim["history"])
    assert sim["final"] == here.final, (sim["final"], here.final)
    m = StandaloneModel.load(tmp_path / "m.safetensors")
    assert m.provenance["test_rows"] == 0 and "test_accuracy" not in m.provenance
    assert m.provenance["unlabelled_train_rows"] == len(ds.unlabelled) > 0
    # the active party's whole file, but for the rows with no label that some passive lacks (nothing to train)
    held = [{row[0] for row in csv.reader(f.read_text().splitlines()[1:])} for f in (shop, telco)]
    useless = sum(1 for row in rows[1:] if row[-1] == "" and not all(row[0] in h for h in held))
    assert 0 < useless < len(ds.unlabelled)
    assert m.provenance["train_rows"] + m.provenance["unmatched_train_rows"] == 300 - useless
    X = ds.views[0].X
    np.testing.assert_allclose(m.predict_proba(X), here.model.predict_proba(X), rtol=1e-5, atol=1e-6)
