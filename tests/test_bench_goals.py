"""The bench report judges its own goals: met or missed, by how much, and why, from the report's figures."""

import numpy as np
import torch

from apfed.bench import markdown
from apfed.bench_goals import goals
from apfed.memory import per_sample_arrays_bytes


def _epoch(dataset, ratio):
    return {
        "dataset": dataset,
        "views": 2,
        "preset": "p",
        "device": "cpu",
        "protocol_s": ratio,
        "bare_s": 1.0,
        "ratio": ratio,
    }


def _scaling(axis, value, mb, peak, held, book=None):
    r = {
        "axis": axis,
        "value": value,
        "n": value if axis == "samples" else 5000,
        "epoch_s": 1.0,
        "mb_per_epoch": mb,
        "peak_rss_mb": peak,
        "rss_after_setup_mb": held,
        "setup_peak_rss_mb": held,
    }
    if book is not None:
        r["bookkeeping_bytes"] = book
    return r


def _report(**sections):
    return {"epoch": [], "epoch_methods": [], "wire": [], "scaling": [], "flower": [], "inference": [], **sections}


def test_an_epoch_ratio_over_the_goal_is_missed_and_split_into_the_learners_and_the_protocol():
    method = {"dataset": "handwritten", "device": "cpu", "method": "apfed-c", "ratio": 1.30, "learners_ratio": 1.12}
    g = goals(_report(epoch=[_epoch("mnist5k", 0.97), _epoch("handwritten", 1.30)], epoch_methods=[method]))
    assert [(x["where"], x["met"]) for x in g] == [("mnist5k, cpu", True), ("handwritten, cpu", False)]
    assert g[0]["why"] == ""
    assert "missed by 0.15" in g[1]["why"] and "costs +12%" in g[1]["why"] and "protocol +18%" in g[1]["why"]


def test_the_epoch_goal_is_judged_at_k_1_and_a_miss_cites_the_ratio_at_a_larger_k():
    fewer = {**_epoch("handwritten", 1.06), "k": 16}
    g = goals(_report(epoch=[_epoch("mnist5k", 0.97), {**_epoch("handwritten", 1.30), "k": 1}, fewer]))
    assert [(x["where"], x["met"]) for x in g] == [("mnist5k, cpu", True), ("handwritten, cpu", False)]
    assert "With K = 16" in g[1]["why"] and "ratio is 1.06: most of the overhead is per message" in g[1]["why"]
    g = goals(_report(epoch=[_epoch("handwritten", 1.30), {**_epoch("handwritten", 1.25), "k": 16}]))
    assert "ratio is 1.25" in g[0]["why"] and "per message" not in g[0]["why"]
    md = "\n".join(markdown(_report(epoch=[_epoch("handwritten", 1.3), fewer])))
    assert "| handwritten | 2 | p | cpu | 1 | 1.300 |" in md and "| handwritten | 2 | p | cpu | 16 | 1.060 |" in md


def test_a_miss_cites_the_split_floor_and_says_when_the_floor_itself_is_over_the_goal():
    above = {**_epoch("handwritten", 1.30), "split_s": 1.16, "split_ratio": 1.16}
    below = {**_epoch("handwritten", 1.30), "split_s": 1.08, "split_ratio": 1.08}
    (g,) = goals(_report(epoch=[above]))
    assert "is 1.16x the bare epoch: above the goal, so no vertical split" in g["why"]
    (g,) = goals(_report(epoch=[below]))
    assert "is 1.08x the bare epoch" in g["why"] and "no vertical split" not in g["why"]
    md = "\n".join(markdown(_report(epoch=[above, _epoch("mnist5k", 0.97)])))
    assert "| 1.300 | 1.000 | 1.30 | – | – | 1.160 | 1.16 |" in md and "| 0.97 | – | – | – | – |" in md


def test_deployment_and_encryption_goals_come_from_the_flower_rows():
    rows = [
        {"transport": "in-process", "ratio": 1.0},
        {"transport": "in-process, encrypted", "ratio": 1.1, "sealing_share": 0.001},
        {"transport": "deployment, TLS off, encryption off", "ratio": 1.6},
        {"transport": "deployment, TLS on, encryption on", "ratio": 2.4},
    ]
    deploy, seal = goals(_report(flower=rows))
    assert not deploy["met"] and "missed by 0.40" in deploy["why"] and "TLS on" in deploy["why"]
    assert seal["met"] and seal["measured"] == "0.10%"
    rows[-1]["ratio"] = 1.9
    assert goals(_report(flower=rows))[0]["met"]


def test_wire_bytes_must_be_proportional_and_streamed_memory_flat():
    passives = [_scaling("passives", p, 2.0 * p, 340, 320) for p in (1, 2, 4, 8)]
    samples = [
        _scaling("samples", 5000, 2.1, 339, 321, book=142_000),
        _scaling("samples", 500000, 210.0, 367, 340, book=14_200_000),
    ]
    g = {x["goal"]: x for x in goals(_report(scaling=passives + samples))}
    assert g["wire bytes linear in passives"]["met"] and g["wire bytes linear in samples"]["met"]
    mem = g["training peak memory flat in samples (streamed)"]
    assert not mem["met"] and "+8.3%" in mem["measured"]
    assert "grows 38 bytes per sample" in mem["why"] and "are 28:" in mem["why"]
    assert "heap keeps" not in mem["why"]  # no allocator figure measured: none cited
    samples[0]["heap_free_after_setup_mb"], samples[1]["heap_free_after_setup_mb"] = 0.6, 40.5
    mem = {x["goal"]: x for x in goals(_report(scaling=passives + samples))}[mem["goal"]]
    assert "heap keeps 40 MB free in pieces at 500,000 samples against 0.6 MB at 5,000" in mem["why"]
    passives[-1]["mb_per_epoch"] = 30.0  # 8 passives sending twice as much each: not linear
    samples[-1]["peak_rss_mb"] = 341  # +0.6 %: flat
    g = {x["goal"]: x for x in goals(_report(scaling=passives + samples))}
    assert not g["wire bytes linear in passives"]["met"]
    assert g["training peak memory flat in samples (streamed)"]["met"]


def test_the_markdown_opens_with_the_goals():
    md = "\n".join(markdown(_report(epoch=[_epoch("handwritten", 1.3)])))
    assert md.index("## Goals") < md.index("## In-process epoch")
    assert "| **no** |" in md and "0 of 1 goals met" in md


def test_per_sample_arrays_are_counted_once_however_many_parties_hold_them():
    class Holder:
        pass

    ids = np.arange(1000, dtype=np.int64)
    a, b = Holder(), Holder()
    a.ids, a.pair = ids, (np.arange(1000, dtype=np.int32), np.zeros(5))
    b.ids_view = ids[10:]  # a view of the same buffer
    b.shared = torch.from_numpy(ids)  # the same buffer again
    b.rows = torch.zeros(1000, dtype=torch.int32)
    b.matrix = np.zeros((1000, 3))  # features, not bookkeeping
    assert per_sample_arrays_bytes(1000, a, b) == 8000 + 4000 + 4000


def test_the_paper_preset_is_judged_on_300_epoch_runs_only():
    fast = [{"seed": s, "epochs": 300, "accuracy": 91.6, "seconds": 17.0 + s} for s in range(3)]
    speed, acc = goals(_report(paper=fast, device="cuda"))
    assert speed["met"] and speed["measured"].startswith("5.50x") and acc["met"] and "(+0.09)" in acc["measured"]
    slow = [{**r, "seconds": 25.0, "accuracy": 89.9} for r in fast]
    speed, acc = goals(_report(paper=slow, device="cuda"))
    assert not speed["met"] and "missed by 1.04x" in speed["why"]
    assert not acc["met"] and "missed by 0.61 points" in acc["why"]
    assert goals(_report(paper=[{**r, "epochs": 5} for r in fast])) == []


def test_the_report_files_carry_the_goals_and_the_machine(tmp_path):
    import json

    from apfed.bench import write_report

    report = _report(epoch=[_epoch("handwritten", 1.3)], device="cpu")
    md, written = write_report(report, tmp_path, ("epoch",))
    names = [p.name for p in written]
    assert names[0].endswith("-bench-cpu" + str(report["machine"]["cpus"]) + "-epoch.json")
    assert names[1] == names[0][:-5] + ".md" and all(p.exists() for p in written)
    saved = json.loads(written[0].read_text())["goals"]
    assert [(g["where"], g["met"]) for g in saved] == [("handwritten, cpu", False)]
    text = written[1].read_text()
    assert "## Goals" in text and "Reproduce: `apfed bench --device cpu --only epoch`" in text and '"cpus"' in text
    _, written = write_report(_report(device="cpu"), tmp_path, ("wire",), quick=True)
    assert written[1].name.endswith("-wire-quick.md")
    assert "Reproduce: `apfed bench --device cpu --only wire --quick`" in written[1].read_text()


def test_a_benchmark_prefix_may_hold_a_dot_and_a_missing_folder(tmp_path, capsys):
    from apfed.report import write_benchmark

    prefix = tmp_path / "new" / "2026-12-03-early-stopping-handwritten-overlap0.25-cpu"
    write_benchmark(prefix, {"command": "python x.py --overlap 0.25", "machine": {"cpus": 2}}, ["# title"])
    names = sorted(p.name for p in (tmp_path / "new").iterdir())
    assert names == [prefix.name + ".json", prefix.name + ".md"]
    assert "Reproduce: `python x.py --overlap 0.25`" in (tmp_path / "new" / names[1]).read_text()
    assert "# title" in capsys.readouterr().out
