"""The runnable examples still run: each in a subprocess with a bounded wait, a few epochs."""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from apfed.catalog import BUNDLED, IMAGE_SETS

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NAMES = ", ".join(BUNDLED + IMAGE_SETS)


def _run(cmd: list, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHON": sys.executable}
    return subprocess.run(list(map(str, cmd)), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_csv_parties_aligns_three_labs_and_predicts_new_rows_from_the_active_party_alone(tmp_path):
    out = tmp_path / "labs"
    p = _run(["bash", ROOT / "examples/csv-parties/run.sh", out, "2"], cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    # rows matched by ID across shuffled files with their own gaps: 1,800 - 90 - 90 forms are held by all three
    assert "lab_a.csv: 1800 rows, 1620 matched by 'form_id'" in p.stderr
    assert "lab_c.csv: 1760 rows, 1620 matched by 'form_id'" in p.stderr
    # each lab's text column one-hot, its gaps filled; lab A's model reads them back for the new forms
    assert "lab_a.csv: categorical columns, one feature per value: ink (3 values)" in p.stderr
    assert "lab_b.csv: categorical columns, one feature per value: scanner (2 values)" in p.stderr
    assert "missing values in 64 columns (kar_0" in p.stderr and "reads columns   77: ink (categorical" in p.stdout
    report = json.loads((out / "evaluate/results.json").read_text())
    assert {"local", "apfed-c", "apfed-kd", "tvfl"} <= set(report["summary"])
    with (out / "new_forms_predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    with (out / "new_forms.csv").open() as f:
        asked = [r["form_id"] for r in csv.DictReader(f)]
    assert [r["form_id"] for r in rows] == asked and len(asked) == 200
    assert {r["prediction"] for r in rows} <= {str(d) for d in range(10)}
    assert (out / "lab_a_model.onnx").stat().st_size > 1000
    # apfed leakage, without and with DP noise: one row per passive lab, each with its own name
    for name in ("leakage", "leakage-dp"):
        leak = json.loads((out / name / "leakage.json").read_text())
        assert [p["passive"] for p in leak["runs"][0]["passives"]] == ["lab_b", "lab_c"]
    assert leak["dp"] == {"clip": 1.0, "noise": 1.0}
    # apfed drift: the new forms are drawn like lab A's training forms, so no column of the 77 has shifted
    assert re.search(r"200 rows against [\d,]+ training rows: 0 column\(s\) shifted", p.stdout), p.stdout[-3000:]
    assert "2 passive(s): passive1, passive2" in p.stdout and "training, " in p.stdout  # apfed info
    # lab A's 180 forms that another lab lacks still train its standalone model
    assert "lab_a.csv: 180 labelled rows are missing at some passive" in p.stderr
    u = report["rows"]
    assert u["matched_train"] + u["test"] == 1620 and u["unmatched_train"] + u["unmatched_test"] == 180
    assert f"; {u['unmatched_train']} more training rows that some passive lacks" in p.stdout
    assert "unmatched test rows (%)" in (out / "evaluate/results.md").read_text()
    for m in ("local", "apfed-c", "apfed-kd", "tvfl (passives absent: mean)"):
        assert 0 <= report["summary"][m]["unmatched_accuracy_mean"] <= 100
    # apfed score: the new forms' digits in a file of their own, matched by ID
    with (out / "new_forms_digits.csv").open() as f:
        digits = {r["form_id"]: r["digit"] for r in csv.DictReader(f)}
    right = sum(r["prediction"] == digits[r["form_id"]] for r in rows)
    assert f"│  200 │ {100 * right / 200:12.2f} │" in p.stdout and "confusion matrix" in p.stdout
    # the passive labs' files never carry the labels
    for lab in ("lab_b", "lab_c"):
        assert "digit" not in (out / f"{lab}.csv").open().readline()


def test_local_simulation_example_reloads_its_model_and_matches_flower(tmp_path):
    out = tmp_path / "sim"
    cmd = [sys.executable, ROOT / "examples/local-simulation/run.py", "--dataset", "digits", "--epochs", "2"]
    p = _run([*cmd, "--flower", "--out", out], cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["dataset"] == "digits" and s["epochs"] == 2
    assert s["standalone_reloaded_accuracy"] == s["apfed-kd"]["test_accuracy"]  # from the active view alone
    assert s["flower_simulation"]["same_as_in_process"], s
    assert (out / "model.safetensors").stat().st_size > 1000
    p = _run([*cmd[:2], "--dataset", "nope"], cwd=tmp_path)  # a user's mistake: one line, exit 2
    assert (
        p.returncode == 2 and p.stderr.strip() == f"error: unknown dataset 'nope'; choose one of {NAMES} or give --data"
    )


def test_csv_regression_trains_the_clinics_model_and_predicts_new_patients_from_the_clinic_alone(tmp_path):
    out = tmp_path / "clinic"
    p = _run(["bash", ROOT / "examples/csv-regression/run.sh", out, "2"], cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert "clinic.csv: 402 rows, 385 matched by 'patient_id'" in p.stderr
    assert "categorical columns, one feature per value: sex (2 values)" in p.stderr
    report = json.loads((out / "evaluate/results.json").read_text())
    assert report["task"] == "regression" and report["rows"]["unlabelled"] == 37
    assert {"local", "apfed-c", "apfed-kd", "tvfl"} <= set(report["summary"])
    assert "a number (regression; training mean" in p.stdout
    with (out / "new_patients_predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    reasons = [f"{w}_{j}" for j in (1, 2, 3) for w in ("reason", "effect")]
    assert list(rows[0]) == ["patient_id", "prediction", "baseline", *reasons] and len(rows) == 40
    assert all(float(r["prediction"]) == float(r["prediction"]) for r in rows)  # numbers, none NaN
    assert all({r["reason_1"], r["reason_2"], r["reason_3"]} <= {"age", "sex", "bmi", "bp"} for r in rows)
    assert "40 rows, R² " in p.stdout and "columns by importance" in p.stdout and "by sex" in p.stdout


def test_over_time_tests_the_latest_rows_checks_new_customers_and_scores_them_by_period(tmp_path):
    out = tmp_path / "over-time"
    p = _run(["bash", ROOT / "examples/over-time/run.sh", out, "2"], cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    # the test rows are the latest labelled months, the same for every method and seed
    assert "bank.csv: out of time by 'opened': test rows from 2024-06-21 to 2024-10-31" in p.stderr
    report = json.loads((out / "evaluate/results.json").read_text())
    assert report["test_split"]["test_from"] == "2024-06-21" and report["test_split"]["train_until"] == "2024-06-20"
    assert "validation" in (out / "evaluate/results.md").read_text()
    assert "split           out of time by 'opened'" in p.stdout  # apfed info
    # the new quarter's incomes rose and are more often missing: drift names income, and only income
    assert re.search(r"│ income\s+│ 0\.19\d │ moved", p.stdout), p.stdout[-4000:]
    assert "600 rows against 3,228 training rows: 0 column(s) shifted (PSI > 0.25), 1 moved" in p.stdout
    assert "the model's outputs on 600 rows against its test rows (731): largest PSI" in p.stdout  # its outputs too
    assert "[2025-01-01, 2025-01-31)" in p.stdout and "[2025-03-03, 2025-03-31]" in p.stdout  # score by period
    assert "note: 1 column(s) of these rows moved from the training rows (PSI income 0.19)" in p.stderr  # score
