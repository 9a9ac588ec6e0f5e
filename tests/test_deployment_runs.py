"""Real loopback deployments of party files: a regression with rows with no target and a recipe file, and how a run
stops (SIGTERM to deploy.py, an apfed error in the ServerApp). In a file of their own so that scripts/test.sh runs
them on one worker while tests/test_deployment.py runs on another (one file per worker): a deployment takes about half
a core, so two of them side by side keep the two cores busy."""

import contextlib
import csv
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_bounded
from test_deployment import ROOT, _log_count, deploy

pytestmark = pytest.mark.deployments


def test_a_deployment_trains_a_regression(tmp_path, party_csvs):
    """A numeric label column and ``task='regression'`` in the run config: the deployed active party trains on
    the target standardized, reports R², and its model file predicts what the same files give in one process,
    with the same conformal intervals (``--set conformal``), the test rows the latest by a date column
    (``time-column``). In the same deployment (each costs a minute of Flower's polling): the method and a setting
    come from a recipe file (the run config's ``recipe``), and the active file has rows with no target, which it
    sends to the SuperNodes with the others while its task losses skip them. (No test rows at all,
    ``test-fraction=0``, runs the same ServerApp in tests/test_flower_simulation.py.)"""
    import apfed
    from apfed.standalone import StandaloneModel

    bank, shop, telco = party_csvs["paths"]
    rows = list(csv.reader(bank.read_text().splitlines()))
    rows[0].append("opened")
    for i, row in enumerate(rows[1:]):
        row[-1] = "" if i % 9 == 0 else f"{10 * int(row[-1].removeprefix('class_')) + float(row[1]):.4f}"
        row.append(str(np.datetime64("2024-01-01") + np.timedelta64((i * 37) % 200, "D")))
    numeric = tmp_path / "bank.csv"
    with numeric.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    files = [numeric, shop, telco]
    # the method and a setting come from the recipe; epochs=1 wins over the file's
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('method = "apfed-kd"\nepochs = 40\n\n[set]\nkd_temperature = 3.0\n')
    r = deploy.deploy(
        tmp_path / "run",
        recipe=recipe,
        epochs=1,
        k=2,
        files=files,
        id_column="user_id",
        timeout=600,
        task="regression",
        sets=["validation=0.3", "conformal=0.8"],
        time_column="opened",
    )
    assert (
        {"r2", "rmse", "mae", "conformal_coverage"} <= r["final"].keys()
        and "accuracy" not in r["final"]
        and "accuracy" not in r
    )
    assert r["r2"] == pytest.approx(np.mean([h["r2"] for h in r["history"][-10:]]))
    assert r["method"] == "apfed-kd" and r["settings"]["recipe"] == str(recipe)
    lines = (tmp_path / "run" / "flwr-run.log").read_text()
    assert f"recipe {recipe}: method='apfed-kd'; set kd_temperature=3; the run config's own epochs=1" in lines
    m = StandaloneModel.load(tmp_path / "run" / "model.safetensors")
    assert m.regression and m.provenance["test_r2"] == r["final"]["r2"]
    ds, _ = apfed.load_dataset(
        data=files, id_column="user_id", log=lambda _: None, task="regression", time_column="opened"
    )
    assert m.provenance["unlabelled_train_rows"] == len(ds.unlabelled) > 0
    assert m.provenance["test_split"] == ds.notes["test_split"]
    assert m.provenance["test_split"]["test_from"] > m.provenance["test_split"]["train_until"]
    here = apfed.train(
        ds, 0, "apfed-kd", epochs=1, batches_per_round=2, pipeline=True, validation=0.3, conformal=0.8,
        kd_temperature=3.0,
    )  # fmt: skip
    assert r["final"]["r2"] == pytest.approx(here.final["r2"], abs=1e-6)
    assert r["final"]["conformal_coverage"] == here.final["conformal_coverage"]
    assert m.conformal["q"] == pytest.approx(here.model.conformal["q"], rel=1e-5)
    X = ds.views[0].X
    np.testing.assert_allclose(m.predict(X), here.model.predict(X), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(m.predict_interval(X), here.model.predict_interval(X), rtol=1e-5, atol=1e-3)


def test_sigterm_to_deploy_stops_every_process_it_started(tmp_path):
    """`kill` or `timeout` on deploy.py mid-run: it used to die at once and leave the SuperLink and SuperNodes
    running; it now stops them all, as on Ctrl-C."""
    out = tmp_path / "run"

    def started_here() -> list[int]:  # every process whose command line names this run's directory
        pids = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit() and proc.name != str(os.getpid()):
                with contextlib.suppress(OSError):
                    if str(out) in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                        pids.append(int(proc.name))
        return pids

    p = subprocess.Popen(
        [deploy.sys.executable, str(ROOT / "examples" / "deploy-local" / "deploy.py"), "--out", str(out)]
        + ["--dataset", "digits", "--epochs", "50", "--k", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while _log_count(out / "supernode1.log", "apfed train via worker") < 1 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(started_here()) >= 2, "the deployment did not start"
        p.send_signal(signal.SIGTERM)
        p.wait(60)
        deadline = time.monotonic() + 30
        while started_here() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not started_here(), f"left running: {started_here()}"
        assert p.returncode == 143, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
        for pid in started_here():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_run_that_stops_on_an_apfed_error_is_one_line_naming_it(tmp_path, party_csvs):
    """The ServerApp's error (here: the passive's IDs are written another way, so no row is shared) used to be a
    traceback in Flower's log, and deploy.py's own traceback ("the run produced no result"); it is now one line.
    This deployment's SuperNodes are Flower's own ``flower-supernode`` (``--flower-supernode``), and they start each
    ClientApp as Flower does by itself, a fresh ``flwr-clientapp`` process per message (``--no-warm-clientapps``);
    the others run ``apfed supernode`` (clients/supernode.py) and fork them (clients/warm_clientapp.py)."""
    bank, shop, _ = party_csvs["paths"]
    other = tmp_path / "other-ids.csv"
    other.write_text(shop.read_text().replace("user-", "USER"))
    out = tmp_path / "run"
    p = run_bounded(
        [deploy.sys.executable, str(ROOT / "examples" / "deploy-local" / "deploy.py"), "--out", str(out)]
        + ["--data", str(bank), "--data", str(other), "--id-column", "user_id", "--epochs", "1"]
        + ["--no-warm-clientapps", "--flower-supernode"],
        300,
    )
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]  # before it, the run's progress lines
    assert p.returncode == 2 and errors == lines[-1:] and "Traceback" not in p.stderr, p.stderr
    assert lines[-1].startswith("error: the run failed: no training or no test rows are shared with the passives")
    assert any(ln.startswith("connected: passive1") for ln in lines)
    assert "apfed: error: no training or no test rows" in (out / "flwr-run.log").read_text()
    assert (
        not list(out.glob("warm*"))
        and not list(out.glob("clientapps*"))
        and _log_count(out / "supernode1.log", "Start `flwr-clientapp`") >= 2
        and _log_count(out / "supernode1.log", "apfed supernode") == 0
    )
