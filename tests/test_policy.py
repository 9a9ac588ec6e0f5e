"""A passive party's own limits (node config): it refuses a run beyond them, with one line for the active party."""

from dataclasses import replace

import pytest

from apfed.config import make_config
from apfed.data import load_bundled
from apfed.data.views import PartyData
from apfed.errors import ConfigError
from apfed.runner import Safety, build_clients, in_process_passives
from clients.flower_client import NODE_KEYS, passive_from_node_config
from clients.policy import PassivePolicy
from protocols.errors import ProtocolError


@pytest.fixture(scope="module")
def digits3():
    return load_bundled("digits", 3)


def _run(ds, method, policy, overlap=None, sent=None, **cfg):
    """One epoch in process with ``policy`` on passive2; returns passive2's replies (also into ``sent``)."""
    client = build_clients(ds, 0, make_config("default", method=method, epochs=1, batches_per_round=4, **cfg))
    passive = in_process_passives(client)[1]
    passive.policy = policy
    if overlap is not None:  # passive2 holds only these of its rows
        d = passive.data
        passive.data = PartyData(view=replace(d.view, X=d.view.X[overlap]), ids=d.ids[overlap])
    sent = [] if sent is None else sent
    handler = client.transport.handlers["passive2"]

    def recording(msg):
        reply = handler(msg)
        sent.append(reply)
        return reply

    client.transport.handlers["passive2"] = recording
    client.setup()
    client.fit()
    return sent


def test_a_passive_that_keeps_its_embeddings_refuses_the_methods_that_need_them_and_serves_the_others(digits3):
    keep = PassivePolicy(send_embeddings=False)
    for method in ("apfed-kd", "tvfl"):
        with pytest.raises(ProtocolError, match=f"passive2: will not send its embeddings .* which {method} needs"):
            _run(digits3, method, keep)
    sent = _run(digits3, "apfed-c", keep)
    assert sent and all("emb" not in r.arrays for r in sent) and any("grad" in r.arrays for r in sent)
    assert any("emb" in r.arrays for r in _run(digits3, "apfed-kd", PassivePolicy()))  # what the limit stops


def test_a_passive_that_requires_dp_noise_refuses_a_run_with_less_and_joins_one_with_enough(digits3):
    need = PassivePolicy(min_dp_noise=1.0)
    with pytest.raises(ProtocolError, match="passive2: requires DP noise of at least 1 .* dp_clip=0, dp_noise=0"):
        _run(digits3, "apfed-c", need)
    with pytest.raises(ProtocolError, match="dp_clip=1, dp_noise=0.5: set both"):
        _run(digits3, "apfed-c", need, dp_clip=1.0, dp_noise=0.5)
    assert _run(digits3, "apfed-c", need, dp_clip=1.0, dp_noise=1.0)


def test_a_passive_with_min_rows_refuses_a_short_id_list_before_the_psi_and_a_small_intersection(digits3):
    n = len(digits3.ids)
    sent = []
    with pytest.raises(ProtocolError, match=f"at least {n + 1} shared rows .* the active party offered {n}"):
        _run(digits3, "apfed-c", PassivePolicy(min_rows=n + 1), sent=sent)
    assert [(r.kind, r.arrays) for r in sent] == [("error", {})]  # the refusal only: not even the PSI answered
    half = list(range(0, n, 2))
    with pytest.raises(ProtocolError, match=f"at least 1000 shared rows .* the intersection leaves {len(half)}"):
        _run(digits3, "apfed-c", PassivePolicy(min_rows=1000), overlap=half)
    assert _run(digits3, "apfed-c", PassivePolicy(min_rows=len(half)), overlap=half)


def test_the_limits_come_from_the_node_config_and_a_bad_value_is_one_clear_error(tmp_path, digits3):
    nc = {"party": "passive1", "dataset": "digits", "views": 3, "active": "0"}
    assert passive_from_node_config(nc).policy == PassivePolicy()
    limited = {**nc, "send-embeddings": "false", "min-dp-noise": "0.8", "min-rows": "500"}
    policy = passive_from_node_config(limited).policy
    assert policy == PassivePolicy(False, 0.8, 500)
    assert policy.describe() == (
        "its embeddings never leave it; what it sends carries DP noise >= 0.8; only over at least 500 shared rows"
    )
    assert {"send-embeddings", "min-dp-noise", "min-rows"} <= set(NODE_KEYS)  # not read as run settings
    for key, value, match in (
        ("send-embeddings", "maybe", "send-embeddings='maybe': give true or false"),
        ("min-dp-noise", "-1", "min-dp-noise='-1': give a number >= 0"),
        ("min-dp-noise", "nan", "min-dp-noise='nan'"),
        ("min-rows", "1.5", "min-rows='1.5': give a number >= 0"),
    ):
        with pytest.raises(ConfigError, match=match):
            PassivePolicy.from_node_config({key: value})


def test_limits_set_since_a_checkpoint_also_hold_when_the_run_is_resumed(tmp_path, digits3):
    cfg = make_config("default", method="apfed-c", epochs=2, batches_per_round=2, seed=0)
    safety = Safety(checkpoint_dir=str(tmp_path), checkpoint_every=2)
    client = build_clients(digits3, 0, cfg, safety=safety)
    client.setup()
    client.fit()
    assert (tmp_path / "active.ckpt").exists()
    resumed = build_clients(digits3, 0, cfg, safety=replace(safety, resume=True))
    in_process_passives(resumed)[1].policy = PassivePolicy(min_dp_noise=1.0)
    with pytest.raises(ProtocolError, match="passive2: requires DP noise of at least 1"):
        resumed.resume()
    again = build_clients(digits3, 0, cfg, safety=replace(safety, resume=True))
    again.resume()  # the same checkpoint without the new limit resumes
