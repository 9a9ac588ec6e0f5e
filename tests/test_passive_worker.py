"""The node-local passive worker answers exactly as an in-process passive, survives being killed (it resumes from
its atomically written state file, and answers a resent request without applying it twice) and exits after the
run's finish message."""

import os
import signal
import time
import uuid

import numpy as np

from apfed.config import make_config
from apfed.data import load_bundled
from apfed.runner import run
from clients import passive_worker
from protocols import decode


def _wait_gone(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not passive_worker._alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_worker_replays_an_in_process_run_and_resumes_after_a_kill():
    record: list[bytes] = []
    cfg = make_config("default", method="apfed-c", epochs=2, batches_per_round=4)
    run(load_bundled("digits"), 0, cfg, record=record)
    pairs = list(zip(record[0::2], record[1::2], strict=True))  # one passive: request, reply, request, ...
    node_config = {"party": "passive1", "dataset": "digits", "active": "0"}
    node = uuid.uuid4().int % 2**62  # a fresh node id: a private worker directory of its own
    d = passive_worker.worker_dir(node, node_config)
    assert (d.stat().st_mode & 0o777) == 0o700
    killed = pid = None
    try:
        for i, (request, expected) in enumerate(pairs):
            if (d / passive_worker.PID_NAME).exists():
                pid = int((d / passive_worker.PID_NAME).read_text())
            got, want = decode(passive_worker.call(node, node_config, request, os.getpid())), decode(expected)
            assert (got.kind, got.round, sorted(got.arrays)) == (want.kind, want.round, sorted(want.arrays))
            for k in want.arrays:
                np.testing.assert_allclose(np.asarray(got.arrays[k]), np.asarray(want.arrays[k]), rtol=1e-5, atol=1e-6)
            if killed is None and want.kind == "reply" and i == len(pairs) // 2:
                killed = int((d / passive_worker.PID_NAME).read_text())
                os.kill(killed, signal.SIGKILL)  # the next request starts a fresh worker from the state file
                # the active party resends the request whose reply it lost: answered again, not applied twice
                again = decode(passive_worker.call(node, node_config, request, os.getpid()))
                for k in got.arrays:
                    assert np.array_equal(np.asarray(again.arrays[k]), np.asarray(got.arrays[k]))
        assert killed is not None and pid is not None and pid != killed
        assert _wait_gone(pid), "the worker must exit after finish"
        assert not d.exists(), "a clean finish removes the worker's directory"
    finally:
        pid_file = d / passive_worker.PID_NAME
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
