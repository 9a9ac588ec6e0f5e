"""A loopback deployment whose active host crashes, resumed, against the same run in process.

1. Deploy APFed-C on digits (3 views: the active party and two passives, K = 2, pipelined) with checkpoints
   every N rounds at every party; once the active party's first checkpoint is written, SIGKILL the SuperLink
   with its ServerApp (the active party's host crashes).
2. Start everything again (a new SuperLink, the SuperNodes with the same node config) and `flwr run` with
   `resume=true`.
3. Train the same recipe in process, with the same checkpoints and no crash.
The resumed deployment should end with the in-process run's accuracy in every epoch (checkpoint rounds drain the
pipeline, so the comparison run checkpoints too). Writes benchmarks/results/<date>-deploy-resume-cpu.{json,md}.
Usage: python benchmarks/deploy_resume.py [--epochs 3] [--every 3] [--out benchmarks/results]
"""

import argparse
import datetime
import os
import shutil
import tempfile
import time
from pathlib import Path

from apfed.bench import load_deploy
from apfed.checkpoint import load_checkpoint
from apfed.config import make_config
from apfed.data import load_bundled
from apfed.report import write_benchmark
from apfed.runner import Safety, run

deploy = load_deploy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--every", type=int, default=3, help="checkpoint every N rounds")
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="apfed-deploy-resume-"))
    ck = work / "checkpoints"
    common = {
        "method": "apfed-c",
        "dataset": "digits",
        "views": 3,
        "active": "0",
        "epochs": a.epochs,
        "k": 2,
        "n_passives": 2,
        "timeout": 600,
        "checkpoint_dir": ck,
        "checkpoint_every": a.every,
    }
    crash = {}

    def crash_after_the_first_checkpoint(link, done):
        t0 = time.monotonic()
        while not (ck / "active.ckpt").exists() and not done.is_set() and time.monotonic() - t0 < 600:
            time.sleep(0.1)
        crash["after_s"] = time.monotonic() - t0
        deploy.kill_superlink(link)

    t0 = time.monotonic()
    try:
        deploy.deploy(work / "crashed", during=crash_after_the_first_checkpoint, **common)
        raise SystemExit("the run was not interrupted")
    except RuntimeError as e:
        crash["error"] = str(e)
    crash["run_s"] = time.monotonic() - t0
    saved = load_checkpoint(ck / "active.ckpt")
    t1 = time.monotonic()
    resumed = deploy.deploy(work / "resumed", resume=True, **common)
    resumed_s = time.monotonic() - t1
    cfg = make_config("default", method="apfed-c", epochs=a.epochs, batches_per_round=2, pipeline=True)
    with tempfile.TemporaryDirectory() as d:
        local = run(load_bundled("digits", 3), 0, cfg, safety=Safety(checkpoint_dir=d, checkpoint_every=a.every))
    shutil.rmtree(work, ignore_errors=True)
    deployed = [h["accuracy"] for h in resumed["history"]]
    in_process = [h["accuracy"] for h in local.history]
    rep = {
        "benchmark": "deployment resumed after a crash of the active host",
        "epochs": a.epochs,
        "checkpoint_every": a.every,
        "crashed_after_s": crash["after_s"],
        "crashed_run_s": crash["run_s"],
        "crashed_with": crash["error"],
        "resumed_after_round": int(saved["round"]),
        "resumed_run_s": resumed_s,
        "deployment_accuracy": deployed,
        "in_process_accuracy": in_process,
        "equal": deployed == in_process,
        "command": f"python benchmarks/deploy_resume.py --epochs {a.epochs} --every {a.every}",
    }
    md = [
        "# A deployment resumed after its active host crashed",
        "",
        f"APFed-C on digits (3 views: the active party and two passives), K = 2 pipelined, {a.epochs} epochs, a"
        f" checkpoint every {a.every} rounds at every party. The SuperLink and its ServerApp were killed"
        f" {crash['after_s']:.0f} s into the run, once the active party's first checkpoint was written (message"
        f" round {int(saved['round'])}); a new SuperLink, the same SuperNodes' node config and `resume=true` finished"
        f" it in {resumed_s:.0f} s. The in-process run trains the same recipe with the same checkpoints, uncrashed.",
        "",
        "| epoch | resumed deployment accuracy | in-process accuracy |",
        "|---|---|---|",
        *[f"| {i + 1} | {d:.2f} | {p:.2f} |" for i, (d, p) in enumerate(zip(deployed, in_process, strict=True))],
        "",
        f"Equal in every epoch: {'yes' if deployed == in_process else 'no'}.",
    ]
    prefix = Path(a.out) / f"{datetime.date.today()}-deploy-resume-cpu"
    os.makedirs(a.out, exist_ok=True)
    write_benchmark(prefix, rep, md)


if __name__ == "__main__":
    main()
