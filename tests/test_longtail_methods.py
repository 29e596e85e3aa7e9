"""Long-tail methods end to end on tiny glyph-lt: post-hoc reuse, test-time knobs, schedules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmark.device import select_device
from benchmark.hparams import parse_assignments
from benchmark.method import METHODS
from benchmark.runner import Runner, resolve_hparams
from benchmark.store import Store

from conftest import tiny_settings

SETTINGS = parse_assignments([*tiny_settings("glyph-lt"), "epochs=2"])
DS = {k.removeprefix("dataset."): v for k, v in SETTINGS.items() if k.startswith("dataset.")}
HP = {k: v for k, v in SETTINGS.items() if not k.startswith("dataset.")}


def runner(root: Path) -> Runner:
    return Runner(Store(root), select_device("cpu"), progress=False)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder where ``ce`` and ``deconfound`` were trained once (2 tiny epochs)."""
    path = tmp_path_factory.mktemp("longtail")
    r = runner(path)
    for method in ("ce", "deconfound"):
        assert trained(r, method)[2]
    return path


def built(method: str, **extra: str):
    """An untrained instance with its model built (for hooks that need no training)."""
    from benchmark.data import load_bundle
    from benchmark.dataset import DATASETS

    bundle = load_bundle("glyph-lt", DS)
    mcls = METHODS.get(method)
    hp = resolve_hparams(mcls, DATASETS.get("glyph-lt"), {**HP, **extra})
    m = mcls(bundle.info(), hp, select_device("cpu"))
    m.setup()
    return m


def trained(r: Runner, method: str, **extra: str):
    """A trained method instance (via the checkpoint cache) and whether it trained now."""
    from benchmark.dataset import DATASETS
    from benchmark.training import Trainer

    bundle = r.bundle("glyph-lt", DS)
    mcls = METHODS.get(method)
    hp = resolve_hparams(mcls, DATASETS.get("glyph-lt"), {**HP, **extra})
    trainer = Trainer(r.device, seed=0, progress=False)
    m, key, fresh = r.trained(mcls, bundle, hp, 0, trainer)
    return m, key, fresh, trainer, bundle


def test_tde_alpha_changes_predictions_without_retraining(root: Path) -> None:
    r = runner(root)
    deconf, key, fresh, trainer, bundle = trained(r, "deconfound")
    assert not fresh
    embed = deconf.model.head.embed
    assert embed.abs().sum() > 0  # the moving average was accumulated during training
    assert torch.equal(Store(root).load_checkpoint(key)["state"]["head.embed"], embed)
    plain = trainer.predict(deconf, bundle.splits["test"]).logits
    logits = {}
    for alpha in ("0.0", "3.0"):
        tde, tkey, fresh, trainer, _ = trained(r, "tde", alpha=alpha)
        assert not fresh and tkey == key  # the deconfound checkpoint, reused
        logits[alpha] = trainer.predict(tde, bundle.splits["test"]).logits
    assert torch.allclose(logits["0.0"], plain, atol=1e-5)  # α = 0 is the plain causal norm
    assert not torch.allclose(logits["3.0"], plain)
    assert len(list((root / "checkpoints").glob("*.pt"))) == 2  # ce and deconfound only


def test_tde_run_after_deconfound_reuses_checkpoint(cli, root: Path) -> None:
    import json

    sets = [a for pair in [*tiny_settings("glyph-lt"), "epochs=2"] for a in ("--set", pair)]
    base = ["run", "--dataset", "glyph-lt", "--results", root, "--quiet", "--json", *sets]
    code, out, err = cli(*base, "--method", "deconfound")
    assert code == 0, err
    first = json.loads(out)[0]
    assert first["timings"]["checkpoint"] == "cached"  # trained by the fixture
    for extra in ([], ["--set", "alpha=2.5"], ["--set", "alpha_from_val=true"]):
        code, out, err = cli(*base, "--method", "tde", *extra)
        assert code == 0, err
        rec = json.loads(out)[0]
        assert rec["timings"]["checkpoint"] == "cached"
        assert rec["checkpoint"] == first["checkpoint"]
        assert rec["details"]["method"]["alpha"] > 0
    assert rec["details"]["method"]["alpha"] != 1.0  # α = 1/mean cos, picked on val
    assert len(list((root / "checkpoints").glob("*.pt"))) == 2
    assert len(list((root / "runs").glob("*.json"))) == 4


def test_post_hoc_methods_start_from_the_ce_checkpoint(root: Path) -> None:
    r = runner(root)
    ce, key, fresh, trainer, bundle = trained(r, "ce")
    assert not fresh
    test = bundle.splits["test"]
    plain = trainer.predict(ce, test).logits
    la, k2, fresh, trainer, _ = trained(r, "logit-adjust", tau="0.0")
    assert not fresh and k2 == key
    assert torch.allclose(trainer.predict(la, test).logits, plain, atol=1e-5)
    la, *_ = trained(r, "logit-adjust", tau="1.0")
    prior = torch.log(bundle.class_counts("train").double() / len(bundle.splits["train"]))
    assert torch.allclose(trainer.predict(la, test).logits, plain - prior.float(), atol=1e-4)
    tn, k3, fresh, trainer, _ = trained(r, "decouple-tau-norm", tau="0.0", tau_from_val="false")
    assert not fresh and k3 == key and tn.summary() == {"tau": 0.0}
    assert torch.allclose(trainer.predict(tn, test).logits, plain, atol=1e-5)
    tn, *_ = trained(r, "decouple-tau-norm")
    assert tn.summary()["tau"] in [i / 10 for i in range(11)]
    for name in ("decouple-crt", "decouple-lws"):
        m, k, fresh, trainer, _ = trained(r, name, stage2_epochs="2")
        assert not fresh and k == key
        for n, p in m.model.backbone.named_parameters():  # stage 2 never touches the backbone
            assert torch.equal(p, ce_state(root, key)[f"backbone.{n}"]), n
    lws, *_ = trained(r, "decouple-lws", stage2_epochs="2")
    assert torch.equal(lws.model.head.weight, ce_state(root, key)["head.weight"])
    assert not torch.equal(lws.model.head.scale, torch.ones_like(lws.model.head.scale))


def ce_state(root: Path, key: str) -> dict[str, torch.Tensor]:
    return Store(root).load_checkpoint(key)["state"]


def test_ldam_drw_reweights_at_the_deferred_epoch() -> None:
    from benchmark.tracks.longtail import effective_number_weights

    m = built("ldam-drw", epochs="5", drw_at="0.8")  # re-weighting from epoch 4
    m.on_epoch_start(3)
    assert torch.equal(m.model.class_weight, torch.ones(len(m.info.train_counts)))
    m.on_epoch_start(4)
    cb = effective_number_weights(m.info.train_counts, 0.9999)
    assert torch.allclose(m.model.class_weight, cb)


def test_ldam_drw_outputs_the_scaled_logits_the_loss_trains() -> None:
    """Probabilities (hence ECE, MSP) are softmax(s·cos), not softmax of the raw cosines."""
    m = built("ldam-drw", scale="30")
    m.model.eval()
    x = torch.randn(4, *m.info.input_shape)
    with torch.no_grad():
        cosines = m.model(x)
        out = m.predict_batch(x)
    assert cosines.abs().max() <= 1 + 1e-6
    assert torch.allclose(out.logits, 30 * cosines, atol=1e-5)
    assert torch.allclose(out.ood_score, torch.softmax(30 * cosines, 1).max(1).values, atol=1e-6)


def test_deconfound_momentum_schedule() -> None:
    m = built("deconfound", ma_schedule="lr", lr="0.2", epochs="10")
    m.on_epoch_start(0)  # lr 0.2: 50·lr > 1 -> μ = 0.9
    assert float(m.model.head.mu) == pytest.approx(0.9)
    m.on_epoch_start(9)  # cosine: lr = 0.2·(1 + cos(0.9π))/2 ≈ 0.00489 -> μ = 1 − 5·lr
    lr = 0.2 * 0.5 * (1 + torch.cos(torch.tensor(0.9 * torch.pi))).item()
    assert float(m.model.head.mu) == pytest.approx(1 - 0.1 * 50 * lr, rel=1e-5)


def test_named_protocols_set_tde_alpha() -> None:
    from benchmark.dataset import DATASETS

    tde, glyph = METHODS.get("tde"), DATASETS.get("glyph-lt")
    assert resolve_hparams(tde, glyph, {}, "cifar100-lt")["alpha"] == 1.5
    hp = resolve_hparams(tde, glyph, {}, "imagenet-lt")
    assert hp["alpha"] == 3.0 and hp["ma_schedule"] == "lr" and hp["backbone"] == "resnext50-32x4d"
    assert "alpha" not in resolve_hparams(METHODS.get("ce"), glyph, {}, "imagenet-lt")
