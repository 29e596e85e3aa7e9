"""The README's plugin example works when passed with --plugin, verbatim."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO, tiny_settings


def readme_block(marker: str) -> str:
    text = (REPO / "README.md").read_text()
    for block in re.findall(r"```(?:python|bash)\n(.*?)```", text, flags=re.S):
        if marker in block:
            return block
    raise AssertionError(f"no README block containing {marker!r}")


def test_readme_plugin_example(cli, tmp_path: Path) -> None:
    path = tmp_path / "my_method.py"
    path.write_text(readme_block("# my_method.py"))
    code, out, _ = cli("list", "methods", "--plugin", path)
    assert code == 0 and "label-smoothing" in out
    sets = [a for pair in tiny_settings("glyph-lt") for a in ("--set", pair)]
    code, out, err = cli(
        "run",
        "--plugin",
        path,
        "--method",
        "label-smoothing",
        "--dataset",
        "glyph-lt",
        "--set",
        "smoothing=0.2",
        "--results",
        tmp_path / "r",
        "--quiet",
        *sets,
    )
    assert code == 0, err
    assert "label-smoothing on glyph-lt" in out and "few ↑" in out


def test_readme_quick_start_matches_ci() -> None:
    block = readme_block("pytest")
    test_command = block.strip().split("&& ", 1)[1]
    assert test_command in (REPO / ".ci" / "run").read_text()


def test_readme_metric_example() -> None:
    from benchmark import metric_fn

    shot = metric_fn("shot_accuracy")
    assert shot(preds=[0, 1, 1], labels=[0, 1, 2], train_counts=[500, 50, 5]) == {
        "many": 1.0,
        "medium": 1.0,
        "few": 0.0,
    }
    assert "{'many': 1.0, 'medium': 1.0, 'few': 0.0}" in (REPO / "README.md").read_text()
