"""``bench reproduce``: study plugins, claim verdicts, exit codes, data missing, the report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmark.cli.studies import (
    DATA_MISSING,
    EXIT_DATA_MISSING,
    EXIT_NOT_REPRODUCED,
    EXIT_RUNS_MISSING,
    NOT_REPRODUCED,
    REPRODUCED,
    STUDIES,
    Claim,
    judge,
    load_studies,
)

from conftest import tiny_settings

BUILTIN = (
    "tde-glyph-lt",
    "tde-cifar100-lt",
    "tde-cifar10-lt",
    "tde-imagenet-lt",
    "longtail-baselines-glyph-lt",
    "mdn-synthetic",
)


@pytest.fixture
def studies() -> Iterator[None]:
    """Studies registered by a test (``--plugin``) are forgotten afterwards."""
    load_studies()
    with STUDIES.isolated():
        yield


def tiny_study(path: Path, name: str, dataset: str = "glyph-lt", *, claims: str = "") -> Path:
    """A study file on a tiny built-in dataset: ce vs erm, one seed, and two opposite claims
    (so that at least one of them cannot reproduce)."""
    settings = dict(s.split("=", 1) for s in tiny_settings("glyph-lt"))
    claims = claims or (
        'Claim("acc", "ce", ">", "erm", published=(Published("X", {"ce": 1.0, "erm": 0.5}, '
        '"a test", False),)), Claim("acc", "ce", "<", "erm")'
    )
    path.write_text(
        "from benchmark.cli.studies import Claim, Published, Study, register_study\n\n\n"
        f"@register_study({name!r})\n"
        "class S(Study):\n"
        "    paper = 'A test paper (2026)'\n"
        f"    dataset = {dataset!r}\n"
        "    methods = ('ce', 'erm')\n"
        "    seeds = (0,)\n"
        f"    settings = {settings!r}\n"
        f"    claims = ({claims},)\n"
    )
    return path


def test_builtin_studies_are_consistent(studies: None) -> None:
    from benchmark.dataset import DATASETS
    from benchmark.method import METHODS

    assert set(BUILTIN) <= set(STUDIES.names())
    for name in BUILTIN:
        study = STUDIES.get(name)
        DATASETS.get(study.dataset)
        for m in study.methods:
            assert METHODS.get(m).incompatibility(DATASETS.get(study.dataset)) is None, (name, m)
        assert study.claims and study.paper
        for claim in study.claims:
            assert {claim.method, claim.other} <= set(study.methods), (name, claim)
            for p in claim.published:  # published numbers name the claim's methods only
                assert set(p.values) <= {claim.method, claim.other} and p.source


def test_judge_every_seed_and_mean() -> None:
    class R:
        def __init__(self, v: float) -> None:
            self.metrics, self.run_id = {"test": {"acc": v}}, f"id{v}"

    records = {("a", 0): R(0.6), ("b", 0): R(0.5), ("a", 1): R(0.4), ("b", 1): R(0.45)}
    every = judge(Claim("acc", "a", ">", "b"), records, (0, 1))
    assert every.verdict == NOT_REPRODUCED and "seed(s) 1" in every.why
    mean = judge(Claim("acc", "a", ">", "b", rule="mean"), records, (0, 1))
    assert mean.verdict == REPRODUCED  # 0.5 > 0.475
    assert judge(Claim("acc", "a", "<", "b", rule="mean"), records, (0, 1)).verdict == (
        NOT_REPRODUCED
    )
    assert judge(Claim("acc", "a", ">", "b"), {}, (0,), data_missing=True).verdict == DATA_MISSING
    with pytest.raises(ValueError):
        Claim("acc", "a", ">=", "b")


def test_a_claim_that_fails_is_not_reproduced(cli, studies: None, tmp_path: Path) -> None:
    plugin = tiny_study(tmp_path / "opposite.py", "opposite-claims")
    results = tmp_path / "results"
    code, out, err = cli(
        "reproduce", "opposite-claims", "--plugin", plugin, "--results", results, "--json",
        "--quiet",
    )  # fmt: skip
    assert code == EXIT_NOT_REPRODUCED, err
    (study,) = json.loads(out)
    verdicts = [c["verdict"] for c in study["claims"]]
    assert NOT_REPRODUCED in verdicts and study["ran"] == 2 and not study["failed"]
    # the verdicts follow the stored records' numbers
    ce = study["claims"][0]["measured"]["ce"]["values"]["0"]
    erm = study["claims"][0]["measured"]["erm"]["values"]["0"]
    assert verdicts[0] == (REPRODUCED if ce > erm else NOT_REPRODUCED)
    assert verdicts[1] == (REPRODUCED if ce < erm else NOT_REPRODUCED)
    from benchmark.store import Store

    stored = {r.run_id: r for r in Store(results).records()}
    assert stored[study["claims"][0]["measured"]["ce"]["run_ids"]["0"]].metrics["test"]["acc"] == ce
    # a second time: nothing runs, the same verdicts; the text shows published and measured
    code, out, err = cli("reproduce", "opposite-claims", "--plugin", plugin, "--results", results)
    assert code == EXIT_NOT_REPRODUCED
    assert "2 already stored, 0 ran now" in out and "published (X: ce 1.0, erm 0.5" in out
    assert f"measured (glyph-lt): ce {ce * 100:.2f}" in out
    assert "verdict: not reproduced" in out


def test_missing_data_is_listed_and_the_rest_runs(cli, studies: None, tmp_path: Path) -> None:
    plugin = tiny_study(tmp_path / "tiny.py", "tiny-study")
    results = tmp_path / "results"
    code, out, _ = cli(
        "reproduce", "tde-cifar10-lt", "tiny-study", "--plugin", plugin, "--results", results,
        "--json", "--quiet",
    )  # fmt: skip
    missing, tiny = json.loads(out)
    assert "expected layout: DIR/cifar-10-batches-py/" in missing["data_missing"]
    assert {c["verdict"] for c in missing["claims"]} == {DATA_MISSING}
    assert missing["exit_code"] == EXIT_DATA_MISSING and missing["ran"] == 0
    assert tiny["ran"] == 2 and not tiny["failed"]  # the other study ran
    expected = EXIT_NOT_REPRODUCED if tiny["exit_code"] == EXIT_NOT_REPRODUCED else 4
    assert code == expected
    code, out, _ = cli("reproduce", "tde-cifar10-lt", "--results", results)
    assert code == EXIT_DATA_MISSING
    assert "data missing: cifar10-lt: no data root given" in out
    assert "verdict: not run: data missing" in out


def test_no_run_reports_missing_runs(cli, studies: None, tmp_path: Path) -> None:
    plugin = tiny_study(tmp_path / "tiny.py", "tiny-study")
    code, out, _ = cli(
        "reproduce", "tiny-study", "--plugin", plugin, "--results", tmp_path / "r", "--no-run"
    )
    assert code == EXIT_RUNS_MISSING
    assert "not run: runs missing" in out and "bench run --method ce --dataset glyph-lt" in out
    assert not (tmp_path / "r" / "runs").exists()  # nothing ran


def test_unknown_study_is_one_line_with_a_suggestion(cli, studies: None) -> None:
    code, out, err = cli("reproduce", "tde-glyph")
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0 and "did you mean 'tde-glyph-lt'" in err
    code, _, err = cli("reproduce")
    assert code == 2 and "--list" in err


def test_list_shows_every_study_and_its_data(cli, studies: None) -> None:
    code, out, _ = cli("reproduce", "--list")
    assert code == 0
    for name in BUILTIN:
        assert name in out
    assert "expected layout: DIR/cifar-100-python/" in out  # real data: what is missing
    assert "built-in" in out


def test_report_has_a_section_per_study(cli, studies: None, tmp_path: Path) -> None:
    from benchmark.cli.report import study_sections

    plugin = tiny_study(tmp_path / "tiny.py", "tiny-study")
    results = tmp_path / "results"
    cli("reproduce", "tiny-study", "--plugin", plugin, "--results", results, "--quiet")
    html = "\n".join(study_sections(results, None))
    for name in (*BUILTIN, "tiny-study"):
        assert f'id="study-{name}"' in html
    section = html.split('id="study-tiny-study"', 1)[1].split("</section>", 1)[0]
    assert "verdict" in section and ("reproduced" in section)
    cifar = html.split('id="study-tde-cifar10-lt"', 1)[1].split("</section>", 1)[0]
    assert "not run: data missing" in cifar and "expected layout" in cifar
    # the page judges the runs stored with another torch thread count (the run ids hold it)
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(before + 1)
    try:
        other = "\n".join(study_sections(results, None, ["tiny-study"]))
    finally:
        torch.set_num_threads(before)
    assert f"judged from runs made with {before} torch thread(s)" in other
    assert "runs missing" not in other and "verdict" in other


def test_a_study_in_a_plugin_folder_is_discovered(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    folder = tmp_path / "plugins"
    folder.mkdir()
    tiny_study(folder / "folder_study.py", "folder-study")
    env = {**os.environ, "BENCH_PLUGIN_PATH": str(folder)}
    run = subprocess.run(
        [sys.executable, "-m", "benchmark", "reproduce", "--list"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "folder-study" in run.stdout and "tde-glyph-lt" in run.stdout


def test_a_broken_builtin_study_is_recorded_and_the_others_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import benchmark.cli.studies as st
    from benchmark.registry import FAILURES

    (tmp_path / "broken_study.py").write_text("import sys\nsys.exit('no')\n")
    monkeypatch.setattr(st, "_loaded", False)
    monkeypatch.setattr(st, "builtin_studies_dir", lambda: tmp_path)
    before = len(FAILURES)
    try:
        st.load_studies()  # neither raises nor exits
        new = FAILURES[before:]
        assert [(f.kind, f.stem) for f in new] == [("study", "broken_study")]
    finally:
        del FAILURES[before:]
