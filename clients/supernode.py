"""Flower's SuperNode with its fixed waits shortened: ``apfed supernode`` runs ``flower-supernode`` itself.

Flower 1.39's SuperNode (``flwr.supernode.start_client_internal``) handles one message at a time and waits in fixed
steps that a run of many small rounds pays for again and again:
- a pull that finds no message sleeps 3 s before the next one: every exchange that cannot be pipelined (hello,
  set-up, alignment, finish, and a round that waited on another passive) waits 1.5 s on average;
- it looks for the ClientApp's reply every 0.5 s, so every round waits 0.25 s on average;
- it registers the reply at the SuperLink before the reply's contents are all there to upload, and a ServerApp
  that pulls the reply in between waits for Flower's retry, 1 s later (the "pulls held" of
  ``benchmarks/pulls_held.py``); a shorter reply poll makes that race frequent;
- an object of a pulled message that is not uploaded yet is retried after 1 s.

This process patches those four places of that one module (and, below, how it starts its SuperExec), then runs
Flower's own ``flower-supernode`` command: the idle pull every ``idle_poll`` seconds, the reply looked for every
``REPLY_POLL_S``, a reply registered once its contents are all there (as Flower would anyway, at most
``CONTENTS_WAIT_S`` later), and an object retried after ``OBJECT_RETRY_S`` first, backing off as Flower does.

On Linux it also starts the node's ``flower-superexec`` with a parent-death signal (``superexec_follows_node``).
Flower's SuperExec checks every 0.2 s whether its SuperNode still exists, with ``kill(pid, 0)``, and a process that
has ended but that its own parent has not yet reaped still exists: a SuperNode stopped under a supervisor that
reads its output to the end before reaping it (``subprocess.run(capture_output=True)``) left its SuperExec running,
holding that output open, so the supervisor waited until its own timeout (for ever without one).

Each patch first checks that the code it changes is the code it was written for. Where it is not (a later Flower),
that wait stays as Flower has it and one line says so: a later Flower is slower at worst, never broken.
"""

from __future__ import annotations

import importlib
import inspect
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from types import ModuleType

from apfed.errors import ConfigError
from protocols.flower_retry import OBJECT_RETRY_S, shorten_object_retry

HEARTBEAT_S = 30.0  # Flower's own; the SuperLink accepts 10 to 1800 and takes a node for gone after two without one
IDLE_POLL_S = 0.2  # Flower: 3 s. Each idle SuperNode then pulls 5 times a second: small next to a round's traffic
REPLY_POLL_S = 0.05  # Flower: 0.5 s; a check of the node's own memory, no network
CONTENTS_WAIT_S = 60.0  # then the reply goes as Flower sends it, whatever is missing
_CONTENTS_POLL_S = 0.005
Log = Callable[[str], object]


class _Waits:
    """Stands in for the ``time`` module inside Flower's SuperNode module: its fixed sleeps mapped to shorter ones,
    everything else ``time``'s own."""

    def __init__(self, sleeps: dict[float, float]):
        self.sleeps = sleeps

    def __getattr__(self, name: str):
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        time.sleep(self.sleeps.get(seconds, seconds))


def _source(obj) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


def _contents_first(push: Callable, iterate_tree: Callable) -> Callable:
    """Flower's ``_push_messages``, with its ``send`` (which registers a reply at the SuperLink) called only once every
    object of the reply is in the node's object store, ready to upload."""

    def push_messages(state, object_store, send, push_object):
        def send_when_complete(message, object_tree, *rest):
            deadline = time.monotonic() + CONTENTS_WAIT_S
            while time.monotonic() < deadline and not all(
                object_store.get(node.object_id) for node in iterate_tree(object_tree)
            ):
                time.sleep(_CONTENTS_POLL_S)
            return send(message, object_tree, *rest)

        return push(state, object_store, send_when_complete, push_object)

    push_messages.__wrapped__ = push  # type: ignore[attr-defined]
    return push_messages


def shorten_waits(idle_poll: float = IDLE_POLL_S, module: ModuleType | None = None) -> list[str]:
    """Shorten the fixed waits of Flower's SuperNode module (``flwr.supernode.start_client_internal``) in this
    process; one line per wait: shortened, or left as Flower has it and why."""
    if module is None:
        import flwr.supernode.start_client_internal as module
    lines, sleeps = [], {}
    main, push = getattr(module, "start_client_internal", None), getattr(module, "_push_messages", None)
    original_push = getattr(push, "__wrapped__", push)
    if "time.sleep(3)" in _source(main) and isinstance(getattr(module, "time", None), ModuleType | _Waits):
        sleeps[3] = idle_poll
        lines.append(f"an idle pull every {idle_poll:g} s (Flower: 3 s)")
    else:
        lines.append("the idle pull left as Flower has it: its SuperNode no longer sleeps 3 s where 1.39 did")
    push_source, iterate_tree = _source(original_push), getattr(module, "iterate_object_tree", None)
    if "time.sleep(0.5)" in push_source and "send(message, object_tree" in push_source and iterate_tree:
        sleeps[0.5] = REPLY_POLL_S
        module._push_messages = _contents_first(original_push, iterate_tree)
        lines.append(f"a reply looked for every {REPLY_POLL_S:g} s (Flower: 0.5 s), registered once it is complete")
    else:
        lines.append("the reply's handling left as Flower has it: its SuperNode no longer pushes replies as 1.39 did")
    if sleeps:
        module.time = _Waits(sleeps)
    if shorten_object_retry(module):
        lines.append(f"an object not uploaded yet retried after {OBJECT_RETRY_S:g} s first (Flower: 1 s)")
    else:
        lines.append("object retries left as Flower has them: its SuperNode no longer pulls objects as 1.39 did")
    return lines


# Run in front of flower-superexec: ask the kernel for SIGTERM when this process's parent (the SuperNode) ends, then
# become flower-superexec. argv: the SuperNode's pid, then the command; a SuperNode already gone ends it at once.
_FOLLOW_PARENT = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(0)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


class _SuperExecFollows:
    """Stands in for the ``subprocess`` module inside Flower's SuperNode module: ``flower-superexec`` started through
    ``_FOLLOW_PARENT``, everything else ``subprocess``'s own."""

    def __getattr__(self, name: str):
        return getattr(subprocess, name)

    def Popen(self, args, *rest, **kwargs):  # noqa: N802 (subprocess's name)
        if isinstance(args, list) and args and args[0] == "flower-superexec":
            path = shutil.which(args[0])
            if path is not None:  # else Flower's own error (``run`` checks first)
                args = [sys.executable, "-I", "-S", "-c", _FOLLOW_PARENT, str(os.getpid()), path, *args[1:]]
        return subprocess.Popen(args, *rest, **kwargs)


def superexec_follows_node(module: ModuleType | None = None) -> str:
    """Have Flower's SuperNode module start its ``flower-superexec`` with a parent-death signal (Linux), so that
    the SuperExec ends with the node however the node ends, reaped or not, SIGKILL included. One line: done, or left
    as Flower has it and why."""
    if module is None:
        import flwr.supernode.start_client_internal as module
    if not sys.platform.startswith("linux"):
        return "the SuperExec left as Flower starts it: this system has no parent-death signal"
    source = _source(getattr(module, "start_client_internal", None))
    current = getattr(module, "subprocess", None)
    if not (
        'command = ["flower-superexec"]' in source
        and "subprocess.Popen(command)" in source
        and isinstance(current, ModuleType | _SuperExecFollows)
    ):
        return "the SuperExec left as Flower starts it: its SuperNode no longer starts it as 1.39 did"
    module.subprocess = _SuperExecFollows()
    return "the SuperExec ends with this node, however the node ends (Flower: it can outlive a node not yet reaped)"


def set_heartbeat(
    interval: float, connection: ModuleType | None = None, sender: ModuleType | None = None
) -> str | None:
    """Send the node's heartbeat for ``interval`` seconds (Flower: 30) from this process: the SuperLink takes a node
    for gone after two intervals without one, and until then refuses a node restarted with the same key, so a
    passive that crashed rejoins about 2 x ``interval`` after it went down. Flower sends one every (interval - 5) x
    0.7 to 0.9 s. One line: set, or left as Flower has it and why; None when ``interval`` is Flower's own."""
    if interval == HEARTBEAT_S:
        return None
    if connection is None:
        import flwr.client.grpc_rere_client.connection as connection
    if sender is None:
        import flwr.supercore.heartbeat as sender
    if not (
        "heartbeat_interval=HEARTBEAT_DEFAULT_INTERVAL" in _source(connection)
        and "HEARTBEAT_DEFAULT_INTERVAL - HEARTBEAT_CALL_TIMEOUT" in _source(sender)
    ):
        return "the heartbeat left as Flower has it: its SuperNode no longer sends it as 1.39 did"
    connection.HEARTBEAT_DEFAULT_INTERVAL = sender.HEARTBEAT_DEFAULT_INTERVAL = interval
    return (
        f"each heartbeat vouches for {interval:g} s (Flower: {HEARTBEAT_S:g} s): restarted with the same key, this"
        f" node is taken back about {2 * interval:g} s after it went down"
    )


def check_flower_options(flower_args: list[str]) -> None:
    """ConfigError, one line, for options ``flower-supernode`` would refuse (its own parser, whose usage text would
    otherwise come first; nothing where this Flower builds its parser elsewhere: it then says so itself), or where
    the node would run its ClientApps through ``flower-superexec`` and that is not on the PATH (Flower's node would
    say so in a traceback and then keep running without it)."""
    # the module (its package exports the command under the same name)
    cli = importlib.import_module("flwr.supernode.cli.flower_supernode")
    make_parser = getattr(cli, "_parse_args_run_supernode", None)
    if make_parser is None:
        return
    parser = make_parser()

    def refuse(message: str):
        raise ConfigError(f"flower-supernode's options: {message} (flower-supernode --help)")

    parser.error = refuse  # type: ignore[method-assign]
    options = parser.parse_args(flower_args)
    if getattr(options, "isolation", None) == "subprocess" and shutil.which("flower-superexec") is None:
        raise ConfigError(
            "flower-superexec is not on the PATH: run apfed supernode from the environment Flower is installed in"
            " (its bin/ on the PATH), or give --isolation process"
        )


def run(
    flower_args: list[str], idle_poll: float = IDLE_POLL_S, log: Log = print, heartbeat: float = HEARTBEAT_S
) -> None:
    """Shorten the waits, tie the SuperExec to the node (and set the heartbeat), then run Flower's
    ``flower-supernode`` on ``flower_args`` (its own options); its exit is Flower's."""
    check_flower_options(flower_args)
    for line in [*shorten_waits(idle_poll), superexec_follows_node(), set_heartbeat(heartbeat)]:
        if line is not None:
            log(f"apfed supernode: {line}")
    from flwr.supernode.cli import flower_supernode

    sys.argv = ["flower-supernode", *flower_args]
    flower_supernode()
