"""apfed.optim reproduces torch.optim's updates exactly, and its state round-trips through weights-only loading."""

import io
import subprocess
import sys

import pytest
import torch

from apfed import optim

CASES = {
    "sgd": (  # on the CPU apfed's optimizers step with torch's fused kernels by default
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2, fused=True),
        lambda p: optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
    ),
    "sgd-plain": (
        lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=1e-2, fused=True),
        lambda p: optim.SGD(p, lr=0.1, weight_decay=1e-2),
    ),
    "sgd-foreach": (  # the foreach ops, as on a GPU outside CUDA graphs
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
        lambda p: optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2, fused=False),
    ),
    "adam": (
        lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-2, fused=True),
        lambda p: optim.Adam(p, lr=0.01, weight_decay=1e-2),
    ),
    "adamw": (
        lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=1e-2, fused=True),
        lambda p: optim.Adam(p, lr=0.01, weight_decay=1e-2, decoupled=True),
    ),
    "adam-foreach": (
        lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-2),
        lambda p: optim.Adam(p, lr=0.01, weight_decay=1e-2, fused=False),
    ),
    "adamw-foreach": (
        lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=1e-2),
        lambda p: optim.Adam(p, lr=0.01, weight_decay=1e-2, decoupled=True, fused=False),
    ),
}


def _net():
    return torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))


@pytest.mark.parametrize("name", list(CASES))
def test_same_updates_as_torch_optim_across_a_state_round_trip(name):
    make_torch, make_ours = CASES[name]
    torch.manual_seed(0)
    a, b = _net(), _net()
    b.load_state_dict(a.state_dict())
    oa, ob = make_torch(a.parameters()), make_ours(b.parameters())
    gen = torch.Generator().manual_seed(1)
    for step in range(12):
        x = torch.randn(8, 5, generator=gen)
        for net, opt in ((a, oa), (b, ob)):
            opt.zero_grad()
            net(x).pow(2).sum().backward()
            if step % 4 == 3:  # a parameter without a gradient is skipped, and its step count too
                net[2].bias.grad = None
            opt.step()
        if step == 5:
            buf = io.BytesIO()
            torch.save(ob.state_dict(), buf)
            buf.seek(0)
            ob = make_ours(b.parameters())
            ob.load_state_dict(torch.load(buf, weights_only=True))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_a_parameter_that_joins_late_starts_its_own_state_then(name, fused):
    # torch.optim's fused form assumes every parameter starts together; apfed's steps a parameter whose first
    # gradient comes later from a fresh momentum, as torch.optim's per-parameter form does
    make_torch = {
        "sgd": lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, weight_decay=1e-2),
        "adam": lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-2),
    }[name]
    make_ours = {
        "sgd": lambda p: optim.SGD(p, lr=0.01, momentum=0.9, weight_decay=1e-2, fused=fused),
        "adam": lambda p: optim.Adam(p, lr=0.01, weight_decay=1e-2, fused=fused),
    }[name]
    torch.manual_seed(0)
    a, b = _net(), _net()
    b.load_state_dict(a.state_dict())
    oa, ob = make_torch(a.parameters()), make_ours(b.parameters())
    gen = torch.Generator().manual_seed(1)
    for step in range(10):
        x = torch.randn(8, 5, generator=gen)
        for net, opt in ((a, oa), (b, ob)):
            opt.zero_grad()
            net(x).pow(2).sum().backward()
            if step < 3:
                net[2].bias.grad = None
            opt.step()
    assert ob.counts[-1] == 7 and ob.counts[0] == 10
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-7)


def test_state_for_other_parameters_is_refused():
    state = optim.Adam(_net().parameters(), lr=0.1).state_dict()
    with pytest.raises(ValueError):
        optim.Adam(torch.nn.Linear(2, 2).parameters(), lr=0.1).load_state_dict(state)


def test_training_imports_no_dynamo():
    # why apfed.optim exists: a ClientApp process per message must not pay torch._dynamo's import
    code = (
        "import sys, torch\n"
        "from apfed.config import make_config\n"
        "from apfed.learner import make_optimizer\n"
        "m = torch.nn.Linear(3, 3); o = make_optimizer(m.parameters(), make_config())\n"
        "m(torch.ones(1, 3)).sum().backward(); o.step()\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", list(CASES))
def test_capturable_update_matches_the_eager_one(name):
    # step_captured reads lr and bias corrections from device tensors (what a CUDA graph replays); the update
    # is the same up to float rounding, the step counts the same, with a learning rate that changes per step
    _, make_ours = CASES[name]
    torch.manual_seed(0)
    a, b = _net(), _net()
    b.load_state_dict(a.state_dict())
    oa, ob = make_ours(a.parameters()), make_ours(b.parameters())
    gen = torch.Generator().manual_seed(1)
    for step in range(10):
        x = torch.randn(8, 5, generator=gen)
        for opt in (oa, ob):
            opt.param_groups[0]["lr"] = 0.05 / (1 + step)
        for net, opt in ((a, oa), (b, ob)):
            opt.zero_grad()
            net(x).pow(2).sum().backward()
        oa.step()
        if step < 2:
            assert ob.capturable() == (step == 1)  # no buffers before the first step
            ob.step()
        else:
            assert ob.capturable()
            ob.before_replay()
            ob.step_captured()
    assert oa.counts == ob.counts
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)
