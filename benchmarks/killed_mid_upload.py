"""A SuperNode killed while it uploads a reply: does the round still end at its deadline?

A SuperNode registers its reply in the SuperLink, then uploads the reply's contents. Killed in between, the reply
stays registered and incomplete, and Flower's Grid pull of it retries until the object-push session expires
(180 s). This deploys APFed-C on digits (3 views: the active party and two passives, K = 2 pipelined,
`round-timeout=15`), holds passive2's upload of the reply after its fourth training round (a `sitecustomize` hook in
that SuperNode only), kills that SuperNode there, and restarts it. Reported: each epoch's time, every round left
out per passive (passive1 should never be), and the accuracy. Run it on a checkout before `pull_each` (commit
0a03d3e) for the old figures. Writes benchmarks/results/<date>-killed-mid-upload-cpu.{json,md}.
Usage: python benchmarks/killed_mid_upload.py [--epochs 8] [--out benchmarks/results] [--tag T] [--keep]
"""

import argparse
import datetime
import os
import shutil
import tempfile
import time
from pathlib import Path

from apfed.bench import load_deploy
from apfed.report import write_benchmark

deploy = load_deploy()

HOOK = """
import os, sys, time
from pathlib import Path
supernode = "flower-supernode" in sys.argv[0] or sys.argv[1:2] == ["supernode"]  # Flower's own, or apfed's
if supernode and any(a.endswith(os.sep + os.environ["APFED_BENCH_HOLD_KEY"]) for a in sys.argv):
    import flwr.supernode.start_client_internal as _m
    _push = _m.push_object_contents_from_iterable
    def _held(*a, **k):
        if Path(os.environ["APFED_BENCH_HOLD_FLAG"]).exists():
            print("apfed-bench: upload held", flush=True)
            time.sleep(3600)
        return _push(*a, **k)
    _m.push_object_contents_from_iterable = _held
"""


def _count(log: Path, text: str) -> int:
    return log.read_text(errors="replace").count(text) if log.exists() else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--keep", action="store_true", help="keep the run's folder (logs of every process)")
    ap.add_argument("--tag", default="", help="added to the report's name (e.g. 'before' for an older checkout)")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="apfed-killed-mid-upload-"))
    (work / "hook").mkdir()
    (work / "hook" / "sitecustomize.py").write_text(HOOK)
    flag = work / "hold"
    os.environ.update(
        PYTHONPATH=os.pathsep.join([str(work / "hook"), *filter(None, [os.environ.get("PYTHONPATH")])]),
        APFED_BENCH_HOLD_KEY="node2",
        APFED_BENCH_HOLD_FLAG=str(flag),
    )
    out = work / "run"
    fault = {}

    def kill_mid_upload(link, done):
        log = out / "supernode2.log"
        deadline = time.monotonic() + 300
        while _count(log, "apfed train via worker") < 4 and time.monotonic() < deadline and not done.is_set():
            time.sleep(0.05)
        flag.touch()
        while not _count(log, "apfed-bench: upload held") and time.monotonic() < deadline and not done.is_set():
            time.sleep(0.05)
        fault["held"] = bool(_count(log, "apfed-bench: upload held"))
        time.sleep(0.5)
        flag.unlink()
        fault["restart_attempts"] = deploy.kill_and_restart_supernode(link, 1, down_s=2.0)

    t0 = time.monotonic()
    hit = deploy.deploy(
        out,
        method="apfed-c",
        dataset="digits",
        views=3,
        active="0",
        epochs=a.epochs,
        k=2,
        n_passives=2,
        timeout=900,
        extra_run_config="round-timeout=15.0 on-bad-message='skip'",
        during=kill_mid_upload,
    )
    wall = time.monotonic() - t0
    if a.keep:
        print(f"the run's folder: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    if not fault.get("held"):
        raise SystemExit("passive2's upload was never held: nothing was measured")
    epochs = [h["train_time"] for h in hit["history"]]
    left_out = {p: sorted(f["round"] for f in hit["faults"] if f["passive"] == p) for p in ("passive1", "passive2")}
    rep = {
        "benchmark": "a SuperNode killed while it uploads a reply",
        "epochs": a.epochs,
        "run_s": wall,
        "epoch_s": epochs,
        "rounds_left_out": left_out,
        "accuracy": hit["final"]["accuracy"],
        "restart_attempts": fault["restart_attempts"],
        "command": f"python benchmarks/killed_mid_upload.py --epochs {a.epochs}" + (f" --tag {a.tag}" if a.tag else ""),
    }
    md = [
        "# A SuperNode killed while it uploads a reply",
        "",
        "APFed-C on digits (3 views: the active party and two passives), K = 2 pipelined, `round-timeout=15`,"
        f" {a.epochs} epochs. passive2's SuperNode was held in the upload of its reply after its fourth training"
        " round (registered in the SuperLink, its contents not sent), killed there and restarted"
        f" ({fault['restart_attempts']} attempt(s): the SuperLink refuses a node it still believes online).",
        "",
        "| epoch | time (s) |",
        "|---|---|",
        *[f"| {i + 1} | {t:.1f} |" for i, t in enumerate(epochs)],
        "",
        f"Run: {wall:.0f} s. Rounds left out: passive1 {left_out['passive1'] or 'none'}; passive2 "
        f"{len(left_out['passive2'])} (rounds {left_out['passive2'][0]}–{left_out['passive2'][-1]})."
        if left_out["passive2"]
        else f"Run: {wall:.0f} s. Rounds left out: passive1 {left_out['passive1'] or 'none'}; passive2 none.",
        f"Final test accuracy {hit['final']['accuracy']:.2f} %.",
    ]
    tag = f"-{a.tag}" if a.tag else ""
    write_benchmark(Path(a.out) / f"{datetime.date.today()}-killed-mid-upload{tag}-cpu", rep, md)


if __name__ == "__main__":
    main()
