"""The layering of docs/architecture.md, read from the source: the ML core knows no network, the protocol knows
no models. Every import counts, those inside functions too."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP = {
    "api",
    "runner",
    "evaluate",
    "report",
    "model_tables",
    "leakage_report",
    "speed",
    "bench",
    "bench_goals",
    "leakage",
}  # apfed's top layer, with apfed/cli/


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _offending(paths: list[Path], banned: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for p in paths:
        bad = sorted(n for n in _imports(p) if n.split(".")[0] in banned)
        if bad:
            found[str(p.relative_to(ROOT))] = bad
    return found


def test_the_ml_core_imports_no_protocol_role_or_network():
    top = [ROOT / "apfed" / f"{name}.py" for name in TOP] + list((ROOT / "apfed" / "cli").glob("*.py"))
    assert all(p.exists() for p in top)  # the top layer's modules are where this test looks for them
    core = [p for p in (ROOT / "apfed").rglob("*.py") if p not in top]
    assert len(core) > 15  # the scan sees the core: data, models, losses, learner, standalone, ...
    assert _offending(core, ("clients", "protocols", "flwr", "grpc", "ray")) == {}


def test_the_core_and_the_roles_use_nothing_of_the_top_layer():
    """The Flower apps and the roles build on the core (the data options, the metrics a model file records), not on
    the Python API, the reports or the CLI."""
    top_names = {f"apfed.{name}" for name in TOP} | {"apfed.cli"}
    top = [ROOT / "apfed" / f"{name}.py" for name in TOP] + list((ROOT / "apfed" / "cli").glob("*.py"))
    below = [p for p in (ROOT / "apfed").rglob("*.py") if p not in top] + list((ROOT / "clients").glob("*.py"))
    found = {
        str(p.relative_to(ROOT)): bad
        for p in below
        if (bad := sorted(n for n in _imports(p) if n in top_names or n.startswith("apfed.cli.")))
    }
    assert found == {}


def test_the_protocol_imports_no_model_or_role():
    protocol = list((ROOT / "protocols").glob("*.py"))
    assert _offending(protocol, ("apfed", "clients")) == {}
    # torch only as an array library: validation reads tensors, nothing builds or trains a module
    assert not any(n.startswith("torch.nn") or n == "torch.optim" for p in protocol for n in _imports(p))


def test_the_scan_would_see_a_forbidden_import(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("def f():\n    from clients.active import ActiveClient\n    import protocols.codec\n")
    assert _imports(bad) == {"clients.active", "protocols.codec"}
