"""The ``bench`` command line: the happy path and every error a user can cause."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import tiny_settings


def set_args(dataset: str) -> list[str]:
    return [a for pair in tiny_settings(dataset) for a in ("--set", pair)]


def test_run_table_show(cli, results: Path) -> None:
    args = [
        "run",
        "--method",
        "erm",
        "--dataset",
        "glyph-lt",
        "--results",
        results,
        "--quiet",
        "--seed",
        "0",
        "1",
        *set_args("glyph-lt"),
    ]
    code, out, err = cli(*args)
    assert code == 0, err
    for word in ("acc ↑", "bacc ↑", "many ↑", "medium ↑", "few ↑", "erm on glyph-lt"):
        assert word in out
    assert "—" in out  # tiny glyph-lt has no many-shot class: an empty group is "—", not 0
    runs = sorted((results / "runs").glob("*.json"))
    assert len(runs) == 2

    code, out, _ = cli("table", "--results", results)
    assert code == 0 and "glyph-lt" in out and "erm" in out and "| 2 " in out.replace("|2", "| 2")

    code, out, _ = cli("table", "--results", results, "--csv")
    header = out.splitlines()[0].split(",")
    assert header[:4] == ["dataset", "method", "metric", "mean"]
    acc = next(line for line in out.splitlines() if ",acc," in line).split(",")
    assert acc[header.index("n")] == "2"

    code, out, _ = cli("table", "--results", results, "--json")
    rows = json.loads(out)
    assert {r["metric"] for r in rows} >= {"acc", "bacc", "few"}

    run_id = runs[0].stem
    code, out, _ = cli("show", run_id[:8], "--results", results)
    assert code == 0 and run_id in out and "fingerprint" in out and "hyperparameter" in out
    code, out, _ = cli("show", run_id, "--results", results, "--json")
    assert json.loads(out)["run_id"] == run_id


def test_run_twice_reuses_the_record(cli, results: Path) -> None:
    args = [
        "run",
        "--method",
        "erm",
        "--dataset",
        "glyph-lt",
        "--results",
        results,
        *set_args("glyph-lt"),
    ]
    code, first, _ = cli(*args, "--json")
    code, _second, err = cli(*args)
    assert code == 0 and "already in the store" in err
    code, third, _ = cli(*args, "--json")
    assert json.loads(first) == json.loads(third)


def test_list(cli) -> None:
    code, out, _ = cli("list")
    assert code == 0
    for word in ("methods", "datasets", "metrics", "erm", "glyph-lt", "shot-accuracy"):
        assert word in out
    code, out, _ = cli("list", "datasets", "--json")
    payload = json.loads(out)
    assert {"name", "track", "description", "origin"} <= set(payload["datasets"][0])
    code, out, _ = cli("list", "metrics", "*accuracy")
    assert "accuracy" in out and "bias-alignment" not in out


@pytest.mark.parametrize(
    "args,message",
    [
        (["run", "--method", "ermm", "--dataset", "glyph-lt"], "did you mean 'erm'"),
        (["run", "--method", "erm", "--dataset", "glyph-l"], "did you mean 'glyph-lt'"),
        (["run", "--method", "erm", "--dataset", "glyph-lt", "--set", "lr"], "key=value"),
        (
            ["run", "--method", "erm", "--dataset", "glyph-lt", "--set", "lrr=0.1"],
            "unknown setting 'lrr'; did you mean 'lr'",
        ),
        (
            ["run", "--method", "erm", "--dataset", "glyph-lt", "--set", "epochs=many"],
            "expected a int",
        ),
        (
            ["run", "--method", "erm", "--dataset", "glyph-lt", "--set", "dataset.imbalanc=3"],
            "did you mean 'imbalance'",
        ),
        (
            ["run", "--method", "erm", "--dataset", "glyph-lt", "--device", "tpu"],
            "--device must be",
        ),
        (["show", "0123456789"], "no run '0123456789'"),
        (
            ["run", "--method", "erm", "--dataset", "glyph-lt", "--plugin", "/no/such.py"],
            "no such file",
        ),
    ],
)
def test_errors_are_one_line_with_exit_code_2(
    cli, results: Path, args: list[str], message: str
) -> None:
    code, _out, err = cli(*args, "--results", results)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (results / "runs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu(cli, results: Path) -> None:
    code, _, err = cli(
        "run", "--method", "erm", "--dataset", "glyph-lt", "--device", "cuda", "--results", results
    )
    assert code == 2 and "no CUDA GPU" in err


def test_argparse_errors(cli) -> None:
    code, _, err = cli("run", "--dataset", "glyph-lt")
    assert code == 2 and "--method" in err
    code, _, err = cli("frobnicate")
    assert code == 2


PLUGINS = textwrap.dedent(
    """
    import torch
    from benchmark import Bundle, Dataset, Method, Split, register_dataset, register_method

    @register_method("ood-only")
    class OodOnly(Method):
        \"\"\"Runs only on the OoD track.\"\"\"
        tracks = ("ood",)

    @register_method("diverges")
    class Diverges(Method):
        \"\"\"Returns a NaN loss.\"\"\"
        def loss(self, batch):
            return super().loss(batch) * float("nan")

    @register_dataset("needs-folder")
    class NeedsFolder(Dataset):
        \"\"\"A real dataset read from disk.\"\"\"
        track = "longtail"
        needs_data_root = True
        layout = "ROOT/needs-folder/{train,test}/<class>/<image>.png"

        def build(self, options, data_root):
            raise self.missing(data_root, "'needs-folder/train' not found")
    """
)


@pytest.fixture
def plugin_file(tmp_path: Path) -> Path:
    path = tmp_path / "test_plugins.py"
    path.write_text(PLUGINS)
    return path


def test_incompatible_pair(cli, results: Path, plugin_file: Path) -> None:
    code, _, err = cli(
        "run",
        "--plugin",
        plugin_file,
        "--method",
        "ood-only",
        "--dataset",
        "glyph-lt",
        "--results",
        results,
    )
    assert code == 2 and "ood-only runs on tracks ood, not longtail" in err


def test_missing_dataset_folder_prints_layout(
    cli, results: Path, plugin_file: Path, tmp_path: Path
) -> None:
    base = [
        "run",
        "--plugin",
        plugin_file,
        "--method",
        "erm",
        "--dataset",
        "needs-folder",
        "--results",
        results,
    ]
    code, _, err = cli(*base)
    assert code == 2 and "no data root given" in err and "expected layout: ROOT/" in err
    code, _, err = cli(*base, "--data-root", tmp_path / "nowhere")
    assert code == 2 and "does not exist" in err and "expected layout" in err
    code, _, err = cli(*base, "--data-root", tmp_path)
    assert code == 2 and "not found" in err and "expected layout" in err


def test_diverging_training_writes_nothing(cli, results: Path, plugin_file: Path) -> None:
    code, _, err = cli(
        "run",
        "--plugin",
        plugin_file,
        "--method",
        "diverges",
        "--dataset",
        "glyph-lt",
        "--results",
        results,
        "--quiet",
        *set_args("glyph-lt"),
    )
    assert code == 2 and "training diverged" in err
    assert not list(results.rglob("*.json")) and not list(results.rglob("*.pt"))


def test_table_blocks_split_runs_on_other_dataset_options() -> None:
    """Runs with ``--set dataset.rho=0.99`` never share a table row with the default's."""
    from types import SimpleNamespace

    from benchmark.cli.table import data_blocks

    def rec(fp: str, rho: float) -> SimpleNamespace:
        return SimpleNamespace(
            dataset="colored-mnist", dataset_fingerprint=fp, dataset_options={"rho": rho, "n": 1}
        )

    a, b, c = rec("f1", 0.95), rec("f2", 0.99), rec("f1", 0.95)
    blocks = data_blocks([b, a, c])
    assert [(t, len(s)) for t, s in blocks] == [
        ("colored-mnist [rho=0.95]", 2),
        ("colored-mnist [rho=0.99]", 1),
    ]
    assert [t for t, _ in data_blocks([a])] == ["colored-mnist"]
