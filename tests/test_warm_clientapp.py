"""The warm ClientApp server (clients/warm_clientapp.py): its stand-in runs the command in a process forked from the
server, with the stand-in's arguments, directory, environment and streams, and its exit status; signals reach it;
with no server the stand-in runs Flower's own command. Real processes, every wait bounded, every one stopped."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]

# a server whose forked processes run a probe instead of flwr-clientapp: it reports what it was given
SERVER = """
import json, os, sys, time
from clients.warm_clientapp import start

def probe():
    args = sys.argv[1:]
    print(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "argv": args, "cwd": os.getcwd(),
                      "probe": os.environ.get("APFED_PROBE")}), flush=True)
    print("a line on stderr", file=sys.stderr, flush=True)
    if args[:1] == ["sleep"]:
        time.sleep(120)
    if args[:1] == ["exit"]:
        sys.exit(int(args[1]))

start(sys.argv[1], log=lambda m: print(m, file=sys.stderr, flush=True), command=probe)
"""


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def _start(args: list[str], d: Path, log: Path) -> subprocess.Popen:
    with open(log, "w") as f:
        p = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:  # until it answers (a socket file may be there before: a stale one)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(str(d / "clientapp.sock"))
                s.close()
                return p
            except OSError:
                pass
        assert p.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the server did not listen within 60 s"
        time.sleep(0.05)


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(15)


@pytest.fixture
def probe_server(tmp_path):
    d = tmp_path / "w"
    p = _start([sys.executable, "-c", SERVER, str(d)], d, tmp_path / "server.log")
    try:
        yield d, p
    finally:
        _stop(p)


def _stand_in(d: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(d / "bin" / "flwr-clientapp"), *args], capture_output=True, text=True, timeout=60, **kw)


def test_the_stand_in_runs_the_command_forked_from_the_server_as_the_process_flower_started(probe_server, tmp_path):
    d, server = probe_server
    assert (d.stat().st_mode & 0o777, (d / "clientapp.sock").stat().st_mode & 0o777) == (0o700, 0o600)
    r = _stand_in(d, "--token", "a b", cwd=tmp_path, env={**os.environ, "APFED_PROBE": "here"})
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen["ppid"] == server.pid and seen["pid"] != server.pid  # forked by the server, not started afresh
    assert (seen["argv"], seen["cwd"], seen["probe"]) == (["--token", "a b"], str(tmp_path), "here")
    assert r.stderr == "a line on stderr\n"
    assert _stand_in(d, "exit", "3").returncode == 3
    assert _stand_in(d, "exit", "0").returncode == 0
    server.send_signal(signal.SIGHUP)  # a closed terminal: it stops as on SIGTERM, its socket removed
    assert server.wait(30) == 0 and not (d / "clientapp.sock").exists()
    assert (tmp_path / "server.log").read_text().splitlines()[-1].endswith("stopped; it forked 3 ClientApp process(es)")


def test_a_signal_to_the_stand_in_reaches_the_forked_process_and_a_killed_stand_in_takes_it_down(probe_server):
    d, _ = probe_server
    for how, status in ((signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGKILL, -signal.SIGKILL)):
        p = subprocess.Popen([str(d / "bin" / "flwr-clientapp"), "sleep"], stdout=subprocess.PIPE, text=True)
        try:
            pid = json.loads(p.stdout.readline())["pid"]  # the forked process, sleeping
            assert not _gone(pid, 0.5)
            p.send_signal(how)
            assert p.wait(30) == status
            assert _gone(pid, 15), f"the forked process outlived its stand-in ({how.name})"
        finally:
            p.kill()
            p.wait(30)
            p.stdout.close()


def test_the_server_refuses_a_malformed_request_and_goes_on_serving(probe_server, tmp_path):
    d, server = probe_server
    for junk in (b"\x00\x00\x00\x05{}", b"\xff" * 3, b""):  # no streams attached; too short; nothing (a probe)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(str(d / "clientapp.sock"))
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            try:
                answer = s.recv(4)
            except ConnectionResetError:  # closed with the junk unread
                answer = b""
            assert answer == b""  # closed: no process was forked for it
    assert server.poll() is None
    r = _stand_in(d, "exit", "0")
    assert r.returncode == 0 and json.loads(r.stdout)["ppid"] == server.pid
    assert (tmp_path / "server.log").read_text().count(
        "a request refused"
    ) == 2  # a probe is not refused: it asks nothing


def test_apfed_clientapps_forks_flowers_own_command_and_without_it_the_stand_in_runs_that_command(tmp_path):
    d = tmp_path / "w"
    real = subprocess.run(
        [str(Path(sys.executable).with_name("flwr-clientapp")), "--insecure"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert real.returncode == 2 and "--token" in real.stderr  # argparse: a token is required
    server = _start([str(Path(sys.executable).with_name("apfed")), "clientapps", "--dir", str(d)], d, tmp_path / "log")
    try:
        code, _, err = run_cli("clientapps", "--dir", d, refused=True)  # a second server on the same directory
        assert code != 0 and err.strip().splitlines() == [
            f"error: a warm ClientApp server already listens on {d / 'clientapp.sock'}; stop it first"
        ]
        warm = _stand_in(d, "--insecure")
        assert (warm.returncode, warm.stdout, warm.stderr) == (real.returncode, real.stdout, real.stderr)
    finally:
        _stop(server)
    assert server.returncode == 0 and not (d / "clientapp.sock").exists()
    cold = _stand_in(d, "--insecure")  # no server: Flower's own flwr-clientapp, in the stand-in's place
    assert (cold.returncode, cold.stdout, cold.stderr) == (real.returncode, real.stdout, real.stderr)


def test_a_stale_socket_is_replaced_and_a_directory_others_can_enter_is_refused(tmp_path):
    d = tmp_path / "w"
    d.mkdir(mode=0o700)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:  # a socket file no one listens on (a killed server)
        s.bind(str(d / "clientapp.sock"))
    server = _start([sys.executable, "-c", SERVER, str(d)], d, tmp_path / "log")
    try:
        assert _stand_in(d, "exit", "4").returncode == 4
    finally:
        _stop(server)
    d.chmod(0o755)
    code, out, err = run_cli("clientapps", "--dir", d, refused=True)
    assert code != 0 and "must be a directory of this user's alone" in err and len(err.strip().splitlines()) == 1
    code, out, err = run_cli("clientapps", "--dir", tmp_path / "no" / "such", refused=True)
    assert code != 0 and "does not exist" in err and len(err.strip().splitlines()) == 1


def test_preflight_checks_that_the_server_answers_and_that_the_path_finds_its_stand_in_first(probe_server, monkeypatch):
    d, _ = probe_server
    flower = Path(sys.executable).parent  # where flwr-clientapp and flower-superexec are installed
    monkeypatch.setenv("PATH", f"{flower}{os.pathsep}{os.environ['PATH']}")
    code, _, err = run_cli("preflight", "--clientapps", d, refused=True)  # this PATH finds Flower's own first
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert f"flwr-clientapp on this PATH is {flower / 'flwr-clientapp'}, not {d / 'bin' / 'flwr-clientapp'}: put" in err
    monkeypatch.setenv("PATH", str(d / "bin"))  # the stand-in, and no flower-superexec to start it
    code, _, err = run_cli("preflight", "--clientapps", d, refused=True)
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert "flower-superexec is not on this PATH: the SuperNode starts its ClientApps through it" in err
    monkeypatch.setenv("PATH", f"{d / 'bin'}{os.pathsep}{flower}")
    code, out, err = run_cli("preflight", "--clientapps", d)
    assert code == 0, err
    assert (
        f"warm ClientApp server {d}: answers, flwr-clientapp on this PATH is its stand-in, and flower-superexec is"
        f" {flower / 'flower-superexec'}"
    ) in out
    code, _, err = run_cli("preflight", "--clientapps", d.parent / "elsewhere", refused=True)
    assert code != 0 and "no warm ClientApp server answers at" in err and len(err.strip().splitlines()) == 1
