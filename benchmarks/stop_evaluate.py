"""Stopping `apfed evaluate --jobs 2` again and again: does it always end, with the right line and exit code?

Each try starts `apfed evaluate --dataset handwritten --methods local,apfed-c --seeds 2 --epochs 300 --jobs 2`
(each run's whole dataset goes to a worker process), sends SIGINT (as Ctrl-C does) or SIGTERM --first to --last
seconds after the start (evenly spaced over the tries), and waits up to --wait seconds for it to end. Reported
per signal: how the tries ended (`130 interrupted`, `143 terminated`, a hang) and, for a hang, where the main
thread was (Python's faulthandler, on SIGABRT). Until bcd91de `multiprocessing.Pool.terminate()` could hang
forever when the signal came as the workers took runs. For the old figures, run this from a checkout of 800a31b
(the command runs the `apfed` of the current directory) with `--tag before`.
Writes benchmarks/results/<date>-stop-evaluate[-TAG]-cpu.{json,md}.
Usage: python benchmarks/stop_evaluate.py [--tries 10] [--signals INT,TERM] [--wait 40] [--first 2] [--last 6]
       [--busy N] [--out DIR] [--tag T]
"""

import argparse
import collections
import datetime
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from apfed.report import write_benchmark

ARGS = ["evaluate", "--dataset", "handwritten", "--methods", "local,apfed-c", "--seeds", "2", "--epochs", "300"]


def one_try(signum: int, delay: float, wait: float) -> tuple[str, str]:
    """How one stopped command ended ("130 interrupted", "hang"), and the hang's stack where it hung."""
    with tempfile.TemporaryDirectory(prefix="apfed-stop-") as work, open(Path(work) / "err", "w+") as err:
        command = [sys.executable, "-X", "faulthandler", "-m", "apfed.cli", *ARGS, "--jobs", "2", "--out", work]
        p = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=err,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a shell's foreground job
        )
        time.sleep(delay)
        p.send_signal(signum)
        try:
            p.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
            p.wait(10)
            err.seek(0)
            stack = err.read()
            subprocess.run(["pkill", "-9", "-P", str(p.pid)], check=False)
            # what it said before the dump (an exception swallowed on the way?), then where its main thread was
            said = stack[: stack.find("Fatal Python error")].strip().splitlines()
            return "hang", "\n".join([*said[-15:], stack[stack.find("Current thread") :][:3000]])
        err.seek(0)
        lines = err.read().strip().splitlines()
        return f"{p.returncode} {lines[-1] if lines else ''}", ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tries", type=int, default=10, help="tries per signal")
    ap.add_argument("--signals", default="INT,TERM")
    ap.add_argument("--wait", type=float, default=40.0, help="seconds a stopped command may take to end")
    ap.add_argument("--first", type=float, default=2.0, help="seconds from the start to the first try's signal")
    ap.add_argument("--last", type=float, default=6.0, help="... to the last try's (evenly spaced between)")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--tag", default="", help="added to the report's name ('before': run from an older checkout)")
    ap.add_argument("--busy", type=int, default=0, help="processes that keep a core busy meanwhile (a loaded host)")
    a = ap.parse_args()
    rows, stacks = [], []
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(a.busy)]
    try:
        _tries(a, rows, stacks)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    report = {
        "command": "python " + " ".join(sys.argv),
        "evaluate": ARGS + ["--jobs", "2"],
        "wait_s": a.wait,
        "busy_processes": a.busy,
        "rows": rows,
        "hangs": stacks,
    }
    md = [
        f"# Stopping `apfed {' '.join(ARGS)} --jobs 2`",
        "",
        f"Each try: a fresh command, the signal {a.first:.1f} to {a.last:.1f} s after its start (evenly spaced over the"
        f" tries: before, while and after the workers take their first runs), then up to {a.wait:.0f} s to end."
        + (f" Meanwhile {a.busy} processes kept a core busy each." if a.busy else ""),
        "",
        "| signal | tries | how they ended |",
        "|---|---|---|",
        *(
            f"| {r['signal']} | {r['tries']} | " + ", ".join(f"{k}: {v}" for k, v in sorted(r["ends"].items())) + " |"
            for r in rows
        ),
    ]
    for s in stacks:
        md += ["", f"{s['signal']} try {s['try']} hung; its main thread:", "", "```", s["stack"], "```"]
    day = datetime.date.today().isoformat()
    tag = f"-{a.tag}" if a.tag else ""
    write_benchmark(Path(a.out) / f"{day}-stop-evaluate{tag}-cpu", report, md)


def _tries(a: argparse.Namespace, rows: list, stacks: list) -> None:
    """Every try of every signal: a row per signal (how its tries ended) and the stack of each hang."""
    for name in a.signals.split(","):
        signum = signal.Signals[f"SIG{name}"]
        ends: collections.Counter = collections.Counter()
        for i in range(a.tries):
            delay = a.first + (a.last - a.first) * i / max(1, a.tries - 1)
            end, stack = one_try(signum, delay, a.wait)
            ends[end] += 1
            print(f"SIG{name} try {i + 1} ({delay:.1f} s): {end}", flush=True)
            if stack:
                stacks.append({"signal": f"SIG{name}", "try": i + 1, "delay_s": delay, "stack": stack})
        rows.append({"signal": f"SIG{name}", "tries": a.tries, "ends": dict(ends)})


if __name__ == "__main__":
    main()
