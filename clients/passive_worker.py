"""A long-lived, node-local process that serves one passive party to the SuperNode's short-lived ClientApps.

Flower starts a fresh ClientApp process for every message. Importing torch there and rebuilding the passive's
models would cost seconds per round, so in a deployment the ClientApp only relays the encoded request to this
worker over a Unix socket in a private (0700) directory and relays the reply back; the worker keeps torch, the
data and the models loaded. After every request that changes its state it also writes a node-local state file
atomically, so a worker that dies or is restarted resumes where it was. It exits after FINISH, when it is idle
for ``idle_timeout`` seconds, or when the process named by ``--parent-pid`` is gone.

A passive party can instead start the worker itself, with its own installation of apfed (``apfed worker``), and
name its socket in the SuperNode's node config (``worker-socket``). Flower runs the ClientApp from the app bundle
that the active party submits, so this is what keeps the code that reads the party's data, enforces its limits and
writes its audit log the party's own: the ClientApp then only relays bytes to the socket (docs/security.md).

Wire format on the socket, both ways: 8-byte big-endian length, then one APF1-encoded message (no pickle).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from apfed.errors import ApfedError
from protocols.codec import decode, encode
from protocols.errors import ProtocolError
from protocols.messages import ALIGN, ERROR, FINISH, SETUP, TRAIN
from protocols.validation import MAX_MESSAGE_BYTES

SOCKET_NAME, PID_NAME, STATE_NAME, LOG_NAME = "worker.sock", "worker.pid", "state.pt", "worker.log"
RECEIVE_TIMEOUT_S = 120.0  # for one whole request over the local socket (at most MAX_MESSAGE_BYTES)
STATEFUL = {SETUP, ALIGN, TRAIN}  # requests that change the passive's state (and are saved before the reply)


def worker_dir(node_id: int, node_config: dict) -> Path:
    """The worker's private directory. Short, because Unix socket paths are limited to about 100 bytes."""
    key = json.dumps({"node": node_id, "config": node_config}, sort_keys=True).encode()
    d = Path(tempfile.gettempdir()) / f"apfed-{os.getuid()}-{hashlib.blake2b(key, digest_size=6).hexdigest()}"
    d.mkdir(mode=0o700, exist_ok=True)
    if d.stat().st_uid != os.getuid() or d.stat().st_mode & 0o077:
        raise ProtocolError(f"{d} is not a private directory of this user; refusing to use it")
    return d


def _send(sock: socket.socket, data: bytes) -> None:
    sock.sendall(struct.pack(">Q", len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise ProtocolError("the passive worker connection closed mid-message")
        buf += chunk
    return bytes(buf)


def _recv(sock: socket.socket) -> bytes:
    (n,) = struct.unpack(">Q", _recv_exact(sock, 8))
    if n > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {n} bytes exceeds the limit")
    return _recv_exact(sock, n)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False


def call(node_id: int, node_config: dict, request: bytes, parent_pid: int, start_timeout: float = 120.0) -> bytes:
    """Send one encoded request to this node's worker (starting it if needed); return the encoded reply.

    If the worker is gone or dies during the request, a new one starts from the state file and the request is
    sent again; the state file remembers the last request it applied, so a request is never applied twice."""
    d = worker_dir(node_id, node_config)
    path = d / SOCKET_NAME
    for attempt in range(2):
        if attempt or not path.exists():
            _reap(d)
            _start(d, node_config, parent_pid, start_timeout)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(str(path))
                _send(s, request)
                return _recv(s)
        except (OSError, ProtocolError):  # refused, reset or cut short: the worker is gone or dying
            continue
    raise ProtocolError("the passive worker did not answer twice; see its worker.log")


def _connect(socket_path: str) -> socket.socket:
    """A connection to a worker the passive party started itself, or a ProtocolError that says what to do."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(socket_path)
        return s
    except (FileNotFoundError, ConnectionRefusedError):
        why = f"no apfed worker answers at {socket_path} (node config worker-socket): the passive party starts it"
        why += " with `apfed worker`"
    except PermissionError:
        why = f"this user ({os.getuid()}) may not connect to {socket_path} (node config worker-socket): put the"
        why += " SuperNode's user in the group of the worker's socket directory"
    except OSError as e:
        why = f"the apfed worker at {socket_path} did not answer: {e}"
    s.close()
    raise ProtocolError(why)


def relay(socket_path: str, request: bytes) -> bytes:
    """Send one encoded request to a worker the passive party started itself (``apfed worker``); return the reply.
    Nothing is started here: the party runs its worker, with its own code."""
    with _connect(socket_path) as s:
        try:
            _send(s, request)
            return _recv(s)
        except OSError as e:
            raise ProtocolError(f"the apfed worker at {socket_path} did not answer: {e}") from None


def probe(socket_path: str) -> None:
    """Check that this user can reach a party's own worker (apfed preflight --worker-socket); it sees an empty
    connection, which it ignores."""
    _connect(socket_path).close()


def _reap(d: Path, timeout: float = 10.0) -> None:
    """Wait (bounded) for a dying worker to go, kill it if it lingers, and remove its socket."""
    pid_file = d / PID_NAME
    if pid_file.exists():
        with contextlib.suppress(ValueError, OSError):
            pid = int(pid_file.read_text())
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, 9)
    (d / SOCKET_NAME).unlink(missing_ok=True)


def _start(d: Path, node_config: dict, parent_pid: int, timeout: float) -> None:
    args = [sys.executable, "-m", "clients.passive_worker", "--dir", str(d), "--parent-pid", str(parent_pid)]
    args += ["--node-config", json.dumps(node_config)]
    with open(d / LOG_NAME, "ab") as log:
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not (d / SOCKET_NAME).exists():
        if p.poll() is not None:
            tail = (d / LOG_NAME).read_text(errors="replace").strip().splitlines()[-1:]
            raise ProtocolError(f"the passive worker exited with code {p.returncode}: {' '.join(tail)}")
        if time.monotonic() > deadline:
            p.kill()
            raise ProtocolError(f"the passive worker did not start within {timeout:.0f} s")
        time.sleep(0.05)


def serve(d: Path, node_config: dict, parent_pid: int, idle_timeout: float) -> None:
    """Answer requests on ``d/worker.sock`` until FINISH, idleness or the parent's exit."""
    from clients.flower_client import passive_from_node_config

    client = passive_from_node_config(node_config)
    if _serve(client, d / SOCKET_NAME, d / STATE_NAME, lambda: _alive(parent_pid), idle_timeout, once=True):
        shutil.rmtree(d, ignore_errors=True)  # a clean end: nothing to resume, nothing to debug


def serve_party(client, socket_path: Path, on_request=None, keep_going=lambda: True) -> None:
    """The worker a passive party starts itself (``apfed worker``): answer requests on ``socket_path`` (group may
    connect: the SuperNode's user), run after run, until stopped (SIGTERM or Ctrl-C). Its state file
    (``SOCKET.state``) lets a restarted worker resume the run it was in."""
    state = socket_path.with_suffix(".state")
    _serve(client, socket_path, state, keep_going, float("inf"), once=False, mode=0o660, on_request=on_request)


def party_config(text: str) -> dict:
    """``apfed worker --node-config``: the party's settings, in a SuperNode's --node-config syntax (or a .toml
    file), checked for unknown keys and for its data; a ConfigError naming what is wrong."""
    import click
    from flwr.common.config import parse_config_args

    from apfed.errors import ConfigError
    from clients.flower_client import NODE_KEYS

    try:
        nc = parse_config_args([text])
    except ValueError as e:
        raise ConfigError(f"--node-config: {e}") from None
    except OSError as e:  # a .toml file that cannot be read
        raise ConfigError(f"--node-config {text}: cannot read it ({e.strerror or e})") from None
    except click.ClickException:
        raise ConfigError(
            f"--node-config {text!r}: give space-separated key=value pairs, strings quoted: party='passive1'"
            " data='/data/shop.csv' id-column='user_id'"
        ) from None
    data_keys = ("data", "id-column") if "data" in nc else ("dataset", "active", "views", "data-dir")  # or a demo
    takes = [*data_keys, *(k for k in NODE_KEYS if k not in ("worker", "worker-socket"))]
    unknown = [k for k in nc if k not in takes]
    if unknown:
        raise ConfigError(f"--node-config: unknown key {unknown[0]!r}; it takes {', '.join(takes)}")
    if not nc.get("data") and not nc.get("dataset"):
        raise ConfigError("--node-config needs data='FILE' (this party's file) and id-column='C'")
    return nc


def serving(socket_path: Path) -> bool:
    """Whether a worker already answers at ``socket_path``."""
    try:
        probe(str(socket_path))
    except ProtocolError:
        return False
    return True


def _serve(client, path: Path, state: Path, parent_alive, idle_timeout: float, once: bool, mode=0o600, on_request=None):
    """The request loop; returns True when it ended on FINISH (``once``: after the first run's FINISH)."""
    applied: tuple[tuple, bytes] | None = None  # (run id, round, kind) of the last applied request, its reply
    if state.exists():
        try:
            header, blob, reply_bytes = _read_state(state.read_bytes())
            key = (header["run_id"], header["round"], header["kind"])
        except (struct.error, ValueError, KeyError, TypeError) as e:
            raise ProtocolError(f"the worker's state file {state} is damaged ({e or type(e).__name__})") from None
        client.restore(blob, check_data=True, source=f"the worker's state file {state}")
        applied = (key, reply_bytes)
    pid_file = path.with_suffix(".pid")  # worker.pid beside worker.sock
    pid_file.write_text(str(os.getpid()))
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    os.chmod(path, mode)
    server.listen(1)
    server.settimeout(1.0)
    last, finished = time.monotonic(), False
    try:
        while time.monotonic() - last < idle_timeout and parent_alive():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                # a relay that connects and then stalls must not hold the worker: the request must arrive in time
                conn.settimeout(RECEIVE_TIMEOUT_S)
                try:
                    if not conn.recv(1, socket.MSG_PEEK):  # closed before a byte: a probe (apfed preflight)
                        continue
                    msg = decode(_recv(conn))
                except (ProtocolError, OSError) as e:
                    print(f"refused a request: {e or type(e).__name__}", flush=True)
                    continue
                conn.settimeout(None)
                key = (msg.run_id, msg.round, msg.kind)
                if applied is not None and applied[0] == key:  # resent after a crash: answer, do not reapply
                    _send(conn, applied[1])
                    continue
                try:
                    reply = encode(client.handle(msg))
                except Exception as e:  # a bug met by one request must not stop the party's long-lived worker
                    if once:  # the ClientApp's worker: it ends here and its log keeps the traceback
                        raise
                    traceback.print_exc()
                    reply = encode(msg.reply(ERROR, config={"error": f"{client.name}: internal error: {e!r}"}))
                if msg.kind in STATEFUL:
                    tmp = state.with_suffix(".tmp")
                    tmp.write_bytes(_write_state(key, client.state_bytes(), reply))
                    os.replace(tmp, state)  # atomic: a crash keeps the previous state file
                    applied = (key, reply)
                if msg.kind == FINISH and not once:  # the run is over: nothing to resume, before the reply says so
                    state.unlink(missing_ok=True)
                    applied = None
                if on_request is not None:  # before the reply: once the active party has it, the line is there
                    on_request(msg)
                try:
                    _send(conn, reply)
                except OSError as e:
                    if once:  # the ClientApp's call() restarts this worker from its state file and sends again
                        raise
                    print(f"could not send the reply to {msg.kind} (round {msg.round}): {e}", flush=True)
                last = time.monotonic()
                if msg.kind == FINISH and once:  # a resend of FINISH after a crash still finds the state file
                    finished = True
                    break
    finally:
        server.close()
        path.unlink(missing_ok=True)
        pid_file.unlink(missing_ok=True)
    return finished


def _write_state(key: tuple, blob: bytes, reply: bytes) -> bytes:
    """The worker's state file: its header, the passive's state and the reply it last sent, each length-prefixed,
    then the SHA-256 of all that (a damaged file must not be resumed, nor its stored reply sent again)."""
    header = json.dumps({"run_id": key[0], "round": key[1], "kind": key[2]}).encode()
    body = b"".join(struct.pack(">Q", len(x)) + x for x in (header, blob, reply))
    return body + hashlib.sha256(body).digest()


def _read_state(data: bytes) -> tuple[dict, bytes, bytes]:
    body, digest = data[:-32], data[-32:]
    if len(data) < 32 or not hmac.compare_digest(hashlib.sha256(body).digest(), digest):
        raise ValueError("checksum mismatch")
    parts, pos = [], 0
    for _ in range(3):
        (n,) = struct.unpack_from(">Q", body, pos)
        parts.append(body[pos + 8 : pos + 8 + n])
        pos += 8 + n
    return json.loads(parts[0]), parts[1], parts[2]


def main() -> None:
    ap = argparse.ArgumentParser(description="apfed passive worker (started by the ClientApp)")
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--parent-pid", type=int, required=True)
    ap.add_argument("--node-config", required=True)
    ap.add_argument("--idle-timeout", type=float, default=900.0)
    a = ap.parse_args()
    try:
        serve(a.dir, json.loads(a.node_config), a.parent_pid, a.idle_timeout)
    except (ProtocolError, ApfedError) as e:  # e.g. the node's data file changed under a saved state: one line
        print(f"error: {e}", flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
