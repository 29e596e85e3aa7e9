"""The trained uncertainty methods of the OoD track (issue 13, §7): DUQ's kernel, centroid
update and gradient penalty against hand computation, SDE-Net's Euler–Maruyama step against
the formula, the belief-matching loss against ``torch.distributions``, MC dropout's seeded
inference, and the deep ensemble's reuse of cached members."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from benchmark.dataset import DatasetInfo
from benchmark.device import select_device
from benchmark.hparams import parse_assignments
from benchmark.method import HP, METHODS
from benchmark.runner import Runner, resolve_hparams
from benchmark.store import Store
from benchmark.tracks.uncertainty import (
    SDENet,
    belief_matching_loss,
    clip_each_tensor_,
    dirichlet_kl,
    ema_centroid_update,
    euler_maruyama_step,
    gradient_penalty,
    prob_score,
    rbf_kernel,
)
from benchmark.training import Batch, Trainer

from conftest import tiny_settings


def tiny(**extra: object) -> dict[str, object]:
    settings = parse_assignments(tiny_settings("digits-ood"))
    settings.update(extra)
    return settings


def runner(tmp_path: Path) -> Runner:
    return Runner(Store(tmp_path / "results"), select_device("cpu"), progress=False)


def method(name: str, **hp: object):
    """An instance of method ``name`` on a 1×8×8, 3-class toy dataset, model built."""
    from benchmark.dataset import DATASETS

    info = DatasetInfo("toy", "ood", 3, (1, 8, 8), (0.5,), (0.25,), torch.ones(3), (), "f")
    cls = METHODS.get(name)
    resolved = resolve_hparams(cls, DATASETS.get("digits-ood"), {"backbone": "tiny-cnn", **hp})
    m = cls(info, resolved, torch.device("cpu"))
    m.setup()
    return m


# -- scores -----------------------------------------------------------------------------------
def test_probability_scores_rank_a_confident_prediction_above_a_flat_one() -> None:
    probs = torch.tensor([[0.9, 0.05, 0.05], [1 / 3, 1 / 3, 1 / 3]])
    for kind in ("msp", "entropy"):
        score = prob_score(probs, kind)
        assert score[0] > score[1], kind
    assert prob_score(probs, "entropy")[1] == pytest.approx(-math.log(3), abs=1e-6)


# -- DUQ --------------------------------------------------------------------------------------
def test_rbf_kernel_is_the_mean_squared_distance_over_embedding_dims() -> None:
    z = torch.tensor([[[1.0, 0.0], [3.0, 0.0]]])  # (B=1, n=2, C=2)
    centroids = torch.tensor([[0.0, 0.0], [1.0, 0.0]])  # (n=2, C=2)
    k = rbf_kernel(z, centroids, 1.0)
    # class 0: ((1-0)² + (3-1)²)/2 = 2.5 -> exp(-2.5/2); class 1 sits on its centroid -> 1
    assert torch.allclose(k, torch.tensor([[math.exp(-1.25), 1.0]]))
    assert rbf_kernel(z, centroids, 0.5)[0, 0] == pytest.approx(math.exp(-2.5 / 0.5))


def test_centroid_ema_update_matches_hand_computation() -> None:
    counts = torch.tensor([12.0, 12.0])
    sums = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # (n=2, C=2)
    z = torch.tensor(
        [
            [[1.0, 10.0], [2.0, 20.0]],  # sample 0, class 0
            [[3.0, 30.0], [4.0, 40.0]],  # sample 1, class 0
            [[5.0, 50.0], [6.0, 60.0]],  # sample 2, class 1
        ]
    )
    onehot = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    new_counts, new_sums = ema_centroid_update(counts, sums, z, onehot, 0.9)
    assert torch.allclose(new_counts, torch.tensor([0.9 * 12 + 0.1 * 2, 0.9 * 12 + 0.1 * 1]))
    # class 0 sums its samples' class-0 embeddings (1+3, 2+4); class 1 takes sample 2's (50, 60)
    expected = torch.tensor(
        [[0.9 * 1 + 0.1 * 4, 0.9 * 2 + 0.1 * 50], [0.9 * 3 + 0.1 * 6, 0.9 * 4 + 0.1 * 60]]
    )
    assert torch.allclose(new_sums, expected)
    assert torch.equal(counts, torch.tensor([12.0, 12.0]))  # inputs untouched


def test_gradient_penalty_matches_hand_computation_and_is_differentiable() -> None:
    # Σ_c K_c(x) = Σ_j x_j² per sample: gradient 2x, norms 1 and 2 -> penalty mean(0, 1) = 0.5
    x = torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.0, 1.0]], requires_grad=True)
    gp = gradient_penalty(x, (x**2).sum(dim=1))
    assert gp.item() == pytest.approx(0.5)
    (grad,) = torch.autograd.grad(gp, x)
    # d/dx_i of (1/B)(2‖x_i‖ − 1)² = (1/B)·2(2‖x_i‖ − 1)·2x_i/‖x_i‖
    assert torch.allclose(grad, torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 2.0]]))
    linear = torch.tensor([[3.0, 4.0, 0.0]])
    y = torch.zeros(2, 3, requires_grad=True)
    assert gradient_penalty(y, (y * linear).sum(1)).item() == pytest.approx(16.0)  # (5 − 1)²


def test_duq_step_updates_centroids_in_eval_mode_on_the_same_batch() -> None:
    torch.manual_seed(0)
    duq = method("duq", centroid_size=4, gamma=0.9, lr=0.01)
    head = duq.model.head
    counts0, sums0 = head.counts.clone(), head.sums.clone()
    x, y = torch.randn(6, 1, 8, 8), torch.tensor([0, 0, 1, 1, 2, 0])
    batch = Batch(x, y, {}, torch.arange(6), 0, 0)
    duq.model.train()
    loss = duq.train_step(batch, duq.optimizers(), Trainer(torch.device("cpu"), progress=False))
    assert math.isfinite(float(loss)) and duq.model.training  # back in training mode
    duq.model.eval()  # the update used BN's running statistics, not the batch's
    with torch.no_grad():
        z = head.embed(duq.model.backbone(x))
    onehot = F.one_hot(y, 3).float()
    counts, sums = ema_centroid_update(counts0, sums0, z, onehot, 0.9)
    assert torch.allclose(head.counts, counts) and torch.allclose(head.sums, sums, atol=1e-5)


def test_duq_scores_are_kernel_values_and_probabilities_normalised() -> None:
    torch.manual_seed(0)
    duq = method("duq", centroid_size=4)
    duq.model.eval()
    with torch.no_grad():
        x = torch.randn(5, 1, 8, 8)
        out = duq.predict_batch(x)
    assert torch.allclose(out.probs.sum(1), torch.ones(5))
    assert torch.allclose(out.ood_score.exp(), kernel_of(duq, x).max(1).values, rtol=1e-5)
    assert torch.allclose(out.probs, kernel_of(duq, x) / kernel_of(duq, x).sum(1, keepdim=True))
    assert torch.equal(out.preds, out.logits.argmax(1))


def kernel_of(duq, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return duq.model(x).float()


# -- SDE-Net ----------------------------------------------------------------------------------
def test_euler_maruyama_step_matches_the_formula() -> None:
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(2, 3, 4, 4, generator=gen)
    noise = torch.randn(2, 3, 4, 4, generator=gen)
    g = torch.tensor([[0.2], [0.7]])

    def drift(t: float, s: torch.Tensor) -> torch.Tensor:
        return t * s + 1.0

    out = euler_maruyama_step(h, 2.0, 0.5, drift, g, 20.0, noise)
    for i in range(2):  # per sample, written out: h + f(h, t)·Δt + σ·g_i·√Δt·ε
        expected = h[i] + (2.0 * h[i] + 1.0) * 0.5 + 20.0 * g[i, 0] * math.sqrt(0.5) * noise[i]
        assert torch.allclose(out[i], expected, atol=1e-6)


def test_sde_net_solver_is_euler_on_the_drift_without_noise_and_seeded_with_it() -> None:
    torch.manual_seed(0)
    net = SDENet(1, 3, width=4, layer_depth=3).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        h0 = net.downsample(x)
        assert h0.shape == (2, 4, 6, 6)  # 28 -> 26 -> 13 -> 6
        g = net.diffusion(h0)
        h = h0
        for i in range(3):
            h = h + net.drift(i * 2.0, h) * 2.0  # T = 6, N = 3: Δt = 2, t_i = 2i
        assert torch.allclose(net.solve(h0, g, 0.0, None), h, atol=1e-5)
        a = net.solve(h0, g, 5.0, torch.Generator().manual_seed(1))
        b = net.solve(h0, g, 5.0, torch.Generator().manual_seed(1))
        c = net.solve(h0, g, 5.0, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert ((g > 0) & (g < 1)).all()


def test_sde_net_diffusion_step_trains_only_the_diffusion_net() -> None:
    torch.manual_seed(0)
    sde = method("sde-net", width=4, layer_depth=2)
    before = {k: v.clone() for k, v in sde.model.state_dict().items()}
    batch = Batch(torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0]), {}, torch.arange(4), 0, 0)
    sde.model.train()
    frozen = torch.optim.SGD(sde.model.drift_parameters(), lr=0.0)  # the drift's step: lr 0
    diffusion = sde.optimizers()[1]
    sde.train_step(batch, [frozen, diffusion], Trainer(torch.device("cpu"), progress=False))
    changed = {k for k, v in sde.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("diffusion.") for k in changed), changed


def _sde_step(epoch: int, noise_seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Drift and diffusion parameters after one training step of a fixed toy SDE-Net at
    ``epoch``, with the global RNG (the training noise) seeded by ``noise_seed``."""
    torch.manual_seed(0)
    sde = method("sde-net", width=4, layer_depth=2, sigma_train=20.0, sigma_warmup=2)
    x = torch.randn(4, 1, 8, 8)
    batch = Batch(x, torch.tensor([0, 1, 2, 0]), {}, torch.arange(4), epoch, 0)
    sde.model.train()
    torch.manual_seed(noise_seed)
    sde.train_step(batch, sde.optimizers(), Trainer(torch.device("cpu"), progress=False))
    drift = [p.detach().clone() for p in sde.model.drift_parameters()]
    return drift, [p.detach().clone() for p in sde.model.diffusion.parameters()]


def test_sde_net_drift_trains_without_diffusion_noise_during_the_warmup() -> None:
    """Epochs < ``sigma_warmup``: the drift's CE pass has σ_max = 0, so its step does not
    depend on the noise draw; from ``sigma_warmup`` on it does (σ_max = ``sigma_train``)."""
    warm_a, diff_a = _sde_step(epoch=1, noise_seed=1)
    warm_b, diff_b = _sde_step(epoch=1, noise_seed=2)
    assert all(torch.equal(a, b) for a, b in zip(warm_a, warm_b, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(diff_a, diff_b, strict=True))  # x̃ noise
    late_a, _ = _sde_step(epoch=2, noise_seed=1)
    late_b, _ = _sde_step(epoch=2, noise_seed=2)
    assert not all(torch.equal(a, b) for a, b in zip(late_a, late_b, strict=True))
    sde = method("sde-net")
    assert [sde.train_sigma(e) for e in (0, 2, 3)] == [0.0, 0.0, 20.0]  # default warm-up 3


# -- belief matching --------------------------------------------------------------------------
def test_belief_matching_loss_matches_torch_distributions() -> None:
    D = torch.distributions
    torch.manual_seed(0)
    logits = torch.randn(4, 5, dtype=torch.float64)
    y = torch.tensor([0, 3, 4, 1])
    alpha, prior, coeff = logits.exp(), 1.0, 0.3
    full_kl = D.kl_divergence(D.Dirichlet(alpha), D.Dirichlet(torch.full_like(alpha, prior)))
    constant = -math.lgamma(5 * prior) + 5 * math.lgamma(prior)  # what the paper's code omits
    assert torch.allclose(dirichlet_kl(alpha, prior), full_kl - constant, atol=1e-9)
    # E_Dir(α)[log π_y] by Monte Carlo
    samples = D.Dirichlet(alpha).sample((200_000,)).clamp_min(1e-300)
    ell = samples.log().gather(2, y.view(1, -1, 1).expand(len(samples), -1, 1)).mean(0)
    expected = (coeff * (full_kl - constant) - ell.squeeze(1)).mean()
    got = belief_matching_loss(logits.float(), y, prior, coeff)
    assert got.item() == pytest.approx(expected.item(), abs=0.02)
    # coeff 0: the expected log-likelihood alone, exactly ψ(α_y) − ψ(α₀)
    exact = (torch.digamma(alpha[torch.arange(4), y]) - torch.digamma(alpha.sum(1))).mean()
    assert belief_matching_loss(logits, y, prior, 0.0).item() == pytest.approx(-exact.item())


def test_belief_matching_loss_is_finite_for_extreme_logits() -> None:
    class Fixed(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # overflow and underflow of exp
            return torch.tensor([[100.0, -200.0, 0.0], [95.0, 90.0, -120.0]]).expand(len(x), 3)

    bm = method("belief-matching")
    bm.model = Fixed()
    batch = Batch(torch.zeros(2, 1, 8, 8), torch.tensor([0, 2]), {}, torch.arange(2), 0, 0)
    loss = bm.loss(batch)
    assert torch.isfinite(loss), loss
    # inside the clamp the loss is the plain ELBO
    bm.model = torch.nn.Linear(64, 3)
    x = torch.randn(2, 1, 8, 8)
    plain = belief_matching_loss(bm.model(x.flatten(1)), batch.y, 1.0, 0.01)
    bm.model = torch.nn.Sequential(torch.nn.Flatten(), bm.model)
    assert bm.loss(Batch(x, batch.y, {}, torch.arange(2), 0, 0)).item() == pytest.approx(
        plain.item()
    )


def test_each_tensor_is_clipped_separately() -> None:
    a, b = torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)
    a.grad, b.grad = torch.tensor([0.0, 3.0, 4.0]), torch.tensor([0.3, 0.4])
    clip_each_tensor_([a, b], 1.0)
    assert a.grad.norm().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(b.grad, torch.tensor([0.3, 0.4]))  # under the bound: untouched
    assert torch.allclose(a.grad, torch.tensor([0.0, 0.6, 0.8]), atol=1e-5)


# -- MC dropout -------------------------------------------------------------------------------
def test_mc_dropout_masks_come_from_the_generator() -> None:
    torch.manual_seed(0)
    mcd = method("mc-dropout", p=0.5, samples=4)
    mcd.model.eval()
    x = torch.randn(5, 1, 8, 8)
    outs = []
    for seed in (1, 1, 2):
        mcd.rng = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            outs.append(mcd.predict_batch(x).probs)
    assert torch.equal(outs[0], outs[1]) and not torch.allclose(outs[0], outs[2])
    assert torch.allclose(outs[0].sum(1), torch.ones(5))


def test_mc_dropout_run_is_deterministic_from_a_cached_checkpoint(tmp_path) -> None:
    run = runner(tmp_path)
    fresh, _ = run.run("mc-dropout", "digits-ood", 0, tiny(), predictions=True)
    first = run.store.load_predictions(fresh.run_id)
    run.store.path(fresh.run_id).unlink()  # forget the record, keep the checkpoint
    again, _ = run.run("mc-dropout", "digits-ood", 0, tiny(), predictions=True)
    assert again.timings["checkpoint"] == "cached"
    second = run.store.load_predictions(again.run_id)
    for split in ("test", "ood_near", "ood_far"):
        assert torch.equal(first[split].probs, second[split].probs), split
    assert again.metrics == fresh.metrics


# -- deep ensemble ----------------------------------------------------------------------------
def test_deep_ensemble_reuses_cached_members_without_training(tmp_path, monkeypatch) -> None:
    run = runner(tmp_path)
    settings = tiny()
    members = [run.run("erm", "digits-ood", s, settings)[0] for s in (1, 2)]  # seed 1, M=2
    fits: list[str] = []
    original = Trainer.fit
    monkeypatch.setattr(Trainer, "fit", lambda self, m, split: fits.append(m.name))
    ens, _ = run.run("deep-ensemble", "digits-ood", 1, {**settings, "members": 2})
    assert fits == []  # both members came from their checkpoints
    monkeypatch.setattr(Trainer, "fit", original)
    # the ensemble's mean softmax of two members differs from either member alone
    assert all(math.isfinite(v) for v in ens.metrics["test"].values())
    assert ens.metrics["test"] != members[0].metrics["test"]
    assert _ens(3, 1).base_seeds(2) == [2, 3, 4]
    assert _ens(3, 1000).base_seeds(2) == [2, 1002, 2002]  # disjoint across run seeds


def _ens(m: int, stride: int):
    """A deep-ensemble instance with M = ``m`` and ``seed_stride`` (all ``base_seeds`` reads)."""
    obj = object.__new__(METHODS.get("deep-ensemble"))
    obj.hp = HP(members=m, seed_stride=stride)
    return obj
