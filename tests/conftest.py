import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

# `evaluate` (and `apfed.compare`) without --jobs: every run in the command's own process. A spawned worker costs
# about 5 s of CPU to start, more than the suite's runs of an epoch or two take (a test that wants workers asks)
os.environ.setdefault("APFED_JOBS", "1")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # the workers share the cores: one torch thread each (and in the processes they start), or they oversubscribe
    # them and spend more CPU time than one worker alone would
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


class Crash(Exception):
    """What ``whole_and_resumed`` raises to kill a run in the middle."""


def whole_and_resumed(ds, active, cfg, tmp_path, crash_at: int, checkpoint_every: int = 2):
    """The same run twice: uninterrupted, and killed after ``crash_at`` minibatches, then resumed from its last
    checkpoint (one every ``checkpoint_every`` rounds) by fresh clients. Returns (whole, resumed)."""
    import dataclasses

    from apfed.runner import Safety, run

    whole = run(ds, active, cfg, safety=Safety(checkpoint_dir=str(tmp_path / "a"), checkpoint_every=checkpoint_every))
    crashed = Safety(checkpoint_dir=str(tmp_path / "b"), checkpoint_every=checkpoint_every)
    seen = [0]

    def on_batch():
        seen[0] += 1
        if seen[0] == crash_at:
            raise Crash

    with pytest.raises(Crash):
        run(ds, active, cfg, on_batch=on_batch, safety=crashed)
    return whole, run(ds, active, cfg, safety=dataclasses.replace(crashed, resume=True))


def pytest_collection_modifyitems(config, items):
    """The real Flower deployments first: scripts/test.sh runs the suite on three pytest-xdist workers, one file
    at a time each, in this order; the deployment files (minutes each, about half a core: Flower starts a process
    per message and polls between them) then start at once, side by side, while the last worker takes the rest."""
    items.sort(key=lambda item: item.get_closest_marker("deployments") is None)  # stable: order kept otherwise
    phase = os.environ.get("APFED_TEST_PHASE")  # scripts/test.sh: "shared" on the workers, then "alone"
    if phase in ("shared", "alone"):
        keep, drop = [], []
        for item in items:
            wanted = (item.get_closest_marker("alone") is not None) == (phase == "alone")
            (keep if wanted else drop).append(item)
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def session_processes(sid: int) -> list[tuple[Path, str, str]]:
    """(/proc directory, state, command line) of every process of session ``sid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:
                cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                out.append((stat.parent, fields[0], cmd))
    return out


def running_in_session(sid: int) -> list[str]:
    """Processes of session ``sid`` that are still running (zombies excluded), by command line."""
    return [cmd[:100] for _, state, cmd in session_processes(sid) if state != "Z"]


def stopped_cli(
    args: list,
    ready,
    signum: int = signal.SIGINT,
    group: bool = True,
    env: dict | None = None,
    ready_s: float = 120,
    stop_s: float = 90,
) -> tuple[int, str, list[str]]:
    """Run the CLI in a session of its own; once ``ready(pid)`` holds, send ``signum`` to its whole process group (as
    a terminal sends Ctrl-C, or ``timeout`` its SIGTERM) or, with ``group=False``, to the command alone (``kill``).
    Its output is read to the end (within ``stop_s``) before it is reaped, as ``subprocess.run`` does. Returns the
    exit code, stderr, and what of the session still runs (waiting up to 20 s); every process of the session is
    killed at the end, by PID (Ray's run in process groups of their own)."""
    p = subprocess.Popen(
        [sys.executable, "-m", "apfed.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal, even under nohup
    )
    try:
        deadline = time.monotonic() + ready_s
        while not ready(p.pid):
            assert p.poll() is None, p.communicate()[1]
            if time.monotonic() > deadline:
                pytest.fail(f"not ready to stop after {ready_s:.0f} s")
            time.sleep(0.1)
        (os.killpg if group else os.kill)(p.pid, signum)
        _, err = p.communicate(timeout=stop_s)
        deadline = time.monotonic() + 20  # multiprocessing's resource tracker exits once the main process has
        while (left := running_in_session(p.pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for proc, _, _ in session_processes(p.pid):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(proc.name), signal.SIGKILL)
        p.wait(30)
    return p.returncode, err, left


def run_bounded(cmd: list, timeout: float, **popen) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True, timeout=...)``, but a command past its deadline is
    stopped, not killed: SIGTERM first (deploy.py and apfed then stop every process they started; a SIGKILL left a
    deployment's SuperLink and SuperNodes running), 30 s to exit, then SIGKILL. TimeoutExpired is raised after."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen) as p:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.terminate()
            try:
                p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
            raise
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


# commands that start Flower or a long-lived server, whose processes a fresh interpreter's exit stops: run as a
# fresh `python -m apfed.cli`, never forked
NOT_FORKED = ("simulate", "worker", "clientapps", "bench")


@functools.cache
def _fork_server():
    """This worker's fork server (multiprocessing's forkserver context; started with the first command)."""
    import multiprocessing

    import cli_child

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(cli_child.PRELOAD)
    return ctx


def _forked_cli(
    args: list[str], cwd, timeout: float, script: str | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess:
    """``apfed ARGS`` (or ``python SCRIPT ARGS``) in a process forked from a server that has imported the CLI and
    torch already (see ``cli_child``): its own process, exit code, stdout and stderr, as ``python -m apfed.cli``
    would have them, without each command's 2 s of imports. Past ``timeout``: SIGTERM, 30 s, then SIGKILL, as
    ``run_bounded``. ``stdin``: a file to read as standard input (else none, as multiprocessing gives)."""
    import tempfile

    import cli_child

    from apfed.spawning import stop_process, without_main_script

    with tempfile.TemporaryDirectory(prefix="apfed-cli-") as d:
        out, err = os.path.join(d, "stdout"), os.path.join(d, "stderr")
        for path in (out, err):  # there even if the child fails before it runs the command
            open(path, "w").close()
        where = (None if cwd is None else str(cwd), dict(os.environ), out, err, stdin)
        target, head = (cli_child.run, (args,)) if script is None else (cli_child.run_script, (script, args))
        p = _fork_server().Process(target=target, args=(*head, *where))
        with without_main_script():  # the child must not run the caller's main script (pytest's) again
            p.start()
        p.join(timeout)
        if p.is_alive():
            stop_process(p, 30)
            raise subprocess.TimeoutExpired([script or "apfed", *args], timeout)
        with open(out) as fo, open(err) as fe:
            return subprocess.CompletedProcess([script or "apfed", *args], p.exitcode, fo.read(), fe.read())


def run_cli(*args, cwd=None, timeout=300, stdin=None, refused: bool = False):
    """Run ``apfed ARGS`` in a process of its own; return (exit code, stdout, stderr). Forked from a server that
    has imported the CLI (``_forked_cli``), or with ``APFED_TEST_FORK=0`` and for ``NOT_FORKED`` commands a fresh
    ``python -m apfed.cli``. ``stdin``: a file the command reads as its standard input. ``refused``: the command
    is expected to stop on bad input before it starts anything, so even a ``NOT_FORKED`` one is forked."""
    args = list(map(str, args))
    stdin = None if stdin is None else str(stdin)
    if os.environ.get("APFED_TEST_FORK", "1") != "0" and (refused or not (args and args[0] in NOT_FORKED)):
        p = _forked_cli(args, cwd, timeout, stdin=stdin)
    else:
        with open(stdin or os.devnull, "rb") as source:
            p = run_bounded([sys.executable, "-m", "apfed.cli", *args], timeout, cwd=cwd, stdin=source)
    return p.returncode, p.stdout, p.stderr


def run_script(script, *args, timeout=300) -> subprocess.CompletedProcess:
    """``python SCRIPT ARGS`` for a script that stops with one line on bad input before it starts anything: forked
    as ``run_cli`` forks (``APFED_TEST_FORK=0``: a fresh interpreter)."""
    args = list(map(str, args))
    if os.environ.get("APFED_TEST_FORK", "1") != "0":
        return _forked_cli(args, None, timeout, script=str(script))
    return run_bounded([sys.executable, str(script), *args], timeout)


@pytest.fixture
def party_csvs(tmp_path):
    """Three party files over the same 300 entities: active (with labels), two passives; shuffled rows,
    partial overlap (some ids missing at each passive), string ids."""
    rng = np.random.default_rng(0)
    n = 300
    ids = np.array([f"user-{i:04d}" for i in range(n)])
    y = rng.integers(0, 3, n)
    xa = rng.normal(size=(n, 4)) + y[:, None]
    xb = rng.normal(size=(n, 3)) + y[:, None] * 2
    xc = rng.normal(size=(n, 2))

    def write(path, rows_ids, X, labels=None):
        order = rng.permutation(len(rows_ids))
        header = (
            ["user_id"] + [f"{path.stem}_f{j}" for j in range(X.shape[1])] + (["label"] if labels is not None else [])
        )
        lines = [",".join(header)]
        for i in order:
            vals = [rows_ids[i]] + [f"{v:.5f}" for v in X[i]] + ([f"class_{labels[i]}"] if labels is not None else [])
            lines.append(",".join(vals))
        path.write_text("\n".join(lines) + "\n")
        return path

    keep_b = np.ones(n, bool)
    keep_b[:20] = False  # the passive B lacks the first 20 ids
    keep_c = np.ones(n, bool)
    keep_c[-10:] = False  # and C the last 10
    a = write(tmp_path / "bank.csv", ids, xa, y)
    b = write(tmp_path / "shop.csv", ids[keep_b], xb[keep_b])
    c = write(tmp_path / "telco.csv", ids[keep_c], xc[keep_c])
    return {"paths": [a, b, c], "ids": ids, "y": y, "X": [xa, xb, xc], "common": n - 30}
