"""Spawned worker processes: they do not re-run the caller's main script, and stop at once when asked."""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, NoReturn

from apfed.errors import ApfedError


@contextlib.contextmanager
def without_main_script() -> Iterator[None]:
    """Processes spawned inside this block do not import the caller's ``__main__`` (script or ``-m`` module).

    ``multiprocessing``'s spawn runs the parent's main module again in every child, so that objects defined there
    can be unpickled. apfed's workers receive only apfed's own objects, and running a user's script again (one
    without an ``if __name__ == "__main__":`` guard) would start the whole run again inside each worker:
    ``multiprocessing`` then stops the worker while it starts. Only the start of the processes reads the main
    module, so the block should hold just that."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__spec__", "__file__") if k in main.__dict__}
    main.__dict__["__spec__"] = None
    main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def _serve(conn: Connection, fn: Callable[..., Any]) -> None:
    """A worker: ``fn(*args)`` for each ``args`` received, sending back ``(True, result)`` or ``(False, error)``,
    until ``None`` or the main process is gone. Ctrl-C is left to the main process, which stops the workers (no
    traceback from every worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            args = conn.recv()
        except (EOFError, OSError):
            return
        if args is None:
            return
        try:
            reply = (True, fn(*args))
        except Exception as e:  # sent back and raised in the main process, as a run in-process would raise it
            reply = (False, e)
        try:
            conn.send(reply)
        except OSError:  # the main process is gone
            return
        except Exception as e:  # an object that does not pickle: pickling fails before anything is written
            conn.send((False, RuntimeError(f"{fn.__name__} returned or raised what cannot be sent back: {e}")))


def stop_process(p: BaseProcess, grace_s: float = 10.0) -> None:
    """End ``p`` if it still runs: SIGTERM, ``grace_s`` seconds to exit, then SIGKILL; it is joined either way."""
    if p.is_alive():
        p.terminate()
    p.join(grace_s)
    if p.is_alive():
        p.kill()
        p.join()


class WorkerDied(ApfedError):
    """A worker process ended while it ran a call (killed, out of memory, a crash in native code)."""


def _died(p: BaseProcess, call: str) -> NoReturn:
    p.join(5)
    code = p.exitcode
    if code is not None and code < 0:
        how = f"was killed by {signal.Signals(-code).name}"
        if -code == signal.SIGKILL:
            how += " (as the system's out-of-memory killer does)"
    else:
        how = f"exited with code {code}"
    raise WorkerDied(f"the worker process running {call} {how}")


def run_in_processes(
    fn: Callable[..., Any],
    calls: list[tuple],
    jobs: int,
    on_result: Callable[[int, Any], None] | None = None,
    names: list[str] | None = None,
) -> list:
    """``fn(*calls[i])`` for every ``i``, in ``jobs`` spawned processes; the results in the calls' order.
    ``on_result(i, result)`` runs in this process as each one arrives. ``fn`` must be importable (module level).
    ``names[i]`` names call i in the error if its worker dies (``WorkerDied``).

    The first error a call raises is raised here; it, Ctrl-C or any other exception here stops every worker at
    once (SIGTERM), without finishing the calls under way or queued. Unlike ``multiprocessing.Pool``, no feeder
    thread stands between this process and its workers: a large argument (a whole dataset) goes straight down the
    pipe of an idle worker, and stopping cannot deadlock on a half-written one (``Pool.terminate`` hung so); a
    worker that dies is reported instead of waited for forever."""
    ctx = multiprocessing.get_context("spawn")
    workers: list[tuple[BaseProcess, Connection]] = []
    results: dict[int, Any] = {}
    try:
        with without_main_script():
            for _ in range(min(jobs, len(calls))):
                mine, theirs = ctx.Pipe()
                p = ctx.Process(target=_serve, args=(theirs, fn), daemon=True)
                p.start()
                theirs.close()
                workers.append((p, mine))
        queued = deque(range(len(calls)))
        idle = list(range(len(workers)))
        busy: dict[Connection, tuple[int, int]] = {}  # a busy worker's pipe: (worker, call)

        def name(i: int) -> str:
            return names[i] if names else f"call {i}"

        while queued or busy:
            while idle and queued:
                w, i = idle.pop(), queued.popleft()
                try:
                    workers[w][1].send(calls[i])
                except OSError:
                    _died(workers[w][0], name(i))
                busy[workers[w][1]] = (w, i)
            for conn in wait(list(busy)):
                w, i = busy.pop(conn)
                try:
                    ok, value = conn.recv()
                except (EOFError, OSError):
                    _died(workers[w][0], name(i))
                if not ok:
                    raise value
                results[i] = value
                idle.append(w)
                if on_result is not None:
                    on_result(i, value)
        for _, conn in workers:
            conn.send(None)
        for p, _ in workers:
            p.join()
    finally:
        for p, conn in workers:
            stop_process(p)
            conn.close()
    return [results[i] for i in range(len(calls))]
