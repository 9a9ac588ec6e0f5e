"""The suite runs most commands forked from a server that has imported the CLI already (``conftest.run_cli``):
that must be what a fresh ``python -m apfed.cli`` does, exit code and every byte of stdout and stderr
(but the clock readings)."""

import re
import sys

from conftest import _forked_cli, run_bounded


def _timeless(text: str) -> str:
    """Output with its clock readings taken out: the log's time column ([14:05:47], or blank where the line before
    was logged in the same second) and a progress bar's elapsed time (0:00:01)."""
    text = re.sub(r"(?m)^\[\d\d:\d\d:\d\d\] ", " " * 11, text)
    return re.sub(r"\b\d+:\d\d:\d\d\b", "T", text)


def _both(args, cwd):
    args = list(map(str, args))
    fresh = run_bounded([sys.executable, "-m", "apfed.cli", *args], 300, cwd=cwd)
    forked = _forked_cli(args, cwd, 300)
    return fresh, forked


def test_a_forked_command_writes_what_the_fresh_one_writes(tmp_path, party_csvs):
    a, b, _ = party_csvs["paths"]
    train = ["train", "--data", a, "--data", b, "--id-column", "user_id", "--epochs", "1", "--method", "apfed-c"]
    for args in (
        ["train", "--epochs", "0"],  # a usage error, from click
        ["train", "--data", a, "--label-column", "nope", "--method", "local"],  # an apfed error, after the data
        [*train, "--out", "m.safetensors"],  # progress on stderr, the summary on stdout, a file in the directory
        ["info", "--model", "m.safetensors", "--recipe"],
        ["predict", "--model", "m.safetensors", "--input", a, "--output", "p.csv"],
        ["settings"],
    ):
        fresh, forked = _both(args, tmp_path)
        fresh_out, forked_out = ((p.returncode, p.stdout, _timeless(p.stderr)) for p in (fresh, forked))
        assert forked_out == fresh_out, args
    assert fresh.returncode == 0 and "lam" in fresh.stdout
