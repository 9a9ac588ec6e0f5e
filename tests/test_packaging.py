"""What a wheel of apfed carries: every bundled dataset and licence file is declared in pyproject.toml, so an
installed apfed (not only a checkout) finds its default data."""

from __future__ import annotations

import fnmatch
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: flwr depends on tomli
    import tomli as tomllib

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
