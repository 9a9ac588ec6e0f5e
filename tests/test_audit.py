"""A passive party's audit log: one JSON line per request, what was asked and what was sent, never a value."""

import json

import pytest

from apfed.config import make_config
from apfed.data import load_bundled
from apfed.errors import ConfigError
from apfed.runner import Safety, build_clients, in_process_passives
from clients.audit import AuditLog
from clients.flower_client import passive_from_node_config
from clients.policy import PassivePolicy
from protocols.errors import ProtocolError


@pytest.fixture(scope="module")
def digits3():
    return load_bundled("digits", 3)


def _audited_run(ds, path, method="apfed-kd", safety=None, policy=None):
    client = build_clients(ds, 0, make_config("default", method=method, epochs=1, batches_per_round=4), safety=safety)
    passive = in_process_passives(client)[1]
    passive.audit = AuditLog(path)
    passive.policy = policy or PassivePolicy()
    received = []
    handler = client.transport.handlers["passive2"]

    def counting(msg):
        received.append(msg.kind)
        return handler(msg)

    client.transport.handlers["passive2"] = counting
    client.setup()
    client.fit()
    client.finish()
    return client, received, [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("encrypt", [False, True])
def test_every_request_is_one_line_with_what_was_asked_and_the_shapes_sent(tmp_path, digits3, encrypt):
    path = tmp_path / "shop-audit.jsonl"
    client, received, lines = _audited_run(digits3, path, safety=Safety(encrypt=encrypt))
    assert len(lines) == len(received) and path.stat().st_mode & 0o777 == 0o600
    # sealed or not, the log holds the requests themselves (the passive records what it opened)
    kinds = [line["kind"] for line in lines]
    assert kinds[: 3 if encrypt else 2] == (["hello", "setup", "align"] if encrypt else ["setup", "align"])
    assert kinds[-1] == "finish" and "train" in kinds and "evaluate" in kinds
    setup = lines[kinds.index("setup")]
    assert setup["party"] == "passive2" and setup["active"] == "active" and setup["run_id"] == client.run_id
    assert setup["asked"] == {
        "method": "apfed-kd",
        "epochs": 1,
        "dp_clip": 0.0,
        "dp_noise": 0.0,
        "payload": "float32",
        "loss": "c",
        "sends_embedding": True,
        "ids_offered": len(digits3.ids),
    }
    align = lines[kinds.index("align")]
    assert align["asked"]["shared_rows"] == len(digits3.ids) and 0 < align["asked"]["training_rows"] < len(digits3.ids)
    trains = [line for line in lines if line["kind"] == "train"]
    rows = [line["asked"]["rows"] for line in trains]  # the last may be 0: a flush of pending gradients
    assert min(rows) >= 0 and sum(rows) >= align["asked"]["training_rows"]
    sent = [s for line in trains for s in line["sent"].items()]
    assert {name for name, _ in sent} == {"emb", "grad", "loss"}  # apfed-kd: embeddings, gradients, its loss
    for _, s in sent:
        assert set(s) == {"shape", "dtype", "bytes"} and s["bytes"] == 4 * _numel(s["shape"])
    assert "error" not in json.dumps(lines)


def _numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def test_a_refusal_is_logged_with_the_error_sent(tmp_path, digits3):
    path = tmp_path / "audit.jsonl"
    with pytest.raises(ProtocolError, match="will not send its embeddings"):
        _audited_run(digits3, path, policy=PassivePolicy(send_embeddings=False))
    (line,) = (json.loads(x) for x in path.read_text().splitlines())
    assert line["kind"] == "setup" and line["sent"] == {} and "will not send its embeddings" in line["error"]


def test_what_cannot_be_logged_is_not_sent(tmp_path, digits3):
    path = tmp_path / "audit.jsonl"
    path.mkdir()  # the log's path is taken by a directory: writing fails
    with pytest.raises(ProtocolError, match="passive2: cannot write its audit log"):
        _audited_run(digits3, path, method="apfed-c")


def test_the_audit_log_comes_from_the_node_config(tmp_path):
    nc = {"party": "passive1", "dataset": "digits", "views": 3, "active": "0"}
    assert passive_from_node_config(nc).audit is None
    assert passive_from_node_config({**nc, "audit-log": str(tmp_path / "a.jsonl")}).audit.path == tmp_path / "a.jsonl"
    with pytest.raises(ConfigError, match="audit-log: directory .*missing does not exist"):
        passive_from_node_config({**nc, "audit-log": str(tmp_path / "missing" / "a.jsonl")})


def test_apfed_audit_summarizes_each_run_and_names_a_bad_line(tmp_path, digits3):
    from conftest import run_cli

    path = tmp_path / "audit.jsonl"
    client, _, lines = _audited_run(digits3, path, method="apfed-c")
    with pytest.raises(ProtocolError):
        _audited_run(digits3, path, policy=PassivePolicy(send_embeddings=False))
    code, out, err = run_cli("audit", path, "--json")
    assert code == 0, err
    first, refused = json.loads(out)
    assert first["run_id"] == client.run_id and first["method"] == "apfed-c" and first["requests"] == len(lines)
    assert first["shared_rows"] == first["ids_offered"] == len(digits3.ids) and "errors" not in first
    sums: dict[str, int] = {}
    for line in lines:
        for name, spec in line["sent"].items():
            sums[name] = sums.get(name, 0) + spec["bytes"]
    assert first["bytes_sent"] == sums and set(sums) >= {"grad", "psi_double", "psi_own"}
    assert refused["method"] == "apfed-kd" and refused["requests"] == 1 and "bytes_sent" not in refused
    assert (
        len(refused["errors"]) == 1
        and "setup (round 0): passive2: will not send its embeddings" in refused["errors"][0]
    )
    code, out, err = run_cli("audit", path)
    assert code == 0 and "2 run(s)" in out and client.run_id in out and "will not send" in out, err
    path.write_text(path.read_text() + "not json\n")
    n = len(path.read_text().splitlines())
    code, _, err = run_cli("audit", path)
    assert (
        code == 2
        and err == f"error: {path}, line {n}: not an audit log entry (a JSON object with run_id, kind, sent)\n"
    )
    code, _, err = run_cli("audit", tmp_path / "missing.jsonl")
    assert code == 2 and "cannot read the audit log" in err and err.count("\n") == 1
