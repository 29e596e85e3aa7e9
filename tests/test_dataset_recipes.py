"""The built-in generators follow their recipes: the formulas and hand-checked properties of
biased-mnist, metanorm-synth, waterbirds-synth, objects-masks and digits-ood, and every
generator is deterministic and changes its content when any option changes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from benchmark.data import load_bundle
from benchmark.dataset import DATASETS, fingerprint
from benchmark.errors import BenchError

#: for every option of every built-in dataset, a second valid value (small sizes elsewhere);
#: a new option must be added here, so that it is proven to change the data
ALTERNATIVES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "glyph-lt": (
        {"num_classes": 5, "n_max": 10, "n_test": 2, "n_val": 1, "size": 16},
        {
            "imbalance": 2.0,
            "n_max": 8,
            "n_val": 2,
            "n_test": 3,
            "num_classes": 6,
            "size": 14,
            "seed": 1,
        },
    ),
    "colored-mnist": (
        {"per_class": [20, 2, 10]},
        {"rho": 0.8, "test_rho": 0.5, "severity": 1, "per_class": [19, 2, 10], "seed": 1},
    ),
    "biased-mnist": (
        {"per_class": [6, 3, 3], "cell": 8},
        {
            "p_bias": 0.5,
            "val_p_bias": 0.95,
            "test_p_bias": 0.9,
            "cell": 9,
            "canvases": 1,
            "per_class": [5, 3, 3],
            "seed": 1,
        },
    ),
    "metanorm-synth": ({"n": 6}, {"n": 5, "seed": 7}),
    "waterbirds-synth": (
        {"sizes": [40, 12, 12], "size": 20, "n_ood": 6, "n_shift": 6},
        {
            "p_aligned": 0.6,
            "eval_p_aligned": 0.9,
            "waterbird_fraction": 0.5,
            "sizes": [40, 12, 13],
            "size": 21,
            "n_ood": 7,
            "n_shift": 8,
            "seed": 1,
        },
    ),
    "objects-masks": (
        {"per_class": [2, 1, 1], "size": 20},
        {"per_class": [2, 1, 2], "size": 21, "seed": 1},
    ),
    "digits-ood": (
        {"per_class": [3, 1, 2], "n_near": 6, "n_far": 6},
        {"per_class": [3, 1, 3], "n_near": 7, "n_far": 8, "seed": 1},
    ),
}
BUILTIN = sorted(n for n, c in DATASETS.items() if c.builtin())


def test_every_builtin_option_is_covered() -> None:
    for name in BUILTIN:
        assert name in ALTERNATIVES, f"add {name} to ALTERNATIVES"
        assert set(ALTERNATIVES[name][1]) == set(DATASETS.get(name).options), name


@pytest.mark.parametrize("name", sorted(ALTERNATIVES))
def test_deterministic_and_every_option_changes_the_content(name: str) -> None:
    base, alternatives = ALTERNATIVES[name]
    a = load_bundle(name, base, use_cache=False)
    b = load_bundle(name, base, use_cache=False)
    assert a.fingerprint == b.fingerprint == fingerprint(b)
    for split in a.splits:
        assert torch.equal(a.splits[split].inputs, b.splits[split].inputs)
    cached = load_bundle(name, base)  # through the cache: same content
    assert load_bundle(name, base).fingerprint == cached.fingerprint == a.fingerprint
    for key, value in alternatives.items():
        other = load_bundle(name, {**base, key: value}, use_cache=False)
        assert other.fingerprint != a.fingerprint, f"{name}: option {key} changes nothing"
        assert other.options[key] == value


# -- biased-mnist --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def biased() -> Any:
    return load_bundle("biased-mnist", {"per_class": [200, 2, 150], "cell": 8})


def test_biased_mnist_factors_follow_p_bias(biased) -> None:
    from benchmark.plugins.datasets.biased_mnist import FACTORS, POSITIONS

    for split, p in (("train", 0.95), ("test", 0.1)):
        s = biased.splits[split]
        y = s.labels
        n = len(y)
        tol = 4 * math.sqrt(p * (1 - p) / n)
        towards = {"texture_color": s.attrs["texture"], "letter_color": s.attrs["letter"]}
        for factor in FACTORS:
            v = s.attrs[factor]
            if factor == "digit_position":
                hit = v == 0  # the canonical cell of the sampled scale
            else:
                hit = v == towards.get(factor, y)
            assert abs(float(hit.float().mean()) - p) < tol, (split, factor)
            if factor != "digit_position":  # the other 9 values are uniform: test is unbiased
                assert int(v.min()) >= 0 and int(v.max()) <= 9
        if split == "test":  # p = 0.1: every value about equally frequent
            counts = torch.bincount(s.attrs["digit_color"], minlength=10).float()
            assert float(counts.min()) > 0.5 * n / 10
        # the majority flag: value == digit (position: canonical); aligned = colour majority
        maj = s.attrs["majority"]
        assert maj.shape == (n, 7) and maj.dtype == torch.bool
        assert torch.equal(maj[:, 0], s.attrs["digit_color"] == y)
        assert torch.equal(maj[:, 2], s.attrs["digit_position"] == 0)
        assert torch.equal(maj[:, 4], s.attrs["texture_color"] == y)
        assert torch.equal(s.attrs["aligned"], maj[:, 0])
        assert torch.equal(s.attrs["bias"], s.attrs["digit_color"])
        # the group is the factor tuple (digit first) packed in base 32
        g = s.attrs["group"].clone()
        for factor in reversed(FACTORS):
            assert torch.equal(g % 32, s.attrs[factor])
            g //= 32
        assert torch.equal(g, y)
    assert all(len(p) >= 4 for p in POSITIONS)


def test_biased_mnist_painting(biased) -> None:
    """The digit is its palette colour at half intensity (blended with black), exactly where
    the mask is, when no texture is drawn; the canvas is 5 cells; palettes are the code's."""
    from benchmark.plugins.datasets.biased_mnist import DIGIT_COLORS, LETTER_COLORS, TEXTURE_COLORS

    s = biased.splits["train"]
    assert s.inputs.shape[1:] == (3, 40, 40) and s.attrs["mask"].shape[1:] == (40, 40)
    plain = torch.nonzero(s.attrs["texture"] == 0).flatten()[:20]
    assert len(plain) > 5
    for i in plain.tolist():
        mask = s.attrs["mask"][i].bool()
        pixels = s.inputs[i][:, mask].T  # (k, 3)
        values, counts = torch.unique(pixels, dim=0, return_counts=True)
        expected = torch.from_numpy(np.round(DIGIT_COLORS[int(s.attrs["digit_color"][i])] / 2))
        assert torch.equal(values[counts.argmax()].float(), expected.float())
    # np.flip(colours) reverses rows *and* channels; texture colours are those / 1.5
    assert LETTER_COLORS[0].tolist() == [0, 255, 0] and LETTER_COLORS[1].tolist() == [0, 255, 255]
    assert LETTER_COLORS[9].tolist() == [200, 200, 200]
    assert np.allclose(TEXTURE_COLORS, LETTER_COLORS / 1.5)


# -- metanorm-synth ------------------------------------------------------------------------
def test_gkern_values() -> None:
    from benchmark.plugins.datasets.metanorm_synth import gkern

    g = gkern(16, 5)
    phi = [0.5 * (1 + math.erf(x / math.sqrt(2))) for x in np.linspace(-5.34375, 5.34375, 17)]
    w = np.diff(phi)
    expected = np.sqrt(np.outer(w, w)) / np.sqrt(np.outer(w, w)).sum()
    assert g.shape == (16, 16) and np.allclose(g, expected, rtol=1e-10, atol=1e-15)
    assert g.sum() == pytest.approx(1.0) and np.allclose(g, g.T)
    assert g.max() == pytest.approx(0.032453, abs=2e-6)  # peak = centre 2×2 block
    assert np.unravel_index(g.argmax(), g.shape) in {(7, 7), (7, 8), (8, 7), (8, 8)}


def test_metanorm_matches_the_reference_loop() -> None:
    """Our vectorised generator equals the original per-image loop on NumPy's global RNG."""
    from benchmark.plugins.datasets.metanorm_synth import generate, gkern

    n, seed = 5, 1234
    np.random.seed(seed)
    cf1 = np.zeros(2 * n)
    cf1[:n] = np.random.uniform(1, 4, size=n)
    cf1[n:] = np.random.uniform(3, 6, size=n)
    np.random.uniform(1, 4, size=n), np.random.uniform(3, 6, size=n)  # cf2
    np.random.seed(seed + 1)
    mf = np.zeros(2 * n)
    mf[:n] = np.random.uniform(1, 4, size=n)
    mf[n:] = np.random.uniform(3, 6, size=n)
    x = np.zeros((2 * n, 32, 32, 1))
    for i in range(2 * n):
        x[i, :16, :16, 0] = gkern(16, 5) * mf[i]
        x[i, 16:, :16, 0] = gkern(16, 5) * cf1[i]
        x[i, 16:, 16:, 0] = gkern(16, 5) * mf[i]
        x[i] = x[i] + np.random.normal(0, 0.01, size=(32, 32, 1))
    d = generate(n, seed)
    assert np.array_equal(d["cf1"], cf1) and np.array_equal(d["mf"], mf)
    assert np.array_equal(d["x"], x)
    assert d["labels"].tolist() == [0] * n + [1] * n


def test_metanorm_splits_quadrants_and_seed_quirk() -> None:
    from benchmark.plugins.datasets.metanorm_synth import generate

    bundle = load_bundle("metanorm-synth", {"n": 200})
    train, val, test = (bundle.splits[s] for s in ("train", "val", "test"))
    assert train.inputs.shape == (400, 1, 32, 32) and train.inputs.dtype == torch.float32
    assert bundle.num_classes == 2 and bundle.mean == (0.0,) and bundle.std == (1.0,)
    ref = generate(200, 1234)
    assert np.allclose(train.attrs["confounder"].numpy(), ref["cf1"])
    assert np.allclose(test.attrs["confounder"].numpy(), generate(200, 1237)["cf1"])
    # the quirk: train's mf is drawn with seed 1235, i.e. equals val's cf1
    assert np.allclose(ref["mf"], val.attrs["confounder"].numpy())
    # after the axes swap: mf top-left and bottom-right, cf1 top-right, bottom-left empty
    x = train.inputs[:, 0].double()
    quad = {
        "tl": x[:, :16, :16].sum((1, 2)),
        "tr": x[:, :16, 16:].sum((1, 2)),
        "bl": x[:, 16:, :16].sum((1, 2)),
        "br": x[:, 16:, 16:].sum((1, 2)),
    }
    mf = torch.from_numpy(ref["mf"])
    cf = train.attrs["confounder"].double()
    for key, target in (("tl", mf), ("br", mf), ("tr", cf), ("bl", torch.zeros_like(mf))):
        assert float((quad[key] - target).abs().max()) < 0.6, key  # noise sum: std 0.16
    assert 0.2 < float(x.max()) < 0.24  # peak ≈ 0.22 (6 × 0.0325 + noise)
    y = train.labels
    assert cf[y == 0].min() >= 1 and cf[y == 0].max() <= 4
    assert cf[y == 1].min() >= 3 and cf[y == 1].max() <= 6


# -- waterbirds-synth ----------------------------------------------------------------------
def test_waterbirds_group_structure() -> None:
    from benchmark.plugins.datasets.waterbirds_synth import quotas

    # the defaults give Waterbirds' training groups exactly (Sagawa et al. 2020)
    assert quotas(4795, 0.2321, 0.95) == {(0, 0): 3498, (0, 1): 184, (1, 1): 1057, (1, 0): 56}
    bundle = load_bundle("waterbirds-synth", {"sizes": [400, 100, 100], "size": 24})
    for split, p in (("train", 0.95), ("val", 0.5), ("test", 0.5)):
        s = bundle.splits[split]
        y, place = s.labels, s.attrs["bias"]
        for c in (0, 1):
            n_c = int((y == c).sum())
            assert int(((y == c) & (place == c)).sum()) == math.floor(n_c * p + 0.5)
        assert torch.equal(s.attrs["aligned"], place == y)
        assert torch.equal(s.attrs["group"], 2 * y + place)
        assert int((y == 1).sum()) == math.floor(len(y) * 0.2321 + 0.5)
        mask = s.attrs["mask"]
        assert mask.dtype == torch.uint8 and set(mask.unique().tolist()) == {0, 1}
        area = mask.float().mean((1, 2))
        assert float(area.min()) > 0.03 and float(area.max()) < 0.5
        # the place is in the pixels: water backgrounds are bluer than land ones
        x = s.inputs.float()
        background = (1 - mask.float())[:, None]
        mean = (x * background).sum((2, 3)) / background.sum((2, 3))
        blue = mean[:, 2] - mean[:, 1]
        assert float(blue[place == 1].min()) > float(blue[place == 0].max())


def _split_digest(split: Any) -> str:
    import hashlib

    h = hashlib.sha256()
    for t in (split.inputs, split.labels, *(split.attrs[k] for k in sorted(split.attrs))):
        h.update(t.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def test_waterbirds_v2_keeps_the_v1_images_bit_for_bit() -> None:
    """The OoD and covariate-shift splits come from their own generators: train/val/test
    are version 1's tensors (digests of images, labels and attributes computed with the
    version-1 code), whatever n_ood / n_shift are."""
    v1 = {"train": "579ba817d184e2c9", "val": "ed38ebbc1631d7ed", "test": "853f0dfe4b1f515d"}
    tiny = DATASETS.get("waterbirds-synth").tiny
    for n_ood, n_shift in ((8, 8), (3, 11)):
        bundle = load_bundle("waterbirds-synth", {**tiny, "n_ood": n_ood, "n_shift": n_shift})
        assert {s: _split_digest(bundle.splits[s]) for s in v1} == v1
        assert len(bundle.splits["ood"]) == n_ood and len(bundle.splits["shift"]) == n_shift
    small = {**tiny, "n_ood": 2, "n_shift": 2}
    one = load_bundle("waterbirds-synth", small)
    other = load_bundle("waterbirds-synth", {**small, "n_ood": 3})
    assert torch.equal(one.splits["shift"].inputs, other.splits["shift"].inputs)


def test_waterbirds_ood_and_shift_splits() -> None:
    from benchmark.dataset import provided_tracks
    from benchmark.plugins.datasets import waterbirds_synth as wb

    bundle = load_bundle(
        "waterbirds-synth", {"sizes": [40, 12, 200], "size": 24, "n_ood": 60, "n_shift": 400}
    )
    assert bundle.eval_splits == ("test", "ood", "shift")
    assert "ood" in provided_tracks(bundle.track, wb.WaterbirdsSynth.attrs)
    ood, shift, test = (bundle.splits[s] for s in ("ood", "shift", "test"))
    # OoD: labels -1, paired with test, shapes of neither family, half land / half water
    assert ood.pair_with == "test" and bool((ood.labels == -1).all())
    assert not set(wb.OOD_SHAPES) & {n for f in wb.FAMILIES for n in f}
    assert int(ood.attrs["bias"].sum()) == 30
    # covariate shift: labelled like test (same class share, half aligned), no masks
    assert shift.pair_with is None
    assert set(shift.attrs) == {"bias", "aligned", "group", "background"}
    y, family = shift.labels, shift.attrs["bias"]
    assert int((y == 1).sum()) == math.floor(400 * 0.2321 + 0.5)
    for c in (0, 1):
        n_c = int((y == c).sum())
        assert int(((y == c) & (family == c)).sum()) == math.floor(n_c * 0.5 + 0.5)
    assert torch.equal(shift.attrs["group"], 2 * y + family)
    kind = shift.attrs["background"]
    assert set(kind[family == 0].tolist()) == {0, 2} and set(kind[family == 1].tolist()) == {1}
    # the backgrounds are new: a shift image's corner colours are neither land's (green or
    # brown, blue lowest) nor water's (blue highest)
    corner = shift.inputs[:, :, :3, :3].float().mean((2, 3))
    test_corner = test.inputs[:, :, :3, :3].float().mean((2, 3))
    far = torch.cdist(corner, test_corner).min(1).values  # distance to the nearest test corner
    assert float((far > 20).float().mean()) > 0.5
    assert not torch.equal(shift.inputs[:8], test.inputs[:8])


# -- objects-masks -------------------------------------------------------------------------
def test_objects_masks_cover_the_object() -> None:
    bundle = load_bundle("objects-masks", {"per_class": [10, 1, 5], "size": 32})
    s = bundle.splits["train"]
    assert bundle.track == "explain" and bundle.num_classes == 6
    assert bundle.class_counts("train").tolist() == [10] * 6
    mask = s.attrs["mask"].bool()
    area = mask.float().mean((1, 2))
    assert float(area.min()) > 0.04 and float(area.max()) < 0.5
    # the object differs from its background by at least the enforced colour distance
    x = s.inputs.float() / 255
    inside = (x * mask[:, None]).sum((2, 3)) / mask.sum((1, 2))[:, None]
    outside = (x * ~mask[:, None]).sum((2, 3)) / (~mask).sum((1, 2))[:, None]
    assert float((inside - outside).norm(dim=1).median()) > 0.25


# -- digits-ood ----------------------------------------------------------------------------
def test_digits_ood_splits() -> None:
    bundle = load_bundle("digits-ood", {"per_class": [30, 5, 20], "n_near": 40, "n_far": 40})
    assert bundle.eval_splits == ("test", "ood_near", "ood_far")
    assert bundle.class_counts("test").tolist() == [20] * 10
    for name, sources in (("ood_near", {1}), ("ood_far", {2, 3, 4})):
        s = bundle.splits[name]
        assert s.pair_with == "test" and bool((s.labels == -1).all())
        assert set(s.attrs["source"].tolist()) == sources
        assert s.inputs.shape[1:] == (1, 28, 28) and s.inputs.dtype == torch.uint8
    far = bundle.splits["ood_far"].attrs["source"]
    assert torch.bincount(far, minlength=5)[2:].tolist() == [20, 10, 10]
    # the letters are normalised like MNIST: ink within 20×20, centre of mass at the centre
    near = bundle.splits["ood_near"].inputs[:, 0].float()
    for img in near:
        rows = torch.nonzero(img.sum(1) > 0).flatten()
        cols = torch.nonzero(img.sum(0) > 0).flatten()
        assert rows[-1] - rows[0] < 20 and cols[-1] - cols[0] < 20
        cy = float((img.sum(1) * torch.arange(28)).sum() / img.sum())
        cx = float((img.sum(0) * torch.arange(28)).sum() / img.sum())
        assert abs(cy - 13.5) <= 1.0 and abs(cx - 13.5) <= 1.0
    # the in-distribution splits are disjoint sets of real digits
    tr, te = bundle.splits["train"].inputs, bundle.splits["test"].inputs
    a = {bytes(t.numpy()) for t in tr}
    assert not any(bytes(t.numpy()) in a for t in te)


# -- errors --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,options,message",
    [
        ("biased-mnist", {"per_class": [400, 50, 100]}, "at most 500"),
        ("biased-mnist", {"p_bias": 1.5}, "p_bias=1.5: must be in [0, 1]"),
        ("biased-mnist", {"cell": 4}, "cell=4: must be in [8, 64]"),
        ("waterbirds-synth", {"sizes": [10, 0, 10]}, "3 values each >= 1"),
        ("waterbirds-synth", {"p_aligned": -0.1}, "p_aligned=-0.1: must be in [0, 1]"),
        ("objects-masks", {"size": 8}, "size=8: must be >= 16"),
        ("digits-ood", {"n_far": 0}, "n_far=0: must be >= 1"),
        ("metanorm-synth", {"n": 0}, "n=0: must be >= 1"),
        ("glyph-lt", {"imbalance": 0.5}, "imbalance=0.5: must be >= 1"),
        ("glyph-lt", {"num_classes": 101}, "num_classes=101: must be in [2, 100]"),
        ("colored-mnist", {"per_class": [400, 50, 100]}, "at most 500"),
        ("colored-mnist", {"rho": 2.0}, "rho=2.0: must be in [0, 1]"),
    ],
)
def test_bad_options_are_clear_errors(name: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(BenchError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_bundle(name, options, use_cache=False)
