import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from stat import S_ISFIFO

import numpy as np
import pytest
from conftest import run_cli, run_script, session_processes, stopped_cli

ROOT = Path(__file__).resolve().parents[1]


def test_evaluate_smoke_writes_reports(tmp_path):
    code, out, err = run_cli(
        "evaluate",
        "--dataset",
        "digits",
        "--methods",
        "local,apfed-c,tvfl,apfed-c[lam=2]",
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
    assert {"local", "apfed-c", "tvfl", "apfed-c[lam=2]"} <= set(s)
    assert s["local"]["standalone"] and not s["tvfl"]["standalone"]
    assert len(rep["runs"]) == 8 and all(len(r["history"]) == 2 for r in rep["runs"])
    # a method with its own settings: a row of its own, printed as typed (not read as rich markup)
    assert "│ apfed-c[lam=2] " in out and s["apfed-c[lam=2]"]["vs_local_seeds"] == 2
    assert "accuracy_std" in s["apfed-c"] and s["tvfl"]["gap_closed"] == pytest.approx(1.0)
    assert (tmp_path / "r" / "results.md").read_text().count("|") > 10
    # ROC-AUC: each method's final model; tvfl's fills are derived rows with no probabilities of their own
    assert all(0.5 < s[m]["roc_auc_mean"] <= 1 for m in ("local", "apfed-c", "tvfl"))
    assert s["tvfl (passives absent: zero)"]["roc_auc_mean"] is None
    assert "| ROC-AUC |" in (tmp_path / "r" / "results.md").read_text()
    # each method against local with the same seed
    acc = {(r.get("variant", r["method"]), r["seed"]): r["accuracy"] for r in rep["runs"]}
    diffs = [acc["apfed-c", i] - acc["local", i] for i in (0, 1)]
    assert s["apfed-c"]["vs_local_mean"] == pytest.approx(np.mean(diffs)) and s["apfed-c"]["vs_local_seeds"] == 2
    assert s["apfed-c"]["vs_local_wins"] == sum(d > 0 for d in diffs) and "vs_local_mean" not in s["local"]
    assert "| vs local, same seed |" in (tmp_path / "r" / "results.md").read_text()
    assert (tmp_path / "r" / "results.png").stat().st_size > 1000
    assert "apfed-c" in out  # the table
    # where it ran: CPU results repeat bit for bit on one machine, not across vector units
    assert rep["machine"]["processor"] and isinstance(rep["machine"]["cpu_capability"], str)
    # and how to repeat it
    import apfed

    assert rep["apfed"] == apfed.__version__
    assert (
        rep["command"]
        == "apfed evaluate --dataset digits --methods 'local,apfed-c,tvfl,apfed-c[lam=2]' --seeds 2 --epochs 2 --out"
        f" {tmp_path / 'r'}"
    )
    assert f"apfed {apfed.__version__}; reproduce: `{rep['command']}`" in (tmp_path / "r" / "results.md").read_text()


def test_evaluate_takes_a_subset_of_the_passive_views(tmp_path):
    code, out, err = run_cli(
        *("evaluate", "--dataset", "handwritten", "--passives", "kar,pix", "--methods", "apfed-c"),
        *("--seeds", "1", "--epochs", "1", "--out", tmp_path / "r"),
    )
    assert code == 0, err
    rep = json.loads((tmp_path / "r" / "results.json").read_text())
    assert rep["views"] == ["fou", "kar", "pix"] and rep["active_view"] == "fou"
    # 2 passives: each minibatch (13) there and back, and 6 messages each for set-up and evaluation
    assert rep["runs"][0]["wire"]["messages"] == 2 * (2 * 13 + 6)


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
        "--lam",
        "2",
        "--temperature",
        "0.5",
        "--out",
        model,
    )
    assert code == 0, err
    assert "matched" in err
    from apfed.standalone import StandaloneModel

    config = StandaloneModel.load(model).config  # train takes evaluate's recipe options (it had only --set)
    assert (config["lam"], config["temperature"]) == (2.0, 0.5)
    code, _, err = run_cli(
        "predict", "--model", model, "--input", a, "--id-column", "user_id", "--output", tmp_path / "p.csv"
    )
    assert code == 0, err
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0].startswith("user_id,prediction,p_class_0") and len(lines) == 301
    assert "more than once" not in err
    # a repeated ID is predicted row by row, and said: a join on the ID downstream would pair the rows wrongly
    rows = list(csv.reader(Path(a).read_text().splitlines()))
    rows[5][0] = rows[9][0] = rows[2][0]
    with (tmp_path / "repeated.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    out = tmp_path / "p_repeated.csv"
    code, _, err = run_cli(
        "predict", "--model", model, "--input", tmp_path / "repeated.csv", "--id-column", "user_id", "--output", out
    )
    assert code == 0 and f"1 value of 'user_id' appears more than once, {rows[2][0]!r} 3 times" in err, err
    assert [r[1:] for r in csv.reader(out.read_text().splitlines())] == [
        r[1:] for r in csv.reader((tmp_path / "p.csv").read_text().splitlines())
    ]
    # features are taken by name in any order; with no training name in the header, every non-ID column in order
    # (with a warning); with some training names missing, never guessed
    rows = list(csv.reader(Path(a).read_text().splitlines()))
    feats = [j for j, h in enumerate(rows[0]) if h.startswith(Path(a).stem)]
    variants = {
        "reordered": [[r[0], r[-1], *(r[j] for j in reversed(feats))] for r in rows],
        "renamed": [rows[0][:1] + [f"v{j}" for j in feats]] + [[r[0], *(r[j] for j in feats)] for r in rows[1:]],
        "partial": [[r[0], *(r[j] for j in feats[1:])] for r in rows],
    }
    for name, table in variants.items():
        with (tmp_path / f"{name}.csv").open("w", newline="") as f:
            csv.writer(f).writerows(table)
    for name in ("reordered", "renamed"):
        out = tmp_path / f"p_{name}.csv"
        code, _, err = run_cli(
            "predict", "--model", model, "--input", tmp_path / f"{name}.csv", "--id-column", "user_id", "--output", out
        )
        assert code == 0 and ("warning" in err) == (name == "renamed"), err
        assert out.read_text() == (tmp_path / "p.csv").read_text()
    code, _, err = run_cli("predict", "--model", model, "--input", tmp_path / "partial.csv", "--output", out)
    assert code == 2 and f"missing feature columns the model was trained on: {rows[0][feats[0]]}" in err, err
    # a row without a feature value is named by its line, id and column (was "X holds NaN or infinite values")
    holes = [r[:] for r in rows]
    holes[3][feats[1]], holes[5][feats[0]] = "nan", "inf"
    with (tmp_path / "holes.csv").open("w", newline="") as f:
        csv.writer(f).writerows(holes)
    code, _, err = run_cli(
        "predict", "--model", model, "--input", tmp_path / "holes.csv", "--id-column", "user_id", "--output", out
    )
    where = f"line 4 (id {rows[3][0]}), column {rows[0][feats[1]]!r}: no value (empty, NA or NaN)"
    _one_error_line(code, err, where)
    assert "2 rows lack a feature" in err, err
    # an output that cannot be written, or an input that is not what its name says, is one clear line
    np.save((tmp_path / "npy.npz").open("wb"), np.zeros((2, 3)))
    np.savez(tmp_path / "text.npz", X=np.array([["a", "b"]]))
    (tmp_path / "binary.csv").write_bytes(bytes(range(256)))  # was a UnicodeDecodeError traceback
    (tmp_path / "twice.csv").write_text("user_id,f0,f0\nu1,0.1,0.2\n")
    for args in (
        ["export", "--model", model, "--onnx", model / "m.onnx"],
        ["predict", "--model", model, "--input", a, "--id-column", "user_id", "--output", tmp_path],
        ["predict", "--model", model, "--input", tmp_path / "npy.npz", "--output", tmp_path / "q.csv"],
        ["predict", "--model", model, "--input", tmp_path / "text.npz", "--output", tmp_path / "q.csv"],
        ["predict", "--model", model, "--input", a, "--id-column", "nope", "--output", tmp_path / "q.csv"],
        ["predict", "--model", model, "--input", tmp_path / "binary.csv", "--output", tmp_path / "q.csv"],
        ["predict", "--model", model, "--input", tmp_path / "twice.csv", "--output", tmp_path / "q.csv"],
    ):
        code, _, err = run_cli(*args)
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        assert code != 0 and len(lines) == 1 and lines[0].startswith("error:"), err
    # an output path that is one of the command's own inputs is refused, and the input is left as it was
    copy = tmp_path / "input-copy.csv"
    copy.write_bytes(Path(a).read_bytes())
    kept = {copy: copy.read_bytes(), model: model.read_bytes()}
    for args, what in (
        (["predict", "--model", model, "--input", copy, "--output", tmp_path / "." / copy.name], "the input file"),
        (["predict", "--model", model, "--input", copy, "--output", model], "the model file"),
        (["export", "--model", model, "--onnx", model], "the model file"),
        (
            ["train", "--method", "apfed-c", "--data", a, "--data", copy, "--id-column", "user_id", "--out", copy],
            "the input data",
        ),
    ):
        code, _, err = run_cli(*args)
        assert code == 2 and f"is {what}" in err and "refusing to overwrite" in err, err
    assert all(p.read_bytes() == b for p, b in kept.items())
    code, _, err = run_cli("export", "--model", model, "--onnx", tmp_path / "m.onnx")
    assert code == 0, err and (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize(
    "args, match",
    [
        (["evaluate", "--dataset", "nope"], "unknown dataset"),
        (["evaluate", "--dataset", "digits", "--methods", "magic"], "unknown method"),
        (["evaluate", "--dataset", "digits", "--active", "7"], "out of range"),
        (["evaluate", "--dataset", "handwritten", "--views", "3"], "6 natural views"),
        (["evaluate", "--dataset", "mnist5k", "--views", "6"], "between 1 and 5 for images of height 28 (strips"),
        (["evaluate", "--dataset", "mnist"], "--data-dir"),
        (["evaluate", "--dataset", "mnist", "--data-dir", "/nonexistent"], "not found"),
        (["evaluate", "--preset", "turbo"], "unknown preset"),
        (["evaluate", "--dataset", "digits", "--set", "lr=-1"], "lr must be"),
        (["evaluate", "--dataset", "digits", "--set", "lr=abc"], "not a valid"),
        (["evaluate", "--dataset", "digits", "--set", "eval_last=0"], "eval_last must be >= 1"),
        (["evaluate", "--dataset", "digits", "--set", "embedding_dim=0"], "embedding_dim must be >= 1"),
        (["evaluate", "--dataset", "digits", "--set", "momentum=1"], "momentum must be in [0, 1)"),
        (["evaluate", "--dataset", "digits", "--set", "bogus=1"], "no training setting 'bogus' ('apfed settings'"),
        (["evaluate", "--dataset", "digits", "--set", "lamda=2"], "no training setting 'lamda'; did you mean lam?"),
        (["evaluate", "--dataset", "digits", "--set", "lr"], "--set takes KEY=VALUE, got 'lr'"),
        (["evaluate", "--data", "/nonexistent.csv"], "not found"),
        (["train", "--method", "tvfl"], "no standalone model"),
        (["predict", "--model", "/nonexistent.safetensors", "--input", "x.csv"], "not found"),
        (["info", "--model", "/nonexistent.safetensors"], "model file not found"),
        (["info", "--model", "README.md"], "not an apfed model file"),
        (["evaluate", "--dataset", "digits", "--on-bad-message", "maybe"], "skip or fail"),
        (["evaluate", "--dataset", "digits", "--dp-noise", "1"], "needs a clip bound"),
        (["train", "--dataset", "digits", "--resume"], "need --checkpoint-dir"),
        (["train", "--dataset", "digits", "--round-timeout", "0"], "--round-timeout must be a positive number"),
        (["train", "--dataset", "digits", "--resume", "--checkpoint-dir", "/nonexistent"], "nothing to resume"),
        (["preflight", "--seal-key", "/nonexistent.pem"], "cannot read the encryption key"),
        (["preflight", "--pin", "passive1=sha256:abc"], "not a key fingerprint"),
        (["preflight", "--pin", f"p=sha256:{'a' * 64}", "--pin", f"p=sha256:{'b' * 64}"], "pinned twice"),
        (["preflight", "--cert", "/nonexistent.pem"], "cannot read the certificate"),
        (["preflight", "--key", "/nonexistent"], "cannot read the private key"),
        (["evaluate", "--dataset", "digits", "--payload", "int8"], "payload must be float32 or float16"),
        (["evaluate", "--dataset", "digits", "--methods", "apfed-m", "--passive-losses", "r,c"], "has 1 passive"),
        (["train", "--dataset", "digits", "--set", "passive_losses=c,c"], "has 1 passive"),
        (["simulate", "--dataset", "digits", "--method", "apfed-m", "--set", "passive_losses=r,r"], "has 1 passive"),
        (["simulate", "--dataset", "digits", "--method", "apfed-m", "--passive-losses", "r,r"], "has 1 passive"),
        (["simulate", "--dataset", "digits", "--lam", "-1"], "lam must be >= 0"),
        (["bench", "--only", "speed"], "unknown --only section"),
        (["evaluate", "--dataset", "digits", "--out", "/dev/null/r"], "cannot create the output directory"),
        (["train", "--dataset", "digits", "--out", "/dev/null/m.safetensors"], "cannot create the output directory"),
        (
            ["train", "--dataset", "digits", "--out", "/proc/m.safetensors"],
            "cannot write to the output directory /proc:",
        ),
        (
            ["train", "--dataset", "digits", "--checkpoint-dir", "/dev/null", "--checkpoint-every", "1"],
            "cannot create the output directory /dev/null",
        ),
        (["simulate", "--dataset", "digits", "--out", "/dev/null/m.safetensors"], "cannot create the output directory"),
        (["bench", "--only", "epoch", "--out", "/dev/null/b"], "cannot create the output directory"),
        (["evaluate", "--dataset", "digits", "--methods", ","], "--methods names no method"),  # was an empty table
        (["evaluate", "--dataset", "digits", "--set", "shift=2"], "digits has no image view"),  # did nothing
        (["train", "--dataset", "handwritten", "--set", "shift=1"], "handwritten has no image view"),
        (["evaluate", "--dataset", "handwritten", "--passives", "kar,fou"], "'fou' is the active party's"),
        (["train", "--dataset", "handwritten", "--passives", "kar,nope"], "unknown view 'nope' for handwritten"),
        # a passive party's own worker: its settings are checked before it listens
        (
            ["worker", "--socket", "/tmp/w.sock", "--node-config", "party='passive1' data='x.csv' min_rows=3"],
            "'min_rows'",
        ),
        (["worker", "--socket", "/tmp/w.sock", "--node-config", "party='passive1'"], "needs data='FILE'"),
        (["worker", "--socket", "/tmp/w.sock", "--node-config", "party='passive1' data=='"], "key=value pairs"),
        (
            ["worker", "--socket", "/no/dir/w.sock", "--node-config", "party='passive1' data='x.csv'"],
            "/no/dir does not",
        ),
        (["worker", "--socket", "/tmp/w.sock", "--node-config", "party='passive1' data='/no/x.csv'"], "not found"),
        # the command line's own mistakes: one line too, not click's usage block and framed error
        (["evaluate", "--epochs", "0"], "'--epochs': 0 is not in the range x>=1 (see 'apfed evaluate --help')"),
        (["evaluate", "--bogus"], ("No such option", "--bogus")),  # click 8.3 words it "No such option: --bogus (...)"
        (["evaluate", "--methods", "local,apfed-c[lam=0.5"], "--methods: a '[' without its ']'"),
        (["evaluate", "--methods", "apfed-c[lamb=1]"], "no training setting 'lamb'; did you mean lam?"),
        (["predict"], "Missing option '--model' (see 'apfed predict --help')"),
        (["bogus"], "No such command 'bogus' (see 'apfed --help')"),
    ],
)
def test_user_errors_exit_nonzero_with_one_clear_line(args, match):
    code, out, err = run_cli(*args, refused=True)
    assert code != 0
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    parts = match if isinstance(match, tuple) else (match,)  # a tuple: each part, where click's wording varies
    assert len(lines) == 1 and lines[0].startswith("error:") and all(p in lines[0] for p in parts), err
    assert "Traceback" not in err


@pytest.mark.parametrize("args", [["settings"], ["settings", "--markdown"]])  # rich's console; typer.echo
def test_a_reader_that_goes_away_ends_the_command_quietly(args):
    """`apfed settings | head -1`: once the reader has closed the pipe, the command stops with exit code 1 and
    nothing on stderr (no traceback, and no "Exception ignored" from the flush at exit)."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        p = subprocess.run(
            [sys.executable, "-m", "apfed.cli", *args], stdout=write, stderr=subprocess.PIPE, timeout=120
        )
    finally:
        os.close(write)
    assert p.returncode == 1 and p.stderr == b"", p.stderr[-2000:]


def test_an_output_that_is_a_pipe_or_device_is_refused_and_left_as_it_was(tmp_path):
    """Renamed over, a named pipe (or, for root, /dev/full or /dev/stdout) would become a regular file: refused at
    once, with one line, and the pipe is still a pipe."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    for args in (["train", "--dataset", "digits", "--out", pipe], ["train", "--dataset", "digits", "--metrics", pipe]):
        code, out, err = run_cli(*args, "--epochs", "1", cwd=tmp_path)
        why = "is not a regular file (a device, pipe or socket); give a file name"
        assert code == 2 and err.strip() == f"error: {pipe} {why}", err
        assert S_ISFIFO(os.lstat(pipe).st_mode)


def test_version_names_apfed_the_message_schema_torch_and_flower():
    from importlib.metadata import version

    import apfed
    from protocols.messages import SCHEMA_VERSION

    code, out, err = run_cli("--version")
    assert code == 0, err
    assert apfed.__version__ == version("apfed")  # the package and its distribution agree
    assert out.strip() == (
        f"apfed {version('apfed')} (message schema {SCHEMA_VERSION}; torch {version('torch')}, flwr {version('flwr')})"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["evaluate", "--dataset", "nope"],
        ["evaluate", "--dataset", "digits", "--methods", "magic"],
        ["evaluate", "--dataset", "digits", "--set", "momentum=1"],
        ["evaluate", "--dataset", "digits", "--on-bad-message", "maybe"],
        ["evaluate", "--dataset", "digits", "--out", "/dev/null/r"],
        ["train", "--method", "tvfl"],
        ["train", "--dataset", "digits", "--resume"],
        ["simulate", "--dataset", "mnist"],
    ],
)
def test_option_mistakes_are_reported_before_torch_is_imported(args):
    """A typo costs a fraction of a second, not the seconds that importing torch takes."""
    probe = (
        "import sys\nfrom apfed.cli import main\nsys.argv = ['apfed', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    print(e.code, 'torch' in sys.modules)"
    )
    p = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120)
    assert p.stdout.split() == ["2", "False"], (p.stdout, p.stderr)
    assert p.stderr.startswith("error:")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize(
    "args",
    [
        ["simulate", "--dataset", "digits", "--device", "cuda"],
        ["simulate", "--dataset", "digits", "--set", "device=cuda"],
        ["train", "--dataset", "digits", "--method", "apfed-kd", "--device", "cuda"],
    ],
)
def test_cuda_without_a_gpu_is_one_clear_line(args):
    code, _, err = run_cli(*args)
    lines = err.splitlines()  # exactly one line: simulate printed an empty one first (its bar, never shown)
    assert code != 0 and len(lines) == 1 and "no CUDA GPU is available" in lines[0], err
    if "--device" in args:  # the option as the user typed it (simulate said "device='cuda'", the API's spelling)
        assert "--device cuda was asked for" in lines[0] and "use --device cpu" in lines[0], err


def test_a_gpu_is_named_by_an_index_the_machine_has(monkeypatch):
    """cuda:N picks a GPU; an index past the machine's GPUs, or a malformed name, is one clear error (torch's own
    was a traceback), before any data is read."""
    import torch

    from apfed.api import check_device
    from apfed.config import TrainConfig
    from apfed.errors import ConfigError

    assert TrainConfig(device="cuda:1").validate().device == "cuda:1"
    for bad in ("cuda:x", "cuda:", "gpu", "cuda1"):
        with pytest.raises(ConfigError, match=f"device must be cpu, cuda or cuda:N .a GPU's index., got '{bad}'"):
            TrainConfig(device=bad).validate()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_device("cuda")
    check_device("cuda:1")
    with pytest.raises(ConfigError, match=r"^cuda:2 was asked for but this machine has 2 GPU\(s\): cuda:0 to cuda:1$"):
        check_device("cuda:2", "--device cuda:2")


def test_bad_csv_and_model_file_errors(tmp_path):
    bad = tmp_path / "a.csv"
    bad.write_text("id,x\n1,2\n")
    code, _, err = run_cli("evaluate", "--data", bad)
    assert code == 2 and "no label column" in err and "Traceback" not in err
    junk = tmp_path / "m.safetensors"
    junk.write_bytes(b"\x00" * 20)
    code, _, err = run_cli("predict", "--model", junk, "--input", bad)
    assert code == 2 and "not an apfed model" in err


def _certificate(path, days_valid: int):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=30))
        .not_valid_after(now + datetime.timedelta(days=days_valid))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _one_error_line(code, err, match):
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and match in lines[0] and "Traceback" not in err, err


def test_keys_certificates_and_ports_are_checked_with_one_clear_line(tmp_path):
    import socket

    code, out, err = run_cli("keygen", tmp_path / "party.pem")
    assert code == 0 and out.strip().startswith("sha256:") and (tmp_path / "party.pem").stat().st_mode & 0o777 == 0o600
    _one_error_line(*run_cli("keygen", tmp_path / "party.pem")[::2], "refusing to overwrite")
    pem = (tmp_path / "party.pem").read_text().splitlines()  # the key made above, with its body cut short
    (tmp_path / "junk.pem").write_text("\n".join([pem[0], pem[1][:10], pem[-1]]) + "\n")
    _one_error_line(*run_cli("preflight", "--seal-key", tmp_path / "junk.pem")[::2], "not an unencrypted PEM")
    _one_error_line(*run_cli("preflight", "--key", tmp_path / "junk.pem")[::2], "not an unencrypted PEM or OpenSSH")
    expired = _certificate(tmp_path / "old.pem", days_valid=-1)
    _one_error_line(*run_cli("preflight", "--cert", expired)[::2], "expired on")
    good = _certificate(tmp_path / "good.pem", days_valid=30)
    code, out, err = run_cli("preflight", "--cert", good, "--seal-key", tmp_path / "party.pem")
    assert code == 0 and out.splitlines()[-1] == "preflight: all 2 checked are usable", err
    assert f"certificate {good}: CN=test, valid until " in out and "(29 days); warning: it expires within 30" in out
    code, out, err = run_cli("preflight", "--cert", _certificate(tmp_path / "long.pem", days_valid=400))
    assert code == 0 and "(399 days)\n" in out and "warning" not in out, err
    _one_error_line(*run_cli("preflight")[::2], "nothing to check: give --seal-key, --pin, --cert")
    (tmp_path / "party.pem").chmod(0o644)  # a private key other users can read: as ssh does, preflight refuses it
    _one_error_line(*run_cli("preflight", "--seal-key", tmp_path / "party.pem")[::2], "(mode 0644): run chmod 600")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        _one_error_line(*run_cli("preflight", "--port", port)[::2], "already in use")
        # the loopback deployment refuses a busy port before starting anything
        p = run_script(ROOT / "examples/deploy-local/deploy.py", "--out", tmp_path / "dep", "--fleet-port", port)
        _one_error_line(p.returncode, p.stderr, "already in use")
    # and an expired certificate among the organisations' own PKI
    pki = tmp_path / "pki"
    pki.mkdir()
    _certificate(pki / "ca.crt", days_valid=-2)
    p = run_script(ROOT / "examples/deploy-local/deploy.py", "--out", tmp_path / "dep2", "--pki", pki)
    _one_error_line(p.returncode, p.stderr, "expired on")


def _ignoring_ctrl_c(sid: int, marker: str) -> int:
    """How many processes of session ``sid`` with ``marker`` in their command line ignore SIGINT: a Ctrl-C can no
    longer interrupt such a worker mid-start (the PSI worker's launcher, or apfed's pool initializer, has run)."""
    count = 0
    for proc, _, cmd in session_processes(sid):
        if marker in cmd:
            with contextlib.suppress(OSError, IndexError, ValueError):
                ignored = int((proc / "status").read_text().split("SigIgn:")[1].split()[0], 16)
                count += bool(ignored & (1 << (signal.SIGINT - 1)))
    return count


def test_ctrl_c_stops_a_parallel_evaluate_at_once_and_leaves_no_worker(tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) during `evaluate --jobs 2` stops the
    workers and exits with 130 at once: it does not first finish the runs already started or queued (each takes
    minutes here), and no worker prints a traceback."""
    args = ["evaluate", "--dataset", "digits", "--methods", "apfed-c", "--seeds", "4", "--epochs", "1000"]
    started: list[float] = []  # when both pool workers were first seen ready (SIGINT ignored by the initializer)

    def training(pid: int) -> bool:
        if not started and _ignoring_ctrl_c(pid, "spawn_main") >= 2:
            started.append(time.monotonic())
        return bool(started) and time.monotonic() - started[0] > 3  # the workers are training by then

    code, err, left = stopped_cli([*args, "--jobs", "2", "--out", str(tmp_path)], training)
    assert code == 130, err
    assert "Traceback" not in err, err
    assert not (tmp_path / "results.json").exists()
    assert left == [], left


def test_ctrl_c_during_the_psi_stops_its_blinding_processes(tmp_path):
    """Ctrl-C while the parties blind 60,000 IDs with their pools of processes: exit 130 at once, no traceback from
    the blinding processes, no model written, and none of them left running."""
    n = 60_000
    ids = np.array([f"u{i}" for i in range(n)])
    x = np.random.default_rng(0).standard_normal((n, 4)).round(3).astype(str)
    for name, header, body in (
        ("a.csv", "id,x0,x1,label", [ids, x[:, :2], (np.arange(n) % 3).astype(str)]),
        ("b.csv", "id,y0,y1", [ids, x[:, 2:]]),
    ):
        np.savetxt(tmp_path / name, np.column_stack(body), fmt="%s", delimiter=",", header=header, comments="")
    args = ["train", "--data", tmp_path / "a.csv", "--data", tmp_path / "b.csv", "--method", "apfed-c"]
    args += ["--epochs", "1", "--out", tmp_path / "m.safetensors"]
    blinding: list[float] = []  # when two blinding processes (protocols.psi._worker_main) were first seen ready

    def ready(pid: int) -> bool:
        if not blinding and _ignoring_ctrl_c(pid, "_worker_main") >= 2:
            blinding.append(time.monotonic())
        return bool(blinding) and time.monotonic() - blinding[0] > 0.5

    code, err, left = stopped_cli(args, ready, env={**os.environ, "APFED_PSI_WORKERS": "2"})
    assert code == 130, err
    assert "Traceback" not in err, err
    assert not (tmp_path / "m.safetensors").exists()
    assert left == [], left


def test_settings_lists_every_training_setting_with_both_presets():
    from dataclasses import fields

    from apfed import settings
    from apfed.config import TrainConfig

    code, out, err = run_cli("settings")
    assert code == 0, err
    lines = out.splitlines()
    for f in fields(TrainConfig):
        assert any(line.startswith(f"│ {f.name} ") for line in lines), f.name
    assert any(line.startswith("│ optimizer ") and "│ adam " in line and "│ sgd " in line for line in lines)
    code, out, _ = run_cli("settings", "--markdown")
    assert code == 0 and out == settings.markdown()


def test_switches_have_one_name():
    """Every switch is off by default, so a --no-X twin would only double the width of the help's option column."""
    import click
    import typer.main

    from apfed.cli import app

    switches = [
        (name, p)
        for name, c in typer.main.get_command(app).commands.items()
        for p in c.params
        if isinstance(p, click.Option) and p.is_flag
    ]
    assert len(switches) >= 8
    assert [(n, p.opts, p.default) for n, p in switches if p.secondary_opts or p.default] == []


def test_train_with_only_the_active_partys_file_is_an_error_for_a_federated_method(tmp_path, party_csvs):
    """It once trained an 'apfed-kd' model with no passive at all (evaluate already refused)."""
    active = str(party_csvs["paths"][0])
    base = ["--data", active, "--id-column", "user_id", "--label-column", "label", "--epochs", "1"]
    code, _, err = run_cli("train", *base, "--out", tmp_path / "m.safetensors")
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: apfed-kd needs at least 2 views (one passive)")
    assert "use the method local" in err and not (tmp_path / "m.safetensors").exists()
    code, _, err = run_cli("train", *base, "--method", "local", "--out", tmp_path / "m.safetensors")
    assert code == 0 and (tmp_path / "m.safetensors").exists(), err
    code, out, _ = run_cli("info", "--model", tmp_path / "m.safetensors")
    assert code == 0 and "local (preset default), seed 0, 1 epoch\n" in out  # not "1 epochs"


def test_preflight_reads_a_party_file_as_its_deployment_will(party_csvs):
    bank, shop, _ = party_csvs["paths"]
    code, out, err = run_cli("preflight", "--data", shop, "--id-column", "user_id")
    assert code == 0 and f"data {shop}: a passive party's file, 280 rows of 3 features\n" in out, err
    code, out, err = run_cli("preflight", "--data", bank, "--id-column", "user_id", "--label-column", "label")
    assert code == 0, err
    assert f"data {bank}: the active party's file, 3 classes, 300 rows of 4 features (60 held out to test)\n" in out
    code, out, err = run_cli(*["preflight", "--data", bank, "--id-column", "user_id", "--label-column", "label"],
                             "--test-fraction", "0")  # fmt: skip
    assert code == 0 and "300 rows of 4 features (every labelled row trains: test fraction 0)\n" in out, err
    rows = bank.read_text().splitlines()
    blanked = [rows[0]] + [r.rsplit(",", 1)[0] + "," if i < 50 else r for i, r in enumerate(rows[1:])]
    partial = bank.with_name("partial.csv")
    partial.write_text("\n".join(blanked) + "\n")
    code, out, err = run_cli("preflight", "--data", partial, "--id-column", "user_id", "--label-column", "label")
    said = "300 rows of 4 features (50 held out to test), 50 with no label (they train apfed-r/c/m/kd through"
    assert code == 0 and said in out, out + err
    _one_error_line(*run_cli("preflight", "--data", shop)[::2], "no ID column 'id'")
    _one_error_line(
        *run_cli("preflight", "--data", shop, "--id-column", "user_id", "--label-column", "label")[::2],
        "no label column 'label'",
    )


def test_train_takes_a_method_as_evaluate_names_its_variant(tmp_path):
    """The variant evaluate picked, 'apfed-c[lam=2,passives=bottom]', trains as --method apfed-c --lam 2 --passives
    bottom does, to the same model; its passives given twice, or an unknown method, is one line."""
    from apfed.standalone import StandaloneModel

    common = ["train", "--dataset", "digits", "--views", "3", "--epochs", "1"]
    code, _, err = run_cli(*common, "--method", "apfed-c[lam=2,passives=bottom]", "--out", tmp_path / "v.safetensors")
    assert code == 0, err
    code, _, err = run_cli(
        *common, "--method", "apfed-c", "--lam", "2", "--passives", "bottom", "--out", tmp_path / "o.safetensors"
    )
    assert code == 0, err
    v, o = (StandaloneModel.load(tmp_path / f"{n}.safetensors") for n in "vo")
    assert v.config["method"] == "apfed-c" and v.config["lam"] == 2.0 and len(v.provenance["passives"]) == 1
    X = np.random.default_rng(0).random((5, *v.spec["shape"]), dtype=np.float32) * 16
    assert np.array_equal(v.predict_proba(X), o.predict_proba(X))
    for method, extra, says in (
        ("apfed-c[passives=bottom]", ["--passives", "middle"], "names its passives and so does --passives"),
        ("apfed-x[lam=2]", [], "unknown method 'apfed-x' in --method"),
    ):
        code, _, err = run_cli(*common, "--method", method, *extra, "--out", tmp_path / "x.safetensors")
        assert code == 2 and len(err.strip().splitlines()) == 1 and says in err, err


@pytest.mark.parametrize(
    "command,shown",
    [("evaluate", "'apfed-c[lam=0.5|1|2]'"), ("train", "'apfed-c[lam=0.25]'"), ("simulate", "'apfed-c[lam=0.25]'")],
)
def test_the_help_shows_a_variants_brackets(command, shown):
    """The help is rich markup, which read 'apfed-c[lam=0.5]' as a tag and printed 'apfed-c' alone."""
    env = {**os.environ, "COLUMNS": "300"}
    p = subprocess.run([sys.executable, "-m", "apfed.cli", command, "--help"], capture_output=True, text=True, env=env)
    assert p.returncode == 0 and shown in p.stdout, p.stdout


def test_every_bracket_in_the_help_is_escaped_from_rich_markup():
    import re

    import typer.main

    from apfed.cli import app

    for name, command in typer.main.get_command(app).commands.items():
        for text in [command.help or "", *(getattr(p, "help", None) or "" for p in command.params)]:
            assert not re.search(r"(?<!\\)\[", text), (name, text)  # write \\[ in the source


def test_every_commands_summary_is_one_line_of_its_docstring():
    """The command list shows a docstring's first paragraph with its line breaks kept: a summary wrapped in the
    source showed as a broken line there (score's did)."""
    import typer.main

    from apfed.cli import app

    for name, command in typer.main.get_command(app).commands.items():
        summary = (command.help or "").strip().split("\n\n")[0]
        assert summary and "\n" not in summary, (name, summary)


def test_info_names_a_models_recipe_as_a_variant_that_trains_it_again(tmp_path):
    """apfed info's method line is the preset and the method with its own settings, as evaluate names a variant:
    `train --preset P --method M` trains that recipe again."""
    from apfed.config import RUN_KEYS, make_config, recipe_of, variant_config

    for preset, over in (("paper", {"lam": 2.0, "method": "apfed-kd"}), ("default", {"deterministic": True})):
        cfg = make_config(preset, seed=3, epochs=7, **over).to_dict()
        p, label = recipe_of(cfg)
        again = variant_config(make_config(p), label).to_dict()
        assert p == preset and all(again[k] == v for k, v in cfg.items() if k not in RUN_KEYS), (label, again)
    assert recipe_of(make_config("paper", lam=2.0, method="apfed-kd").to_dict()) == ("paper", "apfed-kd[lam=2]")
    assert recipe_of(make_config("default", method="apfed-c").to_dict()) == ("default", "apfed-c")
    common = ["--dataset", "digits", "--views", "3", "--epochs", "1", "--out", tmp_path / "m.safetensors"]
    assert run_cli("train", "--method", "apfed-c[lam=2,temperature=0.5]", *common)[0] == 0
    code, out, err = run_cli("info", "--model", tmp_path / "m.safetensors")
    assert code == 0 and "apfed-c[lam=2,temperature=0.5] (preset default), seed 0, 1 epoch" in out, out + err


def test_a_command_past_its_deadline_is_stopped_with_sigterm_so_it_can_stop_what_it_started(tmp_path):
    """The tests' subprocess deadline (conftest.run_bounded): a SIGKILL left a deployment's SuperLink and
    SuperNodes running when deploy.py overran; SIGTERM lets it stop them first."""
    from conftest import run_bounded

    flag = tmp_path / "stopped"
    script = (
        "import signal, sys, time, pathlib\n"
        f"signal.signal(signal.SIGTERM, lambda *_: (pathlib.Path({str(flag)!r}).write_text('1'), sys.exit(143)))\n"
        "print('ready', flush=True)\ntime.sleep(60)\n"
    )
    with pytest.raises(subprocess.TimeoutExpired):
        run_bounded([sys.executable, "-c", script], 3)
    assert flag.read_text() == "1"
