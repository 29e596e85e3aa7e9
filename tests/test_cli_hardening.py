"""Issue 10, parts 5 and 6: run ids cover the environment, stale temporary files, the umask,
a CLI that starts without torch (plugin index), several methods side by side, honest output."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmark.io import atomic_write_bytes, atomic_write_json
from benchmark.record import RunRecord, content_id
from benchmark.store import Store

from conftest import REPO, tiny_settings


def python(code: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run ``code`` in a fresh interpreter; returns its stdout (fails on a non-zero exit)."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


BENCH = """
import sys
from benchmark.cli import main
try:
    code = main({argv!r})
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("torch", "pandas", "numpy", "matplotlib") if m in sys.modules)
print("RESULT", code, ",".join(heavy) or "-")
"""


def bench_modules(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """(exit code, heavy modules imported, whole stdout) of ``bench ARGV`` in a fresh process."""
    out = python(BENCH.format(argv=argv), env)
    line = [x for x in out.splitlines() if x.startswith("RESULT ")][-1]
    _, code, heavy = line.split(" ")
    return int(code), heavy, out


# -- start-up: no torch for --help, --version, list, unknown names ------------------------------
def test_help_and_version_import_no_torch() -> None:
    for argv in (["--help"], ["--version"]):
        code, heavy, _ = bench_modules(argv)
        assert code == 0 and heavy == "-", (argv, heavy)
    assert "run        train and evaluate" in bench_modules(["--help"])[2]
    code, heavy, _ = bench_modules(["run", "--help"])  # one subcommand: only its module
    assert code == 0 and "torch" not in heavy


def test_help_lines_match_the_subcommand_modules() -> None:
    from benchmark.cli import COMMANDS, build_parser

    full = build_parser()  # every module imported and built
    sub = next(a for a in full._actions if a.dest == "command")
    helps = {c.dest: c.help for c in sub._choices_actions}
    assert helps == {name: help_line for name, (_, help_line) in COMMANDS.items()}


def test_list_and_unknown_names_from_the_index(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "good_one.py").write_text(GOOD.format(name="good-one"))
    (plugins / "broken_method.py").write_text("raise ImportError('missing dep')\n")
    env = {"BENCH_CACHE": str(tmp_path / "cache"), "BENCH_PLUGIN_PATH": str(plugins)}
    code, heavy, first = bench_modules(["list", "methods"], env)  # builds the index
    assert code == 0 and "torch" in heavy
    code, heavy, again = bench_modules(["list", "methods"], env)  # served from the index
    assert code == 0 and heavy == "-", heavy
    assert again.splitlines()[:-1] == first.splitlines()[:-1]  # the same listing
    assert "good-one" in again and "tde" in again
    assert "broken_method.py: ImportError: missing dep" in again  # failures stay listed
    code, heavy, _ = bench_modules(["list", "--json"], env)
    assert code == 0 and heavy == "-"
    # an unknown name fails at once, with suggestions, before torch is imported
    code, heavy, _ = bench_modules(["run", "--method", "nosuch", "--dataset", "glyph-lt"], env)
    assert code == 2 and "torch" not in heavy
    done = subprocess.run(
        [sys.executable, "-m", "benchmark", "run", "--method", "tde", "--dataset", "glyph-lts"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip() == "bench: error: unknown dataset 'glyph-lts'; did you mean 'glyph-lt'?"
    )
    # a plugin file whose bytes change is imported again, and the index follows
    (plugins / "good_one.py").write_text(GOOD.format(name="good-two"))
    code, heavy, out = bench_modules(["list", "methods"], env)
    assert code == 0 and "torch" in heavy and "good-two" in out and "good-one" not in out
    code, heavy, out = bench_modules(["list", "methods"], env)
    assert heavy == "-" and "good-two" in out


GOOD = '''
from benchmark import Method, register_method


@register_method("{name}")
class Good(Method):
    """A good method."""
'''


def test_plugin_index_matches_the_registries(cli) -> None:
    from benchmark.plugins.index import _assemble, from_registries

    index = from_registries()
    again = _assemble([{"rows": index.rows, "failed": index.failed}], {})
    assert again.rows == index.rows  # the stored form round-trips in natural order
    code, out, _ = cli("list", "methods", "decouple-*", "--json")
    assert code == 0
    assert [r["name"] for r in json.loads(out)["methods"]] == [
        "decouple-crt",
        "decouple-lws",
        "decouple-tau-norm",
    ]


# -- run ids cover the environment ----------------------------------------------------------------
def test_run_id_and_checkpoint_differ_with_the_thread_count(tmp_path: Path) -> None:
    from benchmark.device import environment_key
    from benchmark.hparams import parse_assignments
    from benchmark.runner import Runner

    runner = Runner(Store(tmp_path), torch.device("cpu"), progress=False)
    settings = parse_assignments(tiny_settings("glyph-lt"))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = runner.plan("erm", "glyph-lt", 0, settings)
        key_one = environment_key(torch.device("cpu"))
        torch.set_num_threads(2)
        two = runner.plan("erm", "glyph-lt", 0, settings)
        key_two = environment_key(torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    assert key_one["threads"] == 1 and key_two["threads"] == 2
    assert key_one["torch"] == torch.__version__
    assert one.run_id != two.run_id


def test_record_id_covers_the_environment_key() -> None:
    base = dict(
        method="erm",
        dataset="glyph-lt",
        dataset_version="1",
        dataset_fingerprint="f",
        dataset_options={},
        hparams={"lr": 0.1},
        seed=0,
        code="c",
    )
    old = content_id(RunRecord.identity(**base))  # records from before the key keep their id
    cpu1 = content_id(RunRecord.identity(**base, env_key={"torch": "2.11.0", "threads": 1}))
    cpu2 = content_id(RunRecord.identity(**base, env_key={"torch": "2.11.0", "threads": 2}))
    other = content_id(RunRecord.identity(**base, env_key={"torch": "2.10.0", "threads": 1}))
    assert len({old, cpu1, cpu2, other}) == 4
    fields = {k: v for k, v in base.items() if k != "code"}
    record = RunRecord(
        run_id=cpu1,
        track="longtail",
        code={"hash": "c"},
        metrics={},
        env_key={"torch": "2.11.0", "threads": 1},
        **fields,
    )
    assert record.expected_id() == cpu1
    assert RunRecord.from_dict(record.to_dict()).expected_id() == cpu1


@pytest.mark.skipif(sys.platform != "linux", reason="fork-server workers")
def test_gpus_launcher_cpu_workers_never_share_an_id_with_other_bits(tmp_path: Path) -> None:
    from benchmark.hparams import parse_assignments
    from benchmark.launchers import GpuLauncher, LocalLauncher
    from benchmark.sweep import Job

    settings = tuple(sorted(parse_assignments(tiny_settings("glyph-lt")).items()))
    jobs = [Job("erm", "glyph-lt", 0, settings)]
    store = Store(tmp_path / "r")
    local = LocalLauncher(progress=False, device="cpu", plugin_files=[]).run(jobs, store)
    gpus = GpuLauncher(progress=False, device="cpu", max_parallel=2, plugin_files=[], devices=None)
    gpus.slots = ["cpu", "cpu"]  # two CPU workers, as on a machine without a GPU
    pooled = gpus.run([*jobs, Job("erm", "glyph-lt", 1, settings)], store)
    records = {r.run_id: r for r in store.records()}
    for r in records.values():  # the id's thread count is the one the run used
        assert r.env_key["threads"] == r.environment["torch_threads"]
    a, b = records[local[jobs[0]].run_id], records[pooled[jobs[0]].run_id]
    if a.env_key == b.env_key:  # same threads: the same run, the same bits
        assert a.run_id == b.run_id
    else:
        assert a.run_id != b.run_id


# -- stale temporary files and the umask ----------------------------------------------------------
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_every_writing_command_removes_stale_temporaries(cli, tmp_path: Path) -> None:
    from benchmark.io import _host, clean_stale_temporaries

    results = tmp_path / "r"
    stale, fresh = [], []
    for folder in ("runs", "checkpoints", "sweeps", "leaderboard"):
        d = results / folder
        d.mkdir(parents=True)
        killed = d / f".a.json.w{_dead_pid()}@{_host()}.x1.tmp"  # its writer is gone: at once
        old = d / ".b.json.zz.tmp"  # unknown writer, 11 minutes old
        live = d / f".c.json.w{os.getpid()}@{_host()}.x2.tmp"  # a live writer's
        recent = d / ".d.json.yy.tmp"  # unknown writer, just written
        for p in (killed, old, live, recent):
            p.write_text("{")
        os.utime(old, (time.time() - 660, time.time() - 660))
        stale += [killed, old]
        fresh += [live, recent]
    sets = [a for pair in tiny_settings("glyph-lt") for a in ("--set", pair)]
    code, _, err = cli("run", "--method", "erm", "--dataset", "glyph-lt", "--results", results,
                       "--quiet", *sets)  # fmt: skip
    assert code == 0, err
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in fresh)
    assert clean_stale_temporaries(results / "runs", older_than_s=0) == 2  # the fresh ones


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_respect_the_umask(tmp_path: Path, mask: int, mode: int) -> None:
    code = f"""
import os
os.umask({mask})
from benchmark.io import atomic_write_bytes, atomic_write_json, atomic_torch_save
atomic_write_json("{tmp_path}/runs/a.json", {{"x": 1}})
atomic_write_bytes("{tmp_path}/plot.png", b"png")
atomic_torch_save("{tmp_path}/checkpoints/k.pt", {{}})
"""
    python(code)
    for rel in ("runs/a.json", "plot.png", "checkpoints/k.pt"):
        assert stat.S_IMODE((tmp_path / rel).stat().st_mode) == mode, rel


def test_report_and_plot_files_respect_the_umask(cli, tmp_path: Path) -> None:
    board = tmp_path / "lb.csv"
    board.write_text((REPO / "results" / "leaderboard" / "glyph-lt.csv").read_text())
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "x.json", {})
        code, _, err = cli("report", "--leaderboard", board, "--out", tmp_path / "report.html")
    finally:
        os.umask(old)
    assert code == 0, err
    assert stat.S_IMODE((tmp_path / "report.html").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o644
    atomic_write_bytes(tmp_path / "y.bin", b"")  # reading the umask leaves it as it was
    assert os.umask(old) == old


# -- several methods side by side, honest output ------------------------------------------------
def test_run_several_methods_side_by_side(cli, tmp_path: Path) -> None:
    sets = [a for pair in tiny_settings("glyph-lt") for a in ("--set", pair)]
    args = ["--dataset", "glyph-lt", "--results", tmp_path / "r", "--quiet", *sets]
    code, out, err = cli("run", "--method", "tde", "ce", *args)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "tde, ce on glyph-lt (accuracies in %; seeds per method: 1)"
    header = [c.strip() for c in lines[1].strip("|").split("|")]
    assert header == ["metric", "tde", "ce"]
    assert any(line.startswith("| few ↑") for line in lines)
    code, again, _ = cli("run", "--method", "tde,ce", *args)  # comma form, from the store
    assert code == 0 and again == out
    code, _, err = cli("run", "--method", "tde", "nosuch", *args)
    assert code == 2 and "unknown method 'nosuch'" in err


def test_run_says_when_a_checkpoint_was_reused(cli, tmp_path: Path) -> None:
    sets = [a for pair in tiny_settings("glyph-lt") for a in ("--set", pair)]
    args = ["--dataset", "glyph-lt", "--results", tmp_path / "r", *sets]
    code, _, err = cli("run", "--method", "ce", *args)
    assert code == 0 and "reused" not in err
    code, _, err = cli("run", "--method", "logit-adjust", *args)  # post hoc, on ce's model
    assert code == 0 and "trained model reused from checkpoint" in err, err
    run_id = re.search(r"run ([0-9a-f]{16}): logit-adjust", err)[1]
    code, out, _ = cli("show", run_id, "--results", tmp_path / "r")
    assert code == 0 and "model: reused the stored checkpoint" in out


def test_show_prints_percent(cli, tmp_path: Path) -> None:
    sets = [a for pair in tiny_settings("glyph-lt") for a in ("--set", pair)]
    code, out, _ = cli("run", "--method", "erm", "--dataset", "glyph-lt", "--results",
                       tmp_path / "r", "--json", "--quiet", *sets)  # fmt: skip
    record = json.loads(out)[0]
    code, out, _ = cli("show", record["run_id"], "--results", tmp_path / "r")
    assert code == 0
    acc = record["metrics"]["test"]["acc"]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()]
    row = next(r for r in rows if r[:2] == ["test", "acc ↑"])
    assert row[2] == f"{acc * 100:.2f}"
    assert "in %" in out


def test_ood_splits_record_only_ood_metrics(cli, tmp_path: Path) -> None:
    sets = [a for pair in tiny_settings("digits-ood") for a in ("--set", pair)]
    code, out, err = cli("run", "--method", "erm", "--dataset", "digits-ood", "--results",
                         tmp_path / "r", "--json", "--quiet", *sets)  # fmt: skip
    assert code == 0, err
    metrics = json.loads(out)[0]["metrics"]
    assert "acc" in metrics["test"] and "ece" in metrics["test"]
    for split in ("ood_near", "ood_far"):
        assert "auroc" in metrics[split]
        assert not {"acc", "bacc", "ece", "mce", "adaptive_ece"} & set(metrics[split]), split


def test_report_says_how_many_rows_the_plots_draw() -> None:
    from benchmark.leaderboard import read_leaderboard
    from benchmark.report import plotted_note

    board = read_leaderboard(REPO / "results" / "leaderboard" / "glyph-lt.csv")
    assert len(board.rows) > 8
    assert plotted_note(board, 1).startswith(f"plots show 1 of the {len(board.rows)} rows")


# -- the README's walk-through inside a clone ------------------------------------------------------
def test_readme_plugin_files_pass_the_readme_lint(tmp_path: Path) -> None:
    from test_readme import readme_block

    for name in ("my_method.py", "focal_loss.py"):
        (tmp_path / name).write_text(readme_block(f"# {name}"))
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--config", str(REPO / "pyproject.toml"), "."],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_quick_submission_keeps_its_runs_out_of_results(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_readme import readme_block

    monkeypatch.chdir(tmp_path)
    (tmp_path / "focal_loss.py").write_text(readme_block("# focal_loss.py"))
    code, _, err = cli("submit", "--plugin", "focal_loss.py", "--method", "my-focal",
                         "--datasets", "glyph-lt", "--quick", "--out", "focal-quick", "--quiet",
                         "--device", "cpu")  # fmt: skip
    assert code == 0, err
    assert not (tmp_path / "results").exists()
    quick = Path(os.environ["BENCH_CACHE"]) / "quick-results" / "runs"
    assert len(list(quick.glob("*.json"))) >= 2
