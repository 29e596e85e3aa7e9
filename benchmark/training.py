"""The shared training loop and batched inference (the hot path of the harness).

Data that fits in memory is moved to the device once as uint8; every step indexes a batch,
augments it on the device (random crop with padding, horizontal flip), normalises it and
calls the method's ``loss``. No host synchronisation happens inside an epoch: the shuffle and
the augmentation draw from generators on the device, the loss is summed on the device and
read once per epoch.

Under ``torchrun`` each rank takes its slice of every global batch and gradients are averaged
across ranks (``benchmark.distributed``). On CUDA, ``Trainer(fast=...)`` switches to the
static-shape step of ``benchmark.fast_step`` (``torch.compile`` and/or one CUDA graph per step).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from benchmark import distributed
from benchmark.device import autocast
from benchmark.errors import BenchError
from benchmark.hparams import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    POSITIVE,
    Choice,
    Each,
    HParam,
    LogUniform,
    Range,
)
from benchmark.outputs import Outputs
from benchmark.progress import progress_bar

if TYPE_CHECKING:
    from benchmark.dataset import DatasetInfo, Split
    from benchmark.method import Method

#: The training protocol every method shares; datasets set their defaults in ``protocol``.
PROTOCOL: dict[str, HParam] = {
    "backbone": HParam("small-cnn", help="feature extractor (see benchmark/backbones.py)"),
    "epochs": HParam(30, help="training epochs", valid=AT_LEAST_ONE),
    "batch_size": HParam(128, help="training batch size", valid=AT_LEAST_ONE),
    "optimizer": HParam(
        "sgd", help="sgd (momentum, nesterov off) or adam", choices=("sgd", "adam")
    ),
    "lr": HParam(0.1, LogUniform(1e-3, 0.5), "base learning rate", valid=POSITIVE),
    "momentum": HParam(0.9, help="SGD momentum", valid=Range(0, 1, open_high=True)),
    "weight_decay": HParam(5e-4, LogUniform(1e-5, 1e-3), "L2 weight decay", valid=NON_NEGATIVE),
    "schedule": HParam(
        "cosine", help="lr schedule per epoch", choices=("constant", "cosine", "multistep")
    ),
    "milestones": HParam(
        [],
        help="multistep: epochs at which lr is multiplied by lr_decay",
        valid=Each(NON_NEGATIVE),
    ),
    "lr_decay": HParam(0.1, help="multistep factor", valid=Range(0, 1, open_low=True)),
    "warmup_epochs": HParam(
        0, help="linear warm-up from lr/3 over this many epochs", valid=NON_NEGATIVE
    ),
    "augment": HParam(
        "none",
        Choice(("none", "flip", "crop", "crop-flip")),
        "GPU augmentation: random crop (pad H/8) and/or horizontal flip",
        choices=("none", "flip", "crop", "crop-flip"),
    ),
}


@dataclass
class Batch:
    """One training batch, already on the device and normalised."""

    x: torch.Tensor
    y: torch.Tensor
    attrs: dict[str, torch.Tensor]
    index: torch.Tensor  # positions in the training split (for per-sample state)
    epoch: int
    step: int  # global step


def lr_factor(hp: Any, epoch: int) -> float:
    """Learning-rate multiplier for ``epoch`` (warm-up, then the schedule), stepped per epoch."""
    if epoch < hp.warmup_epochs:
        alpha = epoch / hp.warmup_epochs
        return (1 / 3) * (1 - alpha) + alpha
    if hp.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * epoch / max(1, hp.epochs)))
    if hp.schedule == "multistep":
        return hp.lr_decay ** sum(epoch >= m for m in hp.milestones)
    return 1.0


@dataclass
class Trainer:
    """Runs ``method.loss`` over a split for ``hp.epochs`` and batches ``method.predict_batch``.

    ``fast``: ``"off"`` (the plain loop below), or on CUDA only ``"compile"``, ``"graph"``,
    ``"compile-graph"`` (``benchmark.fast_step``).
    """

    device: torch.device
    seed: int = 0
    progress: bool = True
    eval_batch_size: int = 1024
    history: list[dict[str, float]] = field(default_factory=list)
    fast: str = "off"
    _stats: dict[Any, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)

    # -- input pipeline ------------------------------------------------------------------
    def normalise(self, x: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
        """Raw inputs -> model inputs: uint8 is scaled to [0, 1], floats are taken as already
        scaled (e.g. a perturbed image); then the dataset's mean/std are applied."""
        x = x.to(self.device, non_blocking=True)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        key = (x.device, info.mean, info.std)
        if key not in self._stats:  # built once: no host-to-device copy per step
            self._stats[key] = (
                torch.tensor(info.mean, device=x.device).view(1, -1, 1, 1),
                torch.tensor(info.std, device=x.device).view(1, -1, 1, 1),
            )
        mean, std = self._stats[key]
        x = (x - mean) / std
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def augment(self, x: torch.Tensor, mode: str, gen: torch.Generator | None) -> torch.Tensor:
        """Random crop with zero padding of H/8 and/or horizontal flip, per sample, on device.
        Random numbers come from ``gen``, which lives on ``x``'s device."""
        if mode == "none":
            return x
        b, c, h, w = x.shape
        dev = x.device
        if "crop" in mode:
            pad = max(1, h // 8)
            offsets = torch.randint(0, 2 * pad + 1, (2, b), generator=gen, device=dev)
            xp = F.pad(x, (pad, pad, pad, pad))
            rows = (offsets[0][:, None] + torch.arange(h, device=dev))[:, None, :, None]
            cols = (offsets[1][:, None] + torch.arange(w, device=dev))[:, None, None, :]
            bi = torch.arange(b, device=dev)[:, None, None, None]
            ci = torch.arange(c, device=dev)[None, :, None, None]
            x = xp[bi, ci, rows, cols]
        if "flip" in mode:
            flip = (torch.rand(b, generator=gen, device=dev) < 0.5).view(b, 1, 1, 1)
            x = torch.where(flip, x.flip(3), x)
        return x

    def generators(self) -> tuple[torch.Generator, torch.Generator]:
        """(shuffle, augmentation) generators on the device, seeded from ``seed``: every rank
        of a distributed run draws the same shuffle and its own augmentations."""
        shuffle = torch.Generator(device=self.device).manual_seed(self.seed)
        aug_seed = self.seed + 1 + 7919 * distributed.rank()
        return shuffle, torch.Generator(device=self.device).manual_seed(aug_seed)

    # -- training ------------------------------------------------------------------------
    def fit(self, method: Method, split: Split) -> None:
        """Train ``method.model`` on ``split`` following the protocol in ``method.hp``."""
        if not isinstance(split.inputs, torch.Tensor):  # images on disk: streamed
            from benchmark.streaming import fit as fit_streaming

            return fit_streaming(self, method, split)
        hp, info, model = method.hp, method.info, method.model
        assert model is not None, "method.setup() builds the model before fit"
        model.to(self.device)
        if self.device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        x_all = split.inputs.to(self.device)
        y_all = split.labels.to(self.device)
        attrs = {k: v.to(self.device) for k, v in split.attrs.items() if k != "mask"}
        n = len(split)
        bs = min(hp.batch_size, n)  # the global batch; each rank takes `local` of it
        local = distributed.local_batch(bs)
        offset = distributed.rank() * local
        steps = n // bs  # drop_last: every step has the same shape
        shuffle_gen, aug_gen = self.generators()
        if self.fast != "off":
            from benchmark.fast_step import StaticStep

            fast = StaticStep.create(self, method, x_all, y_all, attrs, local, offset, aug_gen)
            optimizer = fast.optimizer
        else:
            optimizer = make_optimizer(hp, method.param_groups())
        base_lrs = [float(g["lr"]) for g in optimizer.param_groups]
        step = 0
        bar = progress_bar(
            range(hp.epochs), desc=f"train {method.name}", unit="epoch", enabled=self.progress
        )
        for epoch in bar:
            t0 = time.perf_counter()
            factor = self.start_epoch(method, optimizer, base_lrs, epoch)
            perm = torch.randperm(n, generator=shuffle_gen, device=self.device)
            if self.fast != "off":
                total = fast.run_epoch(perm, steps, bs)
            else:
                total = torch.zeros((), device=self.device)
                for s in range(steps):
                    idx = perm[s * bs + offset : s * bs + offset + local]
                    x = self.augment(x_all[idx], hp.augment, aug_gen)
                    batch = Batch(
                        self.normalise(x, info),
                        y_all[idx],
                        {k: v[idx] for k, v in attrs.items()},
                        idx,
                        epoch,
                        step,
                    )
                    total += self.train_step(method, optimizer, batch)
                    step += 1
            mean_loss = self.end_epoch(
                method, epoch, total, steps, steps * bs, base_lrs[0] * factor, t0
            )
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{mean_loss:.3f}")
        distributed.average_buffers(model)  # BN statistics and running averages of all ranks

    # -- pieces of a training epoch, shared with the streaming loop -------------------------
    def start_epoch(
        self, method: Method, optimizer: torch.optim.Optimizer, base_lrs: list[float], epoch: int
    ) -> float:
        """Set this epoch's learning rates, call the method's hook; returns the lr factor."""
        factor = lr_factor(method.hp, epoch)
        for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
            set_lr(group, lr * factor)
        method.on_epoch_start(epoch)
        assert method.model is not None
        method.model.train()
        return factor

    def train_step(
        self, method: Method, optimizer: torch.optim.Optimizer, batch: Batch
    ) -> torch.Tensor:
        """One optimisation step (loss, backward, gradient all-reduce, update, hook); returns
        the detached loss, left on the device (no host synchronisation)."""
        with autocast(self.device):
            loss = method.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(method.model)
        optimizer.step()
        method.on_step_end(batch)
        return loss.detach().float()

    def end_epoch(
        self,
        method: Method,
        epoch: int,
        total: torch.Tensor,
        steps: int,
        images: int,
        lr: float,
        t0: float,
        **extra: Any,
    ) -> float:
        """Mean loss over the ranks (the epoch's one host sync), divergence check, history."""
        mean_loss = float(distributed.mean(total)) / max(1, steps)
        if not math.isfinite(mean_loss):
            raise BenchError(
                f"training diverged (loss {mean_loss}) in epoch {epoch}; "
                f"try a lower learning rate, e.g. --set lr={method.hp.lr / 10:g}"
            )
        seconds = time.perf_counter() - t0
        self.history.append(
            {
                "epoch": epoch,
                "loss": mean_loss,
                "lr": lr,
                "seconds": round(seconds, 4),
                "images": images,
                "images_per_s": round(images / max(seconds, 1e-9), 1),
                **extra,
            }
        )
        return mean_loss

    # -- inference -----------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, method: Method, split: Split, desc: str = "eval") -> Outputs:
        """``method.predict_batch`` over ``split`` in batches; outputs stay on the device."""
        assert method.model is not None
        if not isinstance(split.inputs, torch.Tensor):  # images on disk: streamed
            from benchmark.streaming import predict as predict_streaming

            return predict_streaming(self, method, split, desc)
        method.model.to(self.device).eval()
        n = len(split)
        parts = []
        starts = range(0, n, self.eval_batch_size)
        for start in progress_bar(
            starts, desc=desc, unit="batch", enabled=self.progress, leave=False
        ):
            x = self.normalise(split.inputs[start : start + self.eval_batch_size], method.info)
            with autocast(self.device):
                out = method.predict_batch(x)
            parts.append(_float32(out))
        return Outputs.cat(parts)


def set_lr(group: dict[str, Any], lr: float) -> None:
    """Set a param group's learning rate; a tensor lr (CUDA-graph path) is filled in place."""
    if isinstance(group["lr"], torch.Tensor):
        group["lr"].fill_(lr)
    else:
        group["lr"] = lr


def _float32(out: Outputs) -> Outputs:
    for name in ("logits", "features", "ood_score", "saliency", "probs_"):
        value = getattr(out, name)
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            setattr(out, name, value.float())
    return out


def make_optimizer(hp: Any, groups: list[dict[str, Any]], **options: Any) -> torch.optim.Optimizer:
    """SGD or Adam over ``groups``; ``options`` go to the optimiser (e.g. ``fused=True``)."""
    for g in groups:
        g.setdefault("lr", hp.lr)
    if hp.optimizer == "adam":
        return torch.optim.Adam(groups, lr=hp.lr, weight_decay=hp.weight_decay, **options)
    return torch.optim.SGD(
        groups, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay, **options
    )
