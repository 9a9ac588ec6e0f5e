"""Worker processes never run the caller's main script again: a plain script (no main guard) can run
``evaluate`` with several workers. ``run_in_processes`` returns every call's result in order, raises a worker's
error or death here, and stops its workers at once however it is left."""

import math
import multiprocessing
import multiprocessing.spawn
import os
import signal
import subprocess
import sys
import time

import pytest

from apfed.spawning import WorkerDied, run_in_processes, without_main_script


def test_spawned_children_are_not_told_to_import_the_main_module():
    main = sys.modules["__main__"]
    before = (main.__spec__, getattr(main, "__file__", None))
    with without_main_script():
        data = multiprocessing.spawn.get_preparation_data("worker")
        assert "init_main_from_path" not in data and "init_main_from_name" not in data
    assert (main.__spec__, getattr(main, "__file__", None)) == before  # restored


PLAIN_SCRIPT = """
from apfed.config import make_config
from apfed.data import load_bundled
from apfed.evaluate import evaluate

report = evaluate(load_bundled("digits", 2), 0, ["local", "apfed-c"], 1, make_config("default", epochs=1), None,
                  "default", quiet=True, jobs=2)
print(sorted(report["summary"]))
"""


def test_a_script_without_a_main_guard_can_evaluate_with_two_workers(tmp_path):
    """With multiprocessing's spawn each worker ran the script again, failed while starting, and the pool replaced
    it forever: the script hung."""
    script = tmp_path / "plain.py"
    script.write_text(PLAIN_SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "['apfed-c', 'local']"


def test_every_call_runs_once_and_the_results_come_in_the_calls_order():
    """Large arguments (a dataset each) go down the pipes whole; results arrive in any order and are put in order."""
    calls = [(bytes(n << 20),) for n in (9, 1, 5, 2, 7)]  # MiB: far more than a pipe's buffer
    seen = []
    assert run_in_processes(len, calls, 2, lambda i, r: seen.append((i, r))) == [n << 20 for n in (9, 1, 5, 2, 7)]
    assert sorted(seen) == [(i, len(c[0])) for i, c in enumerate(calls)]
    assert multiprocessing.active_children() == []


def test_a_call_that_raises_raises_here_and_stops_the_others():
    with pytest.raises(ValueError, match="math domain error"):
        run_in_processes(math.sqrt, [(4.0,), (-1.0,), (9.0,)], 2)
    assert multiprocessing.active_children() == []


def test_leaving_early_stops_the_calls_under_way_and_queued_at_once():
    """As Ctrl-C does (here raised from the callback after the first result): the worker sleeping 600 s and the queued
    calls, each with 8 MiB of arguments, are not waited for."""

    def interrupt(i, r):
        raise KeyboardInterrupt

    calls = [(0.0,), (600.0,)] + [(600.0,)] * 4
    with pytest.raises(KeyboardInterrupt):
        run_in_processes(time.sleep, calls, 2, interrupt)
    assert multiprocessing.active_children() == []
    big = [(bytes(8 << 20), 600.0)] * 4
    with pytest.raises(KeyboardInterrupt):
        run_in_processes(_sleep_with, [(b"", 0.0), *big], 2, interrupt)
    assert multiprocessing.active_children() == []


class _InterruptedWhilePickled:
    """An argument whose pickling is cut short by Ctrl-C, as a large dataset's can be."""

    def __reduce__(self):
        raise KeyboardInterrupt


def test_ctrl_c_while_a_queued_call_is_pickled_stops_every_worker():
    """multiprocessing.Pool pickles queued calls on a thread of its own: terminated meanwhile, it waited forever
    for that thread, blocked writing the call to a pipe nobody read any more (benchmarks/pool_terminate_hang.py).
    Here the calls are pickled by the caller's thread, so the interrupt lands there."""
    with pytest.raises(KeyboardInterrupt):
        run_in_processes(time.sleep, [(0.0,), (600.0,), (_InterruptedWhilePickled(),)], 2)
    assert multiprocessing.active_children() == []


def _sleep_with(data: bytes, seconds: float) -> int:
    time.sleep(seconds)
    return len(data)


def test_a_worker_that_dies_is_reported_not_waited_for():
    with pytest.raises(WorkerDied, match=r"^the worker process running call 1 exited with code 3$"):
        run_in_processes(_exit_with, [(None,), (3,), (None,)], 1)
    assert multiprocessing.active_children() == []
    with pytest.raises(WorkerDied, match=r"^the worker process running the second was killed by SIGKILL \("):
        run_in_processes(_exit_with, [(None,), (-signal.SIGKILL,)], 2, names=["the first", "the second"])
    assert multiprocessing.active_children() == []


def _exit_with(code: int | None) -> None:
    if code is not None and code < 0:
        os.kill(os.getpid(), -code)
    elif code is not None:
        os._exit(code)
