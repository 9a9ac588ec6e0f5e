"""The ``apfed`` command line. Each command lives in the module of its kind (``training``: evaluate, train,
simulate; ``models``: predict, score, drift; ``model_info``: export, info; ``tools``: bench, settings; ``leakage``;
``deployment``: certs, nodekey, worker, keygen, audit, preflight), all on the one Typer app of ``common``;
``config_file`` reads ``--config`` TOML files; ``main`` turns a user's mistake into one line and an exit code."""

from __future__ import annotations

import errno
import importlib
import os
import signal
import sys
import threading
import time
from typing import NoReturn

import typer

from apfed.cli.common import app
from apfed.errors import ApfedError
from protocols.errors import ProtocolError

__all__ = ["app", "main"]

for _module in (
    "training",
    "models",
    "model_info",
    "tools",
    "leakage",
    "deployment",
):  # each registers its commands; --help lists them so
    importlib.import_module(f"apfed.cli.{_module}")


class _Stopped(BaseException):
    """SIGTERM or SIGHUP, raised where the main thread is so that it leaves through every ``finally``."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


STOP_REPEAT_S = 10.0  # a repeated SIGTERM or SIGHUP this soon after the first is ignored
_stopping_since: float | None = None
_clock = time.monotonic


IMPORT_DEFER_S = 0.2  # how long a stop that lands inside an import waits before it is tried again
SPAWN_LAUNCH = os.path.join("multiprocessing", "popen_spawn_posix.py")


def _importing_or_spawning(frame) -> bool:
    """Whether the main thread, at ``frame``, is importing a module (torch's import takes seconds) or starting a
    worker process. An exception raised in an import can be swallowed by the module's own code, and, raised in code
    that torch runs through ``PyRun_String``, makes CPython end the process by SIGINT at exit whatever apfed then
    does; raised while a spawned process is sent its start-up data, it leaves that process a traceback to print."""
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith("<frozen importlib._bootstrap") or name.endswith(SPAWN_LAUNCH):
            return True
        frame = frame.f_back
    return False


def _deferred(signum: int, frame) -> bool:
    """Send ``signum`` to ourselves again shortly if it landed inside an import or a worker's start
    (``_importing_or_spawning``); True if so."""
    if not _importing_or_spawning(frame):
        return False
    timer = threading.Timer(IMPORT_DEFER_S, os.kill, (os.getpid(), signum))
    timer.daemon = True
    timer.start()
    return True


def _interrupt(signum: int, frame) -> None:
    """Ctrl-C: ``KeyboardInterrupt`` as Python's own handler raises it, but never inside an import or a worker's start
    (``_deferred``)."""
    if not _deferred(signum, frame):
        raise KeyboardInterrupt


def _stop(signum: int, frame) -> None:
    """SIGTERM (``kill``, ``timeout``, a scheduler's limit) or SIGHUP (the terminal closed): leave as Ctrl-C does,
    through every ``finally``, so the worker processes, Flower processes and temporary files the command started go
    with it (killed outright, ``evaluate --jobs``'s workers trained on as orphans). A repeat within
    ``STOP_REPEAT_S`` is ignored rather than cut that short. A later one stops the command again: the first can be
    lost when it lands in code that swallows every exception (1 of 95 SIGTERMs to ``evaluate --jobs 2`` on
    2026-12-07, on a loaded host), and the command then goes on running. SIGKILL still ends it."""
    global _stopping_since
    if _deferred(signum, frame):
        return
    now = _clock()
    if _stopping_since is not None and now - _stopping_since < STOP_REPEAT_S:
        return
    _stopping_since = now
    raise _Stopped(signum)


EXIT_GRACE_S = 5.0  # how long _leave lets the interpreter wait for the command's threads


def _leave(message: str, code: int) -> NoReturn:
    """Say why, then exit. Every ``finally`` has run; should a thread the command started still be running when
    the interpreter waits for it at exit (a Flower simulation's workers, blocked on Ray actors that are gone), the
    process exits anyway after a few seconds."""

    def exit_anyway() -> None:
        time.sleep(EXIT_GRACE_S)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    typer.echo(message, err=True)
    for signum in (signal.SIGTERM, signal.SIGHUP):  # leaving already: another stop would only cut that short
        if signal.getsignal(signum) is _stop:
            signal.signal(signum, signal.SIG_IGN)
    threading.Thread(target=exit_anyway, daemon=True).start()
    sys.exit(code)


def main() -> None:
    from apfed.cli import click_parts as click  # the click that typer runs on

    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) == signal.SIG_DFL:  # not one ignored by whoever started us (nohup)
            signal.signal(signum, _stop)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not ignored (a script's background job)
        signal.signal(signal.SIGINT, _interrupt)
    try:
        code = app(standalone_mode=False, prog_name="apfed")  # click's usage errors come here, for one line
        if code == 130:  # Typer's word for Ctrl-C during a command
            _leave("interrupted", 130)
        sys.exit(code if isinstance(code, int) else 0)
    except click.NoArgsIsHelpError as e:  # `apfed` alone: the help, as with --help
        typer.echo(e.ctx.get_help())
        sys.exit(2)
    except click.UsageError as e:  # an unknown option, a missing or malformed value
        see = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
        typer.echo(f"error: {e.format_message().rstrip('.')}{see}", err=True)
        sys.exit(e.exit_code)
    except click.Abort:
        _leave("interrupted", 130)
    except (ApfedError, ProtocolError) as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        _leave("interrupted", 130)
    except _Stopped as e:
        _leave("terminated" if e.signum == signal.SIGTERM else "hung up", 128 + e.signum)
    except OSError as e:  # a file or socket the user named that the system refused
        if e.errno == errno.EPIPE:  # the reader of our output went away (`apfed settings | head`): nothing to say
            # Python's recipe (the signal module's docs): stdout on /dev/null, so the flush at exit breaks nothing
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        typer.echo(f"error: {e}", err=True)
        sys.exit(1)
