"""Stopping a command: Ctrl-C (SIGINT) or ``kill`` (SIGTERM) ends ``apfed`` with one line and the usual exit code,
and the processes it started go with it (``evaluate --jobs``'s workers used to train on as orphans after SIGTERM)."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import running_in_session, stopped_cli

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads child processes from /proc")


def _children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid``."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _evaluate_with_two_workers(tmp_path: Path, methods: str, act) -> tuple[int, str]:
    """``evaluate --jobs 2``, and ``act(pid, workers)`` 3 s after its two workers started: its exit code, its
    stderr, once each worker has ended too (any still running 10 s after the command fails the test)."""
    args = ["evaluate", "--dataset", "handwritten", "--methods", methods, "--seeds", "2", "--epochs", "300"]
    p = subprocess.Popen(
        [sys.executable, "-m", "apfed.cli", *args, "--jobs", "2", "--out", str(tmp_path / "r")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as a shell's foreground job has it (a background job of a script ignores Ctrl-C)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and p.poll() is None:
            workers = sorted(c for c in _children(p.pid) if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes())
            if len(workers) == 2:
                break
            time.sleep(0.2)
        assert len(workers) == 2, "the two workers never started"
        time.sleep(3)  # into their runs
        act(p.pid, workers)
        _, err = p.communicate(timeout=60)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(map(_alive, workers)):
            time.sleep(0.1)
        assert not any(map(_alive, workers)), "a worker outlived the command"
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)
    return p.returncode, err


@pytest.mark.parametrize(
    ("signum", "code", "line"), [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")]
)
def test_a_stopped_evaluation_says_so_and_stops_its_workers(tmp_path, signum, code, line):
    returncode, err = _evaluate_with_two_workers(tmp_path, "local,apfed-c", lambda pid, _: os.kill(pid, signum))
    assert returncode == code and err.strip().splitlines()[-1] == line, err


def test_a_worker_killed_as_out_of_memory_ends_the_evaluation_with_one_line(tmp_path):
    """SIGKILL to one worker (what the kernel's out-of-memory killer sends): the command names the run, says how its
    worker ended, stops the other worker and exits 2 (multiprocessing.Pool waited for the lost run forever)."""
    returncode, err = _evaluate_with_two_workers(tmp_path, "local", lambda _, w: os.kill(w[0], signal.SIGKILL))
    assert returncode == 2 and re.fullmatch(
        r"error: the worker process running local seed [01] was killed by SIGKILL \(as the system's out-of-memory"
        r" killer does\)",
        err.strip().splitlines()[-1],
    ), err


def test_a_repeated_stop_is_ignored_while_the_first_is_handled_and_stops_the_command_again_later(monkeypatch):
    """A second SIGTERM soon after the first does not cut its cleanup short; one after STOP_REPEAT_S stops the
    command again, should the first have been swallowed on its way (the command then still runs)."""
    import apfed.cli as cli

    now = [1000.0]
    monkeypatch.setattr(cli, "_clock", lambda: now[0])
    monkeypatch.setattr(cli, "_stopping_since", None)
    with pytest.raises(cli._Stopped):
        cli._stop(signal.SIGTERM, None)
    now[0] += cli.STOP_REPEAT_S / 2
    assert cli._stop(signal.SIGTERM, None) is None  # ignored: the first stop is under way
    now[0] += cli.STOP_REPEAT_S
    with pytest.raises(cli._Stopped) as again:
        cli._stop(signal.SIGHUP, None)
    assert again.value.signum == signal.SIGHUP


def test_a_stop_that_lands_inside_an_import_is_sent_again_once_it_is_over(tmp_path, monkeypatch):
    """Raised inside an import, the stop could be swallowed by the module's own code (torch's import does so now and
    then) or make CPython end the process by SIGINT whatever apfed does: it is sent again after IMPORT_DEFER_S."""
    import apfed.cli as cli

    (tmp_path / "apfed_probe_module.py").write_text("import sys\nFRAME = sys._getframe()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import apfed_probe_module  # its module-level frame, captured while it was imported

    sent = []

    class Timer:
        def __init__(self, delay, fn, args):
            sent.append((delay, fn, args))

        def start(self):
            pass

    monkeypatch.setattr(cli.threading, "Timer", Timer)
    monkeypatch.setattr(cli, "_stopping_since", None)
    assert cli._importing_or_spawning(apfed_probe_module.FRAME) and not cli._importing_or_spawning(sys._getframe())
    assert cli._stop(signal.SIGTERM, apfed_probe_module.FRAME) is None
    assert cli._interrupt(signal.SIGINT, apfed_probe_module.FRAME) is None
    assert sent == [
        (cli.IMPORT_DEFER_S, os.kill, (os.getpid(), signal.SIGTERM)),
        (cli.IMPORT_DEFER_S, os.kill, (os.getpid(), signal.SIGINT)),
    ]
    assert cli._stopping_since is None  # the stop is still to come
    with pytest.raises(cli._Stopped):
        cli._stop(signal.SIGTERM, sys._getframe())
    with pytest.raises(KeyboardInterrupt):
        cli._interrupt(signal.SIGINT, sys._getframe())


@pytest.mark.parametrize("group", [False, True], ids=["kill", "kill-group"])
def test_a_stopped_simulation_says_so_and_ray_goes_with_it(tmp_path, group):
    """SIGTERM to `apfed simulate` (``kill``), or to its whole process group (``timeout``, a terminal's hang-up):
    exit 143 with ``terminated``, and none of Ray's processes left. Ray sets SIGTERM handlers of its own in
    ``ray.init``: until 2026-12-07 a ``kill`` ended the command with Ray's stack dump and exit code 15, one to the
    group by SIGABRT; Ray's processes, in our group then, got the group's signal too (and the stop took 10 s)."""
    args = ["simulate", "--dataset", "digits", "--epochs", "1000", "--out", str(tmp_path / "m.safetensors")]
    training: list[float] = []  # when the passive's actor was first seen

    def ready(pid: int) -> bool:
        if not training and any("ClientAppActor" in cmd for cmd in running_in_session(pid)):
            training.append(time.monotonic())
        return bool(training) and time.monotonic() - training[0] > 3

    code, err, left = stopped_cli(args, ready, signal.SIGTERM, group=group, ready_s=180)
    assert code == 143 and err.strip().splitlines()[-1] == "terminated", err
    assert "SIGTERM received" not in err, err  # Ray's dump
    assert left == [], left
    assert not (tmp_path / "m.safetensors").exists()
