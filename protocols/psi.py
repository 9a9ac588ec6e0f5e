"""ECDH private set intersection (as in FATE): commutative Diffie-Hellman on Curve25519.

Each party holds a secret scalar. An ID is hashed to a curve point's u-coordinate (keyed BLAKE2b, salted per
run); a party "blinds" a list of points by multiplying each by its scalar (X25519). Because scalar
multiplication commutes, ``a·(b·H(x)) == b·(a·H(x))``: after both parties have blinded, equal IDs give equal
values, while a blinded value alone reveals nothing about the ID (computational Diffie-Hellman).

The flow, with the active party A fixing the order:
1. A sends ``a·H(id)`` for its IDs, in its order.
2. The passive P returns ``b·(a·H(id))`` for those, in the same order, and ``b·H(id')`` for its own IDs in a
   random order.
3. A computes ``a·(b·H(id'))``, matches: it learns which of its rows P holds and, for each, the position in P's
   shuffled list; it sends P those positions for the rows of the final intersection, in A's order.
Raw IDs and plain hashes never travel; each party learns the intersection and nothing else about the other's IDs.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from protocols.errors import ProtocolError

POINT = 32  # bytes of one blinded value
CHUNK = 65536  # values compared at once in match()
PARALLEL_MIN = 20_000  # points worth blinding processes (starting one takes about 0.3 s)
WORKERS_ENV = "APFED_PSI_WORKERS"
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])  # the folder that holds the protocols package


def hash_to_points(ids, salt: str) -> np.ndarray:
    """(n, 32) uint8: keyed BLAKE2b of each ID as an X25519 u-coordinate (the top bit is ignored by X25519)."""
    key = hashlib.sha256(b"apfed-psi:" + salt.encode()).digest()
    out = np.empty((len(ids), POINT), dtype=np.uint8)
    for i, s in enumerate(ids):
        out[i] = np.frombuffer(hashlib.blake2b(str(s).encode(), digest_size=POINT, key=key).digest(), np.uint8)
    return out


def psi_workers() -> int:
    """Processes that blind at once: ``APFED_PSI_WORKERS``, else one per core (at most 16); 1 in a daemonic process
    (a worker of ``apfed evaluate --jobs``, which already runs a job per core) and where a child cannot inherit the
    socket it is given (not POSIX)."""
    if mp.current_process().daemon or os.name != "posix":
        return 1
    raw = os.environ.get(WORKERS_ENV, "")
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ProtocolError(f"{WORKERS_ENV} must be a positive whole number of processes, got {raw!r}")
        return int(raw)
    return max(1, min(os.cpu_count() or 1, 16))


class PsiKey:
    """One party's secret scalar for one run. X25519 costs about 50 µs per point on one core and holds the GIL, so
    with ``workers`` > 1 a list of at least ``PARALLEL_MIN`` points is blinded by that many processes (started on
    first use, given the scalar over a socket; the party's own machine, the party's own user). Use it as a context
    manager, or ``close()`` it, to stop them."""

    def __init__(self, workers: int | None = None) -> None:
        self._key = X25519PrivateKey.generate()
        self.workers = psi_workers() if workers is None else workers
        self._pool: _Blinders | None = None

    def __enter__(self) -> PsiKey:
        return self

    def __exit__(self, *exc) -> None:
        self.close(failed=exc[0] is not None)

    def close(self, failed: bool = False) -> None:
        if self._pool is not None:
            self._pool.close(failed)  # failed (e.g. Ctrl-C): do not wait for the chunks in flight
            self._pool = None

    def blind(self, points: np.ndarray) -> np.ndarray:
        """Multiply every point of a (n, 32) uint8 array by this party's scalar."""
        points = np.ascontiguousarray(points, dtype=np.uint8)
        if points.ndim != 2 or points.shape[1] != POINT:
            raise ProtocolError(f"PSI values must have shape (n, {POINT})")
        if self.workers < 2 or len(points) < PARALLEL_MIN:
            return _blind(self._key, points)
        if self._pool is None:
            raw = self._key.private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
            )
            try:
                self._pool = _Blinders(self.workers, raw)
            except OSError:  # no interpreter to start (an embedded Python): blind in this process
                self.workers = 1
                return _blind(self._key, points)
        return self._pool.blind(points)


# Ctrl-C is ignored before anything is imported: the party's main process handles it and closes the sockets
_WORKER_CODE = (
    "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "from protocols.psi import _worker_main; _worker_main({fd})"
)


class _Blinders:
    """Blinding processes, one socket each, driven from the calling thread alone.

    Each is a fresh ``python -c`` that imports this module and nothing of the caller's: ``multiprocessing``'s
    spawn would re-run the caller's main script in every worker, so a script without an
    ``if __name__ == "__main__":`` guard failed on any id list of ``PARALLEL_MIN`` or more. The scalar travels over
    the socket, never on a command line. Not a ``multiprocessing.Pool`` either: its helper threads pickle and
    unpickle every chunk, so the chunks pass through those threads' own malloc arenas, and glibc never hands back
    the top of a thread's arena (``malloc_trim`` trims only the main one): with a pool, 500,000 ids left about
    45 MB resident for the whole run. Here each result is read straight into the output array."""

    def __init__(self, workers: int, raw_key: bytes) -> None:
        self.conns: list[mp_connection.Connection] = []
        self.procs: list[subprocess.Popen] = []
        # the workers import this very copy of the package, whatever the caller did to sys.path
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))}
        try:
            for _ in range(workers):
                ours, theirs = socket.socketpair()
                with theirs:  # the worker holds its end: when it exits, ours reads the end of the stream
                    fd = theirs.fileno()
                    command = [sys.executable, "-c", _WORKER_CODE.format(fd=fd)]
                    try:
                        proc = subprocess.Popen(command, pass_fds=(fd,), stdin=subprocess.DEVNULL, env=env)
                    except BaseException:
                        ours.close()
                        raise
                self.procs.append(proc)
                self.conns.append(mp_connection.Connection(ours.detach()))
                self.conns[-1].send_bytes(raw_key)
        except BaseException:
            self.close(failed=True)
            raise

    def blind(self, points: np.ndarray) -> np.ndarray:
        out = np.empty_like(points)
        bounds = np.linspace(0, len(points), len(self.conns) * 4 + 1).astype(int)  # several per process: even finish
        todo = [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a][::-1]
        busy: dict = {}  # connection -> (start, stop) it is blinding
        failures: list[str] = []
        stopped = "a blinding process stopped unexpectedly"

        def give(conn) -> None:
            if todo and not failures:
                span = todo.pop()
                try:
                    conn.send_bytes(points[span[0] : span[1]].reshape(-1))  # 1-D: the socket counts bytes
                except OSError:  # its end of the socket is gone
                    failures.append(stopped)
                    return
                busy[conn] = span

        for conn in self.conns:
            give(conn)
        while busy:
            # short waits: a Ctrl-C is handled by the main thread only between waits
            for conn in mp_connection.wait(list(busy), timeout=0.2):
                start, stop = busy.pop(conn)
                try:
                    status = conn.recv_bytes()
                    if status != b"ok":
                        failures.append(status.decode())
                        continue
                    conn.recv_bytes_into(out[start:stop].reshape(-1))  # a view of the output, 1-D
                except (EOFError, OSError):
                    failures.append(stopped)
                    continue
                give(conn)
        if failures:
            raise ProtocolError(failures[0])
        return out

    def close(self, failed: bool = False) -> None:
        for conn in self.conns:
            conn.close()  # a worker waiting for work sees the end of its stream and exits
        for proc in self.procs:
            if failed:
                proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.conns, self.procs = [], []


def _blind(key: X25519PrivateKey, points: np.ndarray) -> np.ndarray:
    out = np.empty_like(points)
    exchange, public = key.exchange, X25519PublicKey.from_public_bytes
    try:
        for i, p in enumerate(points):
            out[i] = np.frombuffer(exchange(public(p.tobytes())), np.uint8)
    except ValueError:  # a low-order point: never produced by honest hashing
        raise ProtocolError("a PSI value is a low-order point; refusing it") from None
    return out


def _worker_main(fd: int) -> None:
    """A blinding process: it reads the party's scalar from its socket and answers each chunk with ``ok`` and the
    blinded chunk, or with the error's message. It exits quietly once the party's end of the socket is gone. Its
    launcher (``_WORKER_CODE``) has already set Ctrl-C to be ignored."""
    conn = mp_connection.Connection(fd)
    try:
        key = X25519PrivateKey.from_private_bytes(conn.recv_bytes())
    except (EOFError, OSError):
        return
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            result = _blind(key, np.frombuffer(data, np.uint8).reshape(-1, POINT))
            answer = [b"ok", result.reshape(-1)]
        except ProtocolError as e:
            answer = [str(e).encode()]
        try:
            for part in answer:
                conn.send_bytes(part)
        except OSError:  # the party stopped (a Ctrl-C) while this chunk was blinded: nobody is left to answer
            return


def blind_ids(
    key: PsiKey, ids: np.ndarray, salt: str, order: np.ndarray | None = None, chunk: int = CHUNK
) -> np.ndarray:
    """``key.blind(hash_to_points(ids[order], salt))``, a chunk at a time: the plain hashes (32 bytes per id) and
    the reordered ids never exist whole."""
    n = len(ids) if order is None else len(order)
    out = np.empty((n, POINT), dtype=np.uint8)
    for s in range(0, n, chunk):
        part = ids[s : s + chunk] if order is None else ids[order[s : s + chunk]]
        out[s : s + chunk] = key.blind(hash_to_points(part, salt))
    return out


def match(mine_double: np.ndarray, theirs_double: np.ndarray) -> np.ndarray:
    """For each of my doubly blinded values, the position of the equal value in theirs, or -1.

    Sort and binary search over the 32-byte values as opaque records: O(n log n), and no Python object per
    value (a dict of a million byte strings took hundreds of MB)."""
    if len(theirs_double) == 0:
        return np.full(len(mine_double), -1, dtype=np.int64)
    record = np.dtype((np.void, POINT))
    theirs = np.ascontiguousarray(theirs_double, dtype=np.uint8).view(record).ravel()
    mine = np.ascontiguousarray(mine_double, dtype=np.uint8).view(record).ravel()
    order = np.argsort(theirs, kind="stable")
    ranked = theirs[order]
    at = np.minimum(np.searchsorted(ranked, mine), len(ranked) - 1)
    found = np.empty(len(mine), dtype=bool)
    for s in range(0, len(mine), CHUNK):  # compare a chunk at a time: ranked[at] whole is 32 bytes per value
        found[s : s + CHUNK] = ranked[at[s : s + CHUNK]] == mine[s : s + CHUNK]
    return np.where(found, order[at], -1).astype(np.int64, copy=False)
