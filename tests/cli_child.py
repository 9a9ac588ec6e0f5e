"""The child side of ``conftest.run_cli``'s fork server: ``apfed ARGS`` run as ``python -m apfed.cli ARGS`` runs
it, in a process forked from a server that has imported the CLI, torch and the other heavy libraries once (a fresh
interpreter spends about 2 s of CPU importing them, for each of the suite's few hundred commands)."""

import os
import sys
from pathlib import Path

# what the server imports once: the CLI and the libraries its commands import (each command imports apfed's own
# modules when it runs, as a fresh process does)
PRELOAD = ["apfed.cli", "torch", "numpy", "sklearn.metrics", "safetensors.torch", "rich.console", "matplotlib"]


def _enter(cwd: str | None, env: dict[str, str], out_path: str, err_path: str, in_path: str | None) -> None:
    """The caller's environment and directory; stdout and stderr into the files, stdin from ``in_path`` (else the
    null device multiprocessing gives a child)."""
    os.environ.clear()
    os.environ.update(env)
    if cwd is not None:
        os.chdir(cwd)
    for fd, path in ((1, out_path), (2, err_path)):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(f, fd)
        os.close(f)
    if in_path is not None:
        f = os.open(in_path, os.O_RDONLY)
        os.dup2(f, 0)
        os.close(f)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 (the process's own stdin, for its whole life)


def run(args: list[str], cwd: str | None, env: dict[str, str], out_path: str, err_path: str, in_path: str | None):
    """In the forked child: the CLI's ``main`` with the command line ``python -m apfed.cli`` would give it (it ends
    with ``sys.exit``)."""
    _enter(cwd, env, out_path, err_path, in_path)
    import apfed.cli

    sys.argv = [str(Path(apfed.cli.__file__).with_name("__main__.py")), *args]
    apfed.cli.main()


def run_script(
    script: str, args: list[str], cwd: str | None, env: dict[str, str], out_path: str, err_path: str, in_path=None
):
    """In the forked child: ``python SCRIPT ARGS`` (a script of the repository, run as its ``__main__``)."""
    _enter(cwd, env, out_path, err_path, in_path)
    import runpy

    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")
