"""examples/systemd: the unit files a party installs to keep its processes running. systemd-analyze checks each
(syntax, every key known, the program there), and each command line is checked against the program it starts:
every option exists, and the node configs hold only keys that apfed takes."""

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNITS = sorted((ROOT / "examples" / "systemd").glob("*.service"))
VENV = "/opt/apfed/.venv"  # where the units expect apfed's installation


def _exec_start(unit: Path) -> list[str]:
    line = next(ln for ln in unit.read_text().splitlines() if ln.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


def test_there_are_units_for_both_sides():
    assert [u.name for u in UNITS] == [
        "apfed-clientapps.service",
        "apfed-superlink.service",
        "apfed-supernode.service",
        "apfed-worker.service",
    ]


def _verify(unit: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def systemd_verifies(tmp_path_factory) -> None:
    """Skip where systemd-analyze is missing or cannot verify even a trivial unit here (no systemd at all)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("needs systemd-analyze")
    trivial = tmp_path_factory.mktemp("unit") / "trivial.service"
    trivial.write_text("[Service]\nExecStart=/bin/true\n")
    if _verify(trivial).returncode != 0:
        pytest.skip("systemd-analyze cannot verify units here")


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_systemd_accepts_the_unit(tmp_path, unit, systemd_verifies):
    here = tmp_path / unit.name  # this installation instead of /opt/apfed/.venv: verify checks the program exists
    here.write_text(unit.read_text().replace(VENV, sys.prefix))
    p = _verify(here)
    assert p.returncode == 0 and p.stderr.strip() == "", p.stderr  # an unknown key is only a warning: none either


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_the_unit_starts_its_program_with_options_it_has(unit):
    import typer.main
    from flwr.common.config import parse_config_args

    from apfed.cli import app
    from clients.flower_client import NODE_KEYS
    from clients.passive_worker import party_config

    args = _exec_start(unit)
    program = Path(args[0])
    assert program.parent == Path(VENV) / "bin", args[0]
    given = [a for a in args[1:] if a.startswith("--")]
    flower = program.name
    if program.name == "apfed":
        assert args[1] in ("worker", "clientapps", "supernode")
        command = typer.main.get_command(app).commands[args[1]]
        known = {o for p in command.params for o in p.opts}
        if args[1] == "worker":
            party_config(args[args.index("--node-config") + 1])  # raises on an unknown key or a malformed value
        flower = "flower-supernode" if args[1] == "supernode" else None  # apfed's options, then Flower's own
    if flower:
        usage = subprocess.run(
            [str(Path(sys.prefix) / "bin" / flower), "--help"], capture_output=True, text=True, timeout=60
        ).stdout
        known = (known if program.name == "apfed" else set()) | {w.rstrip(",") for w in usage.split() if w[:2] == "--"}
        if "--node-config" in given:
            assert set(parse_config_args([args[args.index("--node-config") + 1]])) <= set(NODE_KEYS)
    assert set(given) <= known, set(given) - known


def test_the_supernode_finds_the_warm_servers_flwr_clientapp_first():
    """The SuperNode's PATH starts with the bin directory of the warm ClientApp server's --dir, which is that unit's
    runtime directory."""
    units = {u.name: u.read_text() for u in UNITS}
    runtime = next(
        ln.split("=", 1)[1]
        for ln in units["apfed-clientapps.service"].splitlines()
        if ln.startswith("RuntimeDirectory=")
    )
    args = _exec_start(ROOT / "examples" / "systemd" / "apfed-clientapps.service")
    assert args[args.index("--dir") + 1] == f"/run/{runtime}"
    path = next(ln for ln in units["apfed-supernode.service"].splitlines() if ln.startswith("Environment=PATH="))
    assert path.removeprefix("Environment=PATH=").split(":")[:2] == [f"/run/{runtime}/bin", f"{VENV}/bin"]
