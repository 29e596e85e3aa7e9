"""Device selection, seeding and mixed precision."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch

from benchmark.errors import BenchError


def select_device(name: str = "auto") -> torch.device:
    """``auto`` -> cuda when available, else cpu. ``cuda`` without a GPU is an error."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(
            "--device cuda was asked for but no CUDA GPU is available; use --device cpu"
        )
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise BenchError(f"--device must be auto, cpu or cuda[:N], got {name!r}")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch; on the CPU this makes runs bit-for-bit repeatable."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


@contextlib.contextmanager
def autocast(device: torch.device) -> Iterator[None]:
    """bf16 autocast on CUDA; full precision elsewhere."""
    if device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        yield


def environment_key(device: torch.device) -> dict[str, str | int]:
    """What, besides the code and the inputs, decides a run's bits; part of its run id.

    On the CPU: the torch version (kernels change between releases, patch and build included),
    the vector instruction set torch dispatches to (``AVX2``, ``AVX512``, ...), and the number
    of intra-op threads (a reduction split over 1 or 2 threads sums in another order). On CUDA:
    the torch version, the GPU's name and compute capability (CPU threads do not decide GPU
    kernels). Two records with different keys never share a run id, nor a checkpoint.
    """
    key: dict[str, str | int] = {"torch": torch.__version__, "device": device.type}
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        key["gpu"] = torch.cuda.get_device_name(device)
        key["capability"] = f"{major}.{minor}"
    else:
        key["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        key["threads"] = torch.get_num_threads()
    return key


def environment(device: torch.device) -> dict[str, str | int]:
    """Library versions and hardware, for the run record."""
    import platform
    import sys

    env: dict[str, str | int] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "cpu_count": os.cpu_count() or 0,
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env
