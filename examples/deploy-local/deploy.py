"""Loopback deployment of apfed over Flower with TLS and SuperNode authentication.

Generates a CA, a server certificate and one EC key per passive; starts a SuperLink (TLS,
--enable-supernode-auth, --disable-runtime-dependency-installation); registers and starts one SuperNode per
passive with its own data; runs the training with `flwr run`; writes the standalone model and a result JSON;
then stops every process it started, by PID. Every wait is bounded.

Usage (from the repository root, in the project's venv):
    python examples/deploy-local/deploy.py --out runs/deploy [--method apfed-c] [--epochs 2] [--k 16] [--no-pipeline]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))  # run from a checkout: apfed and protocols import from it

from apfed.data.splits import check_test_fraction  # noqa: E402
from apfed.errors import ApfedError, ArgumentParser, ConfigError  # noqa: E402
from apfed.report import final_note, test_line  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_pki(d: Path, n_nodes: int) -> dict:
    """CA, server certificate for 127.0.0.1/localhost (valid for a day), and one EC P-256 key pair (OpenSSH) per
    node: what `apfed certs` and `apfed nodekey` make for a real deployment."""
    from apfed.pki import write_certs, write_node_key

    d.mkdir(parents=True, exist_ok=True)
    made = write_certs(d, ["127.0.0.1", "localhost"], days=1, ca_days=1)
    nodes = [write_node_key(d / f"node{i + 1}")[:2] for i in range(n_nodes)]
    return {"ca": made.ca, "cert": made.cert, "key": made.key, "nodes": nodes}


def app_folder(out: Path) -> Path:
    """``out/app``: pyproject.toml and the files of its ``fab-include`` (the bundle ``flwr run`` submits), copied
    from this checkout. ``flwr run`` builds its bundle by reading every file under the folder it is given before it
    filters them, and a checkout with its ``.venv`` holds about 45,000: 6-7 s per run on a 2-core host, against
    well under one for this folder."""
    import tomllib

    pyproject = ROOT / "pyproject.toml"
    include = tomllib.loads(pyproject.read_text())["tool"]["flwr"]["app"]["fab-include"]
    app = out / "app"
    shutil.rmtree(app, ignore_errors=True)
    app.mkdir(parents=True)
    for path in [pyproject, *(f for pattern in include for f in ROOT.glob(pattern.lstrip("/")))]:
        if path.is_file() and "__pycache__" not in path.parts:
            copy = app / path.relative_to(ROOT)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)
    return app


class Processes:
    """Start processes in their own process groups; stop them all (and their children) by PID."""

    def __init__(self, logdir: Path, env: dict):
        self.logdir, self.env, self.procs = logdir, env, []
        self.dirs: list[Path] = []  # removed by stop (short directories made outside the log directory)

    def start(self, name: str, args: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.logdir / f"{name}.log", "w")  # noqa: SIM115 (closed in stop)
        p = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=env or self.env, cwd=ROOT, start_new_session=True
        )
        self.procs.append((name, p, log))
        return p

    def stop_one(self, p: subprocess.Popen, grace: float = 10.0) -> None:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(grace)
        with contextlib.suppress(ProcessLookupError):  # children left in its group (e.g. flwr-serverapp)
            os.killpg(p.pid, signal.SIGKILL)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every started process, its process group and its detached helpers; wait (bounded) until gone.
        A passive worker killed here leaves its state in its private directory; that directory is removed too
        (a new deployment's SuperLink gives the nodes new ids, hence new worker directories)."""
        pids, worker_dirs = [], []
        for _, p, log in reversed(self.procs):
            for child in detached_children(p.pid):  # e.g. the SuperLink's flower-superexec, the passive workers
                pids.append(child)
                worker_dirs += _worker_dir(child)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
            pids.append(p.pid)
            self.stop_one(p)
            log.close()
            without_colours(Path(log.name))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_running(pid) for pid in pids):
            time.sleep(0.1)
        for d in worker_dirs + self.dirs:
            shutil.rmtree(d, ignore_errors=True)


def _cmdline(pid: int | str) -> list[bytes]:
    """Process ``pid``'s arguments (empty if it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def _worker_dir(pid: int) -> list[Path]:
    """The private directory of process ``pid`` if it is a passive worker (``-m clients.passive_worker --dir D``)."""
    args = _cmdline(pid)
    if b"clients.passive_worker" not in args or b"--dir" not in args[:-1]:
        return []
    d = Path(args[args.index(b"--dir") + 1].decode())
    return [d] if d.name.startswith("apfed-") else []


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def detached_children(pid: int) -> list[int]:
    """Processes started in their own session with ``--parent-pid PID``, and theirs in turn (killpg misses them):
    Flower's flower-superexec helpers and apfed's passive workers."""
    found = [c for c in _detached(pid)]
    for c in list(found):
        found += detached_children(c)
    return found


def _detached(pid: int) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            args = _cmdline(d.name)
            if b"--parent-pid" in args and args[args.index(b"--parent-pid") + 1 : args.index(b"--parent-pid") + 2] == [
                str(pid).encode()
            ]:
                found.append(int(d.name))
    return found


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} before opening port {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout:.0f} s")


def flwr(env: dict, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "flwr"), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def existing_pki(d: Path, n_nodes: int) -> dict:
    """Certificates and node keys the organisations already have (same file names as make_pki), checked."""
    from apfed.preflight import check_certificate, check_private_key, check_private_to_owner

    pki = {"ca": d / "ca.crt", "cert": d / "server.pem", "key": d / "server.key"}
    pki["nodes"] = [(d / f"node{i + 1}", d / f"node{i + 1}.pub") for i in range(n_nodes)]
    for c in (pki["ca"], pki["cert"]):
        if (validity := check_certificate(c)).expiring:
            print(f"{c}: {validity}", file=sys.stderr)
    for k in [pki["key"], *(priv for priv, _ in pki["nodes"])]:
        check_private_key(k)
        check_private_to_owner(k)
    return pki


def start_link(
    out: Path,
    n_nodes: int,
    threads: int | None = None,
    database: Path | None = None,
    ports: tuple[int | None, int | None] = (None, None),
    pki_dir: Path | None = None,
    tls: bool = True,
) -> dict:
    """PKI, Flower config and a SuperLink with TLS and SuperNode authentication on free loopback ports.
    ``tls=False`` (benchmarks only): plain gRPC and no node authentication, to measure what TLS costs.

    ``threads`` caps the torch threads of every process started (OMP_NUM_THREADS): parties sharing one host
    should not oversubscribe its cores, as they would not on separate machines."""
    from apfed.preflight import check_port_free

    for port in ports:
        if port:
            check_port_free(port)
    out.mkdir(parents=True, exist_ok=True)
    pki = existing_pki(pki_dir, n_nodes) if pki_dir else make_pki(out / "pki", n_nodes)
    home = out / "flwr_home"
    home.mkdir(exist_ok=True)
    # control: the SuperLink's HTTP API (Control and Runtime)
    fleet, control = ports[0] or free_port(), ports[1] or free_port()
    trust = f'root-certificates = "{pki["ca"]}"' if tls else "insecure = true"
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "local-tls"\n\n[superlink.local-tls]\naddress = "127.0.0.1:{control}"\n{trust}\n'
    )
    env = {
        **os.environ,
        "FLWR_HOME": str(home),
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.05",  # start app processes sooner (default 1 s)
        "PYTHONUNBUFFERED": "1",  # log lines reach the log files as they are written: deploy.py shows them live
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    procs = Processes(out, env)
    t0 = time.monotonic()
    try:
        link = procs.start(
            "superlink",
            [
                str(BIN / "flower-superlink"),
                *(
                    [
                        "--ssl-ca-certfile",
                        str(pki["ca"]),
                        "--ssl-certfile",
                        str(pki["cert"]),
                        "--ssl-keyfile",
                        str(pki["key"]),
                        "--enable-supernode-auth",
                    ]
                    if tls
                    else ["--insecure"]
                ),
                "--disable-runtime-dependency-installation",
                "--fleet-api-address",
                f"127.0.0.1:{fleet}",
                "--host",
                "127.0.0.1",
                "--port",
                str(control),
                *(["--database", str(database)] if database else []),
            ],
        )
        wait_port(control, 60, link)
        wait_port(fleet, 60, link)
    except BaseException:
        procs.stop()
        raise
    return {"pki": pki, "env": env, "procs": procs, "fleet": fleet, "control": control, "t0": t0, "tls": tls}


def kill_and_restart_supernode(link: dict, index: int, down_s: float, give_up_s: float = 180.0) -> int:
    """Fault injection: SIGKILL passive ``index``'s SuperNode (its whole process group), keep it down for
    ``down_s`` seconds, then start it again with the same key and node config. The SuperLink refuses to
    re-activate a node it still believes online (until two heartbeat intervals pass without one: about 60 s, or 20 s
    with ``heartbeat=10``), so the restart is retried until one is activated (its log names its node ID); returns
    the number of attempts."""
    procs = link["procs"]
    name = f"supernode{index + 1}"
    p = next(p for n, p, _ in reversed(procs.procs) if n == name)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(p.pid, signal.SIGKILL)
    p.wait(30)
    time.sleep(down_s)
    key, party, node_config = link["nodes"][index]
    deadline = time.monotonic() + give_up_s
    for attempt in range(1, 1000):
        q = procs.start(
            f"{name}-restart{attempt}", supernode_args(link, key, party, node_config), node_env(link, index)
        )
        log = procs.logdir / f"{name}-restart{attempt}.log"
        # activated, or refused (it exits): by the node's own log and exit, not by a timer, which a busy host outlasts
        while q.poll() is None and time.monotonic() < deadline:
            if "SuperNode ID:" in log.read_text(errors="replace"):
                return attempt
            time.sleep(0.2)
        if time.monotonic() >= deadline:
            raise RuntimeError(f"{name} could not rejoin within {give_up_s:.0f} s")
        time.sleep(3)
    raise RuntimeError(f"{name} could not rejoin")


def kill_superlink(link: dict) -> None:
    """Fault injection: the active party's host crashes. SIGKILL the SuperLink's process group and its detached
    helpers (flower-superexec and the ServerApp it started): no clean shutdown, no final checkpoint."""
    p = next(p for n, p, _ in link["procs"].procs if n == "superlink")
    for child in detached_children(p.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(p.pid, signal.SIGKILL)
    p.wait(30)


def start_worker(procs: Processes, out: Path, index: int, node_config: str, timeout: float = 120.0) -> Path:
    """Start passive ``index``'s own worker (``apfed worker``) with its node settings; return its socket once it
    listens (bounded wait)."""
    d = out / f"worker{index + 1}"
    d.mkdir(mode=0o700, exist_ok=True)
    sock = d / "worker.sock"
    p = procs.start(
        f"worker{index + 1}",
        [
            str(BIN / "apfed"),
            "worker",
            "--socket",
            str(sock),
            "--node-config",
            f"party='passive{index + 1}' {node_config}",
        ],
    )
    _wait_listening(p, sock, out / f"worker{index + 1}.log", f"passive{index + 1}'s worker", timeout)
    return sock


def _wait_listening(p: subprocess.Popen, sock: Path, log: Path, who: str, timeout: float) -> None:
    """Until process ``p`` has made its socket ``sock``; one line with its log's last if it exits first."""
    deadline = time.monotonic() + timeout
    while not sock.exists():
        if p.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:]
            raise RunFailed(f"{who} exited: {' '.join(tail)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{who} did not listen within {timeout:.0f} s")
        time.sleep(0.05)


def start_warm_clientapps(procs: Processes, out: Path, index: int, timeout: float = 60.0) -> dict:
    """Start passive ``index``'s warm ClientApp server (clients/warm_clientapp.py); return its SuperNode's
    environment, whose PATH finds the server's ``flwr-clientapp`` first, once the server listens (bounded wait)."""
    from clients.warm_clientapp import MAX_SOCKET_PATH, SOCKET_NAME

    d = out / f"warm{index + 1}"
    if len(str(d / SOCKET_NAME)) > MAX_SOCKET_PATH:
        d = Path(tempfile.mkdtemp(prefix="apfed-warm-"))
        procs.dirs.append(d)
    sock = d / SOCKET_NAME
    p = procs.start(f"clientapps{index + 1}", [str(BIN / "apfed"), "clientapps", "--dir", str(d)])
    _wait_listening(p, sock, out / f"clientapps{index + 1}.log", f"passive{index + 1}'s warm ClientApp server", timeout)
    return {**procs.env, "PATH": f"{d / 'bin'}{os.pathsep}{procs.env['PATH']}"}


def node_env(link: dict, index: int) -> dict:
    """The environment passive ``index``'s SuperNode starts with (its warm ClientApps' PATH, if it has them)."""
    return link.get("node_env", {}).get(index) or link["env"]


def supernode_args(link: dict, key: Path, party: str, node_config: str = "", tls: bool = True) -> list[str]:
    """A passive's SuperNode command: ``apfed supernode`` (Flower's, its fixed waits shortened;
    clients/supernode.py; ``link["heartbeat"]``: its ``--heartbeat-interval``), or Flower's own
    ``flower-supernode`` where ``link["flower_supernode"]``."""
    tls = tls and link.get("tls", True)
    own = [str(BIN / "flower-supernode")] if link.get("flower_supernode") else [str(BIN / "apfed"), "supernode"]
    if link.get("heartbeat") and not link.get("flower_supernode"):
        own += ["--heartbeat-interval", f"{link['heartbeat']:g}"]
    args = [
        *own,
        "--superlink",
        f"127.0.0.1:{link['fleet']}",
        *(["--auth-supernode-private-key", str(key)] if link.get("tls", True) else []),
        "--host",
        "127.0.0.1",
        "--port",
        str(free_port()),
        "--node-config",
        f"party='{party}' {node_config}",
    ]
    return args + (["--root-certificates", str(link["pki"]["ca"])] if tls else ["--insecure"])


NODE_SETTABLE = ("send-embeddings", "min-dp-noise", "min-rows", "audit-log", "device", "worker")


def node_settings(pairs: list[str], n_passives: int) -> dict[int, str]:
    """``--node-set KEY=VALUE``: more node config for every passive ('{party}' in a value becomes passiveN),
    checked before anything starts."""
    from clients.audit import AuditLog
    from clients.policy import PassivePolicy

    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in NODE_SETTABLE or not value or "'" in value:
            raise ConfigError(f"--node-set {pair}: give KEY=VALUE, KEY one of {', '.join(NODE_SETTABLE)}")
        parsed[key] = value
    PassivePolicy.from_node_config(parsed)
    out = {}
    for i in range(n_passives):
        values = {k: v.replace("{party}", f"passive{i + 1}") for k, v in parsed.items()}
        if "audit-log" in values:
            values["audit-log"] = str(Path(values["audit-log"]).resolve())  # the SuperNodes run elsewhere
            AuditLog(values["audit-log"])  # its directory exists
        out[i] = " ".join(f"{k}='{v}'" for k, v in values.items())
    return out


def check_inputs(
    out: Path,
    method: str,
    files: list[Path] | None,
    id_column: str,
    label_column: str,
    test_fraction: float = 0.2,
    task: str = "classification",
    time_column: str | None = None,
) -> list[str]:
    """Everything a user gives that can be wrong, checked before any process starts (one clear error each).
    Returns what was found in the party files (categorical columns, missing values), a line each."""
    from apfed.config import method_variant
    from apfed.data.encoding import describe
    from apfed.data.files import active_party_file, passive_party_file, refuse_passive_labels
    from apfed.data.splits import check_task

    if check_task(task) == "regression" and not files:
        raise ConfigError("--task regression applies to --data files (the bundled sets are classifications)")

    if method_variant(method, "--method")[0] in ("local", "centralized"):  # a variant, 'local[lam=0]', too
        raise ConfigError(f"{method} has no passive parties to deploy; use 'apfed train' or 'apfed evaluate'")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the output directory {out}: {e.strerror or e}") from None
    if files:
        if len(files) < 2:
            raise ConfigError("--data takes the active party's file, then one file per passive (at least two)")
        parties = [
            active_party_file(
                files[0], id_column, label_column, test_fraction=test_fraction, task=task, time_column=time_column
            )
        ]
        for f in files[1:]:
            refuse_passive_labels(f, label_column)
            parties.append(passive_party_file(f, id_column))
        return [line for f, party in zip(files, parties, strict=True) for line in describe(f.name, party.view)]
    return []


def check_settings(
    method: str,
    epochs: int,
    k: int,
    seed: int,
    threads: int | None,
    dataset: str,
    active: str,
    views: int,
    files,
    sets: list[str] = (),
) -> int | None:
    """The training settings, checked as the ServerApp will check them, but before any process starts; returns
    how many passive parties a bundled dataset has (one per view but the active one; None with --data files)."""
    from dataclasses import replace

    from clients.flower_app import RunSettings

    for s in [*sets, method]:
        if "'" in s or '"' in s:
            raise ConfigError(f"{s!r}: a value cannot hold quotes in a Flower run config")
    # as the ServerApp reads them; the method may be a variant evaluate picked, 'apfed-c[lam=0.25]'
    cfg = RunSettings(method=method, epochs=epochs, batches_per_round=k, seed=seed, sets=list(sets)).config()
    replace(cfg, epochs=epochs).validate()  # the run config reads epochs=0 as the preset's; deploy.py refuses it
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    if not files:
        from apfed.catalog import BUNDLED
        from apfed.data import load_bundled

        if dataset not in BUNDLED:
            raise ConfigError(f"--dataset must be one of {', '.join(BUNDLED)} (bundled), or give --data files")
        ds = load_bundled(dataset, views or None)
        ds.view_index(active)
        return len(ds.views) - 1
    return None


def deploy(
    out: Path,
    method: str | None = None,
    dataset: str = "mnist5k",
    active: str = "top",
    epochs: int | None = None,
    k: int = 16,
    seed: int | None = None,
    n_passives: int | None = None,
    extra_run_config: str = "",
    register: bool = True,
    timeout: float = 900.0,
    files: list[Path] | None = None,
    id_column: str = "id",
    label_column: str = "label",
    test_fraction: float = 0.2,
    task: str = "classification",
    time_column: str | None = None,
    pipeline: bool = True,
    threads: int | None = None,
    encrypt: bool = False,
    node_extra: dict[int, str] | None = None,
    during=None,
    database: Path | None = None,
    views: int = 0,
    ports: tuple[int | None, int | None] = (None, None),
    pki_dir: Path | None = None,
    tls: bool = True,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    sets: list[str] | None = None,
    show=None,
    node_sets: list[str] | None = None,
    own_workers: bool = False,
    recipe: Path | None = None,
    warm_clientapps: bool = True,
    flower_supernode: bool = False,
    heartbeat: float | None = None,
) -> dict:
    """Run the whole loopback deployment; return the ServerApp's result (plus timings).

    ``encrypt``: every party gets an X25519 key (``apfed keygen``); the passives pin the active's fingerprint in
    their node config, the active pins theirs in the run config. ``node_extra``: more node config per passive
    index. ``during(link, done)`` runs in a thread while ``flwr run`` is going (fault injection); ``done`` is a
    threading.Event set when the run has ended. ``checkpoint_dir``: the active party checkpoints there every
    ``checkpoint_every`` rounds and each passive in ``checkpoint_dir/passiveN`` (its node config);
    ``resume`` continues the run checkpointed there (after a crash, on a new SuperLink). ``sets``: ``KEY=VALUE``
    overrides of training settings, as ``apfed train --set`` (the run config's ``sets``). ``node_sets``:
    ``KEY=VALUE`` for every passive's node config (its limits, its audit log; ``node_settings``). ``show``: called with
    each line the ServerApp logs for the user (set-up, one per epoch) while the run goes. ``own_workers``: each
    passive starts its own worker (``apfed worker``) with its data and node settings, and its SuperNode's node
    config names only that worker's socket (docs/security.md: the passive's code stays its own). ``recipe``: a
    TOML recipe file (``apfed info --recipe``) for the run config's ``recipe``; ``method``, ``epochs``, ``seed``,
    ``test_fraction``, ``task`` and ``time_column`` left at their defaults take the file's values (without a
    recipe: apfed-c, 2 epochs, seed 0). ``warm_clientapps``: each SuperNode's ClientApps fork from ``apfed clientapps``;
    ``flower_supernode``: the passives run Flower's own ``flower-supernode``, not ``apfed supernode``; ``heartbeat``:
    apfed supernode's ``--heartbeat-interval`` (Flower's 30 s where None)."""
    out = out.resolve()
    show = show or (lambda _: None)
    if recipe is not None:
        recipe = Path(recipe).resolve()
        from clients.flower_app import RunSettings

        given = RunSettings.from_recipe(recipe)
        method = method or given.method
        epochs = epochs if epochs is not None else given.epochs or 2
        seed = seed if seed is not None else given.seed
        test_fraction = given.test_fraction if test_fraction == 0.2 else test_fraction
        task = given.task if task == "classification" else task
        time_column = time_column or given.time_column or None
        extra_run_config += f" recipe='{recipe}'"
    method, epochs, seed = method or "apfed-c", 2 if epochs is None else epochs, seed or 0
    bundled = check_settings(method, epochs, k, seed, threads, dataset, active, views, files, sets or [])
    if bundled is not None:  # every view but the active one is a passive party with a SuperNode of its own
        if n_passives is not None and n_passives != bundled:
            raise ConfigError(f"{dataset} has {bundled} passive view(s), not {n_passives}")
        n_passives = bundled
    if sets:
        extra_run_config += " sets='" + ",".join(sets) + "'"
    if check_test_fraction(test_fraction) != 0.2:
        extra_run_config += f" test-fraction={test_fraction}"
    if time_column and not files:
        raise ConfigError("--time-column applies to --data files (the bundled sets have no time column)")
    described = check_inputs(out, method, files, id_column, label_column, test_fraction, task, time_column)
    if task != "classification":
        extra_run_config += f" task='{task}'"
    if time_column:
        extra_run_config += f" time-column={json.dumps(time_column)}"  # a TOML string, whatever the name
    for line in described:
        show(line)
    if files:  # bring-your-own data: the active party's file first, then one file per passive
        files = [Path(f).resolve() for f in files]
        n_passives = len(files) - 1
    if node_sets:
        more = node_settings(node_sets, n_passives)
        node_extra = {i: f"{(node_extra or {}).get(i, '')} {more[i]}" for i in range(n_passives)}
    if checkpoint_every < 0:
        raise ConfigError(f"--checkpoint-every must be >= 0, got {checkpoint_every}")
    if (checkpoint_every or resume) and not checkpoint_dir:
        raise ConfigError("--checkpoint-every and --resume need --checkpoint-dir")
    if checkpoint_dir:
        checkpoint_dir = Path(checkpoint_dir).resolve()
        if resume and not (checkpoint_dir / "active.ckpt").exists():
            raise ConfigError(f"nothing to resume: {checkpoint_dir / 'active.ckpt'} does not exist")
        if checkpoint_every and not resume:
            from apfed.checkpoint import refuse_to_overwrite

            refuse_to_overwrite(checkpoint_dir / "active.ckpt")
        extra_run_config += f" checkpoint-dir='{checkpoint_dir}' checkpoint-every={checkpoint_every}"
        extra_run_config += " resume=true" if resume else ""
        node_extra = {
            i: f"checkpoint-dir='{checkpoint_dir / f'passive{i + 1}'}' {(node_extra or {}).get(i, '')}"
            for i in range(n_passives)
        }
    if threads is None:  # every party shares this host: split its cores rather than oversubscribe them
        threads = max(1, (os.cpu_count() or 1) // (n_passives + 1))
    link = start_link(out, n_passives, threads, database, ports, pki_dir, tls)
    link["flower_supernode"], link["heartbeat"] = flower_supernode, heartbeat
    pki, env, procs = link["pki"], link["env"], link["procs"]
    t0 = link["t0"]
    security = "TLS and SuperNode authentication" if tls else "no TLS"
    show(f"SuperLink up: Fleet API 127.0.0.1:{link['fleet']}, Control API 127.0.0.1:{link['control']} ({security})")
    seal_run_config, seal_node_config = "", {}
    if encrypt:
        from protocols.sealing import PartyKey

        keys = out / "seal-keys"
        keys.mkdir(exist_ok=True)
        active_key = PartyKey()
        active_key.save(keys / "active.pem")
        pins = []
        for i in range(n_passives):
            passive_key = PartyKey()
            passive_key.save(keys / f"passive{i + 1}.pem")
            pins.append(f"passive{i + 1}={passive_key.fingerprint}")
            key_file = keys / f"passive{i + 1}.pem"
            seal_node_config[i] = f"seal-key='{key_file}' active-fingerprint='{active_key.fingerprint}'"
        seal_run_config = f"seal-key='{keys / 'active.pem'}' pins='{','.join(pins)}'"
    try:
        for i, (priv, pub) in enumerate(pki["nodes"]):
            if register and tls:
                r = flwr(env, "supernode", "register", str(pub), "local-tls")
                if r.returncode != 0:
                    raise RuntimeError(f"registering node {i + 1} failed: {r.stdout}{r.stderr}")
            node_config = (
                f"data='{files[i + 1]}' id-column='{id_column}'"
                if files
                else f"dataset='{dataset}' active='{active}' views={views}"
            )
            node_config += f" {seal_node_config.get(i, '')} {(node_extra or {}).get(i, '')}"
            if own_workers:  # the party's own worker holds its data and settings; its SuperNode only the socket
                node_config = f"worker-socket='{start_worker(procs, out, i, node_config)}'"
                show(f"passive{i + 1}: its own worker started (apfed worker)")
            link.setdefault("nodes", {})[i] = (priv, f"passive{i + 1}", node_config)  # to restart one later
            if warm_clientapps:
                link.setdefault("node_env", {})[i] = start_warm_clientapps(procs, out, i)
            procs.start(
                f"supernode{i + 1}", supernode_args(link, priv, f"passive{i + 1}", node_config), node_env(link, i)
            )
            show(f"passive{i + 1}: SuperNode started{' with its registered key' if register and tls else ''}")
        result_path, model_path = out / "result.json", out / "model.safetensors"
        data_config = (
            f"data='{files[0]}' passives={n_passives} id-column='{id_column}' label-column='{label_column}'"
            if files
            else f"dataset='{dataset}' active='{active}' views={views}"
        )
        run_config = (
            f"method='{method}' {data_config} epochs={epochs} seed={seed} batches-per-round={k} "
            f"pipeline={str(pipeline).lower()} "
            f"model-out='{model_path}' results-out='{result_path}' metrics-out='{out / 'metrics.csv'}' "
            f"{seal_run_config} {extra_run_config}"
        )
        t1 = time.monotonic()
        injector, done = None, threading.Event()
        if during is not None:
            injector = threading.Thread(target=during, args=(link, done), daemon=True)
            injector.start()
        show(f"flwr run: {method}, {epochs} epochs (the ServerApp's lines follow; Flower's log: {out}/flwr-run.log)")
        run = procs.start(
            "flwr-run",
            [str(BIN / "flwr"), "run", str(app_folder(out)), "local-tls", "--stream", "--run-config", run_config],
        )
        try:
            log = follow(run, out / "flwr-run.log", timeout, lambda line: _show_new(line, described, show))
        finally:
            done.set()
            if injector is not None:
                injector.join(timeout=60)
        if not result_path.exists():
            why = serverapp_error(log)
            if why:  # the ServerApp stopped on an error of apfed's (the data, a passive's reply, ...)
                raise RunFailed(f"the run failed: {why} (Flower's log: {out}/flwr-run.log)")
            raise RuntimeError(f"the run produced no result (flwr run exit {run.returncode}); see {out}/flwr-run.log")
        result = json.loads(result_path.read_text())
        result["timing"] = {"setup_s": t1 - t0, "run_s": time.monotonic() - t1}
        return result
    finally:
        procs.stop()


def follow(p: subprocess.Popen, log: Path, timeout: float, show) -> str:
    """Wait (at most ``timeout`` seconds) for ``flwr run`` to end; pass each of apfed's lines that it writes to
    ``log`` (set-up, one per epoch) to ``show`` as they come. Returns the whole log."""
    deadline, pending = time.monotonic() + timeout, ""
    with log.open(errors="replace") as f:  # made by Processes.start before the process began
        while True:
            ended = p.poll() is not None
            pending += f.read()
            *complete, pending = pending.split("\n")  # a line still being written waits for its end
            for line in [*complete, pending] if ended else complete:
                line = plain(line)
                if "apfed: " in line and "apfed: error:" not in line:  # an error is reported once, by the caller
                    show(line.split("apfed: ", 1)[1])
            if ended:
                return log.read_text(errors="replace")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the run did not end within {timeout:.0f} s; see {log}")
            time.sleep(0.5)


def _show_new(line: str, shown: list[str], show) -> None:
    """Show a ServerApp line unless it was shown before it started (it describes the active party's file again)."""
    if line not in shown:
        show(line)


def plain(text: str) -> str:
    """Flower's log text without its colour codes."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def without_colours(path: Path) -> None:
    """Rewrite a stopped process's log without Flower's colour codes, for an editor, grep or less."""
    with contextlib.suppress(OSError):
        text = path.read_text(errors="replace")
        if (clean := plain(text)) != text:
            path.write_text(clean)


class RunFailed(ApfedError):
    """The ServerApp stopped on an apfed error: its line, from Flower's log."""


def serverapp_error(log: str) -> str | None:
    """The last ``apfed: error: ...`` line the ServerApp logged (clients/flower_app.py), without colour codes."""
    found = re.findall(r"apfed: error: (.*)", plain(log))
    return found[-1].strip() if found else None


def main() -> None:
    # `kill` or `timeout` sends SIGTERM: exit through the finally blocks, which stop every process started here
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/deploy"))
    ap.add_argument(
        "--method",
        help="a method, or a variant as evaluate names it: 'apfed-c[lam=2]' (default: apfed-c, or --recipe's)",
    )
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--active", help="the active party's view (default: fou on handwritten, else the first)")
    ap.add_argument("--epochs", type=int, help="default: 2, or --recipe's")
    ap.add_argument("--k", type=int, default=16, help="minibatches per round (default 16, see the K sweep)")
    ap.add_argument("--seed", type=int, help="default: 0, or --recipe's")
    ap.add_argument(
        "--recipe",
        type=Path,
        help="a TOML recipe (apfed info --recipe) for the run config's recipe key; the options given here win",
    )
    ap.add_argument(
        "--pipeline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="queue the next round before applying this one (default on)",
    )
    ap.add_argument("--threads", type=int, help="torch threads per process (default: cores / parties)")
    ap.add_argument("--data", type=Path, action="append", help="party files, the active party's first")
    ap.add_argument("--id-column", default="id")
    ap.add_argument("--label-column", default="label")
    ap.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="share of the active party's labelled rows held out to test (0: train on every one)",
    )
    ap.add_argument(
        "--time-column",
        help="a column of the active party's file (dates or numbers): its latest rows are the test rows",
    )
    ap.add_argument(
        "--task",
        choices=("classification", "regression"),
        default="classification",
        help="regression: the label column holds numbers to predict (--data files)",
    )
    ap.add_argument("--encrypt", action="store_true", help="seal every payload end to end (keys made here)")
    ap.add_argument("--round-timeout", type=float, help="seconds a passive has per round before it is skipped")
    ap.add_argument("--on-bad-message", choices=("skip", "fail"), default="fail")
    ap.add_argument("--fleet-port", type=int, help="the SuperLink's Fleet API port (default: a free one)")
    ap.add_argument("--control-port", type=int, help="the SuperLink's Control API port (default: a free one)")
    ap.add_argument(
        "--pki",
        type=Path,
        help="existing ca.crt, server.pem, server.key (apfed certs --out DIR) and nodeN keys (apfed nodekey DIR/nodeN)",
    )
    ap.add_argument("--checkpoint-dir", type=Path, help="every party's checkpoints (passive N in DIR/passiveN)")
    ap.add_argument("--checkpoint-every", type=int, default=0, help="checkpoint every N rounds (default: never)")
    ap.add_argument("--resume", action="store_true", help="continue the run checkpointed in --checkpoint-dir")
    ap.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a training setting, as apfed train --set (e.g. validation=0.1; docs/settings.md lists them); repeatable",
    )
    ap.add_argument(
        "--node-set",
        dest="node_sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="node config for every passive: its limits (send-embeddings, min-dp-noise, min-rows), its audit-log"
        " ('{party}' becomes passiveN), device, worker; repeatable",
    )
    ap.add_argument(
        "--own-workers",
        action="store_true",
        help="each passive serves its data from a worker it starts itself (apfed worker); its SuperNode's node"
        " config names only that worker's socket",
    )
    ap.add_argument(
        "--warm-clientapps",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="each SuperNode forks its ClientApp processes from a server that has imported Flower once"
        " (clients/warm_clientapp.py), instead of starting a fresh one per message (default on)",
    )
    ap.add_argument(
        "--flower-supernode",
        action="store_true",
        help="run Flower's own flower-supernode (a 3 s sleep after each pull that finds no message, a 0.5 s reply"
        " poll) instead of apfed supernode (clients/supernode.py)",
    )
    a = ap.parse_args()
    extra = f"on-bad-message='{a.on_bad_message}'"
    if a.round_timeout:
        extra += f" round-timeout={a.round_timeout}"
    try:
        if a.round_timeout is not None and not 0 < a.round_timeout < float("inf"):
            raise ConfigError(f"--round-timeout must be a positive number of seconds, got {a.round_timeout}")
        r = run_from_args(a, extra)
    except ApfedError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except (OSError, RuntimeError) as e:  # a file or port the system refused; a run that ended without a result
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    tested = (
        f"test accuracy {r['final']['accuracy']:.2f} %{final_note(r['final'])}"
        if "accuracy" in r["final"]
        else test_line(r["final"])
    )
    print(
        f"{r['method']} over TLS + node auth{' + sealed payloads' if a.encrypt else ''}: {tested}, "
        f"{r['wire']['messages']} messages, {r['wire']['bytes'] / 1e6:.1f} MB, run {r['timing']['run_s']:.0f} s"
    )
    print(f"standalone model: {a.out / 'model.safetensors'}")


def run_from_args(a, extra: str) -> dict:
    return deploy(
        a.out,
        a.method,
        a.dataset,
        a.active or ("fou" if a.dataset == "handwritten" else "0"),
        a.epochs,
        a.k,
        a.seed,
        files=a.data,
        id_column=a.id_column,
        label_column=a.label_column,
        test_fraction=a.test_fraction,
        task=a.task,
        time_column=a.time_column,
        pipeline=a.pipeline,
        threads=a.threads,
        encrypt=a.encrypt,
        extra_run_config=extra,
        ports=(a.fleet_port, a.control_port),
        pki_dir=a.pki,
        checkpoint_dir=a.checkpoint_dir,
        checkpoint_every=a.checkpoint_every,
        resume=a.resume,
        sets=a.sets,
        show=lambda line: print(line, file=sys.stderr, flush=True),
        node_sets=a.node_sets,
        own_workers=a.own_workers,
        warm_clientapps=a.warm_clientapps,
        flower_supernode=a.flower_supernode,
        recipe=a.recipe,
    )


if __name__ == "__main__":
    main()
