"""``bench plot saliency``: a grid of test images, one column per explainer, each map overlaid
on the image with the ground-truth object mask outlined (explanation track).

Reads the saliency maps stored with ``bench run --predictions`` (``predictions/<run_id>.pt``)
and rebuilds the dataset to get the images and masks. Rows are the first ``--images`` test
images that the explanation metrics score (non-empty mask); one run per method (the lowest
seed). The caption of each cell gives the method's prediction and that image's IoU
(``thr0.5``: the min-max map > 0.5 vs the mask).
"""

from __future__ import annotations

import argparse
import fnmatch
import io
from typing import Any

import numpy as np

from benchmark.cli.checks import at_least
from benchmark.cli.plots import PlotKind, matching_records, register_plot
from benchmark.errors import BenchError


@register_plot("saliency")
class Saliency(PlotKind):
    """Images × explainers: saliency overlaid (jet), object mask outlined (white)."""

    help = "saliency maps of each explainer over test images, mask outlined (explain)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--images", type=at_least(1), default=6, help="saliency: number of images (rows)"
        )

    def main(self, args: argparse.Namespace) -> int:
        return main(args)


def select_records(args: argparse.Namespace, store: Any) -> tuple[list[Any], list[str]]:
    """The stored records of ``--dataset`` / ``--method`` (comma-separated fnmatch patterns,
    in order), and the patterns. Raises ``BenchError`` when runs of several datasets match."""
    records, patterns = matching_records(args, store)
    datasets = sorted({r.dataset for r in records})
    if len(datasets) > 1:
        raise BenchError(f"runs of several datasets match ({', '.join(datasets)}); use --dataset")
    return records, patterns


def order_by_patterns(names: list[str], patterns: list[str]) -> list[str]:
    """Names in the order of the first pattern each matches (unmatched last, sorted)."""

    def rank(name: str) -> tuple[int, str]:
        hits = [i for i, p in enumerate(patterns) if fnmatch.fnmatch(name, p)]
        return (min(hits) if hits else len(patterns), name)

    return sorted(names, key=rank)


def iou(saliency: np.ndarray, mask: np.ndarray) -> float:
    """IoU of the min-max map > 0.5 with the mask > 0.5 (the ``thr0.5`` recipe, one image)."""
    lo, hi = float(saliency.min()), float(saliency.max())
    pred = (saliency - lo) / (hi - lo) > 0.5 if hi > lo else np.zeros(saliency.shape, bool)
    union = (pred | mask).sum()
    return float((pred & mask).sum() / union) if union else float("nan")


def main(args: argparse.Namespace) -> int:
    import torch
    import torch.nn.functional as F

    from benchmark.cli.checks import output_file
    from benchmark.data import load_bundle
    from benchmark.imagefiles import take
    from benchmark.io import atomic_write_bytes
    from benchmark.metric import as_mask
    from benchmark.store import Store

    explicit_out = output_file(args.out, "--out", ".png") if args.out else None
    store = Store(args.results)
    records, patterns = select_records(args, store)
    runs: dict[str, Any] = {}
    for r in sorted(records, key=lambda r: r.seed):
        if r.method in runs or not store.has_predictions(r.run_id):
            continue
        outputs = store.load_predictions(r.run_id)
        if args.split in outputs and outputs[args.split].saliency is not None:
            runs[r.method] = (r, outputs[args.split])
    if not runs:
        raise BenchError(
            f"no runs with stored saliency maps on split '{args.split}' in {store.runs} "
            "(run an explainer with --predictions, e.g. bench run --method gradcam "
            "--dataset objects-masks --predictions)"
        )
    methods = order_by_patterns(list(runs), patterns)
    first = runs[methods[0]][0]
    bundle = load_bundle(first.dataset, first.dataset_options)
    split = bundle.splits[args.split]
    if "mask" not in split.attrs:
        raise BenchError(f"{first.dataset} has no object masks on split '{args.split}'")
    masks = as_mask(take(split.attrs["mask"]), name="masks", soft=True)
    rows = [i for i in range(len(split)) if int(split.labels[i]) >= 0 and bool(masks[i].any())]
    rows = rows[: args.images]
    images = take(split.inputs, torch.tensor(rows))
    names = bundle.class_names or [str(c) for c in range(bundle.num_classes)]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 1 + len(methods)
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(1.9 * cols, 2.0 * len(rows)), dpi=110, squeeze=False
    )
    for r_i, i in enumerate(rows):
        img = images[r_i].float()
        img = img / 255.0 if images.dtype == torch.uint8 else img
        rgb = img.permute(1, 2, 0).numpy().squeeze()
        mask = masks[i].numpy()
        h, w = mask.shape
        ax = axes[r_i, 0]
        ax.imshow(rgb, cmap="gray" if rgb.ndim == 2 else None)
        ax.contour(mask, levels=[0.5], colors="white", linewidths=1.2)
        ax.set_title(f"{names[int(split.labels[i])]}", fontsize=8)
        for m_i, method in enumerate(methods):
            out = runs[method][1]
            sal = out.saliency[i].float()
            if tuple(sal.shape) != (h, w):
                sal = F.interpolate(sal[None, None], size=(h, w), mode="bilinear")[0, 0]
            sal = sal.numpy()
            ax = axes[r_i, m_i + 1]
            ax.imshow(rgb, cmap="gray" if rgb.ndim == 2 else None)
            ax.imshow(sal, cmap="jet", alpha=0.5)
            ax.contour(mask, levels=[0.5], colors="white", linewidths=1.2)
            pred = int(out.logits[i].argmax()) if out.logits is not None else -1
            label = names[pred] if 0 <= pred < len(names) else "?"
            ax.set_title(f"{method}\n{label}, IoU {iou(sal, mask):.2f}", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(
        f"{first.dataset} ({args.split}): saliency (jet) and object mask (white)", fontsize=9
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    out = explicit_out or store.root / "plots" / f"saliency-{first.dataset}-{args.split}.png"
    atomic_write_bytes(out, buf.getvalue())
    print(f"{len(rows)} images × {len(methods)} explainers ({', '.join(methods)})")
    print(f"wrote {out}")
    return 0
