"""The Python API snippets of the README and examples/README.md run as written (with one epoch and one seed;
``apfed.simulate``, which starts Ray, is run by tests/test_examples.py instead)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _snippets() -> list[tuple[str, str]]:
    out = []
    for doc in ("README.md", "examples/README.md"):
        for block in re.findall(r"```python\n(.*?)```", (ROOT / doc).read_text(), re.S):
            if "apfed.load_dataset" in block:
                out.append((doc, block))
    return out


def test_both_documents_show_the_api():
    assert sorted(doc for doc, _ in _snippets()) == ["README.md", "examples/README.md"]


@pytest.mark.parametrize("doc,code", _snippets(), ids=[d for d, _ in _snippets()])
def test_api_snippet_runs(doc, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the snippets write results/ and model files in the working directory
    lines = [line for line in code.splitlines() if "apfed.simulate(" not in line]
    assert len(lines) == len(code.splitlines()) - 1  # exactly the simulate line is left out
    quick = "\n".join(lines).replace("epochs=60", "epochs=1").replace("seeds=3", "seeds=1, epochs=1")
    assert "epochs=1" in quick
    ns: dict = {}
    exec(compile(quick, doc, "exec"), ns)
    assert ns["r"].model is not None and "accuracy" in ns["r"].final
    assert (tmp_path / "results/cmp/results.json").exists()
