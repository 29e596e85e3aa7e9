"""Run by ``test_longtail_training.py`` under ``torchrun --nproc_per_node 2`` (gloo, CPU).

1. Rank 0 first trains a bias-free linear model (no BatchNorm, so per-rank batch statistics do
   not matter) in one process with the whole batch; then each rank trains it for 3 epochs with
   the global batch split across the ranks, and saves its parameters.
2. ``bench run`` on tiny glyph-lt through the CLI, as torchrun users call it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from benchmark import Classifier, Split, distributed, register_method
from benchmark.backbones import Backbone
from benchmark.cli import main
from benchmark.dataset import DatasetInfo
from benchmark.device import seed_everything
from benchmark.tracks.longtail import LongTailMethod
from benchmark.training import Trainer

from conftest import tiny_settings


class Flat(Backbone):
    feature_dim = 48

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


@register_method("ddp-linear")
class DDPLinear(LongTailMethod):
    def build(self) -> nn.Module:
        return Classifier(Flat(), nn.Linear(48, 3, bias=False))


def train(out: Path, name: str) -> None:
    gen = torch.Generator().manual_seed(5)
    x = torch.randint(0, 256, (64, 3, 4, 4), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 3, (64,), generator=gen)
    info = DatasetInfo("toy", "longtail", 3, (3, 4, 4), (0.5,) * 3, (0.5,) * 3,
                       torch.bincount(y, minlength=3), (), "toy")  # fmt: skip
    hp = {**DDPLinear.declared(), "epochs": 3, "batch_size": 16, "lr": 0.1, "augment": "none"}
    hp = {k: getattr(v, "default", v) for k, v in hp.items()}
    m = DDPLinear(info, hp, torch.device("cpu"))
    seed_everything(0)
    m.setup()
    Trainer(torch.device("cpu"), seed=0, progress=False).fit(m, Split(x, y))
    torch.save(m.state_dict(), out / name)


def run(out: Path) -> None:
    if distributed.rank_at_launch() == 0:
        train(out, "single.pt")  # one process, whole global batch (before the group exists)
    device = distributed.init_from_env(torch.device("cpu"))
    assert distributed.world_size() == 2 and device.type == "cpu"
    train(out, f"rank{distributed.rank()}.pt")
    distributed.barrier()
    sets = [a for pair in tiny_settings("glyph-lt") for a in ("--set", pair)]
    code = main(["run", "--method", "ce", "--dataset", "glyph-lt", "--results",
                 str(out / "results"), "--quiet", *sets])  # fmt: skip
    assert code == 0 and not distributed.active()  # the CLI left the process group


if __name__ == "__main__":
    run(Path(sys.argv[1]))
