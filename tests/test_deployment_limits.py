"""A real loopback deployment whose passives set limits and an audit log in their node config (deploy.py
--node-set), enforced by workers they started themselves (deploy.py --own-workers: `apfed worker`). In a file of
its own so that scripts/test.sh runs it on a worker beside tests/test_deployment.py (one file per worker) instead
of after it."""

import json
import re
import subprocess

import pytest
from test_deployment import ROOT, deploy

pytestmark = pytest.mark.deployments


def test_passives_whose_limits_a_run_exceeds_refuse_it_at_set_up_and_log_the_refusal(tmp_path, party_csvs):
    """Each passive's settings (deploy.py --node-set): its embeddings stay with it, and an audit log. Each passive
    runs its own worker (`apfed worker`, its own code, holding its file and these settings); its SuperNode's node
    config names only that worker's socket, so the ClientApp, which the active party submits, only relays bytes."""
    bank, shop, telco = party_csvs["paths"]
    out = tmp_path / "run"
    p = subprocess.run(
        [deploy.sys.executable, str(ROOT / "examples" / "deploy-local" / "deploy.py"), "--out", str(out)]
        + ["--data", str(bank), "--data", str(shop), "--data", str(telco), "--id-column", "user_id"]
        + ["--method", "apfed-kd", "--epochs", "1", "--node-set", "send-embeddings=false", "--own-workers"]
        + ["--node-set", f"audit-log={tmp_path}/{{party}}-audit.jsonl"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    refused = r"error: the run failed: passive\d reported an error: passive\d: will not send its embeddings"
    assert re.match(refused, lines[-1]), lines[-1]
    for party in ("passive1", "passive2"):
        logged = [json.loads(line) for line in (tmp_path / f"{party}-audit.jsonl").read_text().splitlines()]
        setup = [e for e in logged if e["kind"] == "setup"]
        assert len(setup) == 1 and setup[0]["party"] == party and setup[0]["sent"] == {}, logged
        assert "will not send its embeddings" in setup[0]["error"]
        assert setup[0]["asked"]["method"] == "apfed-kd" and setup[0]["asked"]["ids_offered"] > 0
    for i in (1, 2):
        assert (out / f"supernode{i}.log").read_text().count("via the party's worker") >= 2  # hello, setup
        worker_log = (out / f"worker{i}.log").read_text()
        assert f"apfed worker: passive{i}, " in worker_log and "set-up of run" in worker_log, worker_log


def test_the_app_bundle_flwr_run_submits_holds_the_code_only(tmp_path):
    """pyproject.toml's fab-include: the bundle every SuperNode gets is apfed's code (it was 2.3 MB with the
    benchmarks' reports, the docs and the tests in it). Built from a copy of the checkout's tracked files: `flwr
    build` reads every file under the folder before it filters them, the .venv's 45,000 too (27 s in CI)."""
    import shutil
    import zipfile

    checkout = tmp_path / "checkout"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, checkout / name)
    assert (checkout / "docs").is_dir() and (checkout / "tests").is_dir()  # what the bundle must leave out is there
    p = subprocess.run(
        [str(deploy.BIN / "flwr"), "build", "--app", str(checkout)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    (fab,) = tmp_path.glob("*.fab")
    names = zipfile.ZipFile(fab).namelist()
    assert {"clients/flower_app.py", "clients/flower_client.py", "apfed/learner.py", "protocols/codec.py"} <= set(names)
    assert {n.split("/")[0] for n in names} <= {"apfed", "clients", "protocols", "pyproject.toml", "LICENSE", ".info"}
    assert all(n.endswith(".py") for n in names if n.split("/")[0] in ("apfed", "clients", "protocols")), names
