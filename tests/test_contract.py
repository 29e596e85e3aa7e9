"""The method / trainer / runner contract: one example plugin per hook
(``tests/plugins_contract/``, loaded like ``--plugin``, not built-ins), each proven here."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from benchmark.device import select_device
from benchmark.errors import BenchError
from benchmark.hparams import parse_assignments
from benchmark.method import METHODS
from benchmark.runner import Runner
from benchmark.store import Store

from conftest import tiny_settings

EXAMPLES = Path(__file__).resolve().parent / "plugins_contract"


@pytest.fixture
def examples(isolated_plugins: None) -> None:
    from benchmark import plugins

    plugins.load_file(EXAMPLES)


def same_metrics(a: dict, b: dict) -> bool:
    """Equal metric dicts, NaN equal to NaN (e.g. dcor² of a class whose bias is constant)."""

    def norm(m: dict) -> dict:
        return {s: {k: ("nan" if math.isnan(v) else v) for k, v in d.items()} for s, d in m.items()}

    return norm(a) == norm(b)


def tiny(dataset: str, **extra: object) -> dict[str, object]:
    settings = parse_assignments(tiny_settings(dataset))
    settings.update(extra)
    return settings


def runner(tmp_path: Path) -> Runner:
    return Runner(Store(tmp_path / "results"), select_device("cpu"), progress=False)


# -- training hooks ---------------------------------------------------------------------------
def test_two_optimizers_follow_their_own_lrs_and_schedules(examples: None, tmp_path) -> None:
    cls = METHODS.get("ex-two-opt")
    cls.steps.clear()
    settings = tiny("colored-mnist", epochs=3, schedule="cosine", lr=0.1, head_lr=0.05)
    record, _ = runner(tmp_path).run("ex-two-opt", "colored-mnist", 0, settings)
    body = sorted({round(b, 6) for b, _ in cls.steps}, reverse=True)
    head = {round(h, 6) for _, h in cls.steps}
    assert head == {0.05}  # its own constant schedule
    assert body[0] == 0.1 and len(body) == 3  # the protocol's cosine, one value per epoch
    assert math.isfinite(record.metrics["test"]["acc"])


def test_fast_path_refuses_a_custom_step(examples: None) -> None:
    from benchmark.dataset import DatasetInfo
    from benchmark.method import HP
    from benchmark.training import check_fast

    info = DatasetInfo("d", "bias", 2, (1, 4, 4), (0.5,), (0.5,), torch.ones(2), (), "f")
    method = METHODS.get("ex-two-opt")(info, HP(), torch.device("cpu"))
    with pytest.raises(BenchError, match="customises the training step"):
        check_fast(method)
    check_fast(METHODS.get("erm")(info, HP(), torch.device("cpu")))  # the default step passes


def test_grad_clip_bounds_the_gradient_norm(examples: None, tmp_path) -> None:
    cls = METHODS.get("ex-clipped")
    cls.norms.clear()
    runner(tmp_path).run("ex-clipped", "colored-mnist", 0, tiny("colored-mnist", grad_clip=0.0))
    unclipped = max(cls.norms)
    cls.norms.clear()
    clip = unclipped / 10
    runner(tmp_path).run("ex-clipped", "colored-mnist", 0, tiny("colored-mnist", grad_clip=clip))
    assert max(cls.norms) <= clip * (1 + 1e-4) < unclipped


@pytest.mark.parametrize("sampler", ["group-balanced", "class-balanced"])
def test_balanced_samplers_even_out_groups_and_classes(sampler: str) -> None:
    from types import SimpleNamespace

    from benchmark.dataset import Split
    from benchmark.method import HP
    from benchmark.training import epoch_order, sampling_probabilities

    key = torch.tensor([0] * 90 + [1] * 9 + [2])  # 90 / 9 / 1
    split = Split(torch.zeros(100, 1, 2, 2, dtype=torch.uint8), key.clone(), {"group": key})
    method = SimpleNamespace(name="m", hp=HP(sampler=sampler))
    probs = sampling_probabilities(method, split, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    drawn = torch.cat([epoch_order(100, gen, torch.device("cpu"), probs) for _ in range(30)])
    share = torch.bincount(key[drawn], minlength=3) / len(drawn)
    assert torch.allclose(share, torch.full((3,), 1 / 3), atol=0.05), share
    uniform = epoch_order(100, gen, torch.device("cpu"), None)
    assert sorted(uniform.tolist()) == list(range(100))  # the default: a permutation
    method.hp = HP(sampler="group-balanced")
    with pytest.raises(BenchError, match="'group' attribute"):
        sampling_probabilities(method, Split(split.inputs, key), torch.device("cpu"))


def test_weighted_sampler_draws_by_sample_weights(examples: None, tmp_path) -> None:
    cls = METHODS.get("ex-group-sampler")
    cls.drawn.clear()
    cls.weighted.clear()
    settings = tiny("colored-mnist", sampler="weighted", upweight=5)
    runner(tmp_path).run("ex-group-sampler", "colored-mnist", 0, settings)
    assert set(torch.cat(cls.drawn).tolist()) == {5}  # the only sample with weight
    assert all(cls.weighted)  # and the weights reach the loss as batch.weight


def test_weighted_sampler_without_weights_is_one_line(examples: None, tmp_path) -> None:
    with pytest.raises(BenchError, match="defines no sample_weights"):
        runner(tmp_path).run(
            "ex-group-sampler", "colored-mnist", 0, tiny("colored-mnist", sampler="weighted")
        )


def test_paired_split_batches_come_with_each_step(examples: None, tmp_path) -> None:
    cls = METHODS.get("ex-paired")
    cls.seen.clear()
    settings = tiny("colored-mnist", paired_batch_size=4)
    runner(tmp_path).run("ex-paired", "colored-mnist", 0, settings)
    n_val = len(runner(tmp_path).bundle("colored-mnist", {"per_class": [6, 2, 3]}).splits["val"])
    assert cls.seen and all(lab == 8 and pair == 4 for lab, pair, _ in cls.seen)
    assert max(i for *_, i in cls.seen) < n_val
    with pytest.raises(BenchError, match="no such split"):
        runner(tmp_path).run("ex-paired", "colored-mnist", 0, {**settings, "paired_split": "nope"})


def test_generative_method_reports_its_own_metric(examples: None, tmp_path, cli) -> None:
    record, _ = runner(tmp_path).run("ex-generative", "colored-mnist", 0, tiny("colored-mnist"))
    test = record.metrics["test"]
    assert "acc" not in test and "ece" not in test
    assert math.isfinite(test["nll"])
    code, out, err = cli("table", "--results", tmp_path / "results", "--metrics", "nll")
    assert code == 0, err
    assert "nll ↓" in out


# -- inference --------------------------------------------------------------------------------
def test_predict_batch_receives_the_batch_attributes(examples: None, tmp_path) -> None:
    run = runner(tmp_path)
    record, _ = run.run("ex-attrs", "colored-mnist", 0, tiny("colored-mnist"), predictions=True)
    bundle = run.bundle("colored-mnist", {"per_class": [6, 2, 3]})
    preds = run.store.load_predictions(record.run_id)["test"].preds
    assert torch.equal(preds.cpu(), bundle.splits["test"].attrs["bias"].long())


def test_inference_randomness_is_seeded_by_seed_and_split(examples: None, tmp_path) -> None:
    """MC dropout from a freshly trained model and from its cached checkpoint agree."""
    run = runner(tmp_path)
    settings = tiny("colored-mnist")
    fresh, _ = run.run("ex-mc-dropout", "colored-mnist", 0, settings, predictions=True)
    assert fresh.timings["checkpoint"] == "trained"
    first = run.store.load_predictions(fresh.run_id)
    run.store.path(fresh.run_id).unlink()  # forget the record, keep the checkpoint
    again, _ = run.run("ex-mc-dropout", "colored-mnist", 0, settings, predictions=True)
    assert again.timings["checkpoint"] == "cached"
    second = run.store.load_predictions(again.run_id)
    assert torch.equal(first["test"].probs, second["test"].probs)
    assert same_metrics(again.metrics, fresh.metrics)


def test_inference_generator_depends_on_seed_and_split() -> None:
    from benchmark.training import Trainer

    def draw(seed: int, split: str) -> torch.Tensor:
        gen = Trainer(torch.device("cpu"), seed=seed).inference_generator(split)
        return torch.rand(4, generator=gen)

    assert torch.equal(draw(0, "test"), draw(0, "test"))
    assert not torch.equal(draw(0, "test"), draw(0, "val"))
    assert not torch.equal(draw(0, "test"), draw(1, "test"))


def test_insertion_deletion_query_predict_logits_only(examples: None, tmp_path) -> None:
    cls = METHODS.get("ex-explainer")
    cls.calls.update(predict_batch=0, predict_logits=0)
    record, _ = runner(tmp_path).run(
        "ex-explainer", "objects-masks", 0, tiny("objects-masks"), extra_splits=()
    )
    assert "insertion" in record.metrics["test"]
    assert cls.calls["predict_batch"] == 1  # one batch of the test split, never per step
    assert cls.calls["predict_logits"] > 1


def test_a_dataset_scores_every_track_it_provides(examples: None, tmp_path) -> None:
    """waterbirds-synth (bias) has masks: an explainer runs on it, and one run reports the
    bias metrics and the explanation metrics."""
    from benchmark.dataset import DATASETS

    assert METHODS.get("ex-explainer").incompatibility(DATASETS.get("waterbirds-synth")) is None
    assert METHODS.get("ex-explainer").incompatibility(DATASETS.get("glyph-lt")) is not None
    record, _ = runner(tmp_path).run(
        "ex-explainer", "waterbirds-synth", 0, tiny("waterbirds-synth")
    )
    test = record.metrics["test"]
    assert {"worst_group", "miou", "insertion", "deletion"} <= set(test)


# -- post-hoc methods -------------------------------------------------------------------------
def test_posthoc_part_is_cached_in_its_own_checkpoint(examples: None, tmp_path) -> None:
    cls = METHODS.get("ex-adapter")
    cls.calibrations = 0
    run = runner(tmp_path)
    settings = tiny("colored-mnist")
    first, _ = run.run("ex-adapter", "colored-mnist", 0, settings)
    base, _ = run.run("erm", "colored-mnist", 0, settings)
    assert base.timings["checkpoint"] == "cached"  # the adapter's base run trained erm
    assert first.checkpoint != base.checkpoint
    assert run.store.load_checkpoint(first.checkpoint) is not None
    assert cls.calibrations == 1
    run.store.path(first.run_id).unlink()
    again, _ = run.run("ex-adapter", "colored-mnist", 0, settings)
    assert cls.calibrations == 1 and again.timings["checkpoint"] == "cached"
    assert same_metrics(again.metrics, first.metrics)


def test_base_is_chosen_per_run(examples: None, tmp_path) -> None:
    run = runner(tmp_path)
    settings = tiny("colored-mnist")
    default, _ = run.run("ex-adapter", "colored-mnist", 0, settings)
    other, _ = run.run("ex-adapter", "colored-mnist", 0, {**settings, "base": "ex-clipped"})
    assert default.hparams["base"] == "erm" and other.hparams["base"] == "ex-clipped"
    assert "grad_clip" in other.hparams  # the chosen base's settings are accepted
    assert "method:ex-clipped" in other.code and "method:erm" not in other.code
    assert other.run_id != default.run_id and other.checkpoint != default.checkpoint
    assert METHODS.get("ex-adapter").base == "erm"  # the registered class is unchanged
    with pytest.raises(BenchError, match="does not take another base"):
        run.run("decouple-crt", "glyph-lt", 0, {"base": "erm"})
    with pytest.raises(BenchError, match="unknown method"):
        run.run("ex-adapter", "colored-mnist", 0, {**settings, "base": "nope"})


def test_ensemble_members_are_the_base_seeds_trained_once(examples: None, tmp_path) -> None:
    run = runner(tmp_path)
    settings = tiny("colored-mnist")
    ens, _ = run.run("ex-ensemble", "colored-mnist", 3, {**settings, "members": 3})
    for seed in (3, 4, 5):  # every member was trained and cached by the ensemble run
        member, _ = run.run("erm", "colored-mnist", seed, settings)
        assert member.timings["checkpoint"] == "cached", seed
    single, _ = run.run("erm", "colored-mnist", 6, settings)
    assert single.timings["checkpoint"] == "trained"
    assert math.isfinite(ens.metrics["test"]["acc"])


# -- code hashes ------------------------------------------------------------------------------
def test_track_modules_hash_with_their_plugins_not_the_core(tmp_path, monkeypatch) -> None:
    from benchmark import sources

    files = [p.name for p in sources.plugin_files(METHODS.get("ce"))]
    assert files == ["ce.py", "longtail.py"]
    # erm imports the track backbones (so its records follow them), not the long-tail module
    assert [p.name for p in sources.plugin_files(METHODS.get("erm"))] == ["erm.py", "backbones.py"]
    plugin = tmp_path / "plugin.py"
    plugin.write_text("import torch\nfrom benchmark.longtail import LongTailMethod\n")
    assert [p.name for p in sources.track_imports(str(plugin))] == ["longtail.py"]
    # a change to a track module changes its plugins' hashes, not the core's
    core = sources.core_hash()
    sources.core_hash.cache_clear()
    track = sources.TRACKS_DIR / "longtail.py"
    real = sources._file_hash(str(track))
    ce_before = sources.source_hash(METHODS.get("ce"))
    erm_before = sources.source_hash(METHODS.get("erm"))
    monkeypatch.setattr(
        sources,
        "_file_hash",
        lambda path, _f=sources._file_hash: "edited" if path == str(track) else _f(path),
    )
    assert sources.core_hash() == core
    assert sources.source_hash(METHODS.get("ce")) != ce_before
    assert sources.source_hash(METHODS.get("erm")) == erm_before
    assert real != "edited"


# -- plot kinds -------------------------------------------------------------------------------
def test_plot_kinds_are_registered_like_plugins(cli, tmp_path) -> None:
    import argparse

    from benchmark.cli.plots import PLOTS, PlotKind, discover, register_plot

    assert "per-class" in discover().names()
    drawn: list[argparse.Namespace] = []
    with PLOTS.isolated():

        @register_plot("ex-kind")
        class ExKind(PlotKind):
            help = "an example kind"

            def add_arguments(self, parser: argparse.ArgumentParser) -> None:
                parser.add_argument("--ex-option", default="x")

            def main(self, args: argparse.Namespace) -> int:
                drawn.append(args)
                return 0

        code, _, err = cli("plot", "ex-kind", "--ex-option", "y", "--results", tmp_path)
        assert code == 0, err
        assert drawn[0].ex_option == "y" and drawn[0].kind == "ex-kind"
    code, _, err = cli("plot", "ex-kind", "--results", tmp_path)  # gone with the isolation
    assert code == 2 and "unknown plot kind 'ex-kind'" in err and len(err.splitlines()) == 1
    code, _, err = cli("plot", "per-clas", "--results", tmp_path)
    assert code == 2 and "did you mean 'per-class'" in err


def test_a_plugin_file_registers_a_plot_kind(cli, tmp_path) -> None:
    from benchmark.cli.plots import PLOTS

    plugin = tmp_path / "ex_plot.py"
    plugin.write_text(
        "from benchmark.cli.plots import PlotKind, register_plot\n\n\n"
        "@register_plot('ex-file-kind')\n"
        "class ExFileKind(PlotKind):\n"
        "    help = 'a kind from a plugin file'\n\n"
        "    def main(self, args):\n"
        "        print('drew', args.kind, args.dataset)\n"
        "        return 0\n"
    )
    with PLOTS.isolated():
        code, out, err = cli(
            "plot", "ex-file-kind", "--plugin", plugin, "--dataset", "d", "--results", tmp_path
        )
    assert code == 0, err
    assert "drew ex-file-kind d" in out
