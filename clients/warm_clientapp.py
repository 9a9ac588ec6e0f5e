"""Warm ClientApp processes for a SuperNode: Flower's imports paid once, not once per message.

Flower 1.39's SuperNode runs every message in a fresh ``flwr-clientapp`` process (its ``flower-superexec`` finds the
command on ``PATH``), and each one spends about 2 s of CPU importing Flower before it reads its message: most of a
deployment round's cost on a small model. A warm server imports Flower once and, per message, forks a process that
runs ``flwr-clientapp`` with the arguments, environment, directory and standard streams of the process Flower
started. That process is a small ``flwr-clientapp`` stand-in written in a directory that goes first on the
SuperNode's ``PATH``; it relays signals to the forked process and exits with its exit status. Where no server
answers, the stand-in runs Flower's own ``flwr-clientapp`` instead, so a stopped server slows a node and breaks
nothing.

Flower's code still does all the work; only where its process starts changes. The server and the stand-in talk over
a Unix socket in a directory only its user can enter: whoever can connect could run a ClientApp as that user.

Wire format on the socket: the stand-in sends a 4-byte big-endian length with its standard input, output and error
attached (SCM_RIGHTS), then that many bytes of JSON (``argv``, ``env``, ``cwd``); the server answers with the forked
process's PID, then its exit status (negative: the signal that ended it), each a 4-byte big-endian signed integer.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import struct
import sys
from collections.abc import Callable
from pathlib import Path

from apfed.errors import ConfigError
from clients.passive_worker import serving  # whether anything answers on a Unix socket

SOCKET_NAME, COMMAND = "clientapp.sock", "flwr-clientapp"
MAX_SOCKET_PATH = 100  # characters: a Unix socket's path is limited to about that (108 bytes on Linux, 104 on macOS)
_INT = struct.Struct(">i")
REQUEST_TIMEOUT_S = 10.0  # for one request's few kilobytes, from a process already connected
MAX_REQUEST = 1 << 20
Log = Callable[[str], object]
Command = Callable[[], object]
gone_ok = contextlib.suppress(OSError)  # a process, a file or a peer already gone (ProcessLookupError is an OSError)

# the stand-in: the standard library only, and no site-packages (-I: isolated, -S: no site), so that it starts in
# milliseconds; it is generated for one socket and one fallback command
_STAND_IN = '''#!{python} -IS
"""flwr-clientapp, forked by apfed's warm ClientApp server at {socket} (clients/warm_clientapp.py); Flower's own
command, {real}, where that server does not answer."""
import json, os, signal, socket, struct, sys

SOCKET, REAL = {socket!r}, {real!r}


def fallback():
    os.execv(REAL, [REAL, *sys.argv[1:]])


def exact(s, n):
    data = b""
    while len(data) < n:
        part = s.recv(n - len(data))
        if not part:
            return None
        data += part
    return data


def main():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(SOCKET)
    except OSError:
        fallback()
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            fds.append(os.open(os.devnull, os.O_RDWR))
    body = json.dumps({{"argv": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd()}}).encode()
    try:
        socket.send_fds(s, [struct.pack(">i", len(body))], fds)
        s.sendall(body)
        pid = exact(s, 4)
    except OSError:
        pid = None
    if pid is None:  # the server went away before it forked: nothing has run yet
        s.close()
        fallback()
    pid = struct.unpack(">i", pid)[0]
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda n, _f: os.kill(pid, n))
    status = exact(s, 4)
    if status is None:
        sys.exit(1)
    status = struct.unpack(">i", status)[0]
    sys.exit(128 - status if status < 0 else status)


main()
'''


def write_stand_in(bin_dir: Path, socket_path: Path, real: str | None = None) -> Path:
    """Write the ``flwr-clientapp`` stand-in into ``bin_dir`` (put first on the SuperNode's ``PATH``), for the server
    at ``socket_path``; ``real``: Flower's own command, run where no server answers (default: the one on ``PATH``
    outside ``bin_dir``)."""
    bin_dir = Path(bin_dir).absolute()
    if real is None:
        path = os.environ.get("PATH", "").split(os.pathsep)
        rest = os.pathsep.join(p for p in path if Path(p or ".").absolute() != bin_dir)
        real = shutil.which(COMMAND, path=rest) or str(Path(sys.executable).with_name(COMMAND))
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / COMMAND
    tmp = path.with_name(f".{COMMAND}.tmp")
    tmp.write_text(_STAND_IN.format(python=sys.executable, socket=str(Path(socket_path).absolute()), real=str(real)))
    tmp.chmod(0o755)
    tmp.replace(path)
    return path


def preload() -> None:
    """What every ClientApp process imports, but the app's own modules (those come from the app bundle): Flower's
    ``flwr-clientapp`` command, and what it imports only once it runs: httpx's transport (httpcore, h11; 0.1 s of a
    forked process's 0.45 s) and the codec of the app bundle's zip archive."""
    import encodings.cp437  # noqa: F401

    import flwr.supernode.cli.flwr_clientapp  # noqa: F401
    import httpcore  # noqa: F401


def _exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        part = conn.recv(n - len(data))
        if not part:
            raise ConnectionError("the stand-in closed its connection mid-request")
        data += part
    return data


def _request(conn: socket.socket) -> tuple[dict, list[int]] | None:
    """One stand-in's request: (argv, env and cwd, its three standard streams); None for a connection closed with
    nothing sent (a probe: is a server listening?)."""
    conn.settimeout(REQUEST_TIMEOUT_S)
    head, fds, _, _ = socket.recv_fds(conn, 4, 3)
    if not head and not fds:
        return None
    try:
        if len(head) < 4:
            head += _exact(conn, 4 - len(head))
        (length,) = _INT.unpack(head)
        if not 0 < length <= MAX_REQUEST or len(fds) != 3:
            raise ValueError(f"a request of {length} bytes with {len(fds)} streams")
        req = json.loads(_exact(conn, length))
        kinds = {"argv": list, "env": dict, "cwd": str}
        if not isinstance(req, dict) or any(not isinstance(req.get(k), t) for k, t in kinds.items()):
            raise ValueError("a request without argv, env and cwd")
        return req, fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def flwr_clientapp() -> None:
    """What a forked process runs: Flower's ``flwr-clientapp`` command, on ``sys.argv``."""
    from flwr.supernode.cli.flwr_clientapp import flwr_clientapp as command

    command()


def _run_child(req: dict, fds: list[int], command: Command) -> None:
    """In the forked process: become the process the stand-in stands for, run ``command``; never returns."""
    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for i, fd in enumerate(fds):
            os.dup2(fd, i)
            os.close(fd)
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in req["env"].items()})
        os.chdir(req["cwd"])
        import random

        random.seed()  # not the server's state, shared by every process it forks
        sys.argv = [COMMAND, *map(str, req["argv"])]
        try:
            command()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed stream: nothing left to say
                stream.flush()
        os._exit(code)


def serve(socket_path: Path, log: Log = print, command: Command | None = None) -> None:
    """Import Flower once, then fork a process that runs ``flwr-clientapp`` (or ``command``) for every stand-in that
    connects, until SIGTERM, SIGINT or SIGHUP. Single-threaded: a process that forks must not have other threads (their
    locks would stay held in the child)."""
    socket_path = Path(socket_path).absolute()
    _remove_stale(socket_path)
    if command is None:
        preload()
        command = flwr_clientapp
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket: this user's alone
    try:
        listener.bind(str(socket_path))
    finally:
        os.umask(old)
    listener.listen(64)
    stopping = []
    # a signal (a forked process ended, or SIGTERM) writes a byte here, which wakes the select at once
    wake, woken = socket.socketpair()
    for sock in (wake, woken):
        sock.setblocking(False)
    signal.set_wakeup_fd(wake.fileno())
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # stop, removing the socket (a closed terminal too)
        signal.signal(sig, lambda *_: stopping.append(1))
    signal.signal(signal.SIGCHLD, lambda *_: None)
    running: dict[int, socket.socket | None] = {}  # forked process -> its stand-in's connection
    log(f"warm ClientApp server: listening on {socket_path}")
    forked = 0
    try:
        while not stopping:
            waiting = {c: pid for pid, c in running.items() if c is not None}
            try:
                ready, _, _ = select.select([listener, woken, *waiting], [], [], 1.0)
            except InterruptedError:
                ready = []
            for r in ready:
                if r is listener:
                    forked += _accept(listener, running, log, command, shared=[listener, wake, woken])
                elif r is woken:
                    with gone_ok:
                        woken.recv(4096)
                else:  # a stand-in only ever waits: its connection is readable when it is gone (killed)
                    with gone_ok:
                        os.kill(waiting[r], signal.SIGTERM)
                    r.close()
                    running[waiting[r]] = None  # reaped below, answering no one
            _reap(running)
    finally:
        signal.set_wakeup_fd(-1)
        for sock in (listener, wake, woken):
            sock.close()
        with gone_ok:
            socket_path.unlink()
        for pid in running:
            with gone_ok:
                os.kill(pid, signal.SIGTERM)
        log(f"warm ClientApp server: stopped; it forked {forked} ClientApp process(es)")


def _accept(listener: socket.socket, running: dict, log: Log, command: Command, shared: list) -> int:
    """Serve one connection: fork a process for its request (1), or close it (0). ``shared``: the server's own
    sockets, which the forked process closes."""
    conn, _ = listener.accept()
    try:
        request = _request(conn)
    except (OSError, ValueError) as e:
        log(f"warm ClientApp server: a request refused: {e}")
        request = None
    if request is None:
        conn.close()
        return 0
    req, fds = request
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid == 0:  # the server's sockets are not the child's: a stand-in must not reach it when the server is gone
        signal.set_wakeup_fd(-1)
        for sock in (*shared, conn, *filter(None, running.values())):
            sock.close()
        _run_child(req, fds, command)
    for fd in fds:
        os.close(fd)
    conn.settimeout(None)
    try:
        conn.sendall(_INT.pack(pid))
    except OSError:
        with gone_ok:
            os.kill(pid, signal.SIGTERM)
    running[pid] = conn
    return 1


def _reap(running: dict) -> None:
    while running:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = running.pop(pid, None)
        if conn is not None:
            with gone_ok:
                conn.sendall(_INT.pack(os.waitstatus_to_exitcode(status)))
            conn.close()


def _remove_stale(path: Path) -> None:
    """Remove a socket file that no server answers on (left by one that was killed); refuse a live one."""
    if not path.exists():
        return
    if serving(path):
        raise ConfigError(f"a warm ClientApp server already listens on {path}; stop it first")
    path.unlink()


def start(d: Path, log: Log = print, command: Command | None = None) -> None:
    """Serve from directory ``d`` (made 0700 if new; an existing one must be this user's alone): the stand-in in
    ``d/bin``, the socket ``d/clientapp.sock``."""
    d = Path(d).absolute()
    if not d.parent.is_dir():
        raise ConfigError(f"directory {d.parent} does not exist (--dir)")
    sock = d / SOCKET_NAME
    if len(str(sock)) > MAX_SOCKET_PATH:
        raise ConfigError(f"--dir {d}: its socket path must be under about 100 characters (Unix sockets)")
    d.mkdir(mode=0o700, exist_ok=True)
    st = d.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise ConfigError(
            f"--dir {d} must be a directory of this user's alone (chmod 700): whoever can enter it can"
            " run a ClientApp as this user"
        )
    _remove_stale(sock)
    write_stand_in(d / "bin", sock)
    log(f"put {d / 'bin'} first on the SuperNode's PATH: its flwr-clientapp forks from this process")
    serve(sock, log, command)


def check(d: Path) -> str:
    """``apfed preflight --clientapps DIR``: that a server answers in ``d``, that ``flwr-clientapp`` on this
    process's PATH (run it with the SuperNode's) is its stand-in, and that ``flower-superexec``, which the SuperNode
    starts its ClientApps through, is on it too; a line saying so, or ConfigError."""
    d = Path(d).absolute()
    if not serving(d / SOCKET_NAME):
        raise ConfigError(
            f"no warm ClientApp server answers at {d / SOCKET_NAME}: start it with apfed clientapps --dir {d}"
        )
    found, stand_in = shutil.which(COMMAND), d / "bin" / COMMAND
    if found is None or Path(found).absolute() != stand_in:
        raise ConfigError(
            f"{COMMAND} on this PATH is {found or 'nowhere'}, not {stand_in}: put {d / 'bin'} first on the"
            " SuperNode's PATH, or its ClientApps start afresh"
        )
    superexec = shutil.which("flower-superexec")
    if superexec is None:
        raise ConfigError(
            "flower-superexec is not on this PATH: the SuperNode starts its ClientApps through it; put the bin/ of"
            " the environment Flower is installed in on the SuperNode's PATH, after " + str(d / "bin")
        )
    return f"answers, {COMMAND} on this PATH is its stand-in, and flower-superexec is {superexec}"
