"""``bench dataset``: the report, ``--json``, ``--preview`` and every error a user can cause;
and that it needs nothing beyond the ``Bundle`` contract (a lazy-input plugin dataset)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from benchmark.glyphs import lt_counts

GLYPH = [
    "--set",
    "num_classes=20",
    "--set",
    "n_max=150",
    "--set",
    "imbalance=50",
    "--set",
    "n_val=1",
    "--set",
    "n_test=2",
    "--set",
    "size=16",
]


def test_report_of_a_long_tailed_set(cli) -> None:
    code, out, err = cli("dataset", "glyph-lt", *GLYPH)
    assert code == 0, err
    counts = lt_counts(20, 150, 50)
    many = sum(c > 100 for c in counts)
    few = sum(c < 20 for c in counts)
    assert "glyph-lt (track longtail, version 1)" in out and "fingerprint " in out
    assert f"Many (>100) / Medium / Few (<20) classes: {many} / {20 - many - few} / {few}" in out
    assert "imbalance (max/min) 50" in out
    train_row = next(line for line in out.splitlines() if line.startswith("| train "))
    assert f" {sum(counts)} " in train_row
    assert "imbalance=50" in out  # the resolved options are printed


def test_several_settings_per_flag(cli) -> None:
    """``--set a=1 b=2`` equals ``--set a=1 --set b=2`` (as ``--method`` and ``--seed`` take
    several values)."""
    code, out, err = cli("dataset", "glyph-lt", "--set", *GLYPH[1::2], "--json")
    assert code == 0, err
    options = json.loads(out)["options"]
    assert options["num_classes"] == 20 and options["imbalance"] == 50 and options["size"] == 16
    code, same, err = cli("dataset", "glyph-lt", *GLYPH, "--json")
    assert code == 0 and json.loads(same)["fingerprint"] == json.loads(out)["fingerprint"]


def test_json_and_preview(cli, tmp_path: Path) -> None:
    png = tmp_path / "sub" / "wb.png"
    code, _, err = cli("dataset", "glyph-lt", "--preview", png)  # a missing folder is refused
    assert code == 2 and "sub does not exist" in err
    png.parent.mkdir()
    args = ["dataset", "waterbirds-synth", "--set", "sizes=[100,12,12]", "--set", "size=20"]
    code, out, err = cli(*args, "--json", "--preview", png)
    assert code == 0, err
    info = json.loads(out)
    assert info["name"] == "waterbirds-synth" and info["track"] == "bias"
    assert info["options"]["sizes"] == [100, 12, 12] and len(info["fingerprint"]) == 16
    train = info["splits"]["train"]
    assert train["size"] == 100 and train["class_counts"] == [77, 23]
    groups = train["attrs"]["group"]["counts"]
    assert groups == {"0": 73, "1": 4, "2": 1, "3": 22}  # exact Waterbirds-style quotas
    assert train["attrs"]["aligned"]["fraction_true"] == pytest.approx(0.95, abs=0.03)
    assert train["attrs"]["mask"]["shape"] == [20, 20]
    assert info["preview"]["samples"] > 0
    from PIL import Image

    with Image.open(png) as im:  # a real PNG with one row per group
        assert im.format == "PNG" and im.size[0] > 200 and im.size[1] > 200
    # the second call comes from the cache, with the same fingerprint
    code, out2, _ = cli(*args, "--json")
    again = json.loads(out2)
    assert again["from_cache"] and again["fingerprint"] == info["fingerprint"]


def test_ood_splits_and_float_inputs(cli, tmp_path: Path) -> None:
    code, out, err = cli(
        "dataset",
        "digits-ood",
        "--set",
        "per_class=[3,1,2]",
        "--set",
        "n_near=5",
        "--set",
        "n_far=4",
        "--preview",
        tmp_path / "o.png",
    )
    assert code == 0, err
    assert "ood_near |      5 | test" in out and "evaluated on test, ood_near, ood_far" in out
    code, out, err = cli(
        "dataset",
        "metanorm-synth",
        "--set",
        "n=4",
        "--json",
        "--preview",
        tmp_path / "m.png",
        "--split",
        "test",
    )
    info = json.loads(out)
    assert info["splits"]["test"]["attrs"]["confounder"]["dtype"] == "float32"
    assert info["splits"]["train"]["input_dtype"] == "float32"
    assert (tmp_path / "m.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "args,message",
    [
        (["dataset", "waterbird-synth"], "did you mean 'waterbirds-synth'"),
        (["dataset", "glyph-lt", "--set", "imbalanc=5"], "did you mean 'imbalance'"),
        (["dataset", "glyph-lt", "--set", "imbalance=lots"], "expected a float"),
        (["dataset", "glyph-lt", "--set", "imbalance"], "key=value"),
        (["dataset", "glyph-lt", "--set", "imbalance=0.5"], "imbalance=0.5: must be >= 1"),
        (
            ["dataset", "metanorm-synth", "--set", "n=2", "--preview", "x.png", "--split", "tst"],
            "--split 'tst'",
        ),
    ],
)
def test_errors_are_one_line(cli, tmp_path: Path, monkeypatch, args, message) -> None:
    monkeypatch.chdir(tmp_path)
    code, _out, err = cli(*args)
    assert code == 2 and message in err
    lines = [line for line in err.strip().splitlines() if not line.startswith("building ")]
    assert len(lines) == 1 and lines[0].startswith("bench: error: "), err  # no traceback
    code, _out, err = cli(*args, "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.png").exists()


PLUGIN = textwrap.dedent(
    """
    import torch
    from benchmark import Bundle, Dataset, Split, register_dataset

    class LazyImages:
        \"\"\"Inputs read one at a time (like a folder of files): __len__, int indexing and
        fingerprint_items, nothing else.\"\"\"
        def __init__(self, n):
            self.n = n
        def __len__(self):
            return self.n
        def __getitem__(self, i):
            if not isinstance(i, int):
                raise TypeError("one index at a time")
            return torch.full((3, 12 + i % 3, 12), 40 * (i % 6), dtype=torch.uint8)
        def fingerprint_items(self):
            return [f"img{i}" for i in range(self.n)]

    @register_dataset("folder-set")
    class FolderSet(Dataset):
        \"\"\"A real dataset read from disk.\"\"\"
        track = "longtail"
        needs_data_root = True
        layout = "ROOT/folder-set/{train,test}/<class>/<image>.png"

        def build(self, options, data_root):
            root = self.find_root(data_root, ["folder-set"], "train")
            n = len(list((root / "train").iterdir()))
            labels = torch.arange(n) % 3
            splits = {s: Split(LazyImages(n), labels) for s in ("train", "test")}
            return Bundle(self.name, self.track, 3, splits, self.version, mean=(0.5,) * 3,
                          std=(0.5,) * 3)
    """
)


def test_real_data_through_the_bundle_contract(cli, tmp_path: Path) -> None:
    plugin = tmp_path / "folder_plugin.py"
    plugin.write_text(PLUGIN)
    base = ["dataset", "folder-set", "--plugin", plugin]
    code, _, err = cli(*base)
    assert code == 2 and "no data root given" in err and "expected layout: ROOT/folder-set" in err
    code, _, err = cli(*base, "--data-root", tmp_path / "nowhere")
    assert code == 2 and "does not exist" in err and "expected layout" in err
    code, _, err = cli(*base, "--data-root", tmp_path)
    assert code == 2 and "'train' not found" in err
    for i in range(7):
        (tmp_path / "folder-set" / "train" / f"{i}.png").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "folder-set" / "train" / f"{i}.png").write_bytes(b"")
    code, out, err = cli(*base, "--data-root", tmp_path, "--preview", tmp_path / "p.png")
    assert code == 0, err
    assert "input_dtype" not in out and "lazy" in out and "read in" in out
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_take_reads_tensor_and_lazy_inputs() -> None:
    from benchmark.cli.dataset import take

    x = torch.arange(2 * 1 * 2 * 2, dtype=torch.uint8).view(2, 1, 2, 2) * 10
    assert torch.allclose(take(x, [1]), x[1:].float() / 255)
    f = torch.tensor([[[[-1.0, 1.0]]], [[[0.0, 3.0]]]])
    assert take(f, [0]).tolist() == [[[[0.0, 0.5]]]]  # min-max over the whole split
