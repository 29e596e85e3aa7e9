"""bench sweep: configurations, seeded draws, the two-phase protocol, skipping finished runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.errors import BenchError
from benchmark.hparams import HParam, LogUniform, Uniform, parse_assignments, random_hparams
from benchmark.launchers import LocalLauncher
from benchmark.store import Store
from benchmark.sweep import Sweep, SweepSpec, configurations, parse_grid, sweep_selections

from conftest import tiny_settings


def tiny(dataset: str = "glyph-lt") -> dict[str, str]:
    return parse_assignments(tiny_settings(dataset))


def local() -> LocalLauncher:
    return LocalLauncher(device="cpu", progress=False, plugin_files=[])


def test_random_draws_are_seeded_by_name() -> None:
    declared = {
        "lr": HParam(0.1, LogUniform(1e-3, 1.0)),
        "wd": HParam(1e-4, LogUniform(1e-6, 1e-2)),
    }
    more = {"alpha": HParam(0.5, Uniform(0.0, 1.0)), **declared, "beta": HParam(1.0, Uniform(0, 2))}
    for trial in range(1, 6):
        a = random_hparams(declared, trial, "erm", "glyph-lt")
        b = random_hparams(more, trial, "erm", "glyph-lt")
        assert a["lr"] == b["lr"] and a["wd"] == b["wd"]  # adding names changes nothing else
    draws = {random_hparams(declared, t, "erm", "glyph-lt")["lr"] for t in range(1, 6)}
    assert len(draws) == 5 and all(1e-3 <= v <= 1.0 for v in draws)
    assert random_hparams(declared, 0, "erm", "glyph-lt")["lr"] == 0.1  # trial 0: defaults


def test_random_configurations_round_trip_as_text() -> None:
    spec = SweepSpec(["erm"], ["glyph-lt"], random=4, search=["lr"], select="val-acc")
    configs = configurations(spec, "erm", "glyph-lt")
    assert configs[0] == {} and len(configs) == 4
    from benchmark.training import PROTOCOL

    searchable = {k: h for k, h in PROTOCOL.items() if h.space is not None}
    for trial, cfg in enumerate(configs[1:], start=1):
        assert set(cfg) == {"lr"}  # --search restricts the draw; others keep their defaults
        drawn = random_hparams(searchable, trial, "erm", "glyph-lt")["lr"]
        assert json.loads(cfg["lr"]) == drawn  # the text form parses back to the exact float


def test_grid_values_and_declared_space_points() -> None:
    grid = parse_grid(["lr=0.01,0.1", "weight_decay:3", "milestones=[60,80],[120,160]"])
    assert grid == {
        "lr": ["0.01", "0.1"],
        "weight_decay": ":3",
        "milestones": ["[60,80]", "[120,160]"],
    }
    spec = SweepSpec(["erm"], ["glyph-lt"], grid=grid, select="val-acc")
    configs = configurations(spec, "erm", "glyph-lt")
    assert len(configs) == 2 * 3 * 2
    assert sorted({float(c["weight_decay"]) for c in configs}) == pytest.approx([1e-5, 1e-4, 1e-3])
    with pytest.raises(BenchError, match="expected NAME:N"):
        parse_grid(["lr:x"])
    with pytest.raises(BenchError, match="NAME=V1,V2"):
        parse_grid(["lr"])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"grid": {"lr": ["0.1"]}, "random": 2, "select": "val-acc"}, "either --grid or --random"),
        ({"grid": {"lr": ["0.1"]}}, "needs a model-selection rule"),
        ({"grid": {"lr": ["0.1"]}, "select": "val-acc2"}, "did you mean 'val-acc'"),
        ({"search": ["lr"]}, "add --random N"),
        ({"seeds": []}, "at least one seed"),
    ],
)
def test_bad_specs(kwargs: dict, message: str) -> None:
    with pytest.raises(BenchError, match=message):
        SweepSpec(["erm"], ["glyph-lt"], **kwargs)


def test_unknown_grid_name_and_no_space(results: Path) -> None:
    spec = SweepSpec(["erm"], ["glyph-lt"], grid={"lrr": ["0.1"]}, select="val-acc")
    with pytest.raises(BenchError, match="did you mean 'lr'"):
        Sweep(spec, Store(results), local())
    spec = SweepSpec(["erm"], ["glyph-lt"], grid={"epochs": ":3"}, select="val-acc")
    with pytest.raises(BenchError, match="declares no search space for epochs"):
        Sweep(spec, Store(results), local()).plan()


def test_two_phase_selection_and_resume(results: Path) -> None:
    spec = SweepSpec(
        ["erm"],
        ["glyph-lt"],
        seeds=[0, 1],
        settings=tiny(),
        grid={"lr": ["0.001", "0.3"]},
        select="val-acc",
    )
    store = Store(results)
    result = Sweep(spec, store, local()).run()
    assert not result.failed
    (sel,) = result.selections
    search = {j.config: store.get(o.run_id) for j, o in result.search.items()}
    val_acc = [search[i].metrics["val"]["acc"] for i in range(2)]
    assert sel.scores == val_acc
    best = max(range(2), key=lambda i: (val_acc[i], -i))
    assert sel.config == best and sel.settings == {"lr": ["0.001", "0.3"][best]}
    finals = [store.get(o.run_id) for o in result.final.values()]
    assert sorted(r.seed for r in finals) == [0, 1]
    assert {r.hparams["lr"] for r in finals} == {float(sel.settings["lr"])}
    assert all(r.extra_splits == ["val"] and "val" in r.metrics for r in finals)
    # the final run on the search seed is the search run itself: trained once
    search_ids = {o.run_id for o in result.search.values()}
    assert len(search_ids & {r.run_id for r in finals}) == 1
    assert len(list(store.runs.glob("*.json"))) == 3
    assert set(sweep_selections(store).values()) == {"val-acc"}

    before = {p.name: p.stat().st_mtime_ns for p in store.runs.glob("*.json")}
    again = Sweep(spec, store, local()).run()
    assert all(o.cached for o in [*again.search.values(), *again.final.values()])
    assert {p.name: p.stat().st_mtime_ns for p in store.runs.glob("*.json")} == before


def test_selection_rule_needs_its_metric(results: Path) -> None:
    spec = SweepSpec(
        ["erm"], ["glyph-lt"], settings=tiny(), grid={"lr": ["0.01"]}, select="val-worst-group"
    )
    with pytest.raises(BenchError, match="needs metric 'worst_group' on split 'val'"):
        Sweep(spec, Store(results), local()).run()


def test_oracle_is_labelled(cli, results: Path) -> None:
    sets = [a for pair in tiny_settings("colored-mnist") for a in ("--set", pair)]
    code, out, err = cli(
        "sweep", "--method", "erm", "--dataset", "colored-mnist", "--grid", "lr=0.001,0.01",
        "--select", "test-oracle", "--results", results, "--quiet", *sets,
    )  # fmt: skip
    assert code == 0, err
    assert "test-oracle (ORACLE)" in out and "sweep: 2 runs" in out
    records = list(Store(results).records())
    assert all(r.extra_splits == [] for r in records)  # the oracle reads test: no extra split


def test_cli_dry_run_json_and_incompatible_pairs(cli, results: Path, tmp_path: Path) -> None:
    plugin = tmp_path / "ood_only.py"
    plugin.write_text(
        "from benchmark import Method, register_method\n\n"
        '@register_method("ood-only")\nclass OodOnly(Method):\n    """OoD track only."""\n'
        '    tracks = ("ood",)\n'
    )
    code, out, err = cli(
        "sweep", "--plugin", plugin, "--method", "erm", "ood-only", "--dataset", "glyph-*",
        "--seed", "0", "1", "--dry-run", "--results", results,
    )  # fmt: skip
    assert code == 0, err
    assert "2 runs:" in out and "skipped: 1 (method, dataset) pair(s) of different tracks" in out
    assert "e.g. ood-only on glyph-lt" in out
    assert not results.exists()
    code, same, err = cli(  # names separated by commas, as bench run takes them
        "sweep", "--plugin", plugin, "--method", "erm,ood-only", "--dataset", "glyph-*",
        "--seed", "0", "1", "--dry-run", "--results", results,
    )  # fmt: skip
    assert code == 0 and same == out, err
    sets = [a for pair in tiny_settings("glyph-lt") for a in ("--set", pair)]
    code, out, err = cli(
        "sweep", "--method", "erm", "--dataset", "glyph-lt", "--json", "--quiet",
        "--results", results, *sets,
    )  # fmt: skip
    assert code == 0, err
    payload = json.loads(out)
    assert len(payload["final"]) == 1 and payload["final"][0]["run_id"]
    code, _, err = cli("sweep", "--method", "ood-only", "--dataset", "glyph-lt", "--plugin", plugin)
    assert code == 2 and "no compatible (method, dataset) pair" in err


def test_failed_runs_do_not_stop_the_sweep(cli, results: Path, tmp_path: Path) -> None:
    plugin = tmp_path / "diverges.py"
    plugin.write_text(
        "from benchmark import Method, register_method\n\n"
        '@register_method("diverges")\nclass Diverges(Method):\n    """NaN loss."""\n'
        "    def loss(self, batch):\n        return super().loss(batch) * float('nan')\n"
    )
    sets = [a for pair in tiny_settings("glyph-lt") for a in ("--set", pair)]
    code, out, _ = cli(
        "sweep", "--plugin", plugin, "--method", "diverges", "erm", "--dataset", "glyph-lt",
        "--results", results, "--quiet", *sets,
    )  # fmt: skip
    assert code == 1
    assert "failed: diverges on glyph-lt seed 0: training diverged" in out
    assert [r.method for r in Store(results).records()] == ["erm"]
