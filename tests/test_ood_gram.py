"""The fast Gram features and deviations (``benchmark.tracks.gram``): the compiled CPU kernel
and the torch path against the Gram matrix itself, the reference-style loops of ``bench perf
ood`` and the older ``benchmark.tracks.ood`` functions; the fallback without a compiler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.cli.perf_ood import reference_bounds, reference_deviations, reference_gram_features
from benchmark.tracks import gram, ood


def gram_matrix_rowsums(f: torch.Tensor, powers: int) -> torch.Tensor:
    """Row sums of the full Gram matrix per order, with the signed root: the definition."""
    out = []
    for p in range(1, powers + 1):
        fp = f.double().flatten(2) ** p
        rs = (fp @ fp.transpose(1, 2)).sum(2)
        out.append(rs.sign() * rs.abs() ** (1 / p))
    return torch.stack(out, 1)


def maps(shape: tuple[int, ...], seed: int, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(dtype)


# (N, C, H, W): widths not a multiple of 4 exercise the kernel's scalar tail; 1×1 maps
SHAPES = [(3, 4, 5, 5), (2, 3, 5, 7), (2, 16, 4, 4), (2, 7, 1, 1), (1, 2, 3, 1)]


@pytest.mark.skipif(gram.kernel() is None, reason="no C compiler for the gram kernel")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_kernel_rowsums_match_the_gram_matrix(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    f = maps(shape, seed=len(shape) + shape[1], dtype=dtype)
    for powers in (1, 3, 10):
        torch.testing.assert_close(
            gram.gram_rowsums(f, powers), gram_matrix_rowsums(f, powers), rtol=1e-9, atol=1e-12
        )


@pytest.mark.parametrize("shape", SHAPES)
def test_torch_rowsums_match_the_gram_matrix(shape: tuple[int, ...]) -> None:
    f = maps(shape, seed=1, dtype=torch.float32)
    torch.testing.assert_close(
        gram.torch_rowsums(f, 10), gram_matrix_rowsums(f, 10), rtol=1e-9, atol=1e-12
    )
    # orders above the kernel's 10 take the torch path
    torch.testing.assert_close(
        gram.gram_rowsums(f, 11), gram_matrix_rowsums(f, 11), rtol=1e-9, atol=1e-12
    )


@pytest.mark.skipif(gram.kernel() is None, reason="no C compiler for the gram kernel")
def test_kernel_split_over_threads_changes_no_bit() -> None:
    f = maps((9, 6, 5, 3), seed=2, dtype=torch.float32)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = gram.gram_rowsums(f, 10)
        torch.set_num_threads(3)
        three = gram.gram_rowsums(f, 10)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, three)


def test_without_a_compiler_the_torch_path_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "/nonexistent/cc")
    monkeypatch.setenv("XDG_CACHE_HOME", "/nonexistent")
    monkeypatch.setattr(gram.tempfile, "gettempdir", lambda: "/nonexistent")
    gram.kernel.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="no C compiler"):
            assert gram.kernel() is None
        f = maps((2, 3, 4, 4), seed=3, dtype=torch.float32)
        torch.testing.assert_close(gram.gram_rowsums(f, 4), gram_matrix_rowsums(f, 4))
        monkeypatch.setenv("BENCH_GRAM_KERNEL", "0")  # switched off: no warning
        gram.kernel.cache_clear()
        assert gram.kernel() is None
    finally:
        gram.kernel.cache_clear()


def test_deviations_match_the_reference_loops_and_the_old_ones() -> None:
    """Per-layer deviations against ``bench perf ood``'s numpy loops and against
    ``ood.gram_deviations`` (the whole-batch version it replaces)."""
    g = torch.Generator().manual_seed(4)
    k, powers = 4, 3
    train = [torch.randn(40, c, 3, 3, generator=g) for c in (2, 5, 3)]
    test = [3 * torch.randn(25, c, 3, 3, generator=g) for c in (2, 5, 3)]
    pred_train = torch.randint(0, k - 1, (40,), generator=g)  # class k−1 is never predicted
    pred, conf = torch.randint(0, k, (25,), generator=g), torch.rand(25, generator=g) + 0.1
    feats = [gram.gram_rowsums(f, powers) for f in train]
    bounds = ood.gram_bounds(iter([(feats, pred_train)]), k)
    got = gram.gram_deviations([gram.gram_rowsums(f, powers) for f in test], pred, conf,
                               gram.gram_table(bounds))  # fmt: skip
    old = ood.gram_deviations([gram.gram_rowsums(f, powers) for f in test], pred, conf, bounds)
    torch.testing.assert_close(got, old, rtol=1e-12, atol=0)
    ref = reference_bounds(reference_gram_features(train, powers), pred_train.numpy(), k)
    expected = reference_deviations(reference_gram_features(test, powers), pred.numpy(),
                                    conf.double().numpy(), ref)  # fmt: skip
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9)
    assert (got > 0).any() and got.shape == (25, 3)
