"""Submit and verify: a plugin written from the README's instructions goes through submit ->
verify -> a leaderboard row; every kind of tampering is rejected with its reason."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_readme import readme_block

from benchmark.errors import BenchError
from benchmark.leaderboard import read_leaderboard
from benchmark.submission import Protocol, Rejected, sha256_file, verify

from conftest import REPO


def readme_toml(marker: str) -> str:
    text = (REPO / "README.md").read_text()
    for block in re.findall(r"```toml\n(.*?)```", text, flags=re.S):
        if marker in block:
            return block
    raise AssertionError(f"no README toml block containing {marker!r}")


def write_readme_files(folder: Path) -> tuple[Path, Path]:
    plugin = folder / "focal_loss.py"
    plugin.write_text(readme_block("# focal_loss.py"))
    protocol = folder / "my_protocol.toml"
    protocol.write_text(readme_toml("# my_protocol.toml"))
    return plugin, protocol


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One bundle of the README plugin under the README's tiny protocol (made once)."""
    from benchmark import plugins
    from benchmark.cli import main

    folder = tmp_path_factory.mktemp("submission")
    plugin, protocol = write_readme_files(folder)
    files = list(plugins._files)
    with plugins.registry("methods").isolated():
        code = main([
            "submit", "--plugin", str(plugin), "--method", "my-focal", "--protocol",
            str(protocol), "--out", str(folder / "bundle"), "--results", str(folder / "r"),
            "--quiet", "--device", "cpu",
        ])  # fmt: skip
    plugins._files[:] = files
    assert code == 0
    yield folder / "bundle"


def copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "bundle"))


def rehash(bundle: Path) -> None:
    """What a careful forger does: update the manifest's hashes after an edit."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"] = {rel: sha256_file(bundle / rel) for rel in manifest["files"]}
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def first_run(bundle: Path) -> str:
    return json.loads((bundle / "manifest.json").read_text())["runs"][0]["run_id"]


def test_readme_plugin_submit_verify_row_compare(bundle: Path, tmp_path: Path, cli) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["method"] == "my-focal" and manifest["protocol"]["name"] == "tiny-lab-v1"
    assert not manifest["quick"] and len(manifest["runs"]) == 3
    assert {p.name for p in bundle.iterdir()} == {
        "manifest.json", "plugin", "runs", "predictions", "checkpoints", "environment.json",
    }  # fmt: skip
    board = tmp_path / "lb"
    code, out, err = cli("verify", bundle, "--leaderboard", board)
    assert code == 0, err
    assert "verified" in out and "row added to" in out and "reproduce: bench run --plugin" in out
    (row,) = read_leaderboard(board / "glyph-lt.csv").rows
    assert row["method"] == "my-focal" and row["n"] == "3" and row["seeds"] == "0 1 2"
    assert row["source"].startswith("verified tiny-lab-v1 bundle")
    assert json.loads(row["hparams"])["gamma"] == 2.0
    # the recomputed numbers are the submitted ones
    records = [json.loads(p.read_text()) for p in sorted((bundle / "runs").glob("*.json"))]
    accs = [r["metrics"]["test"]["acc"] for r in records]
    assert float(row["acc_mean"]) == pytest.approx(sum(accs) / 3, abs=1e-12)
    code, _, err = cli("verify", bundle, "--leaderboard", board)
    assert code == 2 and "already has a row for my-focal" in err
    # the user's own runs of the protocol rank against the verified row
    code, out, err = cli(
        "compare", "--results", bundle.parent / "r", "--leaderboard", board / "glyph-lt.csv",
    )  # fmt: skip
    assert code == 0, err
    assert "rank 1 of 2" in out or "rank 2 of 2" in out


def test_quick_bundle_never_enters_a_leaderboard(cli, tmp_path: Path) -> None:
    plugin, _ = write_readme_files(tmp_path)
    code, out, err = cli(
        "submit", "--plugin", plugin, "--method", "my-focal", "--datasets", "glyph-lt", "--quick",
        "--out", tmp_path / "quick", "--results", tmp_path / "r", "--quiet", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    assert "QUICK MODE" in out
    code, out, err = cli("verify", tmp_path / "quick", "--leaderboard", tmp_path / "lb")
    assert code == 0, err
    assert "quick results never enter a leaderboard" in out and not (tmp_path / "lb").exists()
    # relabelled as not quick (flags, protocol name), hashes fixed: still quick
    manifest = json.loads((tmp_path / "quick" / "manifest.json").read_text())
    manifest["quick"] = manifest["protocol"]["quick"] = False
    manifest["protocol"]["name"] = "my-lab-v1"
    (tmp_path / "quick" / "manifest.json").write_text(json.dumps(manifest))
    result = verify(tmp_path / "quick", leaderboard=tmp_path / "lb", official=True)
    assert result.quick and not result.written and not (tmp_path / "lb").exists()
    # the settings text edited too (one entry repeated): the runs still used the tiny data and
    # settings, so a leaderboard of the bundle's own protocol refuses it as well
    manifest["protocol"]["settings"]["glyph-lt"].append("epochs=1")
    (tmp_path / "quick" / "manifest.json").write_text(json.dumps(manifest))
    result = verify(tmp_path / "quick", leaderboard=tmp_path / "lb")
    assert result.quick and not result.written and not (tmp_path / "lb").exists()
    assert any("seeds, tiny data and settings" in c for c in result.checks)
    manifest["protocol"]["settings"] = {}  # the settings text too: no longer looks quick
    (tmp_path / "quick" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(Rejected, match=r"protocol has name = 'my-lab-v1'; the official"):
        verify(tmp_path / "quick", leaderboard=tmp_path / "lb", official=True, level="reinferred")
    code, _, err = cli(
        "submit", "--plugin", plugin, "--method", "my-focal", "--quick", "--out", tmp_path / "quick"
    )
    assert code == 2 and "exists" in err


def test_changed_prediction_is_caught(bundle: Path, tmp_path: Path) -> None:
    b = copy(bundle, tmp_path)
    run = first_run(b)
    path = b / "predictions" / f"{run}.pt"
    from benchmark.data import load_bundle

    options = json.loads((b / "manifest.json").read_text())["datasets"]["glyph-lt"]["options"]
    labels = load_bundle("glyph-lt", options).splits["test"].labels
    outputs = torch.load(path, weights_only=True)
    logits = outputs["test"]["logits"]
    assert (logits.argmax(1) != labels).any()
    logits[torch.arange(len(logits)), labels] += 100.0  # every test prediction made right
    torch.save(outputs, path)
    with pytest.raises(Rejected, match="sha256 mismatch"):
        verify(b, leaderboard=tmp_path / "lb")
    rehash(b)
    with pytest.raises(Rejected, match=f"run {run} .*acc on test is .* in the record but .* "
                       "recomputed from the stored predictions"):  # fmt: skip
        verify(b, leaderboard=tmp_path / "lb")
    assert not (tmp_path / "lb").exists()


def test_changed_metric_or_record_is_caught(bundle: Path, tmp_path: Path) -> None:
    b = copy(bundle, tmp_path)
    run = first_run(b)
    path = b / "runs" / f"{run}.json"
    original = path.read_text()
    record = json.loads(original)
    record["metrics"]["test"]["bacc"] += 0.05
    path.write_text(json.dumps(record))
    rehash(b)
    with pytest.raises(Rejected, match="bacc on test is"):
        verify(b, leaderboard=tmp_path / "lb")
    record = json.loads(original)
    record["hparams"]["gamma"] = 0.5  # claim other hyperparameters
    path.write_text(json.dumps(record))
    rehash(b)
    with pytest.raises(Rejected, match="its id does not match its content"):
        verify(b, leaderboard=tmp_path / "lb")


def test_changed_plugin_extra_file_and_bad_manifest(bundle: Path, tmp_path: Path) -> None:
    b = copy(bundle, tmp_path)
    plugin = b / "plugin" / "focal_loss.py"
    plugin.write_text(plugin.read_text().replace("** self.hp.gamma", "** 0"))
    rehash(b)
    with pytest.raises(Rejected, match="does not match its hash in the manifest"):
        verify(b)
    b2 = Path(shutil.copytree(bundle, tmp_path / "b2"))
    (b2 / "runs" / "extra.json").write_text("{}")
    with pytest.raises(Rejected, match=r"not listed in the manifest: runs/extra\.json"):
        verify(b2)
    (b2 / "runs" / "extra.json").unlink()
    (b2 / "manifest.json").write_text("{not json")
    with pytest.raises(Rejected, match="not valid JSON"):
        verify(b2)
    with pytest.raises(Rejected, match=r"no manifest\.json"):
        verify(tmp_path)


def test_verify_refuses_a_tampered_or_foreign_leaderboard(
    bundle: Path, tmp_path: Path, cli
) -> None:
    board = tmp_path / "lb.csv"
    verify(bundle, leaderboard=board)
    edited = board.read_text().replace("my-focal", "my-focaL", 1)
    board.write_text(edited)
    code, _, err = cli("verify", bundle, "--leaderboard", board)
    assert code == 2 and "rejected" in err and "edited after it was written" in err
    official = REPO / "results" / "leaderboard" / "glyph-lt.csv"
    if official.exists():  # the official glyph-lt has another fingerprint than the tiny one
        target = tmp_path / "official.csv"
        shutil.copyfile(official, target)
        with pytest.raises(BenchError, match=r"refusing to compare.*fingerprint"):
            verify(bundle, leaderboard=target)


BAD_PLUGINS = {
    "type": (
        'hparams = {"gamma": HParam(2, LogUniform(0.5, 5.0), "focusing")}',
        "search space yields .* which its default's type rejects",
    ),
    "shared": (
        'hparams = {"lr": HParam(0.1, LogUniform(0.01, 1.0), "lr")}',
        "redeclares the shared",
    ),
    "nan": (
        "def loss(self, batch):\n        return super().loss(batch) * float('nan')",
        "smoke run of bad on tiny glyph-lt failed: training diverged",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_PLUGINS))
def test_plugin_checks(case: str, cli, tmp_path: Path) -> None:
    body, message = BAD_PLUGINS[case]
    plugin = tmp_path / "bad.py"
    plugin.write_text(
        "from benchmark import HParam, LogUniform, Method, register_method\n\n"
        f'@register_method("bad")\nclass Bad(Method):\n    """Bad."""\n\n    {body}\n'
    )
    code, _, err = cli("submit", "--plugin", plugin, "--method", "bad", "--datasets", "glyph-lt",
                       "--quick", "--out", tmp_path / "out", "--quiet")  # fmt: skip
    assert code == 2 and re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_submit_needs_the_plugin_that_defines_the_method(cli, tmp_path: Path) -> None:
    code, _, err = cli("submit", "--method", "erm", "--quick")
    assert code == 2 and "--plugin my_method.py" in err
    other = tmp_path / "other.py"
    other.write_text("X = 1\n")
    code, _, err = cli("submit", "--plugin", other, "--method", "erm", "--quick", "--out",
                       tmp_path / "o")  # fmt: skip
    assert code == 2 and "is defined in" in err and "not in the plugin file" in err


def test_protocol_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('name = "x"\nseedz = [0]\n')
    with pytest.raises(BenchError, match="unknown key"):
        Protocol.load(path)
    path.write_text("quick = true\n")
    with pytest.raises(BenchError, match="quick mode is --quick"):
        Protocol.load(path)


# -- verification levels: a bundle forged consistently ----------------------------------------
def refresh_records(b: Path) -> None:
    """What a careful forger does after changing predictions: recompute every record's metrics
    from them with the bench's own scoring (the run ids do not cover metrics), then rehash."""
    from benchmark.record import RunRecord
    from benchmark.runner import Runner
    from benchmark.store import Store

    runner = Runner(Store(b.parent / "scratch"), torch.device("cpu"), None, False)
    for path in sorted((b / "runs").glob("*.json")):
        record = RunRecord.from_dict(json.loads(path.read_text()))
        data = runner.bundle(record.dataset, record.dataset_options)
        outputs = Store(b).load_predictions(b / "predictions" / f"{record.run_id}.pt")
        metrics, details, _ = runner.score(data, outputs.__getitem__, list(record.metrics))
        for split, values in record.metrics.items():  # model-querying metrics stay as claimed
            values.update(metrics[split])
        record.details = details
        path.write_text(json.dumps(record.to_dict()))
    rehash(b)


def forge_labels(b: Path) -> None:
    """Every stored prediction replaced by the test labels (one-hot logits), made consistent."""
    from benchmark.data import load_bundle

    options = json.loads((b / "manifest.json").read_text())["datasets"]["glyph-lt"]["options"]
    splits = load_bundle("glyph-lt", options).splits
    for path in (b / "predictions").glob("*.pt"):
        outputs = torch.load(path, weights_only=True)
        for split, out in outputs.items():
            labels = splits[split].labels
            out["logits"] = 20.0 * F.one_hot(labels, out["logits"].shape[1]).float()
        torch.save(outputs, path)
    refresh_records(b)


@pytest.fixture
def official(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An official leaderboard folder whose registered protocol is the README's tiny one."""
    from benchmark import submission

    folder = tmp_path / "official"
    protocol = tmp_path / "registered.toml"
    protocol.write_text(readme_toml("# my_protocol.toml"))
    monkeypatch.setattr(submission, "OFFICIAL", Protocol.load(protocol))
    monkeypatch.setattr(submission, "official_dir", lambda: folder)
    return folder


def test_forged_bundle_cannot_reach_the_official_leaderboard(
    bundle: Path, tmp_path: Path, cli, official: Path
) -> None:
    b = copy(bundle, tmp_path)
    forge_labels(b)
    # recomputing metrics from predictions cannot tell: the forgery verifies at 100%
    result = verify(b, leaderboard=tmp_path / "mine")
    row = result.rows["glyph-lt"]
    assert float(row["acc_mean"]) == 1.0 and row["verification"] == "predictions"
    assert read_leaderboard(tmp_path / "mine" / "glyph-lt.csv").rows[0]["verification"] == (
        "predictions"
    )
    # ... which is why the official leaderboard wants reinferred or better
    code, _, err = cli("verify", b, "--leaderboard", official)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "accepts rows verified at level reinferred or better; add --rerun" in err
    # re-inference from the bundled checkpoint exposes it: one line, nothing appended
    code, out, err = cli("verify", b, "--rerun", "--leaderboard", official)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "rejected" in err and "are not what the bundled checkpoint predicts" in err
    assert "predicted classes differ" in err and not official.exists()
    # the honest bundle passes at reinferred, into the official leaderboard
    code, out, err = cli("verify", bundle, "--rerun", "--leaderboard", official)
    assert code == 0, err
    assert "verified at level reinferred" in out and "the stored predictions match" in out
    assert "the runs follow the registered protocol tiny-lab-v1" in out
    (row,) = read_leaderboard(official / "glyph-lt.csv").rows
    assert row["verification"] == "reinferred" and row["seeds"] == "0 1 2"
    # the reproduce command comes from the verified records: relative to the registered
    # protocol's resolution, plugin from the bundle
    assert row["reproduce"].startswith(f"bench run --plugin {bundle}/plugin/focal_loss.py ")
    assert "--set epochs=1" in row["reproduce"] and "dataset.n_max=12" in row["reproduce"]


def keep_first_run(b: Path) -> Path:
    """The bundle cut to its first run, its protocol to that one seed (consistently)."""
    manifest = json.loads((b / "manifest.json").read_text())
    for entry in manifest["runs"][1:]:
        for rel in (f"runs/{entry['run_id']}.json", f"predictions/{entry['run_id']}.pt",
                    entry["checkpoint"]):  # fmt: skip
            (b / rel).unlink()
            del manifest["files"][rel]
    manifest["runs"] = manifest["runs"][:1]
    manifest["protocol"]["seeds"] = [manifest["runs"][0]["seed"]]
    (b / "manifest.json").write_text(json.dumps(manifest))
    return b


def test_official_leaderboard_checks_the_registered_protocol(
    bundle: Path, tmp_path: Path, official: Path
) -> None:
    from benchmark import submission

    # one seed: the bundle's own protocol says so, consistently
    b = keep_first_run(copy(bundle, tmp_path))
    assert verify(b, leaderboard=tmp_path / "own").rows["glyph-lt"]["n"] == "1"  # own protocol
    with pytest.raises(Rejected, match=r"protocol has seeds = \[0\]; the official .* \[0, 1, 2\]"):
        verify(b, leaderboard=official, level="reinferred")
    # the bundle's protocol text edited to the registered one; the runs are not (epochs)
    registered = submission.OFFICIAL
    registered.settings["*"] = ["epochs=2", "batch_size=8", "backbone=tiny-cnn"]
    b2 = Path(shutil.copytree(bundle, tmp_path / "b2"))
    manifest = json.loads((b2 / "manifest.json").read_text())
    manifest["protocol"]["settings"] = registered.settings
    (b2 / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        Rejected, match=r"epochs = 1, the official protocol \(tiny-lab-v1\) gives 2"
    ):
        verify(b2, leaderboard=official, level="reinferred")
    assert not official.exists()


def test_retrain_catches_a_checkpoint_the_code_did_not_make(
    bundle: Path, tmp_path: Path, cli
) -> None:
    from benchmark.cli import verify_worker

    code, out, err = cli("verify", bundle, "--retrain", "--leaderboard", tmp_path / "lb")
    assert code == 0, err
    assert "verified at level retrained" in out and "metrics match (each run exactly)" in out
    assert read_leaderboard(tmp_path / "lb" / "glyph-lt.csv").rows[0]["verification"] == (
        "retrained"
    )
    # a checkpoint from elsewhere (weights scaled), its predictions and metrics made consistent
    b = keep_first_run(copy(bundle, tmp_path))  # one seed is enough (and quicker)
    manifest = json.loads((b / "manifest.json").read_text())
    for path in (b / "checkpoints").glob("*.pt"):
        ckpt = torch.load(path, weights_only=True)
        ckpt["state"] = {
            k: v * 1.5 if v.is_floating_point() else v for k, v in ckpt["state"].items()
        }
        torch.save(ckpt, path)
    spec = {
        "bundle": str(b), "plugins": [str(b / "plugin" / "focal_loss.py")], "modes": ["rerun"],
        "device": "cpu", "runs": [
            {"run_id": e["run_id"], "checkpoint": e["checkpoint"]} for e in manifest["runs"]
        ],
    }  # fmt: skip
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    assert verify_worker.main([str(tmp_path / "spec.json"), str(tmp_path)]) == 0
    for e in manifest["runs"]:
        shutil.copyfile(tmp_path / f"{e['run_id']}.pt", b / "predictions" / f"{e['run_id']}.pt")
    refresh_records(b)
    code, out, err = cli("verify", b, "--retrain", "--leaderboard", tmp_path / "lb2")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "when trained again from the bundled plugin" in err  # re-inference passed
    assert not (tmp_path / "lb2").exists()


def test_manifest_paths_stay_inside_the_bundle(bundle: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("not yours")
    cases = {
        "absolute": lambda m, b: m["files"].__setitem__(str(outside), sha256_file(outside)),
        "dotdot": lambda m, b: m["files"].__setitem__("../secret.txt", sha256_file(outside)),
        "plugin": lambda m, b: m["plugin"][0].__setitem__("file", "../secret.txt"),
    }
    for i, edit in enumerate(cases.values()):
        b = Path(shutil.copytree(bundle, tmp_path / f"b{i}"))
        manifest = json.loads((b / "manifest.json").read_text())
        edit(manifest, b)
        (b / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(Rejected, match="leaves the bundle"):
            verify(b, write=False)
    b = Path(shutil.copytree(bundle, tmp_path / "link"))
    (b / "runs" / "link.json").symlink_to(outside)
    rehash_with(b, "runs/link.json")
    with pytest.raises(Rejected, match=r"symbolic link\(s\), refused: runs/link\.json"):
        verify(b, write=False)
    b = Path(shutil.copytree(bundle, tmp_path / "dirlink"))
    (b / "plugin" / "more").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(Rejected, match=r"symbolic link\(s\), refused: plugin/more"):
        verify(b, write=False)


def rehash_with(b: Path, rel: str) -> None:
    manifest = json.loads((b / "manifest.json").read_text())
    manifest["files"][rel] = ""
    (b / "manifest.json").write_text(json.dumps(manifest))
    rehash(b)


def test_reproduce_and_settings_come_from_the_records(bundle: Path, tmp_path: Path) -> None:
    b = copy(bundle, tmp_path)
    manifest = json.loads((b / "manifest.json").read_text())
    manifest["datasets"]["glyph-lt"]["settings"] = {"epochs": "200; rm -rf ~", "lr": "9"}
    (b / "manifest.json").write_text(json.dumps(manifest))
    row = verify(b, write=False).rows["glyph-lt"]
    assert "rm -rf" not in row["reproduce"] and "rm -rf" not in row["settings"]
    assert "--set epochs=1 " in row["reproduce"] and "--set lr=0.2" in row["reproduce"]
    assert json.loads(row["settings"])["epochs"] == "1"


def test_checkout_leaderboard_is_official_and_help_warns(bundle: Path, cli, tmp_path) -> None:
    from benchmark.submission import is_official

    committed = REPO / "results" / "leaderboard"
    assert is_official(committed) and is_official(committed / "glyph-lt.csv")
    assert not is_official(tmp_path / "leaderboard")
    before = {p.name: p.read_bytes() for p in committed.glob("*.csv")}
    code, _, err = cli("verify", bundle, "--leaderboard", committed)
    assert code == 2 and "accepts rows verified at level reinferred or better" in err
    assert {p.name: p.read_bytes() for p in committed.glob("*.csv")} == before
    code, out, _ = cli("verify", "--help")
    assert code == 0 and "RUN THE BUNDLE'S CODE" in " ".join(out.split())


def test_rerun_needs_the_bundled_checkpoints(bundle: Path, tmp_path: Path) -> None:
    b = copy(bundle, tmp_path)
    manifest = json.loads((b / "manifest.json").read_text())
    for entry in manifest["runs"]:
        (b / entry["checkpoint"]).unlink()
        del manifest["files"][entry.pop("checkpoint")]
    (b / "manifest.json").write_text(json.dumps(manifest))
    assert verify(b, write=False).level == "predictions"  # an older bundle still verifies
    with pytest.raises(Rejected, match="carries no checkpoint, so it cannot be re-inferred"):
        verify(b, write=False, level="reinferred")


def test_match_rules_same_and_cross_device(bundle: Path) -> None:
    from benchmark.record import RunRecord
    from benchmark.store import Store
    from benchmark.submission import match_predictions, match_retrained

    paths = sorted((bundle / "runs").glob("*.json"))
    records = [RunRecord.from_dict(json.loads(p.read_text())) for p in paths]
    r = records[0]
    stored = Store(bundle).load_predictions(bundle / "predictions" / f"{r.run_id}.pt")
    fresh = Store(bundle).load_predictions(bundle / "predictions" / f"{r.run_id}.pt")
    match_predictions(r, stored, fresh, same_kind=True)
    fresh["test"].logits = fresh["test"].logits + 0.01  # a GPU's bf16 rounding, say
    with pytest.raises(Rejected, match="not what the bundled checkpoint predicts"):
        match_predictions(r, stored, fresh, same_kind=True)
    match_predictions(r, stored, fresh, same_kind=False)
    logits = fresh["test"].logits
    top = logits.argmax(1)[0]
    logits[0, top] -= 100.0  # one prediction flipped
    with pytest.raises(Rejected, match=r"\(1 of \d+ predicted classes differ\)"):
        match_predictions(r, stored, fresh, same_kind=False)
    # retrained metrics: each run exactly on the CPU, seed means elsewhere
    for rec, acc in zip(records, (0.5, 0.6, 0.7)):
        rec.metrics = {"test": {"acc": acc}}
    noisy = {rec.run_id: {"test": {"acc": a}} for rec, a in zip(records, (0.52, 0.58, 0.71))}
    with pytest.raises(Rejected, match=r"acc on test is 0\.5 in the record but 0\.52"):
        match_retrained(records, noisy, exact=True)
    match_retrained(records, noisy, exact=False)  # |0.6033 - 0.6| within 0.01 + 2 SE
    shifted = {rec.run_id: {"test": {"acc": a + 0.2}} for rec, a in zip(records, (0.5, 0.6, 0.7))}
    with pytest.raises(Rejected, match=r"acc on test is 0.6000 \(mean of 3 seeds\).*0.8000"):
        match_retrained(records, shifted, exact=False)
