"""Losses of the two roles: task, NT-Xent (APFed-C), reconstruction (APFed-R) and distillation."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


def nt_xent(z_a: torch.Tensor, z_p: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """NT-Xent over the 2B L2-normalised vectors ``[z_a; z_p]``.

    Row i's positive is the same sample in the other view; self-pairs are masked out.
    """
    b = z_a.shape[0]
    z = F.normalize(torch.cat([z_a, z_p]), dim=1)
    sim = z @ z.t()
    if temperature != 1.0:  # x / 1.0 is x: skipping it changes no bit and saves a (2B)² pass each way
        sim = sim / temperature
    # the self-pairs in place (neither op above keeps its output for the backward pass): no (2B)² mask to build
    sim.fill_diagonal_(float("-inf"))
    return F.cross_entropy(sim, _positives(b, z.device))


def _positives(b: int, device: torch.device) -> torch.Tensor:
    """Row i's positive, i + B modulo 2B; kept once per size on the CPU (a CUDA graph replays its own kernels)."""
    if device.type != "cpu":
        return _positive_index(b, device)
    return _cpu_positives(b)


@functools.lru_cache(maxsize=16)
def _cpu_positives(b: int) -> torch.Tensor:
    with torch.inference_mode(False):  # a normal tensor even if first asked under inference mode: autograd saves it
        return _positive_index(b, torch.device("cpu"))


def _positive_index(b: int, device: torch.device) -> torch.Tensor:
    return torch.cat([torch.arange(b, 2 * b, device=device), torch.arange(0, b, device=device)])


def reconstruction(decoded: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(decoded, target)


def distillation(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton distillation: T^2 * KL(softmax(teacher/T) || softmax(student/T)); the teacher is not updated."""
    t = temperature
    return F.kl_div(
        F.log_softmax(student_logits / t, dim=1),
        F.log_softmax(teacher_logits.detach() / t, dim=1),
        log_target=True,
        reduction="batchmean",
    ) * (t * t)


def regression_distillation(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """A regression's distillation: the mean squared distance of the student's outputs to the teacher's (which is
    not updated); there are no probabilities to soften, so no temperature."""
    return F.mse_loss(student, teacher.detach())
