"""Gram-matrix OoD features and deviations (Sastry & Oore, Detecting Out-of-Distribution
Examples with Gram Matrices, ICML 2020, §3), the fast path of the ``gram`` detector.

The taps, the recording hooks, the bounds (``GramBounds``, ``gram_bounds``: per predicted
class, per feature min / max over ``train``) and the score stay in ``benchmark.tracks.ood``.
This module holds the two hot loops, in float64:

- ``gram_rowsums``: on the CPU a C kernel (``KERNEL_SOURCE``, compiled once per machine by
  ``kernel``, called through ``ctypes``) that reads each map twice for all orders together
  (column sums of every power, then row sums), where torch ops make several passes over the
  map per order and are memory-bound; the roots in the same loop. Without a C compiler, on
  CUDA or for more than 10 orders, ``torch_rowsums``: per order, the power in place, its column
  sums and one batched matrix-vector product written into the output. Both agree with the
  Gram matrix itself to rounding (``tests/test_ood_gram.py``).
- ``gram_deviations``: layer by layer (the per-layer sum is a plain row sum; whole-batch
  ``(N, D)`` passes made large temporaries and an ``index_add_`` over D), with the
  reciprocals ``1 / |min + 1e-6|`` and ``1 / |max + 1e-6|`` computed once from the bounds
  (``GramTable``) instead of a division per sample.

The older ``ood.gram_rowsums`` / ``ood.gram_deviations`` are left unused in ``tracks/ood.py``:
removing them changes that module, which every post-hoc detector imports (it would re-key
their records); they go with the next change to that module.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmark.errors import BenchError
from benchmark.tracks.ood import GramBounds

#: float64 elements of the map per chunk of ``gram_rowsums`` on the CPU (512 kB: the power
#: and the map of a chunk stay in the cache; the ops are memory-bound)
CPU_CHUNK_ELEMENTS = 2**16


#: C source of the CPU kernel of ``gram_rowsums`` (compiled once per machine by ``kernel``):
#: per sample, (1) the column sums ``S_p[s] = Σ_k x[k, s]^p`` of all orders in one pass over
#: the map (four columns at a time, the P sums in registers), (2) the row sums
#: ``r_p[c] = Σ_s x[c, s]^p S_p[s]`` in a second pass, (3) the signed p-th roots. Powers by
#: repeated multiplication in double (the input, float32 or float64, is widened exactly);
#: no -ffast-math, so nothing is reassociated beyond the explicit four-lane sums.
KERNEL_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <string.h>
typedef double v4d __attribute__((vector_size(32)));
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif
#define LOAD4(ptr) ((v4d){(double)(ptr)[0], (double)(ptr)[1], (double)(ptr)[2], (double)(ptr)[3]})

static double signed_root(double v, int p) {
    double a = fabs(v), r;
    switch (p) {
    case 1: return v;
    case 2: r = sqrt(a); break;
    case 3: r = cbrt(a); break;
    case 4: r = sqrt(sqrt(a)); break;
    default: r = pow(a, 1.0 / p);
    }
    return copysign(r, v);
}

#define KERNEL(NAME, T, P)                                                                 \
CLONES static void NAME##_p##P(const T *x, int64_t c, int64_t hw, double *out, double *S) { \
    int64_t s4 = hw - hw % 4;                                                              \
    memset(S, 0, sizeof(double) * P * hw);                                                 \
    for (int64_t s = 0; s < s4; s += 4) {                                                  \
        v4d acc[P];                                                                        \
        for (int p = 0; p < P; p++) acc[p] = (v4d){0, 0, 0, 0};                            \
        for (int64_t k = 0; k < c; k++) {                                                  \
            v4d v = LOAD4(x + k * hw + s), t = v;                                          \
            for (int p = 0; p < P; p++) { acc[p] += t; t *= v; }                           \
        }                                                                                  \
        for (int p = 0; p < P; p++) memcpy(S + p * hw + s, &acc[p], sizeof acc[p]);        \
    }                                                                                      \
    for (int64_t s = s4; s < hw; s++)                                                      \
        for (int64_t k = 0; k < c; k++) {                                                  \
            double v = x[k * hw + s], t = v;                                               \
            for (int p = 0; p < P; p++) { S[p * hw + s] += t; t *= v; }                    \
        }                                                                                  \
    for (int64_t k = 0; k < c; k++) {                                                      \
        const T *row = x + k * hw;                                                         \
        v4d acc[P];                                                                        \
        double tail[P];                                                                    \
        for (int p = 0; p < P; p++) { acc[p] = (v4d){0, 0, 0, 0}; tail[p] = 0; }           \
        for (int64_t s = 0; s < s4; s += 4) {                                              \
            v4d v = LOAD4(row + s), t = v, w;                                              \
            for (int p = 0; p < P; p++) {                                                  \
                memcpy(&w, S + p * hw + s, sizeof w);                                      \
                acc[p] += t * w;                                                           \
                t *= v;                                                                    \
            }                                                                              \
        }                                                                                  \
        for (int64_t s = s4; s < hw; s++) {                                                \
            double v = row[s], t = v;                                                      \
            for (int p = 0; p < P; p++) { tail[p] += t * S[p * hw + s]; t *= v; }          \
        }                                                                                  \
        for (int p = 0; p < P; p++)                                                        \
            out[p * c + k] = signed_root(                                                  \
                ((acc[p][0] + acc[p][1]) + (acc[p][2] + acc[p][3])) + tail[p], p + 1);     \
    }                                                                                      \
}

#define ALL(NAME, T) KERNEL(NAME, T, 1) KERNEL(NAME, T, 2) KERNEL(NAME, T, 3)              \
    KERNEL(NAME, T, 4) KERNEL(NAME, T, 5) KERNEL(NAME, T, 6) KERNEL(NAME, T, 7)            \
    KERNEL(NAME, T, 8) KERNEL(NAME, T, 9) KERNEL(NAME, T, 10)                              \
int gram_rowsums_##NAME(const T *x, int64_t n, int64_t c, int64_t hw, int P, double *out,  \
                        double *S) {                                                       \
    for (int64_t i = 0; i < n; i++) {                                                      \
        const T *xi = x + i * c * hw;                                                      \
        double *oi = out + i * P * c;                                                      \
        switch (P) {                                                                       \
        case 1: NAME##_p1(xi, c, hw, oi, S); break;                                        \
        case 2: NAME##_p2(xi, c, hw, oi, S); break;                                        \
        case 3: NAME##_p3(xi, c, hw, oi, S); break;                                        \
        case 4: NAME##_p4(xi, c, hw, oi, S); break;                                        \
        case 5: NAME##_p5(xi, c, hw, oi, S); break;                                        \
        case 6: NAME##_p6(xi, c, hw, oi, S); break;                                        \
        case 7: NAME##_p7(xi, c, hw, oi, S); break;                                        \
        case 8: NAME##_p8(xi, c, hw, oi, S); break;                                        \
        case 9: NAME##_p9(xi, c, hw, oi, S); break;                                        \
        case 10: NAME##_p10(xi, c, hw, oi, S); break;                                      \
        default: return 1;                                                                 \
        }                                                                                  \
    }                                                                                      \
    return 0;                                                                              \
}

ALL(f32, float)
ALL(f64, double)
"""

#: the orders the kernel is compiled for (``gram``'s ``powers`` range)
KERNEL_MAX_POWERS = 10


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bench" / "kernels"


@functools.cache
def kernel() -> Any | None:
    """The CPU kernel of ``gram_rowsums`` as a ``ctypes`` library, compiled once per machine
    with the C compiler ``$CC`` (default ``cc``) into ``$XDG_CACHE_HOME/bench/kernels`` (or a
    temporary folder) and loaded from there afterwards; ``None`` (with a warning) when there
    is no compiler or it fails, or when ``BENCH_GRAM_KERNEL=0``: the torch path is then used."""
    if os.environ.get("BENCH_GRAM_KERNEL", "1") == "0":
        return None
    compiler = shutil.which(os.environ.get("CC", "cc"))
    flags = ["-O3", "-shared", "-fPIC", "-std=gnu11"]
    key = hashlib.sha256(
        "\n".join([KERNEL_SOURCE, *flags, platform.machine(), compiler or ""]).encode()
    ).hexdigest()[:16]
    for folder in (_cache_dir(), Path(tempfile.gettempdir()) / "bench-kernels"):
        lib = folder / f"gram-{key}.so"
        try:
            if not lib.is_file():
                if compiler is None:
                    break
                folder.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(dir=folder) as tmp:
                    src = Path(tmp) / "gram.c"
                    src.write_text(KERNEL_SOURCE)
                    subprocess.run(
                        [compiler, *flags, "-o", str(Path(tmp) / "gram.so"), str(src), "-lm"],
                        check=True, capture_output=True, timeout=300,
                    )  # fmt: skip
                    (Path(tmp) / "gram.so").replace(lib)  # atomic: concurrent runs agree
            handle = ctypes.CDLL(str(lib))
        except (OSError, subprocess.SubprocessError):
            continue
        for name in ("gram_rowsums_f32", "gram_rowsums_f64"):
            fn = getattr(handle, name)
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_void_p, *[ctypes.c_int64] * 3, ctypes.c_int,
                           ctypes.c_void_p, ctypes.c_void_p]  # fmt: skip
        return handle
    warnings.warn(
        "gram: no C compiler could build the CPU kernel (set CC); the torch path is used "
        "(same numbers, slower)",
        RuntimeWarning,
        stacklevel=2,
    )
    return None


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="gram")


def _kernel_rowsums(lib: Any, fmap: torch.Tensor, powers: int) -> torch.Tensor:
    x = fmap.detach().flatten(2).contiguous()
    n, c, hw = x.shape
    out = torch.empty(n, powers, c, dtype=torch.float64)
    if n == 0:
        return out
    fn = lib.gram_rowsums_f32 if x.dtype == torch.float32 else lib.gram_rowsums_f64
    # ctypes releases the GIL: samples are split over torch's CPU threads (each sample is
    # computed alone, so the split does not change a bit)
    parts = torch.arange(n).tensor_split(min(n, torch.get_num_threads()))

    def run(idx: torch.Tensor) -> int:
        if not len(idx):
            return 0
        i, m = int(idx[0]), len(idx)
        scratch = torch.empty(powers * hw, dtype=torch.float64)
        return fn(x[i].data_ptr(), m, c, hw, powers, out[i].data_ptr(), scratch.data_ptr())

    codes = [run(parts[0])] if len(parts) == 1 else list(_pool(len(parts)).map(run, parts))
    if any(codes):
        raise BenchError(f"gram: the CPU kernel refused powers={powers}")
    return out


def gram_rowsums(fmap: torch.Tensor, powers: int) -> torch.Tensor:
    """Gram features of one layer (Sastry & Oore 2020, §3.1): for each order p = 1..P, the
    row sums of ``G_p = F^p (F^p)ᵀ`` (F the (C, HW) map, elementwise power), then the signed
    p-th root. ``fmap`` (N, C, H, W) -> (N, P, C), float64.

    Uses ``Σ_k G_p[c, k] = Σ_s F^p[c, s] · Σ_k F^p[k, s]`` (O(C·HW) per order instead of the
    C × C product). On the CPU (float32 / float64 maps, P ≤ 10) the compiled ``kernel`` does
    all orders in two passes over the map; otherwise (CUDA, no compiler) torch: per order,
    ``F^p`` in place from ``F^(p−1)``, its column sums and one ``bmm`` with them, written into
    the output, the roots of all orders at once. Both give the same numbers to rounding."""
    if (
        fmap.device.type == "cpu"
        and fmap.dtype in (torch.float32, torch.float64)
        and 1 <= powers <= KERNEL_MAX_POWERS
        and (lib := kernel()) is not None
    ):
        return _kernel_rowsums(lib, fmap, powers)
    return torch_rowsums(fmap, powers)


def torch_rowsums(fmap: torch.Tensor, powers: int) -> torch.Tensor:
    """``gram_rowsums`` in torch ops (any device, any P): the path without the kernel."""
    flat = fmap.detach().flatten(2)
    n, c, hw = flat.shape
    out = torch.empty(n, powers, c, 1, dtype=torch.float64, device=flat.device)
    # on the CPU, chunks of samples small enough to stay in cache
    step = n if flat.is_cuda else max(1, CPU_CHUNK_ELEMENTS // max(1, c * hw))
    for start in range(0, n, step):
        f = flat[start : start + step].double()
        rows = out[start : start + step]
        fp = f
        for p in range(1, powers + 1):
            if p == 2:
                fp = f * f
            elif p > 2:
                fp.mul_(f)
            torch.bmm(fp, fp.sum(1).unsqueeze(2), out=rows[:, p - 1])
    out = out.squeeze(3)
    roots = 1.0 / torch.arange(1, powers + 1, dtype=torch.float64, device=out.device)
    return out.sign() * out.abs().pow(roots[None, :, None])


@dataclass
class GramTable:
    """``GramBounds`` cut per layer for ``gram_deviations``: per layer l, (K, D_l) float64
    tensors ``lo`` / ``hi`` (the bounds) and ``inv_lo`` / ``inv_hi`` (``1 / |lo + 1e-6|``,
    ``1 / |hi + 1e-6|``); D_l = orders × channels of layer l."""

    lo: list[torch.Tensor]
    hi: list[torch.Tensor]
    inv_lo: list[torch.Tensor]
    inv_hi: list[torch.Tensor]


def gram_table(b: GramBounds) -> GramTable:
    """The per-layer bounds and reciprocal scales of ``b`` (``b.layer_of`` is sorted: the
    features of a layer are contiguous)."""
    sizes = torch.bincount(b.layer_of, minlength=b.num_layers).tolist()

    def cut(t: torch.Tensor) -> list[torch.Tensor]:
        return [part.contiguous() for part in t.split(sizes, dim=1)]

    return GramTable(
        lo=cut(b.mins),
        hi=cut(b.maxs),
        inv_lo=cut(1.0 / (b.mins + 1e-6).abs()),
        inv_hi=cut(1.0 / (b.maxs + 1e-6).abs()),
    )


def gram_deviations(
    layers: Sequence[torch.Tensor], pred: torch.Tensor, conf: torch.Tensor, t: GramTable
) -> torch.Tensor:
    """Per-layer deviations (Sastry & Oore 2020, §3.3): for the bounds of the predicted class,
    ``δ_L = Σ_{p,j} [ReLU(min − v)/|min + 1e-6| + ReLU(v − max)/|max + 1e-6|] / conf``, with
    ``conf`` the max softmax probability. ``layers``: per layer (N, P, C_l) Gram features;
    ``pred`` (N,) predicted classes; (N, L) float64."""
    out = torch.empty(len(pred), len(layers), dtype=torch.float64, device=pred.device)
    for i, layer in enumerate(layers):
        v = layer.flatten(1)
        below = (t.lo[i][pred] - v).clamp_(min=0).mul_(t.inv_lo[i][pred])
        above = (v - t.hi[i][pred]).clamp_(min=0).mul_(t.inv_hi[i][pred])
        torch.sum(below.add_(above), 1, out=out[:, i])
    return out / conf.double()[:, None]
