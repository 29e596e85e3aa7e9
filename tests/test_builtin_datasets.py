"""Built-in datasets: formulas, recipes, determinism and fingerprints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.data import load_bundle
from benchmark.glyphs import lt_counts


def test_cifar_lt_formula() -> None:
    """CIFAR-10-LT at ratio 100 on the real sizes (LDAM-DRW): 12,406 images, 5,000 down to 50."""
    counts = lt_counts(10, 5000, 100)
    assert counts == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert sum(counts) == 12406
    assert sum(lt_counts(100, 500, 100)) == 10847
    assert sum(lt_counts(10, 5000, 200)) == 11203


def test_glyph_lt_follows_the_formula() -> None:
    bundle = load_bundle(
        "glyph-lt", {"imbalance": 50.0, "n_max": 60, "num_classes": 20, "n_test": 4, "n_val": 1}
    )
    assert bundle.class_counts("train").tolist() == lt_counts(20, 60, 50)
    assert bundle.class_counts("test").tolist() == [4] * 20
    assert bundle.input_shape == (1, 28, 28)
    assert bundle.splits["train"].inputs.dtype == torch.uint8


def test_fingerprints_are_deterministic_and_option_sensitive() -> None:
    opts = {"num_classes": 5, "n_max": 10, "n_test": 2, "n_val": 1, "size": 16}
    a = load_bundle("glyph-lt", opts, use_cache=False)
    b = load_bundle("glyph-lt", opts, use_cache=False)
    assert a.fingerprint == b.fingerprint
    assert torch.equal(a.splits["train"].inputs, b.splits["train"].inputs)
    assert (
        load_bundle("glyph-lt", {**opts, "seed": 1}, use_cache=False).fingerprint != a.fingerprint
    )
    assert load_bundle("glyph-lt", {**opts, "imbalance": 2.0}).fingerprint != a.fingerprint
    cached = load_bundle("glyph-lt", opts)
    assert load_bundle("glyph-lt", opts).fingerprint == cached.fingerprint == a.fingerprint


@pytest.mark.parametrize("rho", [0.95, 0.98, 0.99, 0.995])
def test_colored_mnist_aligned_fraction_matches_rho(rho: float) -> None:
    bundle = load_bundle("colored-mnist", {"rho": rho})
    train, test = bundle.splits["train"], bundle.splits["test"]
    for c in range(10):
        aligned = train.attrs["aligned"][train.labels == c]
        n = len(aligned)
        # LfF's milestones: colour c gets round(n·cumsum_c) − round(n·cumsum_{c−1}) samples
        ratios = np.full(10, (1 - rho) / 9)
        ratios[c] = rho
        cum = np.round(n * np.cumsum(ratios))
        expected = cum[c] - (cum[c - 1] if c else 0)
        assert int(aligned.sum()) == expected
        assert abs(expected - n * rho) <= 1
    assert abs(float(train.attrs["aligned"].float().mean()) - rho) < 0.005
    assert float(test.attrs["aligned"].float().mean()) == pytest.approx(0.1, abs=0.01)
    assert torch.equal(train.attrs["aligned"], train.attrs["bias"] == train.labels)


def test_colored_mnist_lff_colouring() -> None:
    """Foreground = truncated colour × digit; colour 0 of LfF is orange-red (0.98, 0.31, 0.17)."""
    from benchmark.glyphs import mnist_5k
    from benchmark.plugins.datasets.colored_mnist import COLORS, assign_colors, colorize

    images, _ = mnist_5k()
    x = colorize(images[:1], np.array([0]), 0.0, np.random.RandomState(0))
    expected = (COLORS[0][:, None, None] * images[0][None].astype(np.float32)).astype(np.uint8)
    assert np.array_equal(x[0], expected)
    # LfF's make_attr_labels: deterministic by position in the class, no RNG
    colors = assign_colors(np.zeros(100, dtype=np.int64), 0.91)
    assert colors[:91].tolist() == [0] * 91 and colors[91:].tolist() == list(range(1, 10))
