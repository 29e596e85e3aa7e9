"""The causal-norm classifier, its moving average and TDE logits on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.errors import BenchError
from benchmark.tracks.longtail import CausalNormClassifier, NormedLinear


def head(gamma: float, tau: float = 2.0) -> CausalNormClassifier:
    """D = 4, K = 2, C = 2, τ/K = 1 (with τ = 2)."""
    h = CausalNormClassifier(4, 2, num_head=2, tau=tau, gamma=gamma, mu=0.9)
    with torch.no_grad():
        h.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 2.0], [0.0, 3.0, 4.0, 0.0]]))
        h.embed.copy_(torch.tensor([0.0, 2.0, 1.0, 1.0]))
    return h.eval()


X = torch.tensor([[3.0, 4.0, 1.0, 0.0]])  # heads [0.6, 0.8] and [1, 0] after normalisation


def test_causal_norm_logits_by_hand() -> None:
    # γ = 0: ŵ heads are unit vectors; y0 = ⟨[.6,.8],[1,0]⟩ + ⟨[1,0],[0,1]⟩ = 0.6,
    # y1 = ⟨[.6,.8],[0,1]⟩ + ⟨[1,0],[1,0]⟩ = 1.8
    assert torch.allclose(head(0.0)(X), torch.tensor([[0.6, 1.8]]))
    # γ = 1: ŵ = w / (‖w‖ + 1): class 0 heads [.5, 0], [0, 2/3]; class 1 heads [0, .75], [.8, 0]
    assert torch.allclose(head(1.0)(X), torch.tensor([[0.3, 1.4]]))
    # τ scales linearly: τ = 16 with K = 2 multiplies by 8
    assert torch.allclose(head(0.0, tau=16.0)(X), torch.tensor([[4.8, 14.4]]))


def test_tde_logits_by_hand() -> None:
    h = head(0.0)
    # d̂ heads: [0, 1] and [1, 1]/√2; cos = 0.8 and 1/√2.
    # class 0: 0.6 − α·(0.8·0 + (1/√2)·(1/√2)) = 0.6 − 0.5α
    # class 1: 1.8 − α·(0.8·1 + (1/√2)·(1/√2)) = 1.8 − 1.3α
    for alpha in (0.0, 1.0, 2.5):
        expected = torch.tensor([[0.6 - 0.5 * alpha, 1.8 - 1.3 * alpha]])
        assert torch.allclose(h.tde_logits(X, alpha), expected, atol=1e-6)
    cos = h.cosine_to_embed(X)
    assert torch.allclose(cos, torch.tensor([[0.8, 1 / math.sqrt(2)]]))


def test_tde_equals_plain_minus_effect_per_head() -> None:
    """TDE logit = plain − α·cos_k·(τ/K)·⟨d̂_k, ŵ_{c,k}⟩ summed over heads, on random inputs."""
    torch.manual_seed(0)
    k, dim, classes, tau, alpha = 4, 16, 5, 16.0, 1.7
    h = CausalNormClassifier(dim, classes, num_head=k, tau=tau, gamma=1 / 32).eval()
    with torch.no_grad():
        h.embed.copy_(torch.randn(dim))
    x = torch.randn(6, dim)
    plain = h(x)
    effect = torch.zeros(6, classes)
    hd = dim // k
    for i in range(6):
        for c in range(classes):
            for j in range(k):
                xs, ds = x[i, j * hd : (j + 1) * hd], h.embed[j * hd : (j + 1) * hd]
                w = h.weight[c, j * hd : (j + 1) * hd]
                w_hat = w / (w.norm() + 1 / 32)
                d_hat = ds / ds.norm()
                cos = torch.dot(xs / xs.norm(), d_hat)
                effect[i, c] += alpha * cos * (tau / k) * torch.dot(d_hat, w_hat)
    assert torch.allclose(h.tde_logits(x, alpha), plain - effect, atol=1e-5)
    assert torch.allclose(h.tde_logits(x, 0.0), plain)


def test_moving_average_has_no_one_minus_mu_factor() -> None:
    h = CausalNormClassifier(4, 3, num_head=2, mu=0.9)
    a, b = torch.randn(5, 4), torch.randn(7, 4)
    h.train()
    h(a)
    assert torch.allclose(h.embed, a.mean(0))
    h(b)
    assert torch.allclose(h.embed, 0.9 * a.mean(0) + b.mean(0))
    h.eval()
    h(torch.randn(3, 4))  # evaluation never moves it
    assert torch.allclose(h.embed, 0.9 * a.mean(0) + b.mean(0))
    h.set_momentum(0.5)
    h.train()
    h(a)
    assert torch.allclose(h.embed, 0.5 * (0.9 * a.mean(0) + b.mean(0)) + a.mean(0))
    assert "embed" in h.state_dict() and "mu" in h.state_dict()  # saved with the checkpoint


def test_causal_norm_init_and_errors() -> None:
    h = CausalNormClassifier(64, 10)
    assert h.weight.abs().max() <= 1 / 8 and h.weight.shape == (10, 64)
    assert not any("bias" in n for n, _ in h.named_parameters())
    with pytest.raises(BenchError, match="num_head"):
        CausalNormClassifier(10, 3, num_head=3)


def test_normed_linear_is_cosine() -> None:
    h = NormedLinear(3, 2)
    with torch.no_grad():
        h.weight.copy_(torch.tensor([[2.0, 0.0, 0.0], [1.0, 1.0, 0.0]]))
    out = h(torch.tensor([[5.0, 0.0, 0.0]]))
    assert torch.allclose(out, torch.tensor([[1.0, 1 / math.sqrt(2)]]))
