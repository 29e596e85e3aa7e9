"""The CUDA fast path of the training loop: one static-shape step, optionally compiled with
``torch.compile`` and captured whole (batch selection, augmentation, forward, backward,
optimiser step) in one CUDA graph that is replayed for every step of every epoch.

Everything a step needs lives in device tensors with fixed addresses: the epoch's shuffle
(``perm``), the position in it (``pos``, advanced inside the step), the summed loss, and the
learning rates (0-d tensors read by the fused SGD/Adam kernels and filled once per epoch).
The host only launches replays; it reads the loss once per epoch.

Requirements: CUDA, a single process, and a method that declares ``graph_safe = True`` (its
``loss`` reads only device tensors of the batch, not ``batch.epoch``/``batch.step`` or host
state, and it needs no ``on_step_end``; per-epoch changes go through ``on_epoch_start`` into
buffers in place).

Status: the uncaptured step runs in the CPU tests and matches the plain loop bit for bit;
the capture and ``torch.compile`` branches were written without a GPU and have not been run
(see the README's long-tail section for the measured numbers this path is meant to reach).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from benchmark import distributed
from benchmark.errors import BenchError

if TYPE_CHECKING:
    from benchmark.method import Method
    from benchmark.training import Trainer

#: "static" is the uncaptured, uncompiled step on any device: it is how the CPU tests check
#: this path's batch selection and bookkeeping against the plain loop
MODES = ("off", "compile", "graph", "compile-graph", "static")
WARMUP_STEPS = 3  # eager steps before capture (cuDNN autotuning, lazy init, compilation)


@dataclass
class StaticStep:
    trainer: Trainer
    method: Method
    optimizer: torch.optim.Optimizer
    x_all: torch.Tensor
    y_all: torch.Tensor
    attrs: dict[str, torch.Tensor]
    batch: int
    offset: int
    gen: torch.Generator | None
    compile: bool = False
    capture: bool = False
    perm: torch.Tensor = field(init=False)
    pos: torch.Tensor = field(init=False)
    total: torch.Tensor = field(init=False)
    graph: Any = None

    def __post_init__(self) -> None:
        dev = self.x_all.device
        self.perm = torch.zeros(len(self.x_all), dtype=torch.long, device=dev)
        self.pos = torch.zeros((), dtype=torch.long, device=dev)
        self.total = torch.zeros((), dtype=torch.float32, device=dev)
        self.arange = torch.arange(self.batch, device=dev)
        self.stride = self.batch  # advanced by the global batch in run_epoch
        self.loss_fn = self._loss
        if self.compile:
            self.loss_fn = torch.compile(self._loss, dynamic=False)

    @classmethod
    def create(
        cls,
        trainer: Trainer,
        method: Method,
        x_all: torch.Tensor,
        y_all: torch.Tensor,
        attrs: dict[str, torch.Tensor],
        batch: int,
        offset: int,
        gen: torch.Generator,
    ) -> StaticStep:
        """Check the requirements of ``trainer.fast`` and build the step."""
        from benchmark.training import make_optimizer

        mode = trainer.fast
        if mode not in MODES:
            raise BenchError(f"fast={mode!r}: choose one of {list(MODES)}")
        if trainer.device.type != "cuda" and mode != "static":
            raise BenchError(f"--fast {mode} needs a CUDA device; the CPU uses --fast off")
        if distributed.active():
            raise BenchError(f"--fast {mode} runs in a single process; use --fast off")
        if not getattr(method, "graph_safe", False):
            raise BenchError(
                f"method {method.name} does not declare graph_safe = True; use --fast off"
            )
        groups = method.param_groups()
        capture = "graph" in mode
        if capture:  # lr as 0-d device tensors read by the fused kernels: set per epoch in place
            for g in groups:
                g["lr"] = torch.tensor(float(g.get("lr", method.hp.lr)), device=trainer.device)
        optimizer = make_optimizer(method.hp, groups, **({"fused": True} if capture else {}))
        return cls(
            trainer, method, optimizer, x_all, y_all, attrs, batch, offset, gen,
            compile="compile" in mode, capture=capture,
        )  # fmt: skip

    # -- the step --------------------------------------------------------------------------
    def _loss(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        from benchmark.training import Batch

        attrs = {k: v[idx] for k, v in self.attrs.items()}
        return self.method.loss(Batch(x, y, attrs, idx, epoch=-1, step=-1))

    def step(self) -> None:
        """One optimisation step on the batch at ``pos``; no host synchronisation."""
        t = self.trainer
        idx = self.perm.index_select(0, self.pos + self.offset + self.arange)
        x = t.augment(self.x_all.index_select(0, idx), self.method.hp.augment, self.gen)
        x = t.normalise(x, self.method.info)
        cuda = x.device.type == "cuda"
        with torch.autocast(x.device.type, torch.bfloat16, enabled=cuda, cache_enabled=False):
            loss = self.loss_fn(x, self.y_all.index_select(0, idx), idx)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.total.add_(loss.detach().float())
        self.pos.add_(self.stride)

    # -- an epoch ----------------------------------------------------------------------------
    def run_epoch(self, perm: torch.Tensor, steps: int, global_batch: int) -> torch.Tensor:
        """Run ``steps`` steps over ``perm``; returns the summed loss (a device tensor)."""
        self.stride = global_batch
        self.perm.copy_(perm)
        self.pos.zero_()
        self.total.zero_()
        done = 0
        if self.capture and self.graph is None and steps > WARMUP_STEPS:
            done = self._warm_up_and_capture()
        for _ in range(done, steps):
            if self.graph is not None:
                self.graph.replay()
            else:
                self.step()
        return self.total.clone()

    def _warm_up_and_capture(self) -> int:
        """Run ``WARMUP_STEPS`` real steps on a side stream, then capture one step."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                self.step()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        if self.gen is not None:
            self.graph.register_generator_state(self.gen)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            self.step()
        return WARMUP_STEPS
