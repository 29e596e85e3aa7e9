"""``bench perf TARGET``: measured speed, printed side by side with a reference.

``bench perf metrics [--device cpu|cuda] [--sizes PRESET|CASE=N ...] [--json]`` times every
metric against its reference implementation in one process (same inputs, same machine) and
prints the ratio and the largest disagreement. The reference runs where users run it: on the
CPU (scikit-learn, ``dcor``, torchmetrics, plain loops); ours runs on ``--device``.

A new target is one ``add_<target>(targets, common)`` function appended to ``TARGETS``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from benchmark.cli.checks import at_least
from benchmark.errors import BenchError, UnknownNameError


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "perf",
        parents=[common],
        help="measure speed against reference implementations",
        description="Measured speed of parts of the harness, next to a reference.",
    )
    targets = p.add_subparsers(dest="target", required=True)
    for add in TARGETS:
        add(targets, common)
    targets.metavar = "{" + ",".join(targets.choices) + "}"


# -- timing --------------------------------------------------------------------------------


#: the clocks of the perf commands (``--clock``): ``time.perf_counter`` (wall) or
#: ``time.process_time`` (this process's CPU time: on a shared CPU the wall clock also counts
#: the other jobs' time; with N torch threads it sums them)
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def add_clock_argument(p: argparse.ArgumentParser) -> None:
    """``--clock auto|cpu|wall`` (auto: ``cpu`` on the CPU, ``wall`` on CUDA: ``pick_clock``)."""
    p.add_argument(
        "--clock",
        choices=("auto", *CLOCKS),
        default="auto",
        help="cpu: this process's CPU time (auto on the CPU: a shared machine's wall clock "
        "counts the other jobs' time; with --threads N it sums N threads); wall: elapsed "
        "time (auto on CUDA)",
    )


def pick_clock(choice: str, device: torch.device) -> str:
    """The clock ``--clock choice`` means on ``device``."""
    return choice if choice != "auto" else ("wall" if device.type == "cuda" else "cpu")


def run_timed(
    fn: Callable[[], Any], device: torch.device, clock: str = "wall"
) -> tuple[Any, float]:
    """(result, seconds on ``CLOCKS[clock]``) of one run of ``fn``; CUDA work is synchronised
    before and after it."""
    now = CLOCKS[clock]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = now()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, now() - t0


def timed(fn: Callable[[], Any], device: torch.device, repeat: int) -> tuple[Any, float]:
    """(result, best wall time in s of 1 + ``repeat`` runs); a first run over 1 s is not
    repeated. CUDA work is synchronised before and after each run."""
    out, best = run_timed(fn, device)
    if best < 1.0:
        for _ in range(max(1, repeat)):
            out, t = run_timed(fn, device)
            best = min(best, t)
    return out, best


def max_abs_diff(a: Any, b: Any) -> float:
    if isinstance(a, dict):
        return max(max_abs_diff(a[k], b[k]) for k in b)
    return abs(float(a) - float(b))


# -- metrics cases -------------------------------------------------------------------------


@dataclass
class Measured:
    """What a case builds: our callable and the reference's, on the same inputs.

    ``rate``: (unit, items ours processes, items the reference processes) when the two run on
    different amounts of work; the speed-up is then the ratio of rates. ``check``: what to
    compare with the reference's output (default: ours). ``baseline``: (label, callable,
    images) timed on another row, e.g. the model's own inference.
    """

    ours: Callable[[], Any]
    reference: Callable[[], Any] | None
    reference_name: str
    size: str
    rate: tuple[str, int, int] | None = None
    check: Callable[[], Any] | None = None
    baseline: tuple[str, Callable[[], Any], int] | None = None
    warmup: Callable[[], Any] | None = None  # untimed, e.g. to let numba compile the reference
    note: str = ""


@dataclass
class Case:
    name: str
    build: Callable[[int, torch.device], Measured]
    sizes: dict[str, int]  # preset -> n


def _labels_preds(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, k, n)
    preds = np.where(rng.rand(n) < 0.7, labels, rng.randint(0, k, n))
    return labels, preds


def _bacc(n: int, device: torch.device) -> Measured:
    from sklearn.metrics import balanced_accuracy_score

    from benchmark.metric import metric_fn

    labels, preds = _labels_preds(n, 100)
    y, p = torch.from_numpy(labels).to(device), torch.from_numpy(preds).to(device)
    fn = metric_fn("balanced_accuracy")
    return Measured(
        lambda: fn(p, y),
        lambda: balanced_accuracy_score(labels, preds),
        "sklearn balanced_accuracy_score",
        f"n={n:,}, 100 classes",
    )


def _dcor_inputs(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    x = rng.randn(n, d)
    y = x[:, :1] ** 2 + rng.randn(n, 1)
    return x, y


def _dcor(n: int, device: torch.device) -> Measured:
    from benchmark.metric import metric_fn

    d = 64
    x, y = _dcor_inputs(n, d)
    tx, ty = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    fn = metric_fn("dcor2")
    need = n * n * d * 8 * 2  # dcor 0.7's n×n×d float64 fallback, plus a copy
    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")

    def reference(a: np.ndarray = x, b: np.ndarray = y) -> float:
        import warnings

        import dcor

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(dcor.u_distance_correlation_sqr(a, b))

    fits = need < 0.5 * available
    return Measured(
        lambda: fn(tx, ty, unbiased=True),
        reference if fits else None,
        "dcor.u_distance_correlation_sqr",
        f"n={n:,}, d={d} vs 1",
        warmup=lambda: reference(x[:20], y[:20]),
        note="" if fits else f"dcor skipped: needs ~{need / 2**30:.0f} GiB of memory",
    )


def _dcor_large(n: int, device: torch.device) -> Measured:
    from benchmark.metric import metric_fn

    d = 512
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(n, d, generator=g, dtype=torch.float32).to(device)
    y = (x[:, :1] ** 2 + torch.randn(n, 1, generator=g).to(device)).contiguous()
    fn = metric_fn("dcor2")
    return Measured(
        lambda: fn(x, y, unbiased=True),
        None,
        "(none: dcor needs n×n×d memory)",
        f"n={n:,}, d={d} vs 1",
    )


def _probs(n: int, k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (n,), generator=g)
    logits = torch.randn(n, k, generator=g) * 2
    logits[torch.arange(n), labels] += 2.0
    return logits.softmax(dim=1), labels


def _ece(n: int, device: torch.device) -> Measured:
    from torchmetrics.functional.classification import multiclass_calibration_error

    from benchmark.metric import metric_fn

    probs, labels = _probs(n, 10)
    dp, dl = probs.to(device), labels.to(device)
    fn = metric_fn("ece")
    return Measured(
        lambda: fn(dp, dl, binning="torchmetrics"),  # the reference's binning
        lambda: float(multiclass_calibration_error(probs, labels, num_classes=10, n_bins=15)),
        "torchmetrics multiclass_calibration_error (cpu)",
        f"n={n:,}, 10 classes",
    )


def _ood(n: int, device: torch.device) -> Measured:
    from sklearn.metrics import auc, precision_recall_curve, roc_auc_score, roc_curve

    from benchmark.metric import metric_fn

    rng = np.random.RandomState(0)
    id_s, ood_s = rng.randn(n // 2) + 1.0, rng.randn(n - n // 2)
    t_id, t_ood = torch.from_numpy(id_s).to(device), torch.from_numpy(ood_s).to(device)
    fn = metric_fn("ood")

    def reference() -> dict[str, float]:
        y = np.r_[np.ones(len(id_s)), np.zeros(len(ood_s))]
        s = np.r_[id_s, ood_s]
        fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
        fpr_o, tpr_o, _ = roc_curve(1 - y, -s, drop_intermediate=False)
        p_in, r_in, _ = precision_recall_curve(y, s)
        p_out, r_out, _ = precision_recall_curve(1 - y, -s)
        return {
            "auroc": roc_auc_score(y, s),
            "fpr95": fpr[np.argmax(tpr >= 0.95)],
            "fpr95_ood_positive": fpr_o[np.argmax(tpr_o >= 0.95)],
            "aupr_in": auc(r_in, p_in),
            "aupr_out": auc(r_out, p_out),
        }

    return Measured(
        lambda: fn(t_id, t_ood),
        reference,
        "sklearn roc_auc_score, roc_curve ×2, precision_recall_curve ×2",
        f"n={n:,} (half OoD), 5 metrics",
    )


def _miou(n: int, device: torch.device) -> Measured:
    from benchmark.metric import metric_fn

    side = 112
    g = torch.Generator().manual_seed(0)
    sal = torch.rand(n, side, side, generator=g)
    masks = (torch.rand(n, side, side, generator=g) < 0.3).to(torch.uint8) * 255
    ds, dm = sal.to(device), masks.to(device)
    fn = metric_fn("miou")
    s_np, m_np = sal.double().numpy(), masks.numpy()

    def reference() -> float:  # one image at a time, as ALA's compute_miou
        ious = []
        for s, m in zip(s_np, m_np):
            gt = m / 255 > 0.5
            if not gt.any():
                continue
            lo, hi = s.min(), s.max()
            pred = (s - lo) / (hi - lo) > 0.5 if hi > lo else np.zeros_like(gt)
            ious.append((pred & gt).sum() / (pred | gt).sum())
        return float(np.mean(ious))

    return Measured(
        lambda: fn(ds, dm), reference, "numpy loop over images", f"{n:,} maps {side}×{side}"
    )


#: image side for the insertion/deletion case: ResNet-50 at 224 px on a GPU; a CNN on the CPU
INSDEL_SIDE = {"cuda": 224, "cpu": 32}


def _insdel_model(device: torch.device, side: int) -> tuple[torch.nn.Module, int]:
    """ResNet-50 (random weights, bf16, channels-last) at 224 px on CUDA; a small CNN else."""
    if device.type == "cuda" and side >= 224:
        import torchvision

        model = torchvision.models.resnet50(weights=None)
        model = model.to(device, memory_format=torch.channels_last)
        return model.eval(), 256
    from benchmark.backbones import build_backbone
    from benchmark.method import Classifier

    backbone = build_backbone("tiny-cnn", (3, side, side))
    model = Classifier(backbone, torch.nn.Linear(backbone.feature_dim, 10))
    return model.to(device).eval(), 256


def _insertion_deletion(n: int, device: torch.device) -> Measured:
    from benchmark.device import autocast
    from benchmark.metric import metric_fn
    from benchmark.plugins.metrics.insertion_deletion import (
        auc,
        blur,
        default_step,
        pixel_counts,
    )

    side = INSDEL_SIDE[device.type]
    model, batch = _insdel_model(device, side)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=g)
    saliency = torch.rand(n, side, side, generator=g)
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)

    def normalise(x: torch.Tensor) -> torch.Tensor:  # as the runner's: channels-last on CUDA
        x = (x - mean) / std
        return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x

    amp = device.type == "cuda"
    fn = metric_fn("insertion_deletion")
    d_images, d_sal = images.to(device), saliency.to(device)
    step = default_step("rise", side, side)
    points = len(pixel_counts(side * side, step, True))
    n_loop = max(1, min(n, 2))

    @torch.no_grad()
    def loop() -> dict[str, float]:
        """RISE-style: one image, one step, one forward pass at a time."""
        scores = {"insertion": [], "deletion": []}
        for i in range(n_loop):
            xn = normalise(d_images[i : i + 1].float() / 255)
            order = torch.argsort(d_sal[i].flatten(), descending=True, stable=True)
            with autocast(device):
                c = int(model(xn).argmax())
            for mode, start, finish in (
                ("insertion", blur(xn), xn),
                ("deletion", xn.clone(), torch.zeros_like(xn)),
            ):
                cur, curve = start.clone().flatten(2), []
                for k in range(points):
                    with autocast(device):
                        logits = model(cur.view_as(xn))
                    curve.append(float(logits.float().softmax(1)[0, c]))
                    idx = order[k * step : (k + 1) * step]
                    cur[:, :, idx] = finish.flatten(2)[:, :, idx]
                scores[mode].append(float(auc(torch.tensor(curve))))
        return {m: float(np.mean(v)) for m, v in scores.items()}

    total = n * 2 * points
    perturbed = torch.randn(min(total, batch), 3, side, side, device=device)
    if device.type == "cuda":
        perturbed = perturbed.contiguous(memory_format=torch.channels_last)

    @torch.no_grad()
    def model_only() -> None:
        """The model's own batched inference over as many images as the curves need."""
        for start in range(0, total, batch):
            with autocast(device):
                model(perturbed[: min(batch, total - start)])

    def ours() -> dict[str, float]:
        r = fn(model, d_images, d_sal, protocol="rise", normalise=normalise, amp=amp)
        return {"insertion": r["insertion"], "deletion": r["deletion"]}

    def ours_on_loop_subset() -> dict[str, float]:
        r = fn(
            model, d_images[:n_loop], d_sal[:n_loop], protocol="rise", normalise=normalise, amp=amp
        )
        return {"insertion": r["insertion"], "deletion": r["deletion"]}

    return Measured(
        ours,
        loop,
        f"one-step-at-a-time loop ({n_loop} images)",
        f"{n:,} images {side}×{side}, {points} points × 2, {type(model).__name__}",
        rate=("curves", 2 * n, 2 * n_loop),
        check=ours_on_loop_subset,
        baseline=("model-only batched inference", model_only, total),
    )


CASES = [
    Case("bacc", _bacc, {"quick": 10_000, "cpu": 1_000_000, "gpu": 1_000_000}),
    Case("dcor2", _dcor, {"quick": 300, "cpu": 2_000, "gpu": 5_000}),
    Case("dcor2-large", _dcor_large, {"quick": 2_000, "cpu": 10_000, "gpu": 100_000}),
    Case("ece", _ece, {"quick": 10_000, "cpu": 1_000_000, "gpu": 1_000_000}),
    Case("ood", _ood, {"quick": 10_000, "cpu": 1_000_000, "gpu": 1_000_000}),
    Case("miou", _miou, {"quick": 20, "cpu": 1_000, "gpu": 5_000}),
    Case("insertion-deletion", _insertion_deletion, {"quick": 2, "cpu": 8, "gpu": 64}),
]
PRESETS = ("quick", "cpu", "gpu")


def parse_sizes(tokens: list[str], device: torch.device) -> dict[str, int]:
    """``quick``/``cpu``/``gpu`` presets and ``CASE=N`` overrides -> n per case."""
    preset = "gpu" if device.type == "cuda" else "cpu"
    overrides: dict[str, int] = {}
    names = [c.name for c in CASES]
    for token in tokens:
        if "=" in token:
            name, _, value = token.partition("=")
            if name not in names:
                raise UnknownNameError("perf case", name, names)
            try:
                overrides[name] = int(float(value))
            except ValueError:
                raise BenchError(f"--sizes {token}: N must be a number") from None
            if overrides[name] < 1:
                raise BenchError(f"--sizes {token}: N must be positive")
        elif token in PRESETS:
            preset = token
        else:
            raise UnknownNameError("size preset", token, PRESETS, hint="or CASE=N")
    return {c.name: overrides.get(c.name, c.sizes[preset]) for c in CASES}


def measure_metrics(
    device: torch.device,
    sizes: dict[str, int],
    only: str | None = None,
    repeat: int = 3,
    progress: bool = False,
    threads: int | None = None,
) -> list[dict[str, Any]]:
    """One row per case (plus baseline rows); ``threads`` is re-applied before each case,
    because importing a reference (``dcor``, through numba) resets torch's thread count."""
    from benchmark.plugins import load_plugins
    from benchmark.progress import progress_bar

    load_plugins()
    cases = [c for c in CASES if not only or fnmatch.fnmatch(c.name, only)]
    if not cases:
        raise UnknownNameError("perf case", only or "", [c.name for c in CASES])
    rows = []
    for case in progress_bar(cases, enabled=progress, desc="perf metrics", unit="case"):
        m = case.build(sizes[case.name], device)
        if m.reference is not None and m.warmup:
            m.warmup()
        if threads:
            torch.set_num_threads(threads)
        ours_out, ours_s = timed(m.ours, device, repeat)
        row: dict[str, Any] = {
            "case": case.name,
            "size": m.size,
            "device": str(device),
            "ours_s": ours_s,
            "reference": m.reference_name,
            "reference_s": None,
            "speedup": None,
            "max_abs_diff": None,
            "note": m.note,
        }
        if m.reference is not None:
            ref_out, ref_s = timed(m.reference, torch.device("cpu"), 1)
            row["reference_s"] = ref_s
            row["speedup"] = ref_s / ours_s
            if m.rate:
                unit, ours_items, ref_items = m.rate
                row["speedup"] = (ours_items / ours_s) / (ref_items / ref_s)
                row["note"] = f"{ours_items / ours_s:,.2f} vs {ref_items / ref_s:,.2f} {unit}/s" + (
                    f"; {m.note}" if m.note else ""
                )
            checked = m.check() if m.check else ours_out
            row["max_abs_diff"] = max_abs_diff(checked, ref_out)
        rows.append(row)
        if m.baseline:
            label, fn, images = m.baseline
            _, t = timed(fn, device, repeat)
            rows.append(
                {
                    "case": f"{case.name}: {label}",
                    "size": f"{images:,} images",
                    "device": str(device),
                    "ours_s": t,
                    "reference": "",
                    "reference_s": None,
                    "speedup": None,
                    "max_abs_diff": None,
                    "note": f"{images / t:,.0f} images/s; the curves take {ours_s / t:.2f}× this",
                }
            )
    return rows


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds * 1e3:,.1f} ms" if seconds < 1 else f"{seconds:,.2f} s"


def render_metrics(rows: list[dict[str, Any]]) -> str:
    from tabulate import tabulate

    table = [
        {
            "metric": r["case"],
            "size": r["size"],
            "ours": _fmt_s(r["ours_s"]),
            "reference": r["reference"],
            "ref time": _fmt_s(r["reference_s"]),
            "speed-up": "—" if r["speedup"] is None else f"{r['speedup']:,.1f}×",
            "max |Δ|": "—" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}",
            "note": r["note"],
        }
        for r in rows
    ]
    return tabulate(table, headers="keys", tablefmt="github", disable_numparse=True)


def run_metrics(args: argparse.Namespace) -> int:
    from benchmark.device import environment, select_device

    device = select_device(args.device)
    if args.repeat < 1:
        raise BenchError("--repeat must be at least 1")
    if args.threads is not None and args.threads < 1:
        raise BenchError("--threads must be at least 1")
    sizes = parse_sizes(args.sizes or [], device)
    rows = measure_metrics(
        device, sizes, args.only, args.repeat, progress=not args.quiet, threads=args.threads
    )
    env = environment(device)
    if args.json:
        print(json.dumps({"environment": env, "rows": rows}, indent=1))
        return 0
    where = env.get("gpu", f"{env['cpu_count']} CPU cores, {env['torch_threads']} torch threads")
    print(f"metrics vs references on {device} ({where}); references run on the CPU")
    print(render_metrics(rows))
    return 0


def add_metrics(targets: Any, common: argparse.ArgumentParser) -> None:
    p = targets.add_parser(
        "metrics",
        parents=[common],
        help="time each metric next to its reference implementation",
        description="Times every metric on --device next to its reference implementation "
        "(scikit-learn, dcor, torchmetrics, plain loops; on the CPU) on the same inputs, in one "
        "process, and prints the speed-up and the largest disagreement.",
        epilog="examples:\n  bench perf metrics\n  bench perf metrics --device cuda --json\n"
        "  bench perf metrics --sizes quick dcor2=5000 --only 'dcor*'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument(
        "--sizes",
        nargs="+",
        metavar="PRESET|CASE=N",
        help=f"size preset ({', '.join(PRESETS)}; default: gpu on CUDA, else cpu) "
        "and/or per-case sizes, e.g. dcor2=5000",
    )
    p.add_argument("--only", help="fnmatch pattern on case names, e.g. 'dcor*'")
    p.add_argument(
        "--repeat", type=at_least(1), default=3, help="timed repeats of fast runs (best)"
    )
    p.add_argument(
        "--threads", type=at_least(1), help="torch CPU threads (default: torch's choice)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_metrics)


#: ``bench perf`` targets: each adds one subcommand
def add_train(targets: Any, common: argparse.ArgumentParser) -> None:
    """``bench perf train``: see ``benchmark.perf_train``."""
    from benchmark.perf_train import add_train as add

    add(targets, common)


def add_explain(targets: Any, common: argparse.ArgumentParser) -> None:
    """``bench perf explain``: see ``benchmark.cli.perf_explain``."""
    from benchmark.cli.perf_explain import add_explain as add

    add(targets, common)


def add_ood(targets: Any, common: argparse.ArgumentParser) -> None:
    """``bench perf ood``: see ``benchmark.cli.perf_ood``."""
    from benchmark.cli.perf_ood import add_ood as add

    add(targets, common)


TARGETS = [add_metrics, add_train, add_explain, add_ood]
