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

import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from benchmark import distributed
from benchmark.contracts import PROTOCOL, Batch
from benchmark.device import autocast
from benchmark.errors import BenchError
from benchmark.outputs import Outputs
from benchmark.progress import progress_bar

if TYPE_CHECKING:
    from benchmark.dataset import DatasetInfo, Split
    from benchmark.method import Method

__all__ = ["PROTOCOL", "Batch", "Trainer", "lr_factor", "make_optimizer"]  # PROTOCOL, Batch:


# re-exported from benchmark.contracts, where they are defined
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
    #: the bundle's splits (set by the runner): ``paired_split`` reads its second split here
    splits: Mapping[str, Split] = field(default_factory=dict, repr=False)
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
        weights = sample_weights(method, split, self.device)
        probs = sampling_probabilities(method, split, self.device)
        paired = PairedBatches.create(self, method, split, local)
        if self.fast != "off":
            from benchmark.fast_step import StaticStep

            check_fast(method)
            fast = StaticStep.create(self, method, x_all, y_all, attrs, local, offset, aug_gen)
            optimizers = [fast.optimizer]
        else:
            optimizers = method.optimizers()
        base_lrs = [float(g["lr"]) for opt in optimizers for g in opt.param_groups]
        step = 0
        bar = progress_bar(
            range(hp.epochs), desc=f"train {method.name}", unit="epoch", enabled=self.progress
        )
        for epoch in bar:
            t0 = time.perf_counter()
            factor = self.start_epoch(method, optimizers, base_lrs, epoch)
            perm = epoch_order(n, shuffle_gen, self.device, probs)
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
                    if weights is not None:
                        batch.weight = weights[idx]
                    if paired is not None:
                        batch.paired = paired.next(epoch, step)
                    total += self.train_step(method, optimizers, batch)
                    step += 1
            mean_loss = self.end_epoch(
                method, epoch, total, steps, steps * bs, base_lrs[0] * factor, t0
            )
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{mean_loss:.3f}")
        distributed.average_buffers(model)  # BN statistics and running averages of all ranks

    # -- pieces of a training epoch, shared with the streaming loop -------------------------
    def start_epoch(
        self,
        method: Method,
        optimizers: torch.optim.Optimizer | Sequence[torch.optim.Optimizer],
        base_lrs: list[float],
        epoch: int,
    ) -> float:
        """Set this epoch's learning rates, call the method's hook; returns the lr factor.

        ``base_lrs``: the initial lr of every param group of every optimiser, in order. A
        group with an ``"lr_factor"`` entry (a function of the epoch) follows its own schedule;
        the others follow the protocol's (``lr_factor``)."""
        factor = lr_factor(method.hp, epoch)
        groups = [g for opt in _as_list(optimizers) for g in opt.param_groups]
        for group, lr in zip(groups, base_lrs, strict=True):
            own = group.get("lr_factor")
            set_lr(group, lr * (float(own(epoch)) if own is not None else factor))
        method.on_epoch_start(epoch)
        assert method.model is not None
        method.model.train()
        return factor

    def train_step(
        self,
        method: Method,
        optimizers: torch.optim.Optimizer | Sequence[torch.optim.Optimizer],
        batch: Batch,
    ) -> torch.Tensor:
        """One training step: ``method.train_step`` (by default loss, backward, gradient
        all-reduce, clipping, update), then the ``on_step_end`` hook; returns the detached
        loss, left on the device (no host synchronisation)."""
        loss = method.train_step(batch, _as_list(optimizers), self)
        method.on_step_end(batch)
        return loss

    def step(
        self,
        method: Method,
        optimizer: torch.optim.Optimizer,
        loss: torch.Tensor,
        *,
        clip: float | None = None,
    ) -> None:
        """Zero ``optimizer``'s gradients, back-propagate ``loss``, average the gradients over
        the ranks, clip the total L2 norm of ``optimizer``'s parameters to ``clip`` (default:
        the method's ``grad_clip`` setting; 0 or absent: no clipping) and step. A method's own
        ``train_step`` calls this once per optimiser it updates."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(method.model)
        clip = float(method.hp.get("grad_clip", 0.0) or 0.0) if clip is None else clip
        if clip > 0:
            params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()

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
    def inference_generator(self, split: str) -> torch.Generator:
        """A generator on the device seeded by (``seed``, ``split``): the randomness a method
        uses at inference (MC dropout, noise, random masks) through ``method.rng``, so that a
        cached checkpoint and a freshly trained one give the same predictions."""
        digest = hashlib.sha256(f"inference:{self.seed}:{split}".encode()).digest()
        seed = int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
        return torch.Generator(device=self.device).manual_seed(seed)

    @torch.no_grad()
    def predict(
        self, method: Method, split: Split, desc: str = "eval", name: str | None = None
    ) -> Outputs:
        """``method.predict_batch`` over ``split`` in batches; outputs stay on the device.

        ``name``: the split's name (default: ``desc`` without a leading ``"eval "``); it seeds
        ``method.rng`` (``inference_generator``). A method that declares ``predict_attrs``
        receives those attributes of each batch (``predict_batch(x, attrs=...)``)."""
        assert method.model is not None
        name = name if name is not None else desc.removeprefix("eval ")
        method.rng = self.inference_generator(name)
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
            index = torch.arange(start, min(n, start + self.eval_batch_size))
            with autocast(self.device):
                out = predict_with_attrs(method, x, split, index, self.device)
            parts.append(_float32(out))
        return Outputs.cat(parts)


def predict_with_attrs(
    method: Method, x: torch.Tensor, split: Split, index: torch.Tensor, device: torch.device
) -> Outputs:
    """``method.predict_batch(x)``, with ``attrs=`` the batch's rows (``index``) of the
    attributes in ``method.predict_attrs`` when it declares any (raises ``BenchError`` when
    the split lacks one)."""
    needs = getattr(method, "predict_attrs", ())  # duck-typed predictors declare none
    if not needs:
        return method.predict_batch(x)
    missing = [a for a in needs if a not in split.attrs]
    if missing:
        raise BenchError(
            f"{method.name} needs attribute(s) {', '.join(missing)} at inference, "
            "which this split lacks"
        )
    attrs = {a: split.attrs[a][index].to(device) for a in needs}
    return method.predict_batch(x, attrs=attrs)


def _as_list(
    optimizers: torch.optim.Optimizer | Sequence[torch.optim.Optimizer],
) -> list[torch.optim.Optimizer]:
    if isinstance(optimizers, torch.optim.Optimizer):
        return [optimizers]
    return list(optimizers)


def check_fast(method: Method) -> None:
    """The CUDA fast path runs only the default step: one optimiser, ``loss``, uniform order."""
    from benchmark.method import Method as Base

    cls = type(method)
    custom = [
        hook
        for hook in ("train_step", "optimizers")
        if getattr(cls, hook) is not getattr(Base, hook)
    ]
    hp = method.hp
    if hp.get("sampler", "uniform") != "uniform":
        custom.append(f"sampler={hp.sampler}")
    if hp.get("paired_split") or hp.get("grad_clip"):
        custom.append("paired_split/grad_clip")
    if type(method).sample_weights is not Base.sample_weights:
        custom.append("sample_weights")
    if custom:
        raise BenchError(
            f"method {method.name} customises the training step ({', '.join(custom)}); "
            "use --fast off"
        )


def sample_weights(method: Method, split: Split, device: torch.device) -> torch.Tensor | None:
    """``method.sample_weights(split)`` checked: None, or N non-negative finite floats with a
    positive sum, on ``device``."""
    w = method.sample_weights(split)
    if w is None:
        return None
    w = torch.as_tensor(w).to(device=device, dtype=torch.float32)
    if w.shape != (len(split),) or not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise BenchError(
            f"{method.name}.sample_weights must give {len(split)} non-negative finite weights "
            f"with a positive sum, got shape {tuple(w.shape)}"
        )
    return w


def sampling_probabilities(
    method: Method, split: Split, device: torch.device
) -> torch.Tensor | None:
    """Per-sample drawing weights (N,) for the ``sampler`` setting; None for ``uniform``."""
    sampler = method.hp.get("sampler", "uniform")
    if sampler == "uniform":
        return None
    if sampler == "weighted":
        w = sample_weights(method, split, device)
        if w is None:
            raise BenchError(f"sampler=weighted: {method.name} defines no sample_weights")
        return w
    if sampler == "class-balanced":
        key = split.labels
    elif sampler == "group-balanced":
        if "group" not in split.attrs:
            raise BenchError("sampler=group-balanced needs a dataset with a 'group' attribute")
        key = split.attrs["group"]
    else:
        raise BenchError(f"unknown sampler {sampler!r}")
    key = torch.as_tensor(key).long().to(device)
    _, inverse, counts = torch.unique(key, return_inverse=True, return_counts=True)
    return 1.0 / counts.double()[inverse]


def epoch_order(
    n: int, gen: torch.Generator, device: torch.device, probs: torch.Tensor | None = None
) -> torch.Tensor:
    """The positions of one epoch's samples (N,): a permutation when ``probs`` is None
    (``sampler`` uniform, the default), else N draws with replacement proportional to
    ``probs`` (``sampling_probabilities``); all random numbers come from ``gen``."""
    if probs is None:
        return torch.randperm(n, generator=gen, device=device)
    return torch.multinomial(probs, n, replacement=True, generator=gen)


@dataclass
class PairedBatches:
    """Batches of a second split drawn alongside the training batches (``Batch.paired``):
    its own shuffle and augmentation generators (seeded from the run's seed), a new
    permutation whenever one is used up; labels may be -1 (unlabeled)."""

    trainer: Trainer
    method: Method
    x: torch.Tensor
    y: torch.Tensor
    attrs: dict[str, torch.Tensor]
    batch: int
    gen: torch.Generator
    aug_gen: torch.Generator
    perm: torch.Tensor | None = None
    pos: int = 0

    @classmethod
    def create(
        cls, trainer: Trainer, method: Method, train: Split, batch: int
    ) -> PairedBatches | None:
        name = method.hp.get("paired_split", "")
        if not name:
            return None
        if name not in trainer.splits:
            raise BenchError(
                f"paired_split={name!r}: the dataset has no such split "
                f"(splits: {', '.join(sorted(trainer.splits)) or 'none given to the trainer'})"
            )
        split = trainer.splits[name]
        if not isinstance(split.inputs, torch.Tensor):
            raise BenchError("paired_split works on in-memory splits, not on images on disk")
        size = int(method.hp.get("paired_batch_size", 0) or 0) or batch
        size = min(size, len(split))
        dev = trainer.device
        seed = trainer.seed + 104729
        return cls(
            trainer, method, split.inputs.to(dev), split.labels.to(dev),
            {k: v.to(dev) for k, v in split.attrs.items() if k != "mask"}, size,
            torch.Generator(device=dev).manual_seed(seed),
            torch.Generator(device=dev).manual_seed(seed + 1),
        )  # fmt: skip

    def next(self, epoch: int, step: int) -> Batch:
        n = len(self.x)
        if self.perm is None or self.pos + self.batch > n:
            self.perm = torch.randperm(n, generator=self.gen, device=self.x.device)
            self.pos = 0
        idx = self.perm[self.pos : self.pos + self.batch]
        self.pos += self.batch
        x = self.trainer.augment(self.x[idx], self.method.hp.augment, self.aug_gen)
        return Batch(
            self.trainer.normalise(x, self.method.info),
            self.y[idx],
            {k: v[idx] for k, v in self.attrs.items()},
            idx,
            epoch,
            step,
        )


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
