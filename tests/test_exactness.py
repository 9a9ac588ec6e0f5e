"""K = 1 over the protocol is exactly the reference algorithm: one APFed step through ActiveClient,
messages and PassiveClient equals one step of the same losses computed in a single joint graph."""

import copy

import pytest
import torch
import torch.nn.functional as F

from apfed.config import make_config
from apfed.data import load_bundled
from apfed.losses import nt_xent, reconstruction
from apfed.runner import build_clients
from apfed.speed import bare_joint_epoch, joint_copies, learners_epoch


@pytest.mark.parametrize("method", ["apfed-c", "apfed-r"])
def test_one_protocol_step_equals_the_joint_computation(method):
    cfg = make_config(
        "paper", method=method, dropout=0.0, lr=0.05, momentum=0.0, weight_decay=0.0, lam=0.7, temperature=0.5
    )
    client = build_clients(load_bundled("digits"), 0, cfg, serialize=True)
    client.setup()
    active = client.learner
    passive = client.transport.handlers["passive1"].__self__.learner
    a0, p0 = copy.deepcopy(active.modules), copy.deepcopy(passive.modules)
    idx = client.train_idx[:32]
    client.aug_gen = torch.Generator().manual_seed(0)
    client._apply_round(client._send_round([idx], [idx.cpu()], [0.0]))

    # the same step, by hand, in one graph
    xa, xp, y = active.X[idx], passive.X[idx], active.y[idx].long()
    h = a0["encoder"](xa)
    task = F.cross_entropy(a0["head"](h), y)
    if method == "apfed-c":
        p_loss = nt_xent(a0["projection"](h), p0["projection"](p0["encoder"](xp)), 0.5)
    else:
        p_loss = reconstruction(p0["decoder"](h), xp)
    active_params = list(a0.parameters())
    passive_params = list(p0.parameters())
    g_active = torch.autograd.grad(task + 0.7 * p_loss, active_params, retain_graph=True)
    g_passive = torch.autograd.grad(p_loss, passive_params)
    with torch.no_grad():
        for p, g in zip(active_params, g_active, strict=True):
            p -= 0.05 * g
        for p, g in zip(passive_params, g_passive, strict=True):
            p -= 0.05 * g
    for (name, got), want in zip(active.modules.named_parameters(), active_params, strict=True):
        assert torch.allclose(got, want, atol=1e-6), f"active {name}"
    for (name, got), want in zip(passive.modules.named_parameters(), passive_params, strict=True):
        assert torch.allclose(got, want, atol=1e-6), f"passive {name}"


@pytest.mark.parametrize(
    "method,losses",
    [(m, "") for m in ("local", "apfed-r", "apfed-c", "apfed-m", "apfed-kd", "tvfl", "centralized")]
    + [("apfed-kd", "r,c")],
)
def test_with_k_1_the_learners_train_the_joint_model_bit_for_bit(method, losses):
    """K = 1, no pipelining: the parties' steps, message by message, equal one model trained on every party's
    loss with one joint backward (apfed.speed.bare_joint_epoch). For tvfl and apfed-kd that holds because a
    passive applies each minibatch's APFed loss together with the active's gradient of the embedding it sent."""
    cfg = make_config(
        "default", method=method, epochs=1, optimizer="sgd", lr=0.05, schedule="constant", passive_losses=losses
    )
    client = build_clients(load_bundled("digits", 3), 0, cfg)
    client.setup()
    batches = list(client.train_idx[:512].split(64))
    protocol, joint = joint_copies(client), joint_copies(client)
    before = [p.clone() for p in protocol[0].modules.parameters()]
    torch.manual_seed(0)
    learners_epoch(*protocol, client.train_idx, batches)
    torch.manual_seed(0)
    bare_joint_epoch(*joint, client.train_idx, batches)
    trained = [protocol[0], *protocol[1]]
    assert not all(torch.equal(a, b) for a, b in zip(before, protocol[0].modules.parameters(), strict=True))
    for x, y in zip(trained, [joint[0], *joint[1]], strict=True):
        for (name, a), b in zip(x.modules.state_dict().items(), y.modules.state_dict().values(), strict=True):
            assert torch.equal(a, b), name
