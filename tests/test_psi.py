"""ECDH private set intersection: the right rows, in the active party's order, and no raw or hashed ID on the wire."""

import hashlib
import os
import threading

import numpy as np
import pytest

from apfed.config import make_config
from apfed.data.files import active_party_file, passive_party_file
from clients.active import ActiveClient
from clients.passive import PassiveClient
from protocols import decode
from protocols.errors import ProtocolError
from protocols.psi import POINT, PsiKey, blind_ids, hash_to_points, match
from protocols.transport import InProcessTransport


def test_blinding_commutes_and_matches_only_equal_ids():
    a, b = PsiKey(), PsiKey()
    mine = hash_to_points(["u1", "u2", "u3", "u4"], "salt")
    theirs = hash_to_points(["u9", "u3", "u1"], "salt")
    pos = match(b.blind(a.blind(mine)), a.blind(b.blind(theirs)))
    assert pos.tolist() == [2, -1, 1, -1]
    other_salt = hash_to_points(["u9", "u3", "u1"], "other")
    assert (match(b.blind(a.blind(mine)), a.blind(b.blind(other_salt))) == -1).all()


def test_blinding_ids_a_chunk_at_a_time_equals_blinding_them_whole():
    key, ids = PsiKey(), np.array([f"id{i}" for i in range(11)])
    order = np.random.default_rng(0).permutation(len(ids))
    whole = key.blind(hash_to_points(ids[order], "salt"))
    assert np.array_equal(blind_ids(key, ids, "salt", order=order, chunk=4), whole)
    assert np.array_equal(blind_ids(key, ids, "salt", chunk=3), key.blind(hash_to_points(ids, "salt")))
    assert blind_ids(key, ids[:0], "salt").shape == (0, POINT)


def test_match_compares_a_chunk_at_a_time(monkeypatch):
    import protocols.psi as psi

    monkeypatch.setattr(psi, "CHUNK", 3)  # several chunks, the last one short
    a, b = PsiKey(), PsiKey()
    mine = hash_to_points([f"u{i}" for i in range(10)], "s")
    theirs = hash_to_points([f"u{i}" for i in (7, 99, 2, 0, 98, 9)], "s")
    pos = match(b.blind(a.blind(mine)), a.blind(b.blind(theirs)))
    assert pos.tolist() == [3, -1, 2, -1, -1, -1, -1, 0, -1, 5]


def test_a_low_order_point_is_refused():
    with pytest.raises(ProtocolError, match="low-order"):
        PsiKey().blind(np.zeros((1, 32), np.uint8))


def _parties(party_csvs, record):
    a, b, c = party_csvs["paths"]
    passives = {
        "passive1": PassiveClient("passive1", passive_party_file(b, "user_id")),
        "passive2": PassiveClient("passive2", passive_party_file(c, "user_id")),
    }
    transport = InProcessTransport({n: p.handle for n, p in passives.items()}, record=record)
    active = ActiveClient(
        active_party_file(a, "user_id", "label"),
        make_config("default", method="apfed-c", epochs=1),
        transport,
        list(passives),
        log=lambda m: None,
    )
    return active, passives


def test_intersection_is_correct_and_in_the_active_order(party_csvs):
    active, passives = _parties(party_csvs, None)
    active.setup()
    kept = active.data.ids[active.keep]
    ids = [set(map(str, p.data.ids)) for p in passives.values()]
    assert set(kept) == set(map(str, active.data.ids)) & ids[0] & ids[1]
    assert len(kept) == party_csvs["common"]
    for p in passives.values():
        assert np.array_equal(p.data.ids[p.rows], kept)  # every party's row i is the same entity


def test_no_raw_or_hashed_id_in_any_message(party_csvs):
    record: list[bytes] = []
    active, _ = _parties(party_csvs, record)
    active.setup()
    active.fit()
    ids = [str(i) for i in party_csvs["ids"]]
    plain = {hashlib.sha256(i.encode()).digest() for i in ids} | {
        hashlib.blake2b(i.encode()).digest()[:32] for i in ids
    }
    plain |= {row.tobytes() for row in hash_to_points(ids, active.run_id)}  # PSI's own hash, before blinding
    assert len(record) > 4
    for data in record:
        for i in ids[:50]:
            assert i.encode() not in data, "a raw ID travelled"
        for a in decode(data).arrays.values():
            a = np.asarray(a)
            if a.dtype == np.uint8 and a.ndim == 2 and a.shape[1] == 32:
                assert not any(row.tobytes() in plain for row in a), "an unblinded ID hash travelled"


def test_match_finds_every_equal_value_and_only_those():
    rng = np.random.default_rng(0)
    theirs = rng.integers(0, 256, (500, POINT), dtype=np.uint8)
    mine = np.concatenate([theirs[rng.permutation(500)[:300]], rng.integers(0, 256, (200, POINT), dtype=np.uint8)])
    mine = mine[rng.permutation(len(mine))]
    reference = {row.tobytes(): j for j, row in enumerate(theirs)}
    expected = [reference.get(row.tobytes(), -1) for row in mine]
    np.testing.assert_array_equal(match(mine, theirs), expected)
    assert (match(mine, theirs) >= 0).sum() == 300
    assert (match(mine, theirs[:0]) == -1).all()


def test_a_pool_of_blinding_processes_gives_what_one_process_gives(monkeypatch):
    """Above ``PARALLEL_MIN`` points the scalar multiplications run in worker processes: the same values in the
    same order (split unevenly, across ``blind_ids``'s chunks), a low-order point refused as in one process (and
    the processes still serve afterwards), and the processes gone after ``close``."""
    import protocols.psi as psi

    monkeypatch.setattr(psi, "PARALLEL_MIN", 5)
    ids = np.array([f"id{i}" for i in range(103)])
    order = np.random.default_rng(0).permutation(len(ids))
    threads = threading.active_count()
    with PsiKey(workers=2) as key:
        single = psi._blind(key._key, hash_to_points(ids[order], "salt"))
        assert np.array_equal(key.blind(hash_to_points(ids[order], "salt")), single)
        assert key._pool is not None  # the work went to the processes
        # ... driven by this thread alone: no helper thread whose malloc arena would keep the chunks resident
        assert threading.active_count() == threads
        assert np.array_equal(blind_ids(key, ids, "salt", order=order, chunk=40), single)
        low_order = np.zeros((7, POINT), np.uint8)  # u = 0 is a low-order point
        with pytest.raises(ProtocolError, match="low-order"):
            key.blind(low_order)
        assert np.array_equal(key.blind(hash_to_points(ids[order], "salt")), single)
        procs = list(key._pool.procs)
        assert len(procs) == 2 and all(p.poll() is None for p in procs)
    assert key._pool is None
    assert all(p.returncode == 0 for p in procs)  # stopped at the end of their stream, and waited for


def test_a_blinding_process_that_dies_is_a_clear_protocol_error(monkeypatch):
    import protocols.psi as psi

    monkeypatch.setattr(psi, "PARALLEL_MIN", 5)
    points = hash_to_points([f"id{i}" for i in range(40)], "salt")
    with PsiKey(workers=2) as key:
        key.blind(points)
        dead = key._pool.procs[0]
        dead.kill()
        dead.wait(timeout=10)
        with pytest.raises(ProtocolError, match="a blinding process stopped unexpectedly"):
            key.blind(points)
        procs = list(key._pool.procs)
    assert all(p.poll() is not None for p in procs)


def test_the_number_of_blinding_processes(monkeypatch):
    """One per core by default, ``APFED_PSI_WORKERS`` when set (a bad value is one clear error), and one inside a
    daemonic process (a worker of ``apfed evaluate --jobs``)."""
    import multiprocessing as mp

    import protocols.psi as psi

    monkeypatch.delenv(psi.WORKERS_ENV, raising=False)
    assert psi.psi_workers() == max(1, min(__import__("os").cpu_count(), 16))
    monkeypatch.setenv(psi.WORKERS_ENV, "3")
    assert psi.psi_workers() == 3 and PsiKey().workers == 3
    for bad in ("0", "-1", "two", "1.5"):
        monkeypatch.setenv(psi.WORKERS_ENV, bad)
        with pytest.raises(ProtocolError, match="APFED_PSI_WORKERS must be a positive whole number"):
            psi.psi_workers()
    monkeypatch.setenv(psi.WORKERS_ENV, "3")
    q = mp.get_context("spawn").Queue()
    p = mp.get_context("spawn").Process(target=_report_workers, args=(q,), daemon=True)
    p.start()
    assert q.get(timeout=60) == 1
    p.join(timeout=60)


def _report_workers(q) -> None:
    from protocols.psi import psi_workers

    q.put(psi_workers())


SCRIPT_WITHOUT_MAIN_GUARD = """
import numpy as np
import protocols.psi as psi
from protocols.psi import PsiKey, hash_to_points

points = hash_to_points([f"id{i}" for i in range(psi.PARALLEL_MIN + 7)], "salt")
with PsiKey(workers=2) as key:
    pooled = key.blind(points)
    assert key._pool is not None
    assert np.array_equal(pooled, psi._blind(key._key, points))
print("blinded", len(pooled))
"""


def test_a_script_without_a_main_guard_can_blind_with_processes(tmp_path):
    """The blinding processes import nothing of the caller's: with multiprocessing's spawn each worker re-ran the
    caller's script, so a plain script (no ``if __name__ == "__main__":``) failed on any list of ``PARALLEL_MIN``
    ids or more."""
    import subprocess
    import sys

    script = tmp_path / "plain.py"
    script.write_text(SCRIPT_WITHOUT_MAIN_GUARD)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"blinded {psi_min() + 7}"


def psi_min() -> int:
    import protocols.psi as psi

    return psi.PARALLEL_MIN


def test_blinding_falls_back_to_this_process_when_no_worker_can_start(monkeypatch):
    import protocols.psi as psi

    monkeypatch.setattr(psi, "PARALLEL_MIN", 5)
    monkeypatch.setattr(psi.sys, "executable", "/nonexistent/python")
    points = hash_to_points([f"id{i}" for i in range(40)], "salt")
    with PsiKey(workers=2) as key:
        assert np.array_equal(key.blind(points), psi._blind(key._key, points))
        assert key._pool is None and key.workers == 1


def test_a_blinding_process_exits_quietly_when_the_party_stops_mid_chunk():
    """A Ctrl-C stops the party, which closes its sockets while a worker is still blinding a chunk: the worker's
    answer then has nowhere to go. It used to die on that with a BrokenPipeError traceback on the user's
    terminal; it must exit with 0 and print nothing."""
    import socket
    import subprocess
    import sys
    from multiprocessing import connection as mp_connection

    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    import protocols.psi as psi

    ours, theirs = socket.socketpair()
    fd = theirs.fileno()
    env = {**os.environ, "PYTHONPATH": psi._PACKAGE_ROOT}
    proc = subprocess.Popen(
        [sys.executable, "-c", psi._WORKER_CODE.format(fd=fd)], pass_fds=(fd,), stderr=subprocess.PIPE, env=env
    )
    theirs.close()
    conn = mp_connection.Connection(ours.detach())
    conn.send_bytes(X25519PrivateKey.generate().private_bytes_raw())
    points = hash_to_points([f"id{i}" for i in range(3000)], "salt")  # a few tenths of a second of blinding
    conn.send_bytes(points.reshape(-1))
    conn.close()  # the party is gone before the answer
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert err == b"", err.decode()
