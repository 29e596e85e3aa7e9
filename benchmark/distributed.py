"""Data-parallel training with ``torchrun`` (one process per GPU; gloo on the CPU).

Launch any ``bench run`` with torchrun; e.g. the ImageNet-LT protocol on 8 GPUs::

    torchrun --nproc_per_node 8 -m benchmark run --method tde --dataset imagenet-lt \\
        --data-root /data/imagenet

Every rank holds a replica of the model, draws the same shuffle, takes its contiguous slice of
each global batch (``batch_size`` is the global batch, as in the papers' configs), and after
``backward`` the gradients are averaged with one all-reduce per step: the DDP algorithm.
It is done explicitly rather than through ``DistributedDataParallel``'s forward hook so that any
``method.loss`` (several forward passes, ``forward_features``, frozen parts) works unchanged.
Buffers (BatchNorm statistics, TDE's moving-average feature) are averaged at the end of
training. Only rank 0 evaluates and writes records and checkpoints. Without torchrun (or with
one process) every function here is a no-op.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from benchmark.errors import BenchError


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    return rank() == 0


def rank_at_launch() -> int:
    """The rank torchrun gave this process (also after the process group is gone)."""
    return int(os.environ.get("RANK", "0"))


def init_from_env(device: torch.device) -> torch.device:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1): NCCL on CUDA with
    one GPU per local rank, gloo on the CPU. Returns the device this process should use."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or active():
        return _local_device(device) if active() else device
    if not dist.is_available():
        raise BenchError("torch.distributed is not available in this PyTorch build")
    backend = "nccl" if device.type == "cuda" else "gloo"
    device = _local_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=timedelta(minutes=60))
    return device


def _local_device(device: torch.device) -> torch.device:
    if device.type != "cuda":
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if local >= torch.cuda.device_count():
        raise BenchError(
            f"local rank {local} has no GPU ({torch.cuda.device_count()} visible); "
            "use --nproc_per_node <= the number of GPUs"
        )
    return torch.device("cuda", local)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_batch(batch_size: int) -> int:
    """This rank's share of a global batch (the world size must divide it)."""
    world = world_size()
    if batch_size % world:
        raise BenchError(
            f"batch_size {batch_size} is not divisible by the {world} processes; "
            f"use a multiple of {world}"
        )
    return batch_size // world


def average_gradients(model: nn.Module) -> None:
    """Average every parameter's gradient over the ranks (one flat all-reduce per dtype)."""
    if not active():
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for p in model.parameters():
        if p.grad is not None:
            by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
    for grads in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= world_size()
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def average_buffers(model: nn.Module) -> None:
    """Average floating-point buffers (BatchNorm statistics, moving averages) over the ranks."""
    if not active():
        return
    for b in model.buffers():
        if b.is_floating_point():
            dist.all_reduce(b)
            b /= world_size()


def mean(t: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over the ranks (itself when not distributed)."""
    if not active():
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t / world_size()


def barrier() -> None:
    if active():
        dist.barrier()
