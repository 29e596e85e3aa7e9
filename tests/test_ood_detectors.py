"""Post-hoc OoD detectors and calibrators (``benchmark.tracks.ood``, ``methods/{msp, odin,
energy, mahalanobis, gram, knn, react, temperature_scaling}.py``): each score's direction on a
hand-made case, Gram bounds from training data only, temperature scaling on a miscalibrated
toy, and agreement with independent computations (pytorch-ood where installed, numpy loops)
on a fixed tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.cli.perf_ood import reference_gram_fit, reference_gram_score
from benchmark.dataset import Bundle, Split
from benchmark.method import METHODS
from benchmark.tracks import ood
from benchmark.training import Trainer

CPU = torch.device("cpu")
MEAN, STD = (0.5,), (0.25,)


# -- a fixed tiny model and data -----------------------------------------------------------
def toy_bundle(seed: int = 0, n: tuple[int, int, int] = (60, 30, 20)) -> Bundle:
    """Three classes of 1×8×8 uint8 images (a bright quadrant per class), plus noise OoD."""
    g = torch.Generator().manual_seed(seed)
    splits = {}
    for name, count in zip(("train", "val", "test"), n):
        y = torch.arange(count) % 3
        x = torch.randint(0, 60, (count, 1, 8, 8), generator=g)
        for c in range(3):
            r, s = divmod(c, 2)
            x[y == c, :, 4 * r : 4 * r + 4, 4 * s : 4 * s + 4] += 150
        splits[name] = Split(x.clamp(0, 255).to(torch.uint8), y)
    noise = torch.randint(0, 256, (n[2], 1, 8, 8), generator=g).to(torch.uint8)
    splits["ood"] = Split(noise, torch.full((n[2],), -1), pair_with="test")
    return Bundle("toy", "ood", 3, splits, "1", mean=MEAN, std=STD, eval_splits=("test", "ood"))


_BASES: dict[str, object] = {}


def trained_base(bundle: Bundle):
    """A tiny-cnn erm base, seeded and briefly trained (full batch), once per bundle."""
    if bundle.fingerprint not in _BASES:
        cls = METHODS.get("erm")
        settings = {k: p.default for k, p in cls.declared().items()} | {"backbone": "tiny-cnn"}
        torch.manual_seed(0)
        base = cls(bundle.info(), settings, CPU)
        base.setup()
        opt = torch.optim.Adam(base.model.parameters(), lr=1e-2)
        x = inputs(bundle, "train")
        with torch.enable_grad():
            for _ in range(30):
                opt.zero_grad()
                F.cross_entropy(base.model(x), bundle.splits["train"].labels).backward()
                opt.step()
        base.model.eval()
        _BASES[bundle.fingerprint] = base
    return _BASES[bundle.fingerprint]


def detector(name: str, bundle: Bundle, **hp: object) -> ood.PostHocDetector:
    """``name`` on the fixed tiny base, calibrated on the bundle's train / val splits."""
    cls = METHODS.get(name)
    settings = {k: p.default for k, p in cls.declared().items()}
    settings.update(backbone="tiny-cnn", **hp)
    method = cls(bundle.info(), settings, CPU)
    method.adopt(trained_base(bundle))
    method.calibrate(bundle, Trainer(CPU, seed=0, progress=False))
    return method


@pytest.fixture(autouse=True)
def _no_grad():
    """Inference as the runner does it (ODIN and Mahalanobis pre-processing enable gradients
    themselves)."""
    with torch.no_grad():
        yield


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return toy_bundle()


def inputs(bundle: Bundle, split: str) -> torch.Tensor:
    return Trainer(CPU, seed=0, progress=False).normalise(
        bundle.splits[split].inputs, bundle.info()
    )


# -- directions on hand-made cases ---------------------------------------------------------
def test_msp_and_energy_prefer_a_confident_logit_vector() -> None:
    z = torch.tensor([[8.0, 0.0, 0.0], [0.1, 0.0, 0.0]])
    assert ood.msp_score(z)[0] > ood.msp_score(z)[1]
    assert ood.energy_score(z)[0] > ood.energy_score(z)[1]
    # energy = T logsumexp(z/T), by hand for T = 2
    expected = 2 * np.log(np.exp(4.0) + 2.0)
    assert float(ood.energy_score(z, 2.0)[0]) == pytest.approx(expected, rel=1e-6)


def test_mahalanobis_prefers_a_point_at_a_class_mean() -> None:
    g = torch.Generator().manual_seed(0)
    h = torch.cat([torch.randn(50, 2, generator=g) + 5, torch.randn(50, 2, generator=g) - 5])
    y = torch.repeat_interleave(torch.arange(2), 50)
    gauss = ood.fit_tied_gaussian(h, y, 2)
    s = ood.mahalanobis_score(torch.tensor([[5.0, 5.0], [0.0, 40.0]]), gauss)
    assert s[0] > s[1]
    assert float(s[0]) == pytest.approx(0.0, abs=0.2)  # at (about) the class mean: −½·0


def test_knn_prefers_a_point_inside_the_bank() -> None:
    bank = ood.unit_rows(torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.98, -0.1]]))
    q = ood.unit_rows(torch.tensor([[1.0, 0.01], [-1.0, 0.0]]))
    s = ood.knn_score(q, bank, k=2)
    assert s[0] > s[1]
    assert float(s[1]) == pytest.approx(-float((q[1] - bank).norm(dim=1).sort().values[1]))


def test_gram_deviation_is_zero_inside_the_bounds_and_grows_outside() -> None:
    layer = torch.tensor([[[1.0, 2.0]], [[3.0, 4.0]]])  # (N=2, P=1, C=2)
    bounds = ood.gram_bounds(iter([([layer], torch.tensor([0, 0]))]), num_classes=2)
    inside = ood.gram_deviations([torch.tensor([[[2.0, 3.0]]])], torch.tensor([0]),
                                 torch.tensor([1.0]), bounds)  # fmt: skip
    outside = ood.gram_deviations([torch.tensor([[[6.0, 3.0]]])], torch.tensor([0]),
                                  torch.tensor([0.5]), bounds)  # fmt: skip
    assert float(inside.sum()) == 0.0
    # (6 − 3)/|3 + 1e-6| / conf 0.5 = 2
    assert float(outside.sum()) == pytest.approx(2.0, rel=1e-6)
    e = torch.tensor([1.0])
    assert ood.gram_score(inside, e) > ood.gram_score(outside, e)
    # class 1 has no training sample: it falls back to the bounds over all classes
    assert torch.equal(bounds.mins[1], bounds.mins[0])


def test_gram_rowsums_match_the_gram_matrix() -> None:
    f = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    out = ood.gram_rowsums(f, 3)
    for p in (1, 2, 3):
        fp = f.flatten(2) ** p
        rs = (fp @ fp.transpose(1, 2)).sum(2)
        torch.testing.assert_close(out[:, p - 1], rs.sign() * rs.abs() ** (1 / p))


def test_react_clips_then_takes_the_energy(bundle: Bundle) -> None:
    m = detector("react", bundle, percentile=50.0)
    x = inputs(bundle, "test")
    h = m.base_outputs(x).features
    expected = torch.logsumexp(m.model.head(h.clamp(max=m.clip_)), dim=1)
    torch.testing.assert_close(m.predict_batch(x).ood_score, expected)
    val_h = m.base_outputs(inputs(bundle, "val")).features.detach()
    assert m.clip_ == pytest.approx(float(np.percentile(val_h.numpy(), 50.0)), rel=1e-6)


def test_odin_step_raises_the_tempered_max_softmax(bundle: Bundle) -> None:
    m = detector("odin", bundle)
    x = inputs(bundle, "test")
    logits = lambda v: m.base_outputs(v).logits  # noqa: E731
    x_t = ood.odin_inputs(logits, x, 1000.0, 0.01, STD)
    assert (ood.msp_score(logits(x_t) / 1000) >= ood.msp_score(logits(x) / 1000) - 1e-7).all()
    assert torch.allclose((x_t - x).abs(), torch.full_like(x, 0.01 / STD[0]))


# -- every detector: higher = ID on the toy pair ------------------------------------------
@pytest.mark.parametrize(
    "name", ["msp", "energy", "odin", "mahalanobis", "gram", "knn", "react", "temperature-scaling"]
)
def test_detector_scores_id_above_noise(bundle: Bundle, name: str) -> None:
    hp = {"k": 5} if name == "knn" else {}
    m = detector(name, bundle, **hp)
    with torch.no_grad():
        s_id = m.predict_batch(inputs(bundle, "test")).ood_score
        s_ood = m.predict_batch(inputs(bundle, "ood")).ood_score
    auroc = (s_id[:, None] > s_ood[None]).double().mean() + 0.5 * (
        s_id[:, None] == s_ood[None]
    ).double().mean()
    assert s_id.shape == (20,) and torch.isfinite(s_id).all()
    # a sign error shows up as AUROC ≈ 1 − the true value
    assert auroc > 0.5, (name, float(auroc))


# -- Gram bounds come from the training split only -----------------------------------------
def test_gram_bounds_use_only_the_training_split(bundle: Bundle) -> None:
    m = detector("gram", bundle, powers=3)
    changed = toy_bundle()
    for name in ("test", "ood"):  # wild test and OoD images change nothing
        s = changed.splits[name]
        changed.splits[name] = Split(torch.full_like(s.inputs, 255), s.labels, s.attrs, s.pair_with)
    m2 = detector("gram", changed, powers=3)
    torch.testing.assert_close(m.bounds_.mins, m2.bounds_.mins)
    torch.testing.assert_close(m.bounds_.maxs, m2.bounds_.maxs)
    torch.testing.assert_close(m.bounds_.expected, m2.bounds_.expected)
    # and they are the per-predicted-class min / max over the training features
    with torch.no_grad():
        layers, out = m._layers(inputs(bundle, "train"))
    v = torch.cat([t.flatten(1) for t in layers], 1)
    pred = out.logits.argmax(1)
    for c in pred.unique():
        torch.testing.assert_close(m.bounds_.mins[c], v[pred == c].min(0).values)
        torch.testing.assert_close(m.bounds_.maxs[c], v[pred == c].max(0).values)


def test_gram_agrees_with_a_reference_loop(bundle: Bundle) -> None:
    """Bounds, val normalisation and scores against the per-layer, per-order numpy loop of
    ``bench perf ood`` (the Gram paper's code structure)."""
    m = detector("gram", bundle, powers=4)
    taps = [mod for _, mod in ood.gram_tap_modules(m.model)]

    def record(split: str) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        maps: list[torch.Tensor] = []
        with torch.no_grad(), ood.recording(taps, lambda o: o.detach().double().clone()) as st:
            logits = m.base_outputs(inputs(bundle, split)).logits
            maps = list(st)
        probs = torch.softmax(logits.float(), 1)
        return [t.numpy() for t in maps], probs.argmax(1).numpy(), probs.max(1).values.numpy()

    ref = reference_gram_fit(record("train"), record("val"), 4, 3)
    expected = reference_gram_score(record("test"), ref, 4)
    with torch.no_grad():
        got = m.predict_batch(inputs(bundle, "test")).ood_score.double().numpy()
    np.testing.assert_allclose(got, expected.astype(np.float32), rtol=1e-5)


# -- temperature scaling ---------------------------------------------------------------------
def test_temperature_scaling_lowers_nll_on_an_overconfident_toy() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (2000,), generator=g)
    calibrated = torch.randn(2000, 5, generator=g) + 1.5 * F.one_hot(y, 5)
    labels = torch.distributions.Categorical(logits=calibrated).sample()  # calibrated labels
    overconfident = 4.0 * calibrated
    t = ood.fit_temperature(overconfident, labels)
    before = F.cross_entropy(overconfident, labels)
    after = F.cross_entropy(overconfident / t, labels)
    assert after < before - 0.1
    assert t == pytest.approx(4.0, rel=0.15)


def test_temperature_scaling_keeps_predictions_and_fits_on_val(bundle: Bundle) -> None:
    m = detector("temperature-scaling", bundle)
    x = inputs(bundle, "test")
    out = m.predict_batch(x)
    base = m.base_outputs(x).logits
    assert torch.equal(out.logits.argmax(1), base.argmax(1))
    val_logits = m.base_outputs(inputs(bundle, "val")).logits
    t = ood.fit_temperature(val_logits, bundle.splits["val"].labels)
    assert m.temperature_ == pytest.approx(t)
    assert m.summary() == {"temperature": m.temperature_}


def test_a_detector_without_val_says_so() -> None:
    b = toy_bundle()
    del b.splits["val"]
    with pytest.raises(Exception, match="'val' split"):
        detector("temperature-scaling", b)


# -- agreement with an independent implementation on a fixed tiny model --------------------
class _Wrapped(nn.Module):
    def __init__(self, f) -> None:
        super().__init__()
        self.f = f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(x)


def test_msp_energy_odin_agree_with_pytorch_ood(bundle: Bundle) -> None:
    pood = pytest.importorskip("pytorch_ood.detector")
    x = inputs(bundle, "test")
    for name, ref in (
        ("msp", lambda m: -pood.MaxSoftmax.score(m.base_outputs(x).logits)),
        ("energy", lambda m: -pood.EnergyBased.score(m.base_outputs(x).logits)),
    ):
        m = detector(name, bundle)
        torch.testing.assert_close(m.predict_batch(x).ood_score, ref(m).float())
    m = detector("odin", bundle)
    model = _Wrapped(lambda v: m.base_outputs(v).logits)
    x_hat = pood.odin_preprocessing(model, x, eps=0.0014, temperature=1000.0, norm_std=list(STD))
    expected = (model(x_hat) / 1000.0).softmax(1).max(1).values
    torch.testing.assert_close(m.predict_batch(x).ood_score, expected)


def test_mahalanobis_and_knn_agree_with_pytorch_ood(bundle: Bundle) -> None:
    pood = pytest.importorskip("pytorch_ood.detector")
    x = inputs(bundle, "test")
    m = detector("mahalanobis", bundle)
    train_h = m.base_outputs(inputs(bundle, "train")).features.detach().double()
    y = bundle.splits["train"].labels
    ref = pood.Mahalanobis(None).fit_features(train_h.float(), y)
    h = m.base_outputs(x).features.detach().double()
    # pytorch-ood's covariance is the within-class scatter without the 1/N (plus a 1e-6
    # ridge, inverted in float32): its distances are ours / N up to that ridge, with the
    # opposite sign convention (outlier score); the numpy test below holds ours to 1e-4
    expected = -len(train_h) * ref.predict_features(h.float()).double()
    got = m.predict_batch(x).ood_score.double()
    torch.testing.assert_close(got, expected, rtol=2e-2, atol=1e-3)
    assert torch.equal(got.argsort(), expected.argsort())
    k = detector("knn", bundle, k=5)
    ref_knn = pood.KNN(None, k=5).fit_features(train_h.float(), y)
    expected = -ref_knn.predict_features(h.float())
    torch.testing.assert_close(k.predict_batch(x).ood_score.double(), expected.double(),
                               rtol=1e-5, atol=1e-5)  # fmt: skip


def test_mahalanobis_and_knn_agree_with_numpy(bundle: Bundle) -> None:
    """Without pytorch-ood: the textbook formulas in numpy float64."""
    m = detector("mahalanobis", bundle)
    x = inputs(bundle, "test")
    hn = m.base_outputs(inputs(bundle, "train")).features.detach().double().numpy()
    y = bundle.splits["train"].labels.numpy()
    means = np.stack([hn[y == c].mean(0) for c in range(3)])
    centred = hn - means[y]
    cov = np.cov(centred.T, bias=True)
    prec = np.linalg.pinv(cov)
    q = m.base_outputs(x).features.detach().double().numpy()
    d = np.stack([np.einsum("nd,de,ne->n", q - mu, prec, q - mu) for mu in means], 1)
    np.testing.assert_allclose(m.predict_batch(x).ood_score.numpy(), -0.5 * d.min(1), rtol=1e-4)
    k = detector("knn", bundle, k=4)
    bank = hn / (np.linalg.norm(hn, axis=1, keepdims=True) + 1e-10)
    qn = q / (np.linalg.norm(q, axis=1, keepdims=True) + 1e-10)
    dist = np.sort(np.linalg.norm(qn[:, None] - bank[None], axis=2), axis=1)[:, 3]
    np.testing.assert_allclose(k.predict_batch(x).ood_score.numpy(), -dist, rtol=1e-4, atol=1e-5)


def test_knn_refuses_k_larger_than_the_bank() -> None:
    with pytest.raises(Exception, match="k=9"):
        ood.knn_score(torch.zeros(1, 2), torch.zeros(3, 2), 9)


def test_perf_reference_mahalanobis_agrees_with_ours() -> None:
    from benchmark.cli.perf_ood import ours_mahalanobis, reference_mahalanobis

    g = torch.Generator().manual_seed(3)
    h, q = torch.randn(300, 6, generator=g).double(), torch.randn(40, 6, generator=g).double()
    y = torch.arange(300) % 4
    ours = ours_mahalanobis(h, y, q, 4)
    ref = reference_mahalanobis(h.numpy(), y.numpy(), q.numpy(), 4)
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-9)


def test_ood_pair_protocol_holds_out_a_seeded_val() -> None:
    from benchmark.errors import BenchError

    b = toy_bundle()
    paired = ood.with_val(b, 10, 0, "ood_far", mean=(0.3,), std=(0.2,))
    assert paired.eval_splits == ("test", "ood_far") and paired.mean == (0.3,)
    assert len(paired.splits["train"]) == 50 and len(paired.splits["val"]) == 10
    assert paired.splits["ood_far"].pair_with == "test"
    again = ood.with_val(b, 10, 0, "ood_far")
    assert torch.equal(again.splits["val"].inputs, paired.splits["val"].inputs)
    other = ood.with_val(b, 10, 1, "ood_far")
    assert not torch.equal(other.splits["val"].inputs, paired.splits["val"].inputs)
    with pytest.raises(BenchError, match="n_val=60"):
        ood.with_val(b, 60, 0, "ood_far")


def test_temperature_scaling_checks_convergence_and_falls_back_to_bisection() -> None:
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 4, (500,), generator=g)
    z = 3.0 * (torch.randn(500, 4, generator=g) + 1.2 * F.one_hot(y, 4))
    converged = ood.fit_temperature(z, y)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        fallback = ood.fit_temperature(z, y, max_iter=1)  # one L-BFGS iteration cannot converge
    assert fallback == pytest.approx(converged, rel=1e-3)
    # the fitted T is a stationary point of the NLL in T
    with torch.enable_grad():
        t = torch.tensor(fallback, dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(F.cross_entropy(z.double() / t, y), t)
    assert abs(grad.item()) < 1e-6


def test_temperature_scaling_warns_when_the_nll_has_no_finite_minimum() -> None:
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    separated = 5.0 * F.one_hot(y, 3).float()  # NLL falls for ever as T → 0
    with pytest.warns(RuntimeWarning, match="no minimum"):
        assert ood.fit_temperature(separated, y) == 1.0
