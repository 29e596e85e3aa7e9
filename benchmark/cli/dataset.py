"""``bench dataset NAME [--data-root DIR] [--set k=v ...] [--json] [--preview FILE.png]``.

Builds (or loads from the cache) one dataset and describes it through the ``Bundle`` contract
only, so it works for every registered dataset: splits and sizes, classes and class counts
(with the Many / Medium / Few split for long-tailed sets), attributes with their value counts,
version, fingerprint and options. ``--preview`` writes a grid of samples per class (or per
group, or per OoD split), with object masks beside the images where a split has them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F

from benchmark.cli.checks import at_least

#: Many / Medium / Few by training images per class (classifier-balancing ``shot_acc``)
MANY, FEW = 100, 20
#: an integer attribute with at most this many distinct values gets a value-count table
MAX_LEVELS = 16


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "dataset",
        parents=[common],
        help="describe one dataset (splits, classes, attributes, fingerprint)",
        description="Build or load one dataset and describe it; optionally save a preview grid.",
        epilog="examples:\n  bench dataset colored-mnist --set rho=0.99\n"
        "  bench dataset glyph-lt --set imbalance=50 --json\n"
        "  bench dataset waterbirds-synth --preview waterbirds.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", help="dataset name (see `bench list datasets`)")
    p.add_argument("--data-root", help="folder of a real dataset (else $BENCH_DATA, config)")
    p.add_argument(
        "--set",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="dataset option, e.g. --set imbalance=50 (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--quiet", action="store_true", help="no status line on stderr")
    p.add_argument("--preview", metavar="FILE.png", help="write a grid of samples to this PNG")
    p.add_argument("--split", default="train", help="split shown by --preview (default: train)")
    p.add_argument("--per-row", type=at_least(1), default=8, help="samples per row in --preview")
    p.set_defaults(func=main)


# -- description --------------------------------------------------------------------------
def shot_split(counts: list[int]) -> dict[str, int]:
    """Number of Many (> 100), Medium (20–100) and Few (< 20) classes."""
    return {
        "many": sum(c > MANY for c in counts),
        "medium": sum(FEW <= c <= MANY for c in counts),
        "few": sum(c < FEW for c in counts),
    }


def describe_attr(value: Any) -> dict[str, Any]:
    """Summary of one attribute: dtype, shape, and value counts / fractions / moments; lazy
    attributes (masks read from files) only their dtype, shape and ``lazy: true``."""
    if not isinstance(value, torch.Tensor):  # lazy files (CUB's masks): not read to describe
        dtype = getattr(value, "dtype", "uint8")
        shape = list(getattr(value, "shape", (len(value),))[1:])
        return {"dtype": str(dtype).removeprefix("torch."), "shape": shape, "lazy": True}
    v = value.detach().cpu()
    out: dict[str, Any] = {"dtype": str(v.dtype).removeprefix("torch."), "shape": list(v.shape[1:])}
    if v.numel() == 0:
        return out
    if v.dtype == torch.bool:
        if v.ndim == 1:
            out["fraction_true"] = float(v.sum(dtype=torch.float64)) / len(v)
        else:  # one flag per column (e.g. a per-factor majority flag)
            share = v.reshape(len(v), -1).sum(0, dtype=torch.float64) / len(v)
            out["fraction_true"] = [round(float(f), 4) for f in share]
    elif v.ndim > 1:  # masks and other per-pixel maps (no float copy of a large tensor)
        out["mean"] = float(v.sum(dtype=torch.float64)) / v.numel()
    elif v.is_floating_point():
        f = v.double()
        out.update(
            mean=float(f.mean()),
            std=float(f.std()) if len(f) > 1 else 0.0,
            min=float(f.min()),
            max=float(f.max()),
        )
    else:
        values, counts = torch.unique(v, return_counts=True)
        out["distinct"] = len(values)
        if len(values) <= MAX_LEVELS:
            out["counts"] = {int(a): int(c) for a, c in zip(values.tolist(), counts.tolist())}
        else:
            out["group_sizes"] = {
                "min": int(counts.min()),
                "median": float(counts.float().median()),
                "max": int(counts.max()),
            }
    return out


def input_shape(bundle: Any) -> list[int]:
    """(C, H, W) of the training inputs; lazy inputs without ``shape``: of their first item."""
    inputs = bundle.splits["train"].inputs
    if hasattr(inputs, "shape"):
        return list(inputs.shape[1:])
    return list(torch.as_tensor(inputs[0]).shape) if len(inputs) else []


def describe(bundle: Any, cls: Any) -> dict[str, Any]:
    """Everything ``bench dataset`` reports, as a JSON-able dict."""
    splits = {}
    for name, split in bundle.splits.items():
        labels = split.labels
        inputs = split.inputs
        splits[name] = {
            "size": len(split),
            "pair_with": split.pair_with,
            "input_dtype": str(getattr(inputs, "dtype", "lazy")).removeprefix("torch."),
            "class_counts": bundle.class_counts(name).tolist(),
            "unlabelled": int((labels < 0).sum()),
            "attrs": {k: describe_attr(v) for k, v in sorted(split.attrs.items())},
        }
    train = splits["train"]["class_counts"]
    out: dict[str, Any] = {
        "name": bundle.name,
        "track": bundle.track,
        "version": bundle.version,
        "fingerprint": bundle.fingerprint,
        "built_in": cls.builtin(),
        "description": (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "",
        "options": bundle.options,
        "num_classes": bundle.num_classes,
        "class_names": bundle.class_names,
        "input_shape": input_shape(bundle),
        "mean": list(bundle.mean),
        "std": list(bundle.std),
        "eval_splits": list(bundle.eval_splits),
        "splits": splits,
        "imbalance": (max(train) / min(train)) if train and min(train) > 0 else None,
    }
    if bundle.track == "longtail":
        out["shots"] = shot_split(train)
    return out


def print_report(info: dict[str, Any], note: str) -> None:
    from tabulate import tabulate

    print(
        f"{info['name']} (track {info['track']}, version {info['version']}) — {info['description']}"
    )
    print(f"fingerprint {info['fingerprint']}; {note}")
    print(
        "options: "
        + (", ".join(f"{k}={json.dumps(v)}" for k, v in info["options"].items()) or "(none)")
    )
    shape = "×".join(str(s) for s in info["input_shape"])
    print(
        f"inputs {shape} {info['splits']['train']['input_dtype']}, mean {_fmt(info['mean'])}, "
        f"std {_fmt(info['std'])}; evaluated on {', '.join(info['eval_splits'])}"
    )
    print()
    rows = [
        (name, s["size"], s["pair_with"] or "", s["unlabelled"] or "", ", ".join(s["attrs"]) or "—")
        for name, s in info["splits"].items()
    ]
    print(
        tabulate(
            rows,
            headers=["split", "size", "paired with", "OoD / unlabelled", "attributes"],
            tablefmt="github",
        )
    )
    print()
    names = info["class_names"] or [str(c) for c in range(info["num_classes"])]
    labelled = [n for n, s in info["splits"].items() if s["unlabelled"] < s["size"]]
    counts = {n: info["splits"][n]["class_counts"] for n in labelled}
    k = info["num_classes"]
    title = f"classes: {k}"
    if info["imbalance"]:
        title += f"; training imbalance (max/min) {info['imbalance']:.4g}"
    if "shots" in info:
        s = info["shots"]
        title += (
            f"; Many (>{MANY}) / Medium / Few (<{FEW}) classes: "
            f"{s['many']} / {s['medium']} / {s['few']}"
        )
    print(title)
    shown = (
        range(k)
        if k <= 20
        else sorted({*range(5), *range(k - 5, k), *range(0, k, max(1, k // 10))})
    )
    rows = []
    for c in shown:
        row = [c, names[c]] + [counts[n][c] for n in labelled]
        if "shots" in info:
            t = counts["train"][c]
            row.append("many" if t > MANY else "few" if t < FEW else "medium")
        rows.append(row)
    headers = ["class", "name", *labelled] + (["shot"] if "shots" in info else [])
    print(tabulate(rows, headers=headers, tablefmt="github"))
    if k > 20:
        print(f"({len(rows)} of {k} classes shown; all of them with --json)")
    for name, s in info["splits"].items():
        if not s["attrs"]:
            continue
        print()
        print(f"attributes of {name}:")
        for attr, d in s["attrs"].items():
            print(f"  {attr}: {_attr_line(d)}")


def _attr_line(d: dict[str, Any]) -> str:
    kind = d["dtype"] + (f" ×{'×'.join(map(str, d['shape']))}" if d["shape"] else "")
    if "fraction_true" in d:
        f = d["fraction_true"]
        return f"{kind}, true: " + (
            f"{f:.4f}" if isinstance(f, float) else ", ".join(f"{x:.3f}" for x in f)
        )
    if "counts" in d:
        return f"{kind}, counts: " + ", ".join(f"{k}: {v}" for k, v in d["counts"].items())
    if "group_sizes" in d:
        g = d["group_sizes"]
        return (
            f"{kind}, {d['distinct']} distinct values; samples per value: min {g['min']}, "
            f"median {g['median']:g}, max {g['max']}"
        )
    if "std" in d:
        return (
            f"{kind}, mean {d['mean']:.4g}, std {d['std']:.4g}, "
            f"range [{d['min']:.4g}, {d['max']:.4g}]"
        )
    if "mean" in d:
        return f"{kind}, mean {d['mean']:.4f}"
    return kind


def _fmt(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


# -- preview ------------------------------------------------------------------------------
def take(inputs: Any, index: list[int]) -> torch.Tensor:
    """Rows ``index`` of tensor or lazy inputs, as float (K, C, H, W) in [0, 1]: uint8 / 255;
    float inputs (e.g. metanorm-synth) min-max scaled over the whole split when it is a tensor."""
    if not index:
        return torch.zeros(0)
    try:
        if not isinstance(inputs, torch.Tensor) and hasattr(inputs, "take"):
            x = inputs.take(index)  # image files: decoded in the evaluation geometry
        else:
            x = inputs[torch.tensor(index)]
        if not isinstance(x, torch.Tensor):
            raise TypeError
    except Exception:  # lazy inputs that index one item at a time
        items = [torch.as_tensor(inputs[i]) for i in index]
        side = max(max(t.shape[-2:]) for t in items)
        x = torch.stack([_fit(t, side) for t in items])
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    ref = inputs if isinstance(inputs, torch.Tensor) else x
    lo, hi = float(ref.min()), float(ref.max())
    return ((x.float() - lo) / max(hi - lo, 1e-12)).clamp(0, 1)


def _fit(t: torch.Tensor, side: int) -> torch.Tensor:
    """One (C, H, W) or (H, W) image resized to side × side, dtype kept."""
    t = t if t.ndim == 3 else t[None]
    if t.shape[-2:] != (side, side):
        resized = F.interpolate(t[None].float(), size=(side, side), mode="bilinear")[0]
        t = resized.round().clamp(0, 255).to(t.dtype) if t.dtype == torch.uint8 else resized
    return t


def preview_rows(
    bundle: Any, split_name: str, per_row: int, rng: torch.Generator
) -> list[tuple[str, Any, list[int]]]:
    """(row label, split, sample indices): one row per group (≤ 16 groups) or per class,
    then one row per OoD split paired with the shown split."""
    split = bundle.splits[split_name]
    rows = []
    names = bundle.class_names or [str(c) for c in range(bundle.num_classes)]
    group = split.attrs.get("group")
    by_group = group is not None and group.ndim == 1 and len(torch.unique(group)) <= 16
    if by_group:
        keys = torch.unique(group).tolist()
        column = group
    else:
        k = bundle.num_classes
        keys = list(range(k)) if k <= 20 else sorted({round(i * (k - 1) / 19) for i in range(20)})
        column = split.labels
    for key in keys:
        idx = torch.nonzero(column == key).flatten()
        pick = idx[torch.randperm(len(idx), generator=rng)[:per_row]].tolist()
        if by_group:
            y = int(split.labels[pick[0]]) if pick else -1
            text = f"group {key} (y={names[y] if y >= 0 else '?'}, n={len(idx)})"
        else:
            text = f"{names[key]} (n={len(idx)})"
        rows.append((text, split, pick))
    for name, other in bundle.splits.items():
        if other.pair_with == split_name or (
            other.pair_with and split_name == "train" and name in bundle.eval_splits
        ):
            pick = torch.randperm(len(other), generator=rng)[:per_row].tolist()
            rows.append((f"{name} (n={len(other)})", other, pick))
    return rows


def save_preview(bundle: Any, path: str, split_name: str, per_row: int) -> int:
    """Write the preview PNG; returns the number of samples shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmark.errors import BenchError
    from benchmark.io import atomic_write_bytes

    if split_name not in bundle.splits:
        raise BenchError(
            f"--split {split_name!r}: this dataset's splits are {', '.join(bundle.splits)}"
        )
    rows = preview_rows(bundle, split_name, per_row, torch.Generator().manual_seed(0))
    has_mask = any("mask" in s.attrs for _, s, _ in rows)
    cols = per_row * (2 if has_mask else 1)
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(cols * 0.9 + 2.2, len(rows) * 0.95 + 0.5), squeeze=False
    )
    shown = 0
    for r, (text, split, pick) in enumerate(rows):
        images = take(split.inputs, pick)
        masks = split.attrs.get("mask")
        for j in range(per_row):
            spots = [axes[r][j * 2], axes[r][j * 2 + 1]] if has_mask else [axes[r][j]]
            for ax in spots:
                ax.set_xticks([])
                ax.set_yticks([])
                for side in ax.spines.values():
                    side.set_visible(False)
            if j >= len(pick):
                continue
            img = images[j]
            shown_img = img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)
            spots[0].imshow(
                shown_img.numpy(), cmap="gray" if img.shape[0] == 1 else None, vmin=0, vmax=1
            )
            if has_mask and masks is not None:
                one = masks[pick[j]]
                m = (one if isinstance(one, torch.Tensor) else masks.take([pick[j]])[0]).float()
                m = m / 255.0 if m.max() > 1 else m  # lazy masks are 0..255
                overlay = (img if img.shape[0] == 3 else img.expand(3, -1, -1)).clone() * 0.35
                overlay[0] += 0.65 * m
                spots[1].imshow(overlay.permute(1, 2, 0).clamp(0, 1).numpy())
            shown += 1
        axes[r][0].set_ylabel(text, rotation=0, ha="right", va="center", fontsize=7)
    mask_note = "; right of each image: its mask in red" if has_mask else ""
    fig.suptitle(f"{bundle.name} {split_name} ({bundle.fingerprint}){mask_note}", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return shown


# -- command ------------------------------------------------------------------------------
def main(args: argparse.Namespace) -> int:
    from benchmark.data import bundle_cache_path, load_bundle
    from benchmark.dataset import DATASETS
    from benchmark.hparams import parse_assignments

    cls = DATASETS.get(args.name)
    if args.preview:
        from benchmark.cli.checks import output_file

        output_file(args.preview, "--preview", ".png")
    if args.per_row < 1:
        from benchmark.errors import BenchError

        raise BenchError(f"--per-row {args.per_row}: must be >= 1")
    overrides = {k.removeprefix("dataset."): v for k, v in parse_assignments(args.set).items()}
    cached = cls.builtin() and bundle_cache_path(cls, overrides).is_file()
    if not cached and not (args.json or args.quiet):
        what = "building" if cls.builtin() else "reading"
        print(f"{what} {cls.name} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    bundle = load_bundle(args.name, overrides, root=args.data_root)
    seconds = time.perf_counter() - t0
    info = describe(bundle, cls)
    info["load_seconds"] = round(seconds, 3)
    info["from_cache"] = bool(cached)
    if args.preview:
        info["preview"] = {
            "file": args.preview,
            "samples": save_preview(bundle, args.preview, args.split, args.per_row),
        }
    if args.json:
        print(json.dumps(info, indent=1, default=_json_default))
        return 0
    where = "loaded from the cache" if cached else ("generated" if cls.builtin() else "read")
    print_report(info, f"{where} in {seconds:.2f} s")
    if args.preview:
        print(f"\npreview: {info['preview']['samples']} samples of {args.split} -> {args.preview}")
    return 0


def _json_default(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return str(obj)
