"""Bad input, everywhere: one line on stderr, exit code 2, nothing written.

Every row of ``CASES`` is one mistake a user can make (issue 10, part 2): the command, the words
its one error line must contain, and the folder that must stay as it was. No row trains: bad
values are refused before anything runs.
"""

from __future__ import annotations

import csv
import io
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmark.errors import BenchError

from conftest import tiny_settings
from layouts import write_cub, write_split_files

GLYPH = ["run", "--method", "erm", "--dataset", "glyph-lt", "--quiet"]


def sets(*pairs: str) -> list[str]:
    return [a for pair in pairs for a in ("--set", pair)]


def tiny() -> list[str]:
    return sets(*tiny_settings("glyph-lt"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder with one tiny ce run on glyph-lt (its record and checkpoint)."""
    from benchmark.cli import main

    results = tmp_path_factory.mktemp("trained") / "results"
    code = main(["run", "--method", "ce", "--dataset", "glyph-lt", "--quiet",
                 "--results", str(results), *tiny()])  # fmt: skip
    assert code == 0
    return results


@dataclass
class Ctx:
    """What a row may use: a scratch folder, a copy of the trained results folder."""

    tmp: Path
    trained: Path

    def results(self) -> Path:
        return self.tmp / "results"

    def copy_trained(self) -> Path:
        dest = self.tmp / "trained"
        shutil.copytree(self.trained, dest)
        return dest


def _run_with(*pairs: str) -> Callable[[Ctx], tuple[list[str], Path]]:
    def make(ctx: Ctx) -> tuple[list[str], Path]:
        return [*GLYPH, *tiny(), *sets(*pairs), "--results", str(ctx.results())], ctx.results()

    return make


def _seed(ctx: Ctx) -> tuple[list[str], Path]:
    return [*GLYPH, *tiny(), "--seed", str(2**64), "--results", str(ctx.results())], ctx.results()


def _results_is_file(ctx: Ctx) -> tuple[list[str], Path]:
    path = ctx.tmp / "a-file"
    path.write_text("not a folder\n")
    return [*GLYPH, *tiny(), "--results", str(path)], ctx.tmp


def _results_uncreatable(ctx: Ctx) -> tuple[list[str], Path]:
    (ctx.tmp / "a-file").write_text("not a folder\n")
    return [*GLYPH, *tiny(), "--results", str(ctx.tmp / "a-file" / "results")], ctx.tmp


def _plot_missing_folder(ctx: Ctx) -> tuple[list[str], Path]:
    results = ctx.copy_trained()
    out = ctx.tmp / "no" / "such" / "folder" / "fig.png"
    return ["plot", "--results", str(results), "--out", str(out)], ctx.tmp


def _truncated_checkpoint(ctx: Ctx) -> tuple[list[str], Path]:
    results = ctx.copy_trained()
    (ckpt,) = (results / "checkpoints").glob("*.pt")
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    for record in (results / "runs").glob("*.json"):
        record.unlink()  # the run is redone from its cached checkpoint
    argv = ["run", "--method", "ce", "--dataset", "glyph-lt", "--quiet", *tiny()]
    return [*argv, "--results", str(results)], results


def _non_utf8_split_file(ctx: Ctx) -> tuple[list[str], Path]:
    root = ctx.tmp / "data"
    write_split_files(root)
    path = root / "ImageNet_LT_train.txt"
    path.write_bytes(path.read_bytes().replace(b"train/", b"tr\xe9in/", 1))
    return ["dataset", "imagenet-lt", "--data-root", str(root), "--quiet"], root


def _bad_board(ctx: Ctx) -> Path:
    """A leaderboard CSV whose first acc mean is text (its row hash recomputed, so that only
    the value is wrong)."""
    from benchmark.leaderboard import row_hash

    source = Path(__file__).resolve().parent.parent / "results" / "leaderboard" / "glyph-lt.csv"
    rows = list(csv.DictReader(io.StringIO(source.read_text(encoding="utf-8"))))
    header = list(rows[0])
    rows[0]["acc_mean"] = "high"
    rows[0]["row_hash"] = row_hash(rows[0])
    out = ctx.tmp / "boards" / "glyph-lt.csv"
    out.parent.mkdir()
    buf = io.StringIO()
    writer = csv.DictWriter(buf, header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    out.write_text(buf.getvalue(), encoding="utf-8")
    return out


def _board_show(ctx: Ctx) -> tuple[list[str], Path]:
    return ["leaderboard", "show", str(_bad_board(ctx))], ctx.tmp


def _report(ctx: Ctx) -> tuple[list[str], Path]:
    board = _bad_board(ctx)
    return ["report", "--leaderboard", str(board), "--out", str(ctx.tmp / "r.html")], ctx.tmp


def _plugin_exits(ctx: Ctx) -> tuple[list[str], Path]:
    plugin = ctx.tmp / "leaves.py"
    plugin.write_text("import sys\nsys.exit(3)\n")
    return ["list", "methods", "--plugin", str(plugin)], ctx.tmp


def _plugin_exits_in_loss(ctx: Ctx) -> tuple[list[str], Path]:
    plugin = ctx.tmp / "quits.py"
    plugin.write_text(
        "import sys\nfrom benchmark import Method, register_method\n\n\n"
        "@register_method('quits')\nclass Quits(Method):\n"
        "    def loss(self, batch):\n        sys.exit(3)\n"
    )
    argv = ["run", "--method", "quits", "--dataset", "glyph-lt", "--quiet", *tiny()]
    return [*argv, "--plugin", str(plugin), "--results", str(ctx.results())], ctx.results()


def _grid(ctx: Ctx) -> tuple[list[str], Path]:
    argv = ["sweep", "--method", "erm", "--dataset", "glyph-lt", "--quiet", *tiny()]
    grid = ["--grid", "lr=0.1,-1", "--select", "val-acc"]
    return [*argv, *grid, "--results", str(ctx.results())], ctx.tmp


def _grid_dataset_option(ctx: Ctx) -> tuple[list[str], Path]:
    argv = ["sweep", "--method", "erm", "--dataset", "glyph-lt", "--quiet", *tiny()]
    grid = ["--grid", "dataset.imbalance=10,0.5", "--select", "val-acc"]
    return [*argv, *grid, "--results", str(ctx.results())], ctx.tmp


def _table_metrics(ctx: Ctx) -> tuple[list[str], Path]:
    return ["table", "--results", str(ctx.copy_trained()), "--metrics", "acc,nosuch"], ctx.tmp


def _table_missing(ctx: Ctx) -> tuple[list[str], Path]:
    return ["table", "--results", str(ctx.tmp / "nowhere")], ctx.tmp


def _plot_method_without_runs(ctx: Ctx) -> tuple[list[str], Path]:
    results = ctx.copy_trained()
    out = ctx.tmp / "fig.png"
    return ["plot", "--results", str(results), "--method", "tde,ce", "--out", str(out)], ctx.tmp


def _record_not_an_object(ctx: Ctx) -> tuple[list[str], Path]:
    results = ctx.copy_trained()
    (results / "runs" / "0000.json").write_text("[]\n")
    return ["table", "--results", str(results)], ctx.tmp


def _board_build_missing(ctx: Ctx) -> tuple[list[str], Path]:
    return ["leaderboard", "build", "--results", str(ctx.tmp / "nowhere")], ctx.tmp


def _table_filter(ctx: Ctx) -> tuple[list[str], Path]:
    return ["table", "--results", str(ctx.copy_trained()), "--method", "nosuch"], ctx.tmp


def _argv(*argv: str) -> Callable[[Ctx], tuple[list[str], Path]]:
    """A command whose mistake is in its arguments; run inside the scratch folder's
    ``results`` (given where the command takes it)."""

    def make(ctx: Ctx) -> tuple[list[str], Path]:
        takes_results = argv[0] in ("run", "sweep", "plot")
        extra = ["--results", str(ctx.results())] if takes_results else []
        return [*argv, *extra], ctx.tmp

    return make


#: (id, argv builder, words the error line contains)
CASES: list[tuple[str, Callable[[Ctx], tuple[list[str], Path]], tuple[str, ...]]] = [
    ("batch_size=0", _run_with("batch_size=0"), ("batch_size=0", ">= 1")),
    ("lr=-0.1", _run_with("lr=-0.1"), ("lr=-0.1", "> 0")),
    ("epochs=0", _run_with("epochs=0"), ("epochs=0", ">= 1")),
    ("epochs=-1", _run_with("epochs=-1"), ("epochs=-1", ">= 1")),
    ("lr=nan", _run_with("lr=nan"), ("lr=nan", "> 0")),
    ("lr=inf", _run_with("lr=inf"), ("lr=inf",)),
    ("momentum=1.5", _run_with("momentum=1.5"), ("momentum=1.5", "[0, 1)")),
    ("weight_decay<0", _run_with("weight_decay=-1e-4"), ("weight_decay", ">= 0")),
    ("milestones<0", _run_with("milestones=[-3]"), ("milestones", ">= 0")),
    ("warmup<0", _run_with("warmup_epochs=-2"), ("warmup_epochs", ">= 0")),
    ("backbone", _run_with("backbone=resnet-9000"), ("backbone", "resnet-9000")),
    ("dataset option", _run_with("dataset.imbalance=0.5"), ("imbalance=0.5", ">= 1")),
    ("dataset n_max", _run_with("dataset.n_max=0"), ("n_max=0", ">= 1")),
    (
        "rise cells=1",
        _argv("run", "--method", "rise", "--dataset", "objects-masks", *sets("cells=1")),
        ("cells=1", ">= 2"),
    ),
    (
        "rise cells=2.5",
        _argv("run", "--method", "rise", "--dataset", "objects-masks", *sets("cells=2.5")),
        ("cells=2.5", "int"),
    ),
    ("seed 2**64", _seed, ("--seed", str(2**64))),
    ("results is a file", _results_is_file, ("--results", "a-file", "not a folder")),
    ("results uncreatable", _results_uncreatable, ("--results", "a-file")),
    ("plot --out missing folder", _plot_missing_folder, ("--out", "no/such/folder")),
    ("truncated checkpoint", _truncated_checkpoint, ("checkpoint", ".pt", "delete")),
    ("non-UTF-8 split file", _non_utf8_split_file, ("ImageNet_LT_train.txt", "UTF-8")),
    ("leaderboard show text mean", _board_show, ("glyph-lt.csv", "acc_mean", "'high'")),
    ("report text mean", _report, ("glyph-lt.csv", "acc_mean", "'high'")),
    ("plugin calls sys.exit", _plugin_exits, ("leaves.py", "SystemExit")),
    ("plugin calls sys.exit in loss", _plugin_exits_in_loss, ("sys.exit(3)", "quits.py")),
    ("grid value", _grid, ("lr=-1", "> 0")),
    ("grid dataset option", _grid_dataset_option, ("imbalance=0.5", ">= 1")),
    ("table --metrics unknown", _table_metrics, ("nosuch", "acc")),
    ("table on a missing folder", _table_missing, ("nowhere",)),
    ("leaderboard build on a missing folder", _board_build_missing, ("nowhere", "--results")),
    ("plot --method without runs", _plot_method_without_runs, ("'tde'",)),
    ("run record not an object", _record_not_an_object, ("0000.json", "not an object")),
    ("table filter matches nothing", _table_filter, ("--method nosuch", "ce on glyph-lt")),
    ("plot --bins 0", _argv("plot", "--bins", "0"), ("--bins", ">= 1")),
    (
        "sweep --random -1",
        _argv("sweep", "--method", "erm", "--dataset", "glyph-lt", "--random", "-1"),
        ("--random", ">= 0"),
    ),
    ("dataset --per-row 0", _argv("dataset", "glyph-lt", "--per-row", "0"), ("--per-row",)),
    ("missing --method", _argv("run", "--dataset", "glyph-lt"), ("--method", "--help")),
    ("--fast on the CPU", _argv(*GLYPH, "--fast", "graph", "--device", "cpu"), ("CUDA",)),
    (
        "--search-seed -1",
        _argv("sweep", "--method", "erm", "--dataset", "glyph-lt", "--search-seed", "-1"),
        ("--search-seed", "-1"),
    ),
]


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (the empty lock files that a run holds while
    it trains are no output)."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.parent.name != "locks"
    }


@pytest.mark.parametrize(("build", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_nothing_written(
    cli, tmp_path: Path, trained: Path, build, words: tuple[str, ...]
) -> None:
    argv, watched = build(Ctx(tmp_path, trained))
    before = _snapshot(watched)
    code, _out, err = cli(*argv)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("bench"), err
    for word in words:
        assert word in err, (word, err)
    assert "Traceback" not in err
    assert _snapshot(watched) == before


def test_plugin_calling_sys_exit_on_the_plugin_path_is_a_load_failure(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin found on $BENCH_PLUGIN_PATH that exits at import is recorded, not obeyed."""
    from benchmark import plugins

    (tmp_path / "leaves.py").write_text("import sys\nsys.exit(3)\n")
    monkeypatch.setattr(plugins, "FAILURES", [])
    plugins.import_folder(tmp_path)
    assert [f.error.split(":")[0] for f in plugins.failures()] == ["SystemExit"]
    code, out, _ = cli("list", "methods")
    assert code == 0 and "erm" in out


@pytest.mark.parametrize("name", ["cub", "imagenet-s"])
def test_dataset_with_lazy_masks_is_described(cli, tmp_path: Path, name: str) -> None:
    """``bench dataset cub`` (and every dataset whose masks are lazy files): described
    without reading every mask, and previewed with each mask beside its image."""
    import json

    from layouts import write_imagenet_s

    (write_cub if name == "cub" else write_imagenet_s)(tmp_path)
    png = tmp_path / "preview.png"
    args = ["dataset", name, "--data-root", tmp_path, "--quiet"]
    code, out, err = cli(*args, "--json", "--preview", png, "--per-row", "2")
    assert code == 0, err
    info = json.loads(out)
    split = "train" if name == "cub" else info["eval_splits"][0]
    mask = info["splits"][split]["attrs"]["mask"]
    assert mask["lazy"] is True and mask["dtype"] == "uint8"
    assert len(mask["shape"]) == 2 and mask["shape"][0] == mask["shape"][1]
    assert png.read_bytes()[:4] == b"\x89PNG"
    code, out, err = cli(*args)  # the text description too
    assert code == 0 and "mask" in out, err


@pytest.mark.parametrize("labels", [["a", "b", "c"], [None, 1, 0], None])
def test_metric_fn_non_numeric_labels(labels: object) -> None:
    from benchmark import metric_fn

    with pytest.raises(BenchError, match="labels"):
        metric_fn("accuracy")([0, 1, 1], labels)


def test_crafted_cifar_pickle_runs_no_code(cli, tmp_path: Path) -> None:
    """A data batch that would call ``os.system`` on a plain ``pickle.load`` is refused."""
    from layouts import write_cifar10

    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(pickle.dumps({"data": Exploit(), "labels": [0]}, protocol=2))
    code, _, err = cli("dataset", "cifar10", "--data-root", tmp_path, "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "data_batch_1" in err and "system" in err
    assert not marker.exists()


def test_method_hparam_out_of_range(cli, tmp_path: Path) -> None:
    """A method's own hyperparameter is checked against its declared range."""
    results = tmp_path / "r"
    code, _, err = cli("run", "--method", "focal", "--dataset", "glyph-lt", "--quiet",
                       *tiny(), "--set", "gamma=-1", "--results", results)  # fmt: skip
    assert code == 2 and "gamma=-1" in err and ">= 0" in err, err
    assert not results.exists()
