"""``bench perf ood``: fitting + scoring of the ``gram`` and ``mahalanobis`` detectors
(``benchmark.tracks.ood``) next to reference-style implementations, in one process, on the
same network and inputs; prints the times, the speed-up and the largest score difference.

Reference style (the structure of the Gram paper's notebooks and of the Mahalanobis repo's
``sample_estimator``): the feature maps of each batch are recorded, then for every layer and
every order p a Python loop forms the Gram matrix ``F^p (F^p)ᵀ`` (on the device), takes its
row sums and signed root and moves them to numpy; bounds are numpy min / max per predicted
class, layer and order; deviations are loops over layers, orders and classes. Mahalanobis:
per-class means and the pooled covariance in numpy (float64, ``pinv``), distances per class.

Ours (``benchmark.tracks.gram``, what the ``gram`` plugin runs): the hooks reduce each map to
its row sums during the forward pass (``Σ_k G[c, k]`` as ``Σ_s F^p[c, s] Σ_k F^p[k, s]``, no
C × C product; on the CPU a C kernel compiled once per machine, loaded before the clock
starts), bounds by one scatter-min/max per batch, deviations layer by layer with precomputed
reciprocals; everything stays on the device. ``--reference-fraction`` runs the reference on a
fraction of each split and extrapolates its time (labelled as such).

Cases: ``digits`` (``digits-ood``'s splits through its protocol network ``small-cnn``, seeded
random weights: the timing does not depend on training) and ``resnet18`` (random 32×32 RGB
inputs, ``--n-train`` + ``--n-test``, default 10,000 + 10,000, plus 1,000 val, through the
ResNet-18 with a 3×3 stem, every conv, BN and block tapped).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from benchmark.cli.checks import at_least
from benchmark.cli.perf import add_clock_argument, pick_clock, run_timed
from benchmark.progress import progress_bar

# -- the reference-style Gram detector (numpy; also used by tests/test_ood_detectors.py) -----


def reference_gram_features(maps: Sequence[Any], powers: int) -> list[list[np.ndarray]]:
    """Per layer, per order p: the signed p-th root of the row sums of the Gram matrix, as
    (N, C) float64 numpy arrays. ``maps``: per layer (N, C, H, W) arrays or tensors; the
    product runs in torch on the maps' device when they are tensors (as the paper's code)."""
    out = []
    for f in maps:
        f = torch.as_tensor(f).double()
        f = f.reshape(f.shape[0], f.shape[1], -1)
        per_order = []
        for p in range(1, powers + 1):
            fp = f**p
            g = torch.matmul(fp, fp.transpose(1, 2)).sum(dim=2)
            g = g.cpu().numpy()
            per_order.append(np.sign(g) * np.abs(g) ** (1.0 / p))
        out.append(per_order)
    return out


@dataclass
class ReferenceGram:
    """``mins[c][L][p]`` / ``maxs[c][L][p]`` (C_L,) arrays; ``expected`` (L,)."""

    mins: list[list[list[np.ndarray]]]
    maxs: list[list[list[np.ndarray]]]
    expected: np.ndarray | None = None


def reference_bounds(
    feats: list[list[np.ndarray]], pred: np.ndarray, num_classes: int
) -> ReferenceGram:
    """numpy min / max per predicted class, layer and order; a class never predicted gets the
    bounds over all training samples."""
    mins, maxs = [], []
    for c in range(num_classes):
        sel = pred == c
        if not sel.any():
            sel = np.ones_like(sel)
        mins.append([[fp[sel].min(axis=0) for fp in layer] for layer in feats])
        maxs.append([[fp[sel].max(axis=0) for fp in layer] for layer in feats])
    return ReferenceGram(mins, maxs)


def reference_deviations(
    feats: list[list[np.ndarray]], pred: np.ndarray, conf: np.ndarray, ref: ReferenceGram
) -> np.ndarray:
    """(N, L) deviations, loops over layers, orders and predicted classes."""
    dev = np.zeros((len(pred), len(feats)))
    for li, layer in enumerate(feats):
        for pi, v_all in enumerate(layer):
            for c in np.unique(pred):
                sel = pred == c
                v = v_all[sel]
                lo, hi = ref.mins[c][li][pi], ref.maxs[c][li][pi]
                below = np.maximum(lo - v, 0) / np.abs(lo + 1e-6)
                above = np.maximum(v - hi, 0) / np.abs(hi + 1e-6)
                dev[sel, li] += below.sum(axis=1) + above.sum(axis=1)
    return dev / conf[:, None]


Record = tuple[Sequence[Any], np.ndarray, np.ndarray]  # (maps per layer, pred, conf)


def reference_gram_fit(train: Record, val: Record, powers: int, num_classes: int) -> ReferenceGram:
    """Bounds from ``train`` (maps, predicted classes, max softmax), normalisation on ``val``."""
    ref = reference_bounds(reference_gram_features(train[0], powers), train[1], num_classes)
    val_dev = reference_deviations(reference_gram_features(val[0], powers), val[1], val[2], ref)
    ref.expected = val_dev.mean(axis=0) + 1e-7
    return ref


def reference_gram_score(test: Record, ref: ReferenceGram, powers: int) -> np.ndarray:
    """``−Σ_L δ_L / E_L`` for the samples of ``test``."""
    dev = reference_deviations(reference_gram_features(test[0], powers), test[1], test[2], ref)
    return -(dev / ref.expected[None]).sum(axis=1)


def reference_mahalanobis(
    train_h: np.ndarray, train_y: np.ndarray, test_h: np.ndarray, num_classes: int
) -> np.ndarray:
    """The Mahalanobis repo's ``sample_estimator`` structure: per-class means in a loop, the
    pooled MLE covariance of the class-centred features, ``pinv``; scores per class in a loop,
    ``max_c −½ d²``."""
    means, centred = [], []
    for c in range(num_classes):
        hc = train_h[train_y == c]
        if len(hc) == 0:  # a class without training samples has no Gaussian
            continue
        means.append(hc.mean(axis=0))
        centred.append(hc - means[-1])
    x = np.concatenate(centred)
    x = x - x.mean(axis=0)
    precision = np.linalg.pinv(x.T @ x / len(x), hermitian=True)
    scores = []
    for mu in means:
        d = test_h - mu
        scores.append(-0.5 * np.einsum("nd,de,ne->n", d, precision, d))
    return np.max(np.stack(scores, axis=1), axis=1)


# -- the cases ------------------------------------------------------------------------------


@dataclass
class Case:
    """A network (eval mode, on the device) and normalised input batches per split."""

    name: str
    model: torch.nn.Module
    splits: dict[str, list[torch.Tensor]]  # train, val, test (batches on the device)
    num_classes: int
    note: str


def _batches(x: torch.Tensor, size: int, device: torch.device) -> list[torch.Tensor]:
    return [x[i : i + size].to(device) for i in range(0, len(x), size)]


def subset(case: Case, fraction: float) -> Case:
    """The first ``fraction`` of each split's images (at least one), in batches of the same
    size: the case on which ``--reference-fraction`` runs the reference."""
    size = len(case.splits["train"][0])
    splits = {}
    for name, batches in case.splits.items():
        x = torch.cat(batches)
        splits[name] = _batches(x[: max(1, round(len(x) * fraction))], size, x.device)
    n = {k: sum(len(b) for b in v) for k, v in splits.items()}
    note = f"first {fraction:g} of each split: train {n['train']}, val {n['val']}, "
    note += f"test {n['test']}"
    return Case(case.name, case.model, splits, case.num_classes, note)


#: progress bars on stderr (``--quiet`` turns them off)
_progress = False


def _bar(batches: list[torch.Tensor], desc: str) -> Any:
    return progress_bar(batches, enabled=_progress, desc=desc, unit="batch", leave=False)


def digits_case(device: torch.device, batch: int, limit: dict[str, int | None]) -> Case:
    """``digits-ood`` splits (test = ID test + both OoD splits) through ``small-cnn``; ``limit``
    keeps the first N images of a split (None: all)."""
    from benchmark.data import load_bundle
    from benchmark.method import METHODS
    from benchmark.training import Trainer

    bundle = load_bundle("digits-ood", {})
    info = bundle.info()
    torch.manual_seed(0)
    cls = METHODS.get("erm")
    hp = {k: p.default for k, p in cls.declared().items()} | {"backbone": "small-cnn"}
    method = cls(info, hp, device)
    method.setup()
    trainer = Trainer(device, seed=0, progress=False)

    def norm(*names: str) -> torch.Tensor:
        x = torch.cat([bundle.splits[n].inputs for n in names])
        return trainer.normalise(x, info)

    parts = {"train": ("train",), "val": ("val",), "test": ("test", "ood_near", "ood_far")}
    splits = {k: _batches(norm(*v)[: limit[k]], batch, device) for k, v in parts.items()}
    n = {k: sum(len(b) for b in v) for k, v in splits.items()}
    note = f"digits-ood, small-cnn (seeded random weights); train {n['train']}, "
    note += f"val {n['val']}, test {n['test']} (ID test + near + far)"
    return Case("digits", method.model.eval(), splits, 10, note)


def resnet18_case(device: torch.device, batch: int, n_train: int, n_test: int, n_val: int) -> Case:
    """Random 32×32 RGB inputs through the 3×3-stem ResNet-18 + linear head."""
    from benchmark.backbones import build_backbone
    from benchmark.method import Classifier
    from benchmark.tracks import backbones as _  # noqa: F401  (registers resnet18-cifar)

    torch.manual_seed(0)
    backbone = build_backbone("resnet18-cifar", (3, 32, 32))
    model = Classifier(backbone, torch.nn.Linear(backbone.feature_dim, 10)).to(device).eval()
    g = torch.Generator().manual_seed(1)
    splits = {
        name: _batches(torch.randn(n, 3, 32, 32, generator=g), batch, device)
        for name, n in (("train", n_train), ("val", n_val), ("test", n_test))
    }
    note = f"random 32×32, ResNet-18 (3×3 stem); train {n_train}, val {n_val}, test {n_test}"
    return Case("resnet18", model, splits, 10, note)


# -- the two implementations ---------------------------------------------------------------


@torch.no_grad()
def forward_only(case: Case) -> None:
    for name, batches in case.splits.items():
        for x in _bar(batches, f"forward {name}"):
            case.model(x)


@torch.no_grad()
def ours_gram(case: Case, powers: int) -> np.ndarray:
    from benchmark.tracks import gram, ood

    taps = [m for _, m in ood.gram_tap_modules(case.model)]

    def over(name: str) -> Iterator[tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]]:
        for x in _bar(case.splits[name], f"gram ours {name}"):
            with ood.recording(taps, lambda o: gram.gram_rowsums(o, powers)) as store:
                z = case.model(x)
            yield list(store), z.argmax(1), ood.msp_score(z)

    bounds = ood.gram_bounds(((v, p) for v, p, _ in over("train")), case.num_classes)
    table = gram.gram_table(bounds)
    val = torch.cat([gram.gram_deviations(*b, table) for b in over("val")])
    bounds.expected = val.mean(0) + 1e-7
    scores = [
        ood.gram_score(gram.gram_deviations(*b, table), bounds.expected) for b in over("test")
    ]
    return torch.cat(scores).cpu().numpy()


@torch.no_grad()
def reference_gram(case: Case, powers: int) -> np.ndarray:
    from benchmark.tracks import ood

    taps = [m for _, m in ood.gram_tap_modules(case.model)]

    def record(name: str) -> tuple[list[list[np.ndarray]], np.ndarray, np.ndarray]:
        feats: list[list[list[np.ndarray]]] = []
        preds, confs = [], []
        for x in _bar(case.splits[name], f"gram reference {name}"):
            with ood.recording(taps, lambda o: o.detach().clone()) as store:
                z = case.model(x)
            feats.append(reference_gram_features(list(store), powers))
            probs = torch.softmax(z.float(), 1).cpu().numpy()
            preds.append(probs.argmax(1))
            confs.append(probs.max(1))
        joined = [
            [np.concatenate([f[li][pi] for f in feats]) for pi in range(powers)]
            for li in range(len(feats[0]))
        ]
        return joined, np.concatenate(preds), np.concatenate(confs)

    feats, pred, _ = record("train")
    ref = reference_bounds(feats, pred, case.num_classes)
    ref.expected = reference_deviations(*record("val"), ref).mean(axis=0) + 1e-7
    dev = reference_deviations(*record("test"), ref)
    return -(dev / ref.expected[None]).sum(axis=1)


@torch.no_grad()
def penultimate(case: Case, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    hs, zs = [], []
    for x in case.splits[name]:
        z, h = case.model.forward_features(x)
        hs.append(h)
        zs.append(z)
    return torch.cat(hs), torch.cat(zs)


def ours_mahalanobis(h_train: torch.Tensor, y: torch.Tensor, h_test: torch.Tensor, k: int):
    from benchmark.tracks import ood

    g = ood.fit_tied_gaussian(h_train, y, k)
    return ood.mahalanobis_score(h_test, g).cpu().numpy()


# -- the command ----------------------------------------------------------------------------


def _diff(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(max |Δ|, max |Δ| / max(1, |ref|))."""
    d = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    return float(d.max()), float((d / np.maximum(1.0, np.abs(ref))).max())


def _count(case: Case) -> int:
    return sum(len(b) for batches in case.splits.values() for b in batches)


def measure(
    case: Case,
    device: torch.device,
    powers: int,
    skip_reference: bool,
    reference_fraction: float = 1.0,
    clock: str = "wall",
) -> list[dict]:
    """Rows for ``gram`` and ``mahalanobis``. With ``reference_fraction`` < 1 the reference
    (and, for the score comparison, ours once more) runs on ``subset(case, fraction)`` only;
    its time is scaled by the ratio of image counts to the full case and the row says
    ``reference_extrapolated``. Timings on ``clock`` (``benchmark.cli.perf.CLOCKS``)."""
    from benchmark.tracks import gram

    rows = []
    t0 = time.perf_counter()
    kernel = gram.kernel() if device.type == "cpu" else None  # compiled (once) before timing
    t_kernel = time.perf_counter() - t0
    path = "C kernel" if kernel is not None else "torch"
    _, t_fwd = run_timed(lambda: forward_only(case), device, clock)
    ours, t_ours = run_timed(lambda: ours_gram(case, powers), device, clock)
    row: dict[str, Any] = {
        "case": case.name, "detector": "gram", "ours_s": t_ours, "forward_s": t_fwd,
        "path": path, "kernel_load_wall_s": t_kernel,
    }  # fmt: skip
    if not skip_reference:
        small = case if reference_fraction >= 1 else subset(case, reference_fraction)
        ref, t_ref = run_timed(lambda: reference_gram(small, powers), device, clock)
        if small is not case:
            ours = ours_gram(small, powers)  # the same images as the reference, untimed
            scale = _count(case) / _count(small)
            row.update(reference_measured_s=t_ref, reference_extrapolated=True,
                       reference_note=small.note, reference_scale=scale)  # fmt: skip
            t_ref *= scale
        row.update(reference_s=t_ref, speedup=t_ref / t_ours)
        row["speedup_without_forward"] = (t_ref - t_fwd) / max(t_ours - t_fwd, 1e-9)
        row["max_abs_diff"], row["max_rel_diff"] = _diff(ours, ref)
    rows.append(row)
    # Mahalanobis on the penultimate features (their forward pass is shared and not timed)
    h_train, z_train = penultimate(case, "train")
    h_test, _ = penultimate(case, "test")
    y = z_train.argmax(1)  # random inputs have no labels: the predicted class stands in
    ours_m, t_m = run_timed(
        lambda: ours_mahalanobis(h_train, y, h_test, case.num_classes), device, clock
    )
    row = {"case": case.name, "detector": "mahalanobis", "ours_s": t_m}
    if not skip_reference:
        args = (h_train.double().cpu().numpy(), y.cpu().numpy(), h_test.double().cpu().numpy())
        ref_m, t_rm = run_timed(
            lambda: reference_mahalanobis(*args, case.num_classes), device, clock
        )
        row.update(reference_s=t_rm, speedup=t_rm / t_m)
        row["max_abs_diff"], row["max_rel_diff"] = _diff(ours_m, ref_m)
    rows.append(row)
    return rows


def run_ood(args: argparse.Namespace) -> int:
    from benchmark.device import select_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    global _progress
    clock = pick_clock(args.clock, device)
    _progress = not args.quiet
    out = []
    for name in args.case:
        if name == "digits":
            limit = {"train": args.n_train, "val": args.n_val, "test": args.n_test}
            case = digits_case(device, args.batch_size, limit)
        else:
            n = (args.n_train or 10_000, args.n_test or 10_000, args.n_val or 1_000)
            case = resnet18_case(device, args.batch_size, *n)
        rows = measure(case, device, args.powers, args.no_reference, args.reference_fraction, clock)
        for r in rows:
            r["note"] = case.note
        out.extend(rows)
    env = {
        "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "clock": clock,
    }  # fmt: skip
    if args.json:
        print(json.dumps({"environment": env, "rows": out}, indent=2))
        return 0
    print(
        f"bench perf ood on {env['device']} (torch {env['torch']}, {env['threads']} threads; "
        f"{'process CPU' if clock == 'cpu' else 'wall-clock'} seconds; both sides include "
        "the same forward passes)"
    )
    for r in out:
        line = f"{r['case']:9s} {r['detector']:12s} ours {r['ours_s']:8.2f} s"
        if "reference_s" in r:
            extra = "EXTRAPOLATED " if r.get("reference_extrapolated") else ""
            line += f"  {extra}reference {r['reference_s']:8.2f} s"
            line += f"  {extra}speed-up {r['speedup']:6.1f}x"
            if "speedup_without_forward" in r:
                line += f" ({r['speedup_without_forward']:.1f}x without the forward pass"
                line += f" of {r['forward_s']:.2f} s)"
            line += f"  max |Δ| {r['max_abs_diff']:.2e} (relative {r['max_rel_diff']:.2e})"
        print(line)
        print(f"          {r['note']}")
        if "path" in r:
            load = r["kernel_load_wall_s"]
            print(
                f"          ours: {r['path']} (loaded in {load:.2f} s of wall time before timing)"
            )
        if r.get("reference_extrapolated"):
            print(
                f"          reference measured {r['reference_measured_s']:.2f} s on the "
                f"{r['reference_note']}, scaled ×{r['reference_scale']:.1f} to the full case "
                "(its cost is linear in the image count); max |Δ| on those images"
            )
    return 0


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{value}: must be in (0, 1]")
    return value


def add_ood(targets: Any, common: argparse.ArgumentParser) -> None:
    p = targets.add_parser(
        "ood",
        parents=[common],
        help="time the gram and mahalanobis detectors next to reference-style loops",
        description="Fits and scores the gram and mahalanobis OoD detectors on --device next "
        "to reference-style implementations (per-layer, per-order loops with numpy min/max) on "
        "the same network and inputs, in one process; prints both times, the speed-up and "
        "the largest score difference.",
        epilog="examples:\n  bench perf ood --case digits\n"
        "  bench perf ood --case resnet18 --n-train 2000 --n-test 2000 --threads 1\n"
        "  bench perf ood --case resnet18 --threads 1 --reference-fraction 0.02   # 10k + 10k\n"
        "  bench perf ood --case digits resnet18 --device cuda --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--case", nargs="+", choices=("digits", "resnet18"), default=["digits"])
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument(
        "--n-train", type=at_least(1), help="training images (resnet18: 10,000; digits: all)"
    )
    p.add_argument("--n-test", type=at_least(1), help="test images (10,000; digits: all)")
    p.add_argument("--n-val", type=at_least(1), help="val images (1,000; digits: all)")
    p.add_argument("--powers", type=at_least(1), default=10, help="Gram orders 1..P")
    p.add_argument("--batch-size", type=at_least(1), default=256)
    p.add_argument("--threads", type=at_least(1), help="torch CPU threads")
    add_clock_argument(p)
    p.add_argument("--no-reference", action="store_true", help="time ours only")
    p.add_argument(
        "--reference-fraction",
        type=_fraction,
        default=1.0,
        metavar="F",
        help="run the gram reference on the first F (0 < F <= 1) of each split only and scale "
        "its time by the image counts (printed as EXTRAPOLATED); for the 10,000 + 10,000 "
        "resnet18 case, whose reference would take hours",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_ood)
