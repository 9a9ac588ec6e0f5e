"""The Python API snippets of the README and examples/README.md run as written (with one epoch and one seed;
``apfed.simulate``, which starts Ray, is run by tests/test_examples.py instead)."""

import re
import subprocess
import sys
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


def _documents() -> list[Path]:
    """What a user reads: the README, docs/, the examples' README and their shell scripts."""
    docs = [ROOT / "README.md", ROOT / "examples/README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return docs + sorted((ROOT / "examples").rglob("*.sh"))


def _documented_options() -> list[tuple[str, str, str]]:
    """(document, command, option) for every ``apfed COMMAND ... --option`` in the user-facing documents (a
    command runs to the end of its code span or table cell; ``\\|`` is a pipe escaped inside a table, and a pipe
    with no space after it, ``default|paper``, one in a code block)."""
    found = []
    for doc in _documents():
        for m in re.finditer(r"apfed ([a-z-]+)((?:[ \t]+(?:\\\n)?(?:\\\||\|(?=\S)|[^\s`|])+)*)", doc.read_text()):
            for option in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", m.group(2)):
                found.append((doc.relative_to(ROOT).as_posix(), m.group(1), option))
    return found


def test_documented_cli_options_exist():
    import typer.main

    from apfed.cli import app

    commands = typer.main.get_command(app).commands
    options = {n: {o for p in c.params for o in (*p.opts, *p.secondary_opts)} | {"--help"} for n, c in commands.items()}
    usage = subprocess.run(  # apfed supernode takes flower-supernode's options after its own
        [str(Path(sys.prefix) / "bin" / "flower-supernode"), "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    options["supernode"] |= {w.rstrip(",") for w in usage.split() if w.startswith("--")}
    assert "--superlink" in options["supernode"]
    found = [(doc, cmd, opt) for doc, cmd, opt in _documented_options() if cmd in commands]
    assert len({(cmd, opt) for _, cmd, opt in found}) > 30  # the documents do show the commands
    unknown = [f"{doc}: apfed {cmd} {opt}" for doc, cmd, opt in found if opt not in options[cmd]]
    assert not unknown, "documented options the CLI does not have: " + "; ".join(unknown)


def test_documented_config_keys_exist():
    from dataclasses import fields

    from apfed.config import TrainConfig

    text = "".join(p.read_text() for p in _documents())
    keys = set(re.findall(r"--set ([a-z_0-9]+)=", text))
    assert keys, "the documents show --set"
    assert keys <= {f.name for f in fields(TrainConfig)}, keys - {f.name for f in fields(TrainConfig)}


def test_every_training_setting_is_explained_and_docs_settings_md_holds_the_generated_tables():
    """``apfed settings`` explains every TrainConfig field, and docs/settings.md ends with its tables as they are
    generated now (regenerate: the comment in the file says how)."""
    from dataclasses import fields

    from apfed import settings
    from apfed.config import TrainConfig

    assert settings.undocumented() == []
    keys = [k for _, _, entries in settings.GROUPS for k, _ in entries]
    assert sorted(keys) == sorted(f.name for f in fields(TrainConfig))  # each once
    doc = (ROOT / "docs/settings.md").read_text()
    marker = "<!-- generated: apfed settings --markdown > the rest of this file -->\n\n"
    assert doc.split(marker, 1)[1] == settings.markdown()
    assert "| `optimizer` | `adam` | `sgd` |" in doc and "| `patience` | `0` | `0` |" in doc
