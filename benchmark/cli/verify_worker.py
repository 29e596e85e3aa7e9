"""The separate process of ``bench verify --rerun`` / ``--retrain``: it imports the bundled
plugin (that is, it RUNS THE BUNDLE'S CODE) and writes what the parent compares.

``python -m benchmark.cli.verify_worker SPEC.json OUT``, where SPEC holds ``bundle`` (folder),
``plugins`` (the bundled plugin files), ``modes`` (``["rerun"]`` or ``["rerun", "retrain"]``:
one process start for both), ``device``, ``data_root`` and ``runs`` (``run_id``, ``checkpoint``
file). It writes:

- ``OUT/<run_id>.pt``: per split, the outputs of the model rebuilt from the bundled checkpoint
  (``rerun``; the layout of ``Store.save_predictions``);
- ``OUT/<run_id>.json``: ``{"metrics": ...}`` of the run trained again in a fresh results
  folder (``retrain``);
- ``OUT/defaults.json``: per dataset, the hyperparameters the plugin resolves to with no
  ``--set`` (``hparams``), and the hyperparameters and dataset options under the settings of
  the registered protocol that SPEC passes in ``registered`` (``registered``), for the
  official leaderboard's check.

The parent (``benchmark.submission.verify``) never imports the plugin and does every
comparison itself; this process only computes. A failure prints one line on stderr, exit 2.
Lives under ``benchmark/cli`` so that it is no part of the core code hash.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any


def _bundled_store(payload: dict[str, Any]) -> Any:
    """A ``Store`` whose only checkpoint is ``payload`` (for any key) and that never saves:
    ``Runner.trained`` then loads the bundled weights instead of training."""
    from benchmark.errors import BenchError
    from benchmark.store import Store

    class BundledCheckpoint(Store):
        def load_checkpoint(self, key: str) -> dict[str, Any] | None:
            return payload

        def save_checkpoint(self, key: str, payload: dict[str, Any]) -> None:
            raise BenchError("re-inference must not train (the bundled checkpoint was not used)")

    return BundledCheckpoint(tempfile.mkdtemp(prefix="bench-rerun-"))


def _threads(record: Any, device: Any) -> None:
    """On the CPU, use the run's thread count: float sums then add up in the same order."""
    import torch

    threads = int(record.environment.get("torch_threads", 0) or 0)
    if device.type == "cpu" and threads > 0:
        torch.set_num_threads(threads)


def rerun(record: Any, checkpoint: Path, device: Any, data_root: Any, out: Path) -> None:
    """Rebuild ``record``'s model from ``checkpoint`` and predict its evaluation splits."""
    from benchmark.dataset import DATASETS  # noqa: F401  (registries are filled by plugins)
    from benchmark.io import atomic_torch_save, torch_load
    from benchmark.method import METHODS
    from benchmark.runner import Runner
    from benchmark.store import outputs_payload
    from benchmark.training import Trainer

    _threads(record, device)
    payload = torch_load(checkpoint)
    runner = Runner(_bundled_store(payload), device, data_root, progress=False)
    bundle = runner.bundle(record.dataset, record.dataset_options)
    trainer = Trainer(device, seed=record.seed, progress=False)
    mcls = METHODS.get(record.method).for_settings(record.hparams)  # a --set base= run
    model, _, trained = runner.trained(mcls, bundle, dict(record.hparams), record.seed, trainer)
    assert not trained
    outputs: dict[str, Any] = {}
    runner.evaluate(
        model, bundle, trainer, splits=(*bundle.eval_splits, *record.extra_splits), outputs=outputs
    )
    atomic_torch_save(
        out / f"{record.run_id}.pt", {s: outputs_payload(o) for s, o in outputs.items()}
    )


def retrain(record: Any, device: Any, data_root: Any, out: Path) -> None:
    """Train ``record``'s configuration again (same seed, hyperparameters, data options) in a
    fresh results folder and write its metrics."""
    from benchmark.io import atomic_write_json
    from benchmark.runner import Runner
    from benchmark.store import Store

    _threads(record, device)
    settings = {f"method.{k}": v for k, v in record.hparams.items()}
    settings.update({f"dataset.{k}": v for k, v in record.dataset_options.items()})
    with tempfile.TemporaryDirectory(prefix="bench-retrain-") as tmp:
        new, _ = Runner(Store(tmp), device, data_root, progress=False).run(
            record.method, record.dataset, record.seed, settings, extra_splits=record.extra_splits
        )
    assert new is not None
    atomic_write_json(out / f"{record.run_id}.json", {"run_id": new.run_id, "metrics": new.metrics})


def main(argv: list[str]) -> int:
    from benchmark.errors import BenchError

    try:
        spec = json.loads(Path(argv[0]).read_text())
        out = Path(argv[1])
        from benchmark.device import select_device
        from benchmark.io import atomic_write_json
        from benchmark.plugins import load_plugins
        from benchmark.record import RunRecord

        load_plugins(spec["plugins"])
        from benchmark.dataset import DATASETS
        from benchmark.hparams import resolve
        from benchmark.method import METHODS
        from benchmark.runner import resolve_hparams, split_settings

        device = select_device(spec["device"])
        bundle = Path(spec["bundle"])
        defaults: dict[str, Any] = {}
        for run in spec["runs"]:
            record = RunRecord.from_dict(
                json.loads((bundle / "runs" / f"{run['run_id']}.json").read_text())
            )
            if record.dataset not in defaults:
                mcls, dcls = METHODS.get(record.method), DATASETS.get(record.dataset)
                registered = spec.get("registered", {}).get(record.dataset, {})
                ds_over, hp_over = split_settings(mcls, dcls, registered)
                defaults[record.dataset] = {
                    "hparams": resolve_hparams(mcls, dcls, {}),
                    "registered": {
                        "hparams": resolve_hparams(mcls, dcls, hp_over),
                        "options": resolve(dcls.options, ds_over, what=dcls.name),
                    },
                }
            if "rerun" in spec["modes"]:
                rerun(record, bundle / run["checkpoint"], device, spec.get("data_root"), out)
            if "retrain" in spec["modes"]:
                retrain(record, device, spec.get("data_root"), out)
        atomic_write_json(out / "defaults.json", defaults)
    except BenchError as exc:
        print(f"{exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the bundle's code failed: one line, the parent rejects
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
