import json

import pytest
from conftest import run_cli


def test_evaluate_smoke_writes_reports(tmp_path):
    code, out, err = run_cli(
        "evaluate",
        "--dataset",
        "digits",
        "--methods",
        "local,apfed-c,tvfl",
        "--seeds",
        "2",
        "--epochs",
        "2",
        "--out",
        tmp_path / "r",
    )
    assert code == 0, err
    rep = json.loads((tmp_path / "r" / "results.json").read_text())
    s = rep["summary"]
    assert {"local", "apfed-c", "tvfl"} <= set(s)
    assert s["local"]["standalone"] and not s["tvfl"]["standalone"]
    assert len(rep["runs"]) == 6 and all(len(r["history"]) == 2 for r in rep["runs"])
    assert "accuracy_std" in s["apfed-c"] and s["tvfl"]["gap_closed"] == pytest.approx(1.0)
    assert (tmp_path / "r" / "results.md").read_text().count("|") > 10
    assert (tmp_path / "r" / "results.png").stat().st_size > 1000
    assert "apfed-c" in out  # the table


def test_train_predict_export(tmp_path, party_csvs):
    a, b, c = party_csvs["paths"]
    model = tmp_path / "m.safetensors"
    code, _, err = run_cli(
        "train",
        "--method",
        "apfed-c",
        "--data",
        a,
        "--data",
        b,
        "--data",
        c,
        "--id-column",
        "user_id",
        "--epochs",
        "3",
        "--out",
        model,
    )
    assert code == 0, err
    assert "matched" in err
    code, _, err = run_cli(
        "predict", "--model", model, "--input", a, "--id-column", "user_id", "--output", tmp_path / "p.csv"
    )
    assert code == 0, err
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0].startswith("user_id,prediction,p_class_0") and len(lines) == 301
    code, _, err = run_cli("export", "--model", model, "--onnx", tmp_path / "m.onnx")
    assert code == 0, err and (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize(
    "args, match",
    [
        (["evaluate", "--dataset", "nope"], "unknown dataset"),
        (["evaluate", "--dataset", "digits", "--methods", "magic"], "unknown method"),
        (["evaluate", "--dataset", "digits", "--active", "7"], "out of range"),
        (["evaluate", "--dataset", "handwritten", "--views", "3"], "6 natural views"),
        (["evaluate", "--dataset", "mnist"], "--data-dir"),
        (["evaluate", "--dataset", "mnist", "--data-dir", "/nonexistent"], "not found"),
        (["evaluate", "--preset", "turbo"], "unknown preset"),
        (["evaluate", "--dataset", "digits", "--set", "lr=-1"], "lr must be"),
        (["evaluate", "--dataset", "digits", "--set", "lr=abc"], "not a valid"),
        (["evaluate", "--dataset", "digits", "--set", "bogus=1"], "KEY=VALUE"),
        (["evaluate", "--data", "/nonexistent.csv"], "not found"),
        (["train", "--method", "tvfl"], "no standalone model"),
        (["predict", "--model", "/nonexistent.safetensors", "--input", "x.csv"], "not found"),
    ],
)
def test_user_errors_exit_nonzero_with_one_clear_line(args, match):
    code, out, err = run_cli(*args)
    assert code != 0
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and match in lines[0], err
    assert "Traceback" not in err


def test_bad_csv_and_model_file_errors(tmp_path):
    bad = tmp_path / "a.csv"
    bad.write_text("id,x\n1,2\n")
    code, _, err = run_cli("evaluate", "--data", bad)
    assert code == 2 and "no label column" in err and "Traceback" not in err
    junk = tmp_path / "m.safetensors"
    junk.write_bytes(b"\x00" * 20)
    code, _, err = run_cli("predict", "--model", junk, "--input", bad)
    assert code == 2 and "not an apfed model" in err
