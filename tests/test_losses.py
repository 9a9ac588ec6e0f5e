import math

import torch
import torch.nn.functional as F

from apfed.config import make_config
from apfed.learner import PassiveLearner
from apfed.losses import distillation, nt_xent


def test_nt_xent_matches_hand_computation():
    # Two samples, 2-D: after L2-normalisation the vectors are unit axes, so all cosines are 0 or 1.
    z_a = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    z_p = torch.tensor([[1.0, 0.0], [0.0, 5.0]])
    t = 0.5
    # Row 0 (a0): similarities to a1, p0, p1 are 0, 1, 0 (self masked); positive is p0.
    row = -math.log(math.exp(1 / t) / (math.exp(0) + math.exp(1 / t) + math.exp(0)))
    assert torch.isclose(nt_xent(z_a, z_p, t), torch.tensor(row), atol=1e-6)  # all 4 rows are alike


def test_nt_xent_asymmetric_example():
    z_a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    z_p = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    n = F.normalize(torch.cat([z_a, z_p]), dim=1)
    sim = (n @ n.T).tolist()
    pos = {0: 2, 1: 3, 2: 0, 3: 1}
    loss = 0.0
    for i in range(4):
        den = sum(math.exp(sim[i][j]) for j in range(4) if j != i)
        loss += -math.log(math.exp(sim[i][pos[i]]) / den)
    assert abs(nt_xent(z_a, z_p, 1.0).item() - loss / 4) < 1e-6


def test_nt_xent_gradcheck():
    torch.manual_seed(0)
    a = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    p = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    for t in (0.7, 1.0):  # 1.0 skips the division
        assert torch.autograd.gradcheck(lambda x, y, t=t: nt_xent(x, y, t), (a, p))


def test_nt_xent_trains_after_a_first_call_under_inference_mode():
    # the positives' index is kept per batch size on the CPU: one first made under inference mode must still be
    # a tensor that autograd can save
    a, p = torch.randn(7, 4), torch.randn(7, 4)
    with torch.inference_mode():
        value = nt_xent(a, p)
    a.requires_grad_(True)
    loss = nt_xent(a, p)
    loss.backward()
    assert torch.equal(loss.detach(), value) and a.grad is not None and torch.isfinite(a.grad).all()


def _passive(loss, spec, active_shape):
    cfg = make_config("paper", method="apfed-c" if loss == "c" else "apfed-r")
    X = torch.rand(16, *spec["shape"])
    return PassiveLearner(spec, cfg, X, loss, False, active_shape, seed=1), X


def test_contrastive_gradient_returned_by_passive_equals_joint_autograd():
    spec = {"kind": "tabular", "shape": [6]}
    p, X = _passive("c", spec, (64,))
    z_a = torch.randn(8, 64, requires_grad=True)
    idx = torch.arange(8)
    joint = nt_xent(z_a, p.modules["projection"](p.modules["encoder"](X[idx])), 1.0)
    (expected,) = torch.autograd.grad(joint, z_a)  # before the passive's update
    g, _, _ = p.train_batch(idx, z_a.detach(), None, 0.0)
    assert torch.allclose(g, expected, atol=1e-6)


def test_reconstruction_gradient_returned_by_passive_equals_joint_autograd():
    spec = {"kind": "image", "shape": [1, 14, 28]}
    p, X = _passive("r", spec, (64, 10, 24))
    h_a = torch.rand(4, 64, 10, 24, requires_grad=True)
    idx = torch.tensor([3, 0, 7, 5])
    (expected,) = torch.autograd.grad(F.mse_loss(p.modules["decoder"](h_a), X[idx]), h_a)
    g, _, _ = p.train_batch(idx, h_a.detach(), None, 0.0)
    assert g.shape == h_a.shape
    assert torch.allclose(g, expected, atol=1e-7)
    assert g.abs().sum() > 0


def test_distillation_is_zero_for_identical_logits_and_positive_otherwise():
    s = torch.randn(4, 10)
    assert distillation(s, s.clone(), 4.0).abs() < 1e-6
    assert distillation(s, torch.randn(4, 10), 4.0) > 0
