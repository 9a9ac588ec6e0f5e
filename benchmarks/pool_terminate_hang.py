"""Why `evaluate --jobs` left `multiprocessing.Pool`: stopped while a queued run is pickled, the pool hangs forever.

Two workers each start a 30 s call; a third call, with 5 MiB of arguments whose pickling takes 2 s (as a large
dataset's can on a busy host), is queued; 0.5 s later the caller stops everything, as `evaluate` does on Ctrl-C.
- `multiprocessing.Pool.terminate()` drains its task pipe while its task thread is still pickling the third call,
  then waits for that thread, which writes 5 MiB into a pipe nobody reads any more: it never returns.
- `apfed.spawning.run_in_processes` pickles each call on the caller's thread, so the stop lands there.
Each variant runs in a process of its own with --timeout seconds to finish.
Writes benchmarks/results/<date>-pool-terminate-hang-cpu.{json,md}.
Usage: python benchmarks/pool_terminate_hang.py [--timeout 60] [--out benchmarks/results]
"""

import argparse
import datetime
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from apfed.report import write_benchmark

SLOW = '''
import time

class Slow:
    """5 MiB of arguments whose pickling takes 2 s."""

    def __init__(self):
        self.data = bytes(5 << 20)

    def __reduce__(self):
        time.sleep(2)
        return (bytes, (self.data,))
'''

POOL = (
    SLOW
    + """
import multiprocessing as mp

if __name__ == "__main__":
    pool = mp.get_context("spawn").Pool(2)
    pool.apply_async(time.sleep, (30,))
    pool.apply_async(time.sleep, (30,))
    time.sleep(5)  # both workers busy
    pool.apply_async(len, (Slow(),))
    time.sleep(0.5)
    t = time.monotonic()
    pool.terminate()
    pool.join()
    print(f"stopped in {time.monotonic() - t:.1f} s")
"""
)

OURS = (
    SLOW
    + """
import signal, threading

from apfed.spawning import run_in_processes

if __name__ == "__main__":
    started = []

    def stop_soon(i, result):  # the first call is done: the third's pickling starts now, on this thread
        started.append(time.monotonic())
        threading.Timer(0.5, signal.raise_signal, (signal.SIGINT,)).start()

    t = time.monotonic()
    try:
        run_in_processes(time.sleep, [(5,), (30,), (Slow(),)], 2, stop_soon)
    except KeyboardInterrupt:
        print(f"stopped in {time.monotonic() - started[0] - 0.5:.1f} s")
"""
)


def run(code: str, timeout: float, work: Path) -> dict:
    script = work / "case.py"
    script.write_text(code)
    t = time.monotonic()
    try:
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=timeout)
        out = done.stdout.strip().splitlines()
        said = out[-1] if out else done.stderr[-300:]
        return {"ended": True, "seconds": round(time.monotonic() - t, 1), "said": said}
    except subprocess.TimeoutExpired:
        return {"ended": False, "seconds": timeout, "said": f"still stopping after {timeout:.0f} s: killed"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="apfed-pool-hang-") as work:
        rows = [
            {"variant": "multiprocessing.Pool.terminate()", **run(POOL, a.timeout, Path(work))},
            {"variant": "apfed.spawning.run_in_processes", **run(OURS, a.timeout, Path(work))},
        ]
    report = {"command": "python " + " ".join(sys.argv), "timeout_s": a.timeout, "rows": rows}
    md = [
        "# Stopping worker processes while a queued call with 5 MiB of arguments is pickled",
        "",
        "| variant | ended | what it printed |",
        "|---|---|---|",
        *(f"| `{r['variant']}` | {'yes' if r['ended'] else 'no'} | {r['said']} |" for r in rows),
    ]
    day = datetime.date.today().isoformat()
    write_benchmark(Path(a.out) / f"{day}-pool-terminate-hang-cpu", report, md)


if __name__ == "__main__":
    main()
