"""What a wheel of apfed carries: every bundled dataset and licence file is declared in pyproject.toml, so an
installed apfed (not only a checkout) finds its default data."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_bundled_file_is_package_data():
    patterns = _pyproject()["tool"]["setuptools"]["package-data"]["apfed.data"]
    base = ROOT / "apfed" / "data"
    shipped = [p.relative_to(base).as_posix() for p in (base / "bundled").iterdir() if p.is_file()]
    assert {"bundled/mnist5k.npz", "bundled/handwritten.npz", "bundled/LICENSES.md"} <= set(shipped)
    missing = [f for f in shipped if not any(fnmatch.fnmatch(f, pat) for pat in patterns)]
    assert not missing, f"bundled files a wheel would leave out: {missing}"


def test_licence_files_exist_and_name_the_licence():
    project = _pyproject()["project"]
    assert project["license"] == "MIT"
    for name in project["license-files"]:
        assert (ROOT / name).is_file(), name
    assert "MIT License" in (ROOT / "LICENSE").read_text()


def test_the_python_floor_is_flowers(tmp_path):
    """flwr 1.39 needs Python 3.11 (a 3.10 install fails to resolve it): apfed declares the same floor, and the
    setup script, on a checkout without a .venv, says so in one line before creating anything."""
    import shutil
    import subprocess

    assert _pyproject()["project"]["requires-python"] == ">=3.11"
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")  # a checkout with no .venv
    old = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "setup.sh")],
        env={"PATH": "/usr/bin:/bin", "PYTHON": "/nonexistent/python3.10"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = old.stderr.strip().splitlines()
    assert old.returncode == 1 and len(lines) == 1 and "needs Python 3.11 or later" in lines[0], old.stderr
    assert not (tmp_path / ".venv").exists()
