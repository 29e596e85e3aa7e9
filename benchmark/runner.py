"""The flow of one run: resolve -> data -> (cached) training -> predict -> metrics -> record.

::

    registry resolves method M and dataset D
    -> the dataset builder builds or loads the cached bundle (fingerprinted)
    -> the runner loads or trains M's model (or M's base); checkpoints are keyed by what
       shaped them, so post-hoc methods and test-time knobs reuse them
    -> M.predict_batch on each evaluation split -> Outputs
    -> every metric whose requirements the pair meets -> RunRecord -> Store (atomic)
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

import benchmark
from benchmark import distributed
from benchmark.data import dataset_options, load_bundle
from benchmark.dataset import DATASETS, Bundle, Dataset
from benchmark.device import (
    autocast,
    environment,
    environment_key,
    seed_everything,
    select_device,
)
from benchmark.errors import BenchError, UnknownNameError
from benchmark.hparams import check_seed, resolve
from benchmark.method import METHODS, Method
from benchmark.metric import METRICS, EvalView
from benchmark.outputs import Outputs
from benchmark.protocols import protocol
from benchmark.record import RunRecord, content_id
from benchmark.sources import core_hash, git_commit, source_hash
from benchmark.store import Store
from benchmark.training import Trainer


def split_settings(
    method: type[Method], dataset: type[Dataset], settings: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Route ``--set`` keys to dataset options or hyperparameters.

    ``dataset.KEY`` and ``method.KEY`` are explicit; a bare key goes where it is declared.
    """
    declared = method.declared()
    ds: dict[str, Any] = {}
    hp: dict[str, Any] = {}
    for key, value in settings.items():
        if key.startswith("dataset."):
            ds[key.removeprefix("dataset.")] = value
        elif key.startswith("method."):
            hp[key.removeprefix("method.")] = value
        elif key in dataset.options and key in declared:
            raise BenchError(
                f"--set {key} is both a {dataset.name} option and a {method.name} "
                f"hyperparameter; write dataset.{key} or method.{key}"
            )
        elif key in dataset.options:
            ds[key] = value
        elif key in declared:
            hp[key] = value
        else:
            known = [*declared, *(f"dataset.{k}" for k in dataset.options)]
            raise UnknownNameError(
                "setting", key, known, hint=f"for {method.name} on {dataset.name}"
            )
    return ds, hp


def resolve_hparams(
    method: type[Method],
    dataset: type[Dataset],
    overrides: Mapping[str, Any],
    protocol_name: str | None = None,
) -> dict[str, Any]:
    """Protocol defaults < dataset protocol (or ``protocol_name``) < base's and method's
    protocol defaults < --set."""
    defaults: dict[str, Any] = protocol(protocol_name or dataset.protocol)
    chain = []
    cls: type[Method] | None = method
    while cls is not None:
        chain.append(cls)
        cls = METHODS.get(cls.base) if cls.base else None
    for c in reversed(chain):
        defaults.update(c.protocol_defaults)
    return resolve(method.declared(), overrides, what=method.name, defaults=defaults)


def check_settings(
    method: str,
    dataset: str,
    settings: Mapping[str, Any],
    seed: int = 0,
    protocol_name: str | None = None,
) -> dict[str, Any]:
    """Check every value of one run against its declaration (names, types, validity ranges,
    seed) without building data or training; returns the resolved hyperparameters. A bad
    value raises a one-line ``BenchError`` naming it."""
    mcls, dcls = METHODS.get(method).for_settings(settings), DATASETS.get(dataset)
    ds_over, hp_over = split_settings(mcls, dcls, settings)
    check_seed(seed)
    dataset_options(dcls, ds_over)
    hparams = resolve_hparams(mcls, dcls, hp_over, protocol_name)
    if isinstance(hparams.get("backbone"), str):  # a registered name (a plugin may add one)
        from benchmark.backbones import BACKBONES

        BACKBONES.get(hparams["backbone"])
    return hparams


def code_version(method: type[Method], dataset: type[Dataset]) -> dict[str, str]:
    """Hashes of the code that determines a result: core, method (+ base), dataset, metrics."""
    parts = {"core": core_hash(), "dataset": source_hash(dataset)}
    cls: type[Method] | None = method
    while cls is not None:
        parts[f"method:{cls.name}"] = source_hash(cls)
        cls = METHODS.get(cls.base) if cls.base else None
    parts["metrics"] = content_id(sorted((n, source_hash(c)) for n, c in METRICS.items()))
    return {"hash": content_id(parts), "bench": benchmark.__version__, "git": git_commit(), **parts}


@dataclass
class Planned:
    """A resolved run before it runs: what ``Runner.plan`` returns."""

    method: str
    dataset: str
    seed: int
    mcls: type[Method]
    bundle: Bundle
    hparams: dict[str, Any]
    code: dict[str, str]
    run_id: str
    extra_splits: tuple[str, ...]
    t_data: float


@dataclass
class Runner:
    """Runs (method, dataset, seed) triples into a store; reuses records and checkpoints."""

    store: Store
    device: torch.device = field(default_factory=lambda: select_device("auto"))
    data_root: str | Path | None = None
    progress: bool = True
    fast: str = "off"  # CUDA fast training path (benchmark.fast_step)
    protocol: str | None = None  # a named protocol instead of the dataset's own
    _bundles: dict[str, Bundle] = field(default_factory=dict)

    def bundle(self, dataset: str, options: Mapping[str, Any]) -> Bundle:
        key = content_id([dataset, dict(options)])
        if key not in self._bundles:
            self._bundles[key] = load_bundle(dataset, options, root=self.data_root)
        return self._bundles[key]

    def plan(
        self,
        method: str,
        dataset: str,
        seed: int = 0,
        settings: Mapping[str, Any] | None = None,
        extra_splits: Sequence[str] = (),
    ) -> Planned:
        """Resolve names, data, hyperparameters and code hashes into a run id (nothing runs)."""
        t_start = time.perf_counter()
        mcls, dcls = METHODS.get(method).for_settings(settings or {}), DATASETS.get(dataset)
        reason = mcls.incompatibility(dcls)
        if reason:
            raise BenchError(reason)
        # every value is checked before any data is built or anything trains
        hparams = check_settings(method, dataset, settings or {}, seed, self.protocol)
        ds_over, _ = split_settings(mcls, dcls, settings or {})
        bundle = self.bundle(dataset, ds_over)
        extra = tuple(s for s in dict.fromkeys(extra_splits) if s not in bundle.eval_splits)
        for name in extra:
            if name not in bundle.splits:
                raise BenchError(
                    f"{dataset} has no split '{name}' to evaluate "
                    f"(splits: {', '.join(sorted(bundle.splits))})"
                )
        t_data = time.perf_counter() - t_start
        code = code_version(mcls, dcls)
        identity = RunRecord.identity(
            method=method,
            dataset=dataset,
            dataset_version=bundle.version,
            dataset_fingerprint=bundle.fingerprint,
            dataset_options=bundle.options,
            hparams=hparams,
            seed=seed,
            code=code["hash"],
            extra_splits=extra,
            env_key=environment_key(self.device),
        )
        return Planned(
            method, dataset, seed, mcls, bundle, hparams, code, content_id(identity), extra, t_data
        )

    def run(
        self,
        method: str,
        dataset: str,
        seed: int = 0,
        settings: Mapping[str, Any] | None = None,
        *,
        extra_splits: Sequence[str] = (),
        predictions: bool = False,
    ) -> tuple[RunRecord | None, bool]:
        """One run; returns (record, whether it was already in the store).

        Under torchrun only rank 0 evaluates and writes; the other ranks train and return
        (None, False).

        ``extra_splits`` (e.g. ``("val",)`` for model selection) are evaluated too and stored
        under their names in ``record.metrics``; they enter the run id only when given.
        ``predictions``: also store the per-sample outputs (``Store.save_predictions``).
        A lock per run id keeps two processes from training the same run at once.
        """
        t_start = time.perf_counter()
        if self.fast not in ("off", "static") and self.device.type != "cuda":  # before any work
            raise BenchError(f"--fast {self.fast} needs a CUDA device; the CPU uses --fast off")
        p = self.plan(method, dataset, seed, settings, extra_splits)
        run_id, bundle, hparams, code = p.run_id, p.bundle, p.hparams, p.code

        def done() -> bool:
            return self.store.has(run_id) and (
                not predictions or self.store.has_predictions(run_id)
            )

        if done():
            return self.store.get(run_id), True
        self.store.check_writable()  # an unusable --results fails here, not after training
        # only rank 0 locks: other torchrun ranks must not wait on a lock that rank 0 holds
        # while it waits for them in the gradient all-reduce
        lock = self.store.lock(run_id) if distributed.is_main() else contextlib.nullcontext()
        with lock:
            if done():  # another process finished it while we waited for the lock
                return self.store.get(run_id), True
            trainer = Trainer(
                self.device,
                seed=seed,
                progress=self.progress and distributed.is_main(),
                fast=self.fast,
            )
            t0 = time.perf_counter()
            model, ckpt_key, trained = self.trained(p.mcls, bundle, hparams, seed, trainer)
            t_train = time.perf_counter() - t0
            if not distributed.is_main():
                return None, False
            t0 = time.perf_counter()
            outputs: dict[str, Outputs] = {}
            metrics, details, conventions = self.evaluate(
                model,
                bundle,
                trainer,
                splits=(*bundle.eval_splits, *p.extra_splits),
                outputs=outputs,
            )
            if model.summary():
                details["method"] = model.summary()
            t_eval = time.perf_counter() - t0
            if predictions:  # before the record: a crash in between leaves no record behind
                self.store.save_predictions(run_id, outputs)
            if self.store.has(run_id):  # predictions regenerated for a stored record
                return self.store.get(run_id), True
            record = RunRecord(
                run_id=run_id,
                method=method,
                dataset=dataset,
                track=bundle.track,
                seed=seed,
                hparams=hparams,
                dataset_version=bundle.version,
                dataset_fingerprint=bundle.fingerprint,
                dataset_options=bundle.options,
                code=code,
                metrics=metrics,
                details=details,
                conventions=conventions,
                timings={
                    "data_s": round(p.t_data, 3),
                    "train_s": round(t_train, 3),
                    "eval_s": round(t_eval, 3),
                    "total_s": round(time.perf_counter() - t_start, 3),
                    "checkpoint": "trained" if trained else "cached",
                    "train_path": self.fast if trained else "",
                    "processes": distributed.world_size(),
                    "train_history": trainer.history,
                },
                environment=environment(self.device),
                checkpoint=ckpt_key,
                created=datetime.now(UTC).isoformat(timespec="seconds"),
                extra_splits=list(p.extra_splits),
                env_key=environment_key(self.device),
            )
            self.store.write(record)
        return record, False

    # -- training with a checkpoint cache ------------------------------------------------
    def trained(
        self,
        mcls: type[Method],
        bundle: Bundle,
        hparams: dict[str, Any],
        seed: int,
        trainer: Trainer,
    ) -> tuple[Method, str, bool]:
        """A trained instance of ``mcls``: from its base, from the cache, or trained now."""
        info = bundle.info()
        trainer.splits = bundle.splits  # a method's paired_split is read from here
        if mcls.base is not None:
            return self.posthoc(mcls, bundle, hparams, seed, trainer)
        method = mcls(info, hparams, self.device)
        seed_everything(seed)
        method.setup()
        declared = mcls.declared()
        key = content_id(
            {
                "method": mcls.name,
                "dataset_fingerprint": bundle.fingerprint,
                "seed": seed,
                "hparams": {k: v for k, v in hparams.items() if not declared[k].test_time},
                "code": [core_hash(), source_hash(mcls)],
                "env_key": environment_key(self.device),  # other threads, other weights
            }
        )
        cached = self.store.load_checkpoint(key)
        if cached is not None:
            method.load_state_dict(cached["state"])
            trainer.history = cached.get("history", [])
            return method, key, False
        seed_everything(seed)
        method.fit(bundle.splits["train"], trainer)
        if not distributed.is_main():
            return method, key, True
        self.store.save_checkpoint(
            key,
            {
                "state": method.state_dict(),
                "history": trainer.history,
                "method": mcls.name,
                "hparams": hparams,
            },
        )
        return method, key, True

    def posthoc(
        self,
        mcls: type[Method],
        bundle: Bundle,
        hparams: dict[str, Any],
        seed: int,
        trainer: Trainer,
    ) -> tuple[Method, str, bool]:
        """A post-hoc method on its trained base (one per ``base_seeds``), with its own parts
        fitted by ``calibrate`` (cached when it declares ``posthoc_checkpoint``)."""
        bcls = METHODS.get(mcls.base)
        base_hp = {k: hparams[k] for k in bcls.declared()}
        base, key, trained = self.trained(bcls, bundle, base_hp, seed, trainer)
        method = mcls(bundle.info(), hparams, self.device)
        seeds = method.base_seeds(seed)
        members, keys = [base], [key]
        for s in seeds[1:]:  # further members: each its own (cached) base run
            member_trainer = Trainer(self.device, seed=s, progress=trainer.progress)
            member, member_key, _ = self.trained(bcls, bundle, base_hp, s, member_trainer)
            members.append(member)
            keys.append(member_key)
        method.adopt(base)
        if len(seeds) > 1 or type(method).adopt_members is not Method.adopt_members:
            method.adopt_members(members)
        if not mcls.posthoc_checkpoint:
            if distributed.is_main():
                method.calibrate(bundle, trainer)
            return method, key, trained
        declared = mcls.declared()
        own_key = content_id(
            {
                "method": mcls.name,
                "base_checkpoints": keys,
                "seed": seed,
                "hparams": {k: v for k, v in hparams.items() if not declared[k].test_time},
                "code": [core_hash(), source_hash(mcls)],
            }
        )
        cached = self.store.load_checkpoint(own_key)
        if cached is not None:
            method.load_state_dict(cached["state"])
            return method, own_key, False
        if distributed.is_main():
            seed_everything(seed)
            method.calibrate(bundle, trainer)
            self.store.save_checkpoint(
                own_key,
                {
                    "state": method.state_dict(),
                    "method": mcls.name,
                    "base_checkpoints": keys,
                    "hparams": hparams,
                },
            )
        return method, own_key, True

    # -- evaluation ----------------------------------------------------------------------
    def evaluate(
        self,
        method: Method,
        bundle: Bundle,
        trainer: Trainer,
        splits: Sequence[str] | None = None,
        outputs: dict[str, Outputs] | None = None,
    ) -> tuple[dict[str, dict[str, float]], dict[str, Any], dict[str, str]]:
        """Predict each split in ``splits`` (default: the bundle's evaluation splits) and score
        it; the predicted outputs are collected in ``outputs`` when given."""
        outputs = {} if outputs is None else outputs

        def predict(name: str) -> Outputs:
            if name not in outputs:
                outputs[name] = trainer.predict(
                    method, bundle.splits[name], desc=f"eval {name}", name=name
                )
                _check_finite(outputs[name], name)
            return outputs[name]

        return self.score(bundle, predict, splits, method, trainer)

    def score(
        self,
        bundle: Bundle,
        predict: Callable[[str], Outputs],
        splits: Sequence[str] | None = None,
        method: Method | None = None,
        trainer: Trainer | None = None,
    ) -> tuple[dict[str, dict[str, float]], dict[str, Any], dict[str, str]]:
        """Every applicable metric on each split, from ``predict(split) -> Outputs``.

        Without ``method`` and ``trainer`` (stored predictions, ``bench verify``) the metrics
        that query the model (``requires`` ``model``) do not apply.
        """
        metrics: dict[str, dict[str, float]] = {}
        details: dict[str, Any] = {}
        conventions: dict[str, str] = {}
        train_counts = bundle.class_counts("train")
        for name in bundle.eval_splits if splits is None else splits:
            view = self.view(bundle, name, predict, method, trainer)
            view.train_counts = train_counts.to(self.device)
            metrics[name], details[name] = {}, {}
            paired = bool(bundle.splits[name].pair_with)
            for mname, mcls in METRICS.items():
                metric = mcls()
                if not metric.applies(view):
                    continue
                if paired and "attr:is_ood" not in metric.requires:
                    continue  # an OoD split adds no in-distribution sample: its ID metrics
                    # would repeat those of the split it is paired with
                metrics[name].update(metric.compute(view))
                extra = metric.details(view)
                if extra:
                    details[name][mname] = extra
                if metric.convention:
                    conventions[mname] = metric.convention
            metrics[name].update(own_metrics(view.outputs))
            if predict(name).ood_score_kind:
                conventions["ood_score"] = predict(name).ood_score_kind
        return metrics, details, conventions

    def view(
        self,
        bundle: Bundle,
        name: str,
        predict: Any,
        method: Method | None,
        trainer: Trainer | None,
    ) -> EvalView:
        split = bundle.splits[name]
        out = predict(name)
        labels, attrs = split.labels, dict(split.attrs)
        inputs: Any = split.inputs
        if split.pair_with:  # OoD split: evaluate the in-distribution split and this one together
            ref = bundle.splits[split.pair_with]
            out = Outputs.concat_splits(predict(split.pair_with), out)
            labels = torch.cat([ref.labels, split.labels])
            common = set(ref.attrs) & set(split.attrs)
            attrs = {k: torch.cat([ref.attrs[k], split.attrs[k]]) for k in common}
            attrs["is_ood"] = torch.cat(
                [torch.zeros(len(ref), dtype=torch.bool), torch.ones(len(split), dtype=torch.bool)]
            )
            inputs = None
        normalise = model_probs = None
        if method is not None and trainer is not None and method.classifier:
            info = method.info

            def normalise(x: torch.Tensor) -> torch.Tensor:
                return trainer.normalise(x, info)

            @torch.no_grad()
            def model_probs(x: torch.Tensor) -> torch.Tensor:
                with autocast(self.device):
                    logits = method.predict_logits(x)
                return torch.softmax(logits.float(), dim=1)

        return EvalView(
            split=name,
            labels=labels.to(self.device),
            outputs=out.to(self.device),
            attrs={  # lazy attributes (masks of images on disk) stay where they are
                k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in attrs.items()
            },
            num_classes=bundle.num_classes,
            track=bundle.track,
            inputs=inputs,
            normalise=normalise,
            model_probs=model_probs,
        )


def own_metrics(outputs: Outputs) -> dict[str, float]:
    """The metrics a method reports itself: the mean over the split of each per-sample
    ``outputs.extras["metric.<key>"]`` (e.g. a generative model's bits per dimension)."""
    return {
        k.removeprefix("metric."): float(v.double().mean())
        for k, v in outputs.extras.items()
        if k.startswith("metric.")
    }


def _check_finite(out: Outputs, split: str) -> None:
    for name, value in out.tensors().items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise BenchError(f"the method produced NaN or infinite {name} on split '{split}'")
