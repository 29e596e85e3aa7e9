"""The runner computes each metric family whenever a (dataset, method) pair provides its
inputs: ECE on a built-in run, and dcor², OoD, mIoU and Insertion/Deletion on toy plugins."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import tiny_settings

TOY_PLUGIN = '''
import torch

from benchmark import Bundle, Dataset, Method, Outputs, Split, register_dataset, register_method


def images(n, side, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    x = torch.randint(0, 120, (n, 3, side, side), dtype=torch.uint8, generator=g)
    x[labels == 1, :, : side // 2] += 100  # class 1 is brighter at the top: learnable
    return x, labels


class Toy(Dataset):
    version = "1"
    protocol = {"backbone": "tiny-cnn", "epochs": 1, "batch_size": 8}

    def splits(self, side=8):
        out = {}
        for seed, (name, n) in enumerate((("train", 24), ("test", 20))):
            x, y = images(n, side, seed)
            out[name] = Split(x, y, self.attributes(x, y))
        return out

    def bundle(self, splits, **kw):
        return Bundle(self.name, self.track, 2, splits, self.version, mean=(0.3,) * 3,
                      std=(0.3,) * 3, **kw)


@register_dataset("toy-confounder")
class ToyConfounder(Toy):
    track, attrs = "bias", ("confounder",)

    def attributes(self, x, y):
        return {"confounder": x.float().mean(dim=(1, 2, 3))}

    def build(self, options, data_root):
        return self.bundle(self.splits())


@register_dataset("toy-ood")
class ToyOoD(Toy):
    track = "ood"

    def attributes(self, x, y):
        return {}

    def build(self, options, data_root):
        splits = self.splits()
        x, _ = images(12, 8, 7)
        splits["far"] = Split(255 - x, torch.full((12,), -1), pair_with="test")
        return self.bundle(splits, eval_splits=("test", "far"))


@register_dataset("toy-explain")
class ToyExplain(Toy):
    track, attrs = "explain", ("mask",)

    def attributes(self, x, y):
        mask = torch.zeros(len(x), x.shape[2], x.shape[3], dtype=torch.uint8)
        mask[:, : x.shape[2] // 2] = 255
        mask[0] = 0  # one empty mask: excluded from mIoU and counted
        mask[1] //= 255  # a 0/1 mask stored as uint8: read as 0/1, not as an empty 0..255 one
        if self.name.endswith("empty"):
            mask[:] = 0
        return {"mask": mask}

    def build(self, options, data_root):
        return self.bundle(self.splits(side=12))


@register_dataset("toy-explain-empty")
class ToyExplainEmpty(ToyExplain):
    pass


@register_method("toy-saliency")
class ToySaliency(Method):
    """ERM whose explanation is the input's brightness."""

    tracks = ("explain",)

    def predict_batch(self, x):
        out = super().predict_batch(x)
        out.saliency = x.mean(dim=1)
        return out
'''


def run(cli, results: Path, *args: str) -> dict:
    code, out, err = cli("run", "--results", results, "--quiet", "--json", *args)
    assert code == 0, err
    (record,) = json.loads(out)
    return record


def test_runner_computes_calibration_on_a_builtin_run(cli, results: Path) -> None:
    sets = [a for pair in tiny_settings("glyph-lt") for a in ("--set", pair)]
    record = run(cli, results, "--method", "erm", "--dataset", "glyph-lt", *sets)
    test = record["metrics"]["test"]
    assert {"ece", "mce", "adaptive_ece"} <= set(test)
    assert 0 <= test["ece"] <= test["mce"] <= 1 and 0 <= test["adaptive_ece"] <= 1
    bins = record["details"]["test"]["calibration"]["bins"]
    n = sum(b["count"] for b in bins)
    assert len(bins) == 15 and n > 0  # Guo et al.'s bins, 1.0 in the last one
    assert bins[0]["lo"] == 0 and bins[-1]["hi"] == 1
    from_table = sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins)
    assert from_table == pytest.approx(test["ece"], abs=1e-9)
    assert record["details"]["test"]["calibration"]["binning"] == "guo"
    assert "binning guo" in record["conventions"]["calibration"]


def test_runner_computes_every_metric_family(cli, results: Path, tmp_path: Path) -> None:
    plugin = tmp_path / "toy_plugins.py"
    plugin.write_text(TOY_PLUGIN)
    common = ["--plugin", plugin, "--set", "epochs=1", "--set", "batch_size=8"]

    bias = run(cli, results, "--method", "erm", "--dataset", "toy-confounder", *common)
    assert -1 < bias["metrics"]["test"]["dcor2"] <= 1
    assert set(bias["details"]["test"]["dcor"]["per_class"]) == {"0", "1"}
    assert "U-statistic" in bias["conventions"]["dcor"]

    ood = run(cli, results, "--method", "erm", "--dataset", "toy-ood", *common)
    far = ood["metrics"]["far"]
    assert {"auroc", "fpr95", "fpr95_ood_positive", "aupr_in", "aupr_out"} <= set(far)
    assert all(0 <= far[k] <= 1 for k in ("auroc", "fpr95", "aupr_in", "aupr_out"))
    far_details = dict(ood["details"]["far"]["ood"])
    histogram = far_details.pop("histogram")
    assert far_details == {"n_id": 20, "n_ood": 12, "score": "msp"}
    assert {"edges", "clipped"} <= set(histogram)
    assert "auroc" not in ood["metrics"]["test"]  # no OoD samples on the ID split alone

    explain = run(cli, results, "--method", "toy-saliency", "--dataset", "toy-explain", *common)
    values = explain["metrics"]["test"]
    assert {"miou", "insertion", "deletion", "id_score"} <= set(values)
    assert values["id_score"] == pytest.approx(values["insertion"] - values["deletion"])
    assert all(math.isfinite(values[k]) for k in ("miou", "insertion", "deletion"))
    assert explain["details"]["test"]["miou"]["n_empty"] == 1
    curve = explain["details"]["test"]["insertion-deletion"]
    assert curve["protocol"] == "id" and curve["fraction"][-1] == 1.0
    assert "protocol id" in explain["conventions"]["insertion-deletion"]
    assert "thr0.5" in explain["conventions"]["miou"]
    assert "undefined" not in explain["details"]["test"]["miou"]

    # every mask empty: mIoU is NaN in the record, with its reason beside it
    empty = run(cli, results, "--method", "toy-saliency", "--dataset", "toy-explain-empty", *common)
    assert math.isnan(empty["metrics"]["test"]["miou"])
    reason = empty["details"]["test"]["miou"]["undefined"]["miou"]
    assert "masks are empty" in reason
