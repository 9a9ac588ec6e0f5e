"""`apfed supernode` (clients/supernode.py): Flower's own SuperNode module, its fixed waits shortened. Each check
runs in a fresh process, on Flower's real module, node state and object store, so no patch reaches other tests.
The deployment tests run `apfed supernode` for real (examples/deploy-local/deploy.py)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from conftest import run_cli, running_in_session, stopped_cli

from clients.supernode import set_heartbeat, shorten_waits, superexec_follows_node
from protocols.flower_retry import shorten_object_retry

ROOT = Path(__file__).resolve().parents[1]

# Flower's _push_messages on a reply whose contents are not in the node's store yet: does it register the reply at
# the SuperLink (`send`) before they are? argv[1]: "apfed" (patched first) or "flower" (Flower's own, the control)
PUSH = """
import json, sys, threading, time
import numpy as np
from flwr.app import Array, ArrayRecord, Message, RecordDict
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects, get_object_tree
from flwr.supercore.object_store import ObjectStoreFactory
from flwr.supercore.task_identity import TaskIdentity
from flwr.supernode.nodestate import NodeStateFactory
import flwr.supernode.start_client_internal as m
from clients.supernode import shorten_waits
from protocols.flower_retry import shorten_object_retry

if sys.argv[1] == "apfed":
    shorten_waits(0.2)
TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 7, 5, 1
objects = ObjectStoreFactory()
state, store = NodeStateFactory(objects).state(), objects.store()
ins = Message(RecordDict({"a": ArrayRecord({"x": Array(np.ones(3))})}), dst_node_id=5, message_type="train")
ins.metadata.__dict__["_message_id"] = ins.object_id
reply = Message(RecordDict({"b": ArrayRecord({"y": Array(np.arange(4.0))})}), reply_to=ins)
reply.metadata.__dict__["_message_id"] = reply.object_id
state.store_message(reply)  # the ClientApp has registered its reply with the node, not yet uploaded its contents
store.preregister(7, get_object_tree(reply))
contents = {i: o.deflate() for i, o in get_all_nested_objects(reply).items()}
put, seen, pushed = threading.Event(), {}, {}

def send(message, tree, runtime):
    seen["before_contents"] = not put.is_set()
    seen["complete"] = all(store.get(i) for i in contents)
    return set(contents), "session"

def push_object(run_id, session, object_id, content):
    pushed[object_id] = content

t = threading.Thread(target=m._push_messages, args=(state, store, send, push_object), daemon=True)
t.start()
deadline = time.monotonic() + (0.5 if sys.argv[1] == "apfed" else 20)
while "complete" not in seen and time.monotonic() < deadline:
    time.sleep(0.01)
for i, c in contents.items():
    store.put(i, c)
put.set()
t.join(30)
print(json.dumps({"seen": seen, "pushed": pushed == contents, "alive": t.is_alive()}))
"""

# the waits as the patched module sleeps them, and the object pull's first retry
WAITS = """
import json, time
import flwr.supernode.start_client_internal as m
from clients.supernode import shorten_waits
from protocols.flower_retry import shorten_object_retry

lines = shorten_waits(0.3)
calls = []
time.sleep = calls.append
for s in (3, 0.5, 1.5):
    m.time.sleep(s)
again = shorten_waits(0.3)  # twice: still one layer over Flower's own
print(json.dumps({"lines": lines, "slept": calls, "backoff": m.pull_objects.keywords,
                  "wrapped_once": not hasattr(m._push_messages.__wrapped__, "__wrapped__"),
                  "pull_once": not hasattr(m.pull_objects.func, "func"),
                  "monotonic": m.time.monotonic is time.monotonic}))
"""


def _run(script: str, *args: str) -> dict:
    r = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_a_reply_is_registered_only_once_its_contents_are_there_to_upload():
    flower = _run(PUSH, "flower")  # the race, in Flower's own code: registered with its contents still missing
    assert flower["seen"] == {"before_contents": True, "complete": False}
    assert flower["pushed"] and not flower["alive"]
    apfed = _run(PUSH, "apfed")
    assert apfed["seen"] == {"before_contents": False, "complete": True}
    assert apfed["pushed"] and not apfed["alive"]


def test_the_idle_pull_and_the_reply_poll_are_shortened_and_nothing_else():
    r = _run(WAITS)
    assert r["slept"] == [0.3, 0.05, 1.5]
    assert r["backoff"] == {"initial_backoff": 0.05}
    assert r["wrapped_once"] and r["pull_once"] and r["monotonic"]
    assert len(r["lines"]) == 3 and not any("left as Flower" in line for line in r["lines"])
    assert "every 0.3 s (Flower: 3 s)" in r["lines"][0]


def _flower_elsewhere():
    """A SuperNode module unlike Flower 1.39's: its loop sleeps otherwise, its push has no fixed poll."""

    def start_client_internal():
        time.sleep(1)

    def _push_messages(state, object_store, send, push_object):
        return send

    def pull_objects(object_ids, pull_object_fn):
        return {}

    module = types.ModuleType("supernode_elsewhere")
    module.time, module.start_client_internal = time, start_client_internal
    module._push_messages, module.pull_objects, module.iterate_object_tree = _push_messages, pull_objects, iter
    return module


def test_a_flower_that_changed_is_left_as_it_is_and_says_so():
    module = _flower_elsewhere()
    before = dict(vars(module))
    lines = shorten_waits(0.2, module)
    assert vars(module) == before
    assert len(lines) == 3 and all("left as Flower has" in line for line in lines)


def test_apfed_supernode_refuses_a_bad_idle_poll_and_bad_flower_options_in_one_line():
    for args, says in (
        (["--idle-poll", "5", "--superlink", "127.0.0.1:9092"], "--idle-poll 5: give seconds from 0.01 to 3"),
        (["--idle-poll", "0.2"], "give flower-supernode's options"),
        (["--heartbeat-interval", "5", "--insecure"], "--heartbeat-interval 5: give seconds from 10 to 1800"),
        (["--insecure", "--bogus"], "flower-supernode's options: unrecognized arguments: --bogus"),
        (["--insecure", "--superlink"], "flower-supernode's options: argument --superlink: expected one argument"),
    ):
        code, _, err = run_cli("supernode", *args, refused=True)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and says in lines[0], err


# the heartbeat the node sends, and how often its sender sends one, after set_heartbeat(10)
HEARTBEAT = """
import json, random
import flwr.client.grpc_rere_client.connection as c
import flwr.supercore.heartbeat as h
from clients.supernode import set_heartbeat

flower = set_heartbeat(30.0)
line = set_heartbeat(10.0)
random.uniform = lambda a, b: 0.0  # the sender's jitter, for its exact period
waited = []
sender = h.HeartbeatSender(lambda: True)
sender._stop_event.wait = lambda t: (waited.append(t), sender._stop_event.set())
sender._run()
print(json.dumps({"flower": flower, "line": line, "sent": c.HEARTBEAT_DEFAULT_INTERVAL, "period": waited}))
"""


def test_apfed_supernode_sets_the_heartbeat_the_node_sends_and_how_often_it_sends_it():
    r = _run(HEARTBEAT)
    assert r["flower"] is None  # Flower's own 30 s: nothing to change, nothing said
    assert r["sent"] == 10.0 and r["period"] == [4.0]  # (10 - 5 s call timeout) x 0.8, Flower's formula
    assert r["line"].startswith("each heartbeat vouches for 10 s (Flower: 30 s)")
    module = types.ModuleType("heartbeat_elsewhere")
    module.HEARTBEAT_DEFAULT_INTERVAL = 30
    assert "left as Flower has it" in set_heartbeat(10.0, module, module)
    assert module.HEARTBEAT_DEFAULT_INTERVAL == 30


# the active party's side: a deployment's transport shortens the first retry of its Grid's pull of an object
GRID = """
import json
import flwr.superlink.grid.http_grid as g
from protocols.flower import FlowerTransport

before = g.pull_objects
FlowerTransport(g.HttpGrid.__new__(g.HttpGrid), {}, pull_each=False)
untouched = g.pull_objects is before
FlowerTransport(g.HttpGrid.__new__(g.HttpGrid), {}, pull_each=True)
FlowerTransport(g.HttpGrid.__new__(g.HttpGrid), {}, pull_each=True)
print(json.dumps({"untouched": untouched, "func": g.pull_objects.func is before, "keywords": g.pull_objects.keywords}))
"""


def test_the_active_partys_pull_of_a_reply_mid_upload_retries_after_0_05_s():
    r = _run(GRID)
    assert r == {"untouched": True, "func": True, "keywords": {"initial_backoff": 0.05}}
    module = types.ModuleType("no_pull")
    assert not shorten_object_retry(module) and not hasattr(module, "pull_objects")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a parent-death signal is Linux's")
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "terminated"])
def test_the_superexec_ends_with_its_supernode_even_before_the_node_is_reaped(signum):
    # stopped_cli reads the node's output to its end before it reaps the node, as subprocess.run(capture_output=True)
    # does. Until then the node is a zombie, which Flower's SuperExec takes for alive (kill(pid, 0)): the SuperExec
    # ran on, holding that output open, and the read waited for ever. No SuperLink is needed: the node starts its
    # SuperExec first.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    args = ["supernode", "--insecure", "--superlink", f"127.0.0.1:{_free_port()}", "--port", str(_free_port())]

    def ready(pid: int) -> bool:
        return any("flower-superexec" in cmd for cmd in running_in_session(pid))

    _, _, left = stopped_cli(args, ready, signum, group=False, env=env, ready_s=60, stop_s=20)
    assert left == [], left


def test_the_superexec_is_left_as_flower_starts_it_where_flower_changed():
    module = _flower_elsewhere()
    module.subprocess = subprocess
    line = superexec_follows_node(module)
    assert module.subprocess is subprocess
    assert "left as Flower starts it" in line


def test_apfed_supernode_without_flower_superexec_on_the_path_says_so_in_one_line(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # an empty directory: no flower-superexec anywhere
    args = ["--insecure", "--superlink", f"127.0.0.1:{_free_port()}", "--port", str(_free_port())]
    r = subprocess.run(
        [sys.executable, "-m", "apfed.cli", "supernode", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2, r.stderr[-2000:]
    assert last.startswith("error: flower-superexec is not on the PATH"), r.stderr[-2000:]
    assert "Traceback" not in r.stderr
