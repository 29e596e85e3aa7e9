"""Building, caching and locating datasets.

Procedural (built-in) datasets are cached after their first build, keyed by name, version,
options and the builder's source, so a run never regenerates them. Real datasets are read
from ``--data-root``, else ``$BENCH_DATA``, else the config file
(``$BENCH_CONFIG`` or ``~/.config/bench/config.toml``: ``[data] root = "..."`` and optional
per-dataset roots under ``[data.roots]``).
"""

from __future__ import annotations

import contextlib
import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from benchmark.dataset import DATASETS, Bundle, Dataset, Split
from benchmark.errors import BenchError
from benchmark.hparams import resolve
from benchmark.io import atomic_torch_save, torch_load
from benchmark.record import content_id
from benchmark.sources import core_hash, source_hash


def cache_dir() -> Path:
    env = os.environ.get("BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "bench"


def _config() -> dict[str, Any]:
    path = Path(os.environ.get("BENCH_CONFIG", Path.home() / ".config" / "bench" / "config.toml"))
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"config file {path} is not valid TOML: {exc}") from exc


def data_root(name: str, cli_value: str | Path | None = None) -> Path | None:
    """The data root for dataset ``name``: flag, then environment, then config file."""
    if cli_value:
        return Path(cli_value).expanduser()
    if os.environ.get("BENCH_DATA"):
        return Path(os.environ["BENCH_DATA"]).expanduser()
    data = _config().get("data", {})
    root = data.get("roots", {}).get(name) or data.get("root")
    return Path(root).expanduser() if root else None


def dataset_options(dataset: type[Dataset], overrides: Mapping[str, Any]) -> dict[str, Any]:
    return resolve(dataset.options, overrides, what=f"{dataset.name} dataset")


def load_bundle(
    name: str,
    overrides: Mapping[str, Any] | None = None,
    *,
    root: str | Path | None = None,
    use_cache: bool = True,
) -> Bundle:
    """Build (or load from the cache) dataset ``name`` with option ``overrides``."""
    cls = DATASETS.get(name)
    options = dataset_options(cls, overrides or {})
    if cls.needs_data_root:
        path = data_root(name, root)
        if path is None:
            raise cls.missing(None, "no data root given")
        if not path.exists():
            raise cls.missing(path, "the folder does not exist")
        bundle = cls().build(options, path)
        bundle.options = options
        return bundle
    cached = _cache_path(cls, options)
    use_cache = use_cache and cls.cache_bundle  # False: the builder caches by itself (hf:)
    if use_cache and cached.is_file():
        try:
            return _from_payload(torch_load(cached))
        except Exception:  # a damaged cache file is rebuilt, never trusted
            cached.unlink(missing_ok=True)
    with _one_thread():
        bundle = cls().build(options, None)
    bundle.options = options
    if use_cache:
        atomic_torch_save(cached, _to_payload(bundle))
    return bundle


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Generators run on one torch thread: they are many small tensor ops, for which OpenMP's
    fork/join costs more than it gains (3-6x slower with 2 threads on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def bundle_cache_path(cls: type[Dataset], overrides: Mapping[str, Any]) -> Path:
    """Where the generated bundle of a built-in dataset is cached. The key holds the name,
    version, resolved options, the builder's source and the core's source (builders draw with
    shared helpers such as ``benchmark.glyphs`` and ``benchmark.synthetic``)."""
    return _cache_path(cls, dataset_options(cls, overrides))


def _cache_path(cls: type[Dataset], options: Mapping[str, Any]) -> Path:
    key = content_id([cls.name, cls.version, dict(options), source_hash(cls), core_hash()])
    return cache_dir() / "datasets" / cls.name / f"{key}.pt"


def _to_payload(bundle: Bundle) -> dict[str, Any]:
    return {
        "meta": {
            "name": bundle.name,
            "track": bundle.track,
            "num_classes": bundle.num_classes,
            "version": bundle.version,
            "options": bundle.options,
            "mean": list(bundle.mean),
            "std": list(bundle.std),
            "class_names": bundle.class_names,
            "eval_splits": list(bundle.eval_splits),
            "fingerprint": bundle.fingerprint,
        },
        "splits": {
            name: {
                "inputs": s.inputs,
                "labels": s.labels,
                "attrs": s.attrs,
                "pair_with": s.pair_with,
            }
            for name, s in bundle.splits.items()
        },
    }


def _from_payload(payload: dict[str, Any]) -> Bundle:
    meta = payload["meta"]
    splits = {
        name: Split(s["inputs"], s["labels"], dict(s["attrs"]), s["pair_with"])
        for name, s in payload["splits"].items()
    }
    return Bundle(
        name=meta["name"],
        track=meta["track"],
        num_classes=meta["num_classes"],
        splits=splits,
        version=meta["version"],
        options=meta["options"],
        mean=tuple(meta["mean"]),
        std=tuple(meta["std"]),
        class_names=meta["class_names"],
        eval_splits=tuple(meta["eval_splits"]),
        fingerprint=meta["fingerprint"],
    )


def as_uint8_images(x: torch.Tensor) -> torch.Tensor:
    """(N, H, W) or (N, H, W, C) uint8 -> (N, C, H, W) contiguous."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    return x.contiguous()
