"""Each long-tail loss and weighting on a hand-computed case."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from benchmark.tracks.longtail import (
    class_balanced_indices,
    effective_number_weights,
    focal_loss,
    ldam_loss,
    ldam_margins,
    log_prior,
    logit_adjusted_loss,
)

Z = torch.tensor([[0.0, math.log(3.0)]])  # softmax = [0.25, 0.75]


def test_focal_loss_by_hand() -> None:
    y1, y0 = torch.tensor([1]), torch.tensor([0])
    assert math.isclose(focal_loss(Z, y1, 2.0), -(0.25**2) * math.log(0.75), rel_tol=1e-5)
    assert math.isclose(focal_loss(Z, y0, 2.0), -(0.75**2) * math.log(0.25), rel_tol=1e-5)
    assert math.isclose(focal_loss(Z, y0, 0.0), F.cross_entropy(Z, y0).item(), rel_tol=1e-6)
    w = torch.tensor([2.0, 0.5])
    both = focal_loss(Z.repeat(2, 1), torch.tensor([0, 1]), 1.0, w)
    expected = (2.0 * -(0.75) * math.log(0.25) + 0.5 * -(0.25) * math.log(0.75)) / 2
    assert math.isclose(both, expected, rel_tol=1e-5)


def test_effective_number_weights_by_hand() -> None:
    # β = 0.5: E_1 = 1, E_3 = (1 − 0.125)/0.5 = 1.75; w ∝ [1, 1/1.75], Σ w = C = 2
    w = effective_number_weights(torch.tensor([1, 3]), 0.5)
    assert torch.allclose(w, torch.tensor([14 / 11, 8 / 11]))
    assert torch.allclose(effective_number_weights(torch.tensor([5, 50, 500]), 0.0), torch.ones(3))
    inv = effective_number_weights(torch.tensor([10, 40]), 0.999999)  # β → 1: inverse frequency
    assert torch.allclose(inv, torch.tensor([1.6, 0.4]), atol=1e-3)


def test_balanced_softmax_and_logit_adjusted_loss_by_hand() -> None:
    counts = torch.tensor([1, 3])  # π = [0.25, 0.75]
    z, y = torch.zeros(1, 2), torch.tensor([0])
    assert math.isclose(logit_adjusted_loss(z, y, counts, 1.0), math.log(4), rel_tol=1e-6)
    # τ = 2: z + 2 log π ∝ [1/16, 9/16] -> p_0 = 0.1
    assert math.isclose(logit_adjusted_loss(z, y, counts, 2.0), math.log(10), rel_tol=1e-6)
    assert torch.allclose(log_prior(counts), torch.tensor([math.log(0.25), math.log(0.75)]))


def test_ldam_margins_and_loss_by_hand() -> None:
    m = ldam_margins(torch.tensor([16, 1]), max_margin=0.5)  # n^(-1/4) = [0.5, 1] -> [0.25, 0.5]
    assert torch.allclose(m, torch.tensor([0.25, 0.5]))
    cos = torch.tensor([[0.5, 0.5]])
    # y = 1: z = [0.5, 0.5 − 0.5] · s(=2) = [1, 0] -> CE = log(1 + e)
    loss = ldam_loss(cos, torch.tensor([1]), m, scale=2.0)
    assert math.isclose(loss, math.log(1 + math.e), rel_tol=1e-6)
    # DRW weights: PyTorch's weighted mean (Σ w_i ℓ_i / Σ w_i)
    two = ldam_loss(cos.repeat(2, 1), torch.tensor([0, 1]), m, 2.0, torch.tensor([3.0, 1.0]))
    l0 = math.log(1 + math.exp(0.5))  # y = 0: z = [0.25, 0.5]·2 = [0.5, 1]
    assert math.isclose(two, (3 * l0 + math.log(1 + math.e)) / 4, rel_tol=1e-6)


def test_class_balanced_sampling_is_balanced() -> None:
    labels = torch.tensor([0] * 90 + [1] * 9 + [2] * 1)
    gen = torch.Generator().manual_seed(0)
    idx = class_balanced_indices(labels, 30000, gen)
    freq = torch.bincount(labels[idx], minlength=3).float() / 30000
    assert torch.allclose(freq, torch.full((3,), 1 / 3), atol=0.02)
    within = torch.bincount(idx[labels[idx] == 1] - 90, minlength=9).float()
    assert within.min() > 0.7 * within.mean()  # uniform inside a class
    again = class_balanced_indices(labels, 30000, torch.Generator().manual_seed(0))
    assert torch.equal(idx, again)
