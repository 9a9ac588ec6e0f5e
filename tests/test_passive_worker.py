"""The node-local passive worker trains exactly as an in-process passive, survives being killed (it resumes from
its atomically written state file, and answers a resent request without applying it twice) and exits after the
run's finish message."""

import contextlib
import os
import re
import shutil
import signal
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from apfed.config import make_config
from apfed.data import load_bundled
from apfed.data.views import split_parties
from apfed.runner import build_clients
from clients import passive_worker
from clients.active import ActiveClient
from protocols import decode, encode
from protocols.errors import ProtocolError


@pytest.fixture(autouse=True)
def _own_temp_dir(monkeypatch, tmp_path_factory):
    """The workers' directories of these tests in a temporary directory of their own (short: it holds a Unix
    socket), in this process and in the workers it starts: tests/test_deployment.py, which may run at the same
    time on another pytest worker, checks that a deployment leaves no worker directory in the system's."""
    tmp_path_factory.getbasetemp()  # pytest's own temporary directory stays where it is
    d = tempfile.mkdtemp(prefix="pw-")
    monkeypatch.setenv("TMPDIR", d)
    monkeypatch.setattr(tempfile, "tempdir", d)
    yield
    shutil.rmtree(d, ignore_errors=True)


def _wait_gone(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not passive_worker._alive(pid):
            return True
        time.sleep(0.1)
    return False


class WorkerTransport:
    """Sends every request through the worker, as the ClientApp does; kills the worker once after a reply."""

    def __init__(self, node: int, node_config: dict, kill_at: int, after_kill=None):
        self.node, self.nc, self.kill_at, self.trains, self.killed, self.pids = node, node_config, kill_at, 0, None, []
        self.after_kill = after_kill  # runs while the worker is down, before the request is resent

    def _call(self, msg):
        d = passive_worker.worker_dir(self.node, self.nc)
        reply = decode(passive_worker.call(self.node, self.nc, encode(msg), os.getpid()))
        # after FINISH the worker removes its pid file as it exits: it may be gone before we read it
        with contextlib.suppress(FileNotFoundError):
            self.pids.append(int((d / passive_worker.PID_NAME).read_text()))
        if msg.kind == "train":
            self.trains += 1
            if self.trains == self.kill_at:
                self.killed = self.pids[-1]
                os.kill(self.killed, signal.SIGKILL)
                assert _wait_gone(self.killed)
                if self.after_kill is not None:
                    self.after_kill()
                # the reply was "lost": the active resends; a fresh worker answers it again without reapplying it
                again = decode(passive_worker.call(self.node, self.nc, encode(msg), os.getpid()))
                for k in reply.arrays:
                    assert np.array_equal(np.asarray(again.arrays[k]), np.asarray(reply.arrays[k]))
        return reply

    def submit(self, requests):
        return {n: self._call(m) for n, m in requests.items()}

    def collect(self, ticket):
        return ticket

    def exchange(self, requests):
        return self.collect(self.submit(requests))


def test_worker_trains_like_an_in_process_passive_and_resumes_after_a_kill():
    ds = load_bundled("digits")
    cfg = make_config("default", method="apfed-c", epochs=2, batches_per_round=4)
    local = build_clients(ds, 0, cfg)
    local.setup()
    local.fit()
    node_config = {"party": "passive1", "dataset": "digits", "active": "0"}
    node = uuid.uuid4().int % 2**62  # a fresh node id: a private worker directory of its own
    d = passive_worker.worker_dir(node, node_config)
    assert (d.stat().st_mode & 0o777) == 0o700
    transport = WorkerTransport(node, node_config, kill_at=3)
    active, _ = split_parties(ds, 0)
    client = ActiveClient(active, cfg, transport, ["passive1"], log=lambda m: None)
    try:
        client.setup()
        client.fit()
        for got, want in zip(client.learner.modules.parameters(), local.learner.modules.parameters(), strict=True):
            assert np.allclose(got.detach().numpy(), want.detach().numpy(), atol=1e-5)
        assert transport.killed is not None
        client.finish()
        assert _wait_gone(transport.pids[-1]), "the worker must exit after finish"
        assert not d.exists(), "a clean finish removes the worker's directory"
    finally:
        for pid in set(transport.pids):
            if passive_worker._alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("fault", ["data file reordered", "state file cut short", "state file overwritten"])
def test_a_restarted_worker_refuses_a_data_file_or_a_state_file_that_changed_under_it(party_csvs, fault):
    """The worker's state file holds positions in the party's rows. A worker restarted after its node's file was
    rewritten (the same ids in another order) would pair the active party's rows with other entities; it stops
    with one line instead. So does a worker whose state file was damaged while it was down (it was a traceback)."""
    from apfed.data.files import active_party_file

    bank, shop, _ = party_csvs["paths"]
    cfg = make_config("default", method="apfed-c", epochs=1, batches_per_round=1)
    node_config = {"party": "passive1", "data": str(shop), "id-column": "user_id"}
    node = uuid.uuid4().int % 2**62
    state = passive_worker.worker_dir(node, node_config) / passive_worker.STATE_NAME

    def change():
        if fault == "data file reordered":
            header, *rows = shop.read_text().splitlines()
            shop.write_text("\n".join([header, *reversed(rows)]) + "\n")
        elif fault == "state file cut short":
            state.write_bytes(state.read_bytes()[:-100])
        else:
            data = state.read_bytes()
            state.write_bytes(data[: len(data) - 2000] + bytes(2000))  # the torch state's end zeroed

    transport = WorkerTransport(node, node_config, kill_at=2, after_kill=change)
    client = ActiveClient(active_party_file(str(bank), "user_id", "label"), cfg, transport, ["passive1"])
    why = {
        "data file reordered": "passive1's data file is not the one its",
        "state file cut short": f"the worker's state file {state} is damaged (checksum mismatch)",
        "state file overwritten": f"the worker's state file {state} is damaged (checksum mismatch)",
    }[fault]
    try:
        client.setup()
        with pytest.raises(ProtocolError, match=f"exited with code 2: error: {re.escape(why)}"):
            client.fit()
    finally:
        for pid in set(transport.pids):
            if passive_worker._alive(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(passive_worker.worker_dir(node, node_config), ignore_errors=True)


class RelayTransport:
    """Sends every request to a worker the passive party started itself, as the ClientApp does with
    ``worker-socket``: the bytes only."""

    def __init__(self, sock):
        self.sock = str(sock)

    def submit(self, requests):
        return {n: decode(passive_worker.relay(self.sock, encode(m))) for n, m in requests.items()}

    def collect(self, ticket):
        return ticket

    def exchange(self, requests):
        return self.collect(self.submit(requests))


def test_a_worker_the_party_starts_itself_serves_run_after_run_and_stops_on_sigterm():
    """`apfed worker` (the party's own code; the SuperNode's ClientApp, which is the active party's code, only relays
    bytes to its socket): each run trains exactly as an in-process passive, a finished run leaves no state to resume
    and the worker serves the next run; SIGTERM stops it and removes its socket; a relay to no worker is one line."""
    import subprocess
    import sys

    ds = load_bundled("digits")
    cfg = make_config("default", method="apfed-c", epochs=1, batches_per_round=4)
    local = build_clients(ds, 0, cfg)
    local.setup()
    local.fit()
    sock = Path(tempfile.gettempdir()) / "w.sock"
    p = subprocess.Popen(
        [sys.executable, "-m", "apfed.cli", "worker", "--socket", str(sock)]
        + ["--node-config", "party='passive1' dataset='digits' active='0'"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not sock.exists():
            assert p.poll() is None and time.monotonic() < deadline, p.stdout.read() if p.poll() is not None else ""
            time.sleep(0.05)
        assert sock.stat().st_mode & 0o777 == 0o660  # the SuperNode's user may connect through its group
        active, _ = split_parties(ds, 0)
        for _ in range(2):
            client = ActiveClient(active, cfg, RelayTransport(sock), ["passive1"], log=lambda m: None)
            client.setup()
            client.fit()
            for got, want in zip(client.learner.modules.parameters(), local.learner.modules.parameters(), strict=True):
                assert np.allclose(got.detach().numpy(), want.detach().numpy(), atol=1e-5)
            client.finish()
            assert p.poll() is None, "the party's worker serves the next run"
            assert not sock.with_suffix(".state").exists(), "a finished run leaves nothing to resume"
        second = subprocess.run(
            [sys.executable, "-m", "apfed.cli", "worker", "--socket", str(sock)]
            + ["--node-config", "party='passive2' dataset='digits' active='0'"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2 and "a worker already serves at" in second.stderr, second.stderr
        checked = subprocess.run(
            [sys.executable, "-m", "apfed.cli", "preflight", "--worker-socket", str(sock)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert checked.returncode == 0 and f"worker {sock}: answers" in checked.stdout, checked.stdout + checked.stderr
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=30)
        assert p.returncode == 0 and not sock.exists(), out
        assert out.count("set-up of run") == 2 and out.count("end of run") == 2, out
        assert "refused" not in out, out  # preflight's probe is no request
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    with pytest.raises(ProtocolError, match="no apfed worker answers at .*start.* with `apfed worker`"):
        passive_worker.relay(str(sock), b"")
    code = subprocess.run(
        [sys.executable, "-m", "apfed.cli", "preflight", "--worker-socket", str(sock)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert code.returncode == 2 and code.stderr.startswith("error: no apfed worker answers at"), code.stderr


def test_the_party_worker_drops_a_relay_that_stalls_and_serves_the_next(monkeypatch):
    """A relay that connects and sends part of a request, then nothing, must not hold the party's worker (it is one
    process, serving one connection at a time): it gives up on it after RECEIVE_TIMEOUT_S and answers the next."""
    import socket
    import threading

    from clients.flower_client import passive_from_node_config
    from protocols.messages import HELLO, Message

    monkeypatch.setattr(passive_worker, "RECEIVE_TIMEOUT_S", 1.0)
    client = passive_from_node_config({"party": "passive1", "dataset": "digits", "active": "0"})
    sock = Path(tempfile.gettempdir()) / "s.sock"
    stop = threading.Event()
    t = threading.Thread(
        target=passive_worker.serve_party, args=(client, sock), kwargs={"keep_going": lambda: not stop.is_set()}
    )
    t.start()
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stalled:
            stalled.connect(str(sock))
            stalled.sendall(b"\0\0\0")  # three bytes of an 8-byte length, then nothing
            got = []  # the next relay, from a thread: a worker held by the stalled one must fail this test, not hang it
            hello = encode(Message(HELLO, "r1", 0, "active", "passive1"))
            nxt = threading.Thread(
                target=lambda: got.append(decode(passive_worker.relay(str(sock), hello))), daemon=True
            )
            nxt.start()
            nxt.join(20)
            assert got and got[0].config["party"] == "passive1", "the stalled relay held the worker"
    finally:
        stop.set()
        t.join(10)
    assert not t.is_alive() and not sock.exists()
