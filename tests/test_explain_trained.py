"""Trained explainers (issue 14): ABN and ALA maps, the Alternating Epoch Architect, the ViT
backbones and the CLIP checkpoint loader (OpenAI's TorchScript archive and open_clip's state
dict, written here at tiny width with the real key layout)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from benchmark.backbones import build_backbone
from benchmark.contracts import Batch
from benchmark.dataset import DatasetInfo
from benchmark.errors import BenchError
from benchmark.method import METHODS
from benchmark.plugins import load_plugins
from benchmark.runner import Runner, resolve_hparams
from benchmark.store import Store
from benchmark.tracks.attention import (
    AttentionBranchNetwork,
    AttentionLatticeModel,
    aea_frozen,
    lattice_taps,
    load_clip_visual,
    read_clip_state,
)
from benchmark.tracks.backbones import VisionTransformer

load_plugins()


def info(side: int = 32, classes: int = 3) -> DatasetInfo:
    return DatasetInfo(
        name="t", track="explain", num_classes=classes, input_shape=(3, side, side),
        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), train_counts=torch.ones(classes),
        attrs=("mask",), fingerprint="t",
    )  # fmt: skip


# -- ABN and ALA maps ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "backbone,side", [("tiny-cnn", 24), ("resnet32", 32), ("resnet50", 64)]
)  # fmt: skip
def test_abn_map_has_input_size_and_lies_in_unit_interval(backbone: str, side: int) -> None:
    torch.manual_seed(0)
    net = AttentionBranchNetwork(build_backbone(backbone, (3, side, side)), 5).eval()
    x = torch.randn(2, 3, side, side) * 3
    logits, att_logits, _, _ = net.forward_all(x)
    assert logits.shape == att_logits.shape == (2, 5)
    abn = METHODS.get("abn")(info(side, 5), {"backbone": backbone, "att_weight": 1.0}, "cpu")
    abn.model = net
    out = abn.predict_batch(x)
    assert out.saliency.shape == (2, side, side)
    assert float(out.saliency.detach().min()) >= 0.0 and float(out.saliency.detach().max()) <= 1.0
    assert float(out.saliency.detach().std()) > 0  # a map, not a constant
    torch.testing.assert_close(abn.predict_logits(x), out.logits)


def test_abn_refuses_a_vit_backbone() -> None:
    with pytest.raises(BenchError, match="convolutional backbone"):
        AttentionBranchNetwork(build_backbone("vit-tiny", (3, 32, 32)), 3)


def ala_method(side: int = 32, **hp: object) -> tuple[object, VisionTransformer]:
    cls = METHODS.get("ala")
    settings = {"lattice_taps": 4, "side_width": 16, **hp}
    values = resolve_hparams(cls, _Fake, {k: v for k, v in settings.items()})
    method = cls(info(side), values, torch.device("cpu"))
    torch.manual_seed(0)
    encoder = build_backbone("vit-tiny", (3, side, side))
    method._wrap(encoder, None)
    return method, encoder


class _Fake:
    """A dataset stand-in for ``resolve_hparams`` (its protocol only)."""

    protocol = {"optimizer": "adam", "lr": 1e-2, "weight_decay": 0.0}


def test_ala_map_has_input_size_and_lies_in_unit_interval() -> None:
    method, _ = ala_method(32)
    x = torch.randn(3, 3, 32, 32) * 3
    out = method.predict_batch(x)
    assert out.logits.shape == (3, 3)
    assert out.saliency.shape == (3, 32, 32)
    assert float(out.saliency.detach().min()) >= 0.0 and float(out.saliency.detach().max()) <= 1.0
    assert float(out.saliency.detach().std()) > 0
    torch.testing.assert_close(method.predict_logits(x), out.logits)


def test_lattice_taps_are_evenly_spaced_and_inject_at_the_second_to_last() -> None:
    assert lattice_taps(12, 4) == [2, 5, 8, 11]  # blocks 3, 6, 9, 12
    assert lattice_taps(4, 4) == [0, 1, 2, 3]
    model = AttentionLatticeModel(build_backbone("vit-b16", (3, 32, 32)), 2, 4, 16)
    assert model.inject + 1 == 9  # the JSAI code's layer-9 injection


def test_ala_map_steers_the_perception_branch() -> None:
    """The perception logits depend on the map: zeroing the map head changes them."""
    method, _ = ala_method(32)
    x = torch.randn(2, 3, 32, 32)
    before = method.predict_logits(x)
    with torch.no_grad():
        method.model.lattice.map_head.bias.fill_(-50.0)  # M ≈ 0 everywhere
        method.model.lattice.map_head.weight.zero_()
    assert not torch.allclose(before, method.predict_logits(x))


# -- Alternating Epoch Architect ----------------------------------------------------------------


def one_step(method: object, opt: torch.optim.Optimizer, epoch: int) -> dict[str, torch.Tensor]:
    """Run one training step of ``epoch``; returns the parameters before it."""
    before = {n: p.detach().clone() for n, p in method.model.named_parameters()}
    method.on_epoch_start(epoch)
    g = torch.Generator().manual_seed(epoch)
    x, y = torch.randn(6, 3, 32, 32, generator=g), torch.randint(0, 3, (6,), generator=g)
    loss = method.loss(Batch(x, y, {}, torch.arange(6), epoch, epoch))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return before


def changed(method: object, before: dict[str, torch.Tensor], prefix: str) -> list[bool]:
    return [
        not torch.equal(p, before[n])
        for n, p in method.model.named_parameters()
        if n.startswith(prefix)
    ]


def test_aea_freezes_the_lattice_on_odd_epochs_only() -> None:
    assert [aea_frozen(e) for e in range(4)] == [False, True, False, True]
    method, _ = ala_method(32)
    opt = method.optimizers()[0]
    for epoch in range(4):
        before = one_step(method, opt, epoch)
        lattice = changed(method, before, "lattice.")
        if epoch % 2:  # odd: the ALA (side + attention branch) is frozen, not even decayed
            assert not any(lattice), epoch
            assert all(not p.requires_grad for p in method.model.lattice.parameters())
        else:
            assert all(lattice), epoch
        assert all(changed(method, before, "head.")), epoch  # the perception branch learns
        assert any(changed(method, before, "encoder.")), epoch


def test_aea_off_updates_the_lattice_every_epoch() -> None:
    method, _ = ala_method(32, aea=False)
    opt = method.optimizers()[0]
    before = one_step(method, opt, 1)
    assert all(changed(method, before, "lattice."))


def test_encoder_trains_at_the_reduced_lr_and_freezes_at_zero() -> None:
    method, _ = ala_method(32, lr=0.01, encoder_lr_mult=0.1)
    groups = method.optimizers()[0].param_groups
    encoder_ids = {id(p) for p in method.model.encoder.parameters()}
    lrs = {("encoder" if id(g["params"][0]) in encoder_ids else "rest"): g["lr"] for g in groups}
    assert lrs == pytest.approx({"rest": 0.01, "encoder": 0.001})
    method, _ = ala_method(32, encoder_lr_mult=0.0)
    opt = method.optimizers()[0]
    before = one_step(method, opt, 0)
    assert not any(changed(method, before, "encoder."))


# -- ViT backbones ----------------------------------------------------------------------------


def test_vit_backbones_give_maps_and_features() -> None:
    vit = build_backbone("vit-tiny", (3, 64, 64))
    x = torch.randn(2, 3, 64, 64)
    assert vit.patch == 8 and vit.grid == (8, 8)
    fmap = vit.forward_map(x)
    assert fmap.shape == (2, vit.feature_dim, 8, 8)
    # patch-token pooling: forward is the global average pool of forward_map (CAM's premise)
    torch.testing.assert_close(vit(x), fmap.mean(dim=(2, 3)))
    b16 = build_backbone("vit-b16", (3, 32, 32))
    assert b16.feature_dim == 512 and b16.depth == 12 and b16.grid == (2, 2)
    assert b16(torch.randn(1, 3, 32, 32)).shape == (1, 512)
    assert build_backbone("resnet50", (3, 64, 64)).forward_map(x).shape == (2, 2048, 2, 2)


def test_vit_hybrid_is_the_plain_vit_on_the_stem_map() -> None:
    """ViT-hybrid (ICLR 2021 §3.1): tiny-cnn's stride-4 stem, then the ViT's own embedding
    with 1×1 patches on that map; everything after the embedding is the plain ViT's."""
    torch.manual_seed(0)
    hyb = build_backbone("vit-hybrid-tiny", (3, 32, 32)).eval()
    assert isinstance(hyb, VisionTransformer)
    assert hyb.grid == (8, 8) and hyb.patch == 1 and hyb.depth == 4 and hyb.feature_dim == 64
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        stem = hyb.stem(x)
        assert stem.shape == (2, 32, 8, 8) and float(stem.min()) >= 0  # after a ReLU
        torch.testing.assert_close(hyb.embed(x), VisionTransformer.embed(hyb, stem))
        fmap = hyb.forward_map(x)
        assert fmap.shape == (2, 64, 8, 8)
        torch.testing.assert_close(hyb(x), fmap.mean(dim=(2, 3)))  # CAM's premise
    assert build_backbone("vit-hybrid-tiny", (3, 64, 64)).grid == (16, 16)
    with pytest.raises(ValueError, match="multiples of 4"):
        build_backbone("vit-hybrid-tiny", (3, 30, 30))
    # ALA wraps it like any ViT: a map at input size in [0, 1]
    cls = METHODS.get("ala")
    values = resolve_hparams(cls, _Fake, {"side_width": 16})
    method = cls(info(32), values, torch.device("cpu"))
    method._wrap(hyb, None)
    out = method.predict_batch(x)
    assert out.saliency.shape == (2, 32, 32)
    sal = out.saliency.detach()
    assert 0.0 <= float(sal.min()) <= float(sal.max()) <= 1.0
    assert method.summary() == {"taps": [1, 2, 3, 4], "inject": 3}


# -- CLIP checkpoints -------------------------------------------------------------------------

WIDTH, LAYERS, PATCH, SIDE, EMBED = 128, 3, 8, 32, 24


class OpenAIStyle(nn.Module):
    """What OpenAI's released file holds, at tiny width: the ``visual`` tower and text-side
    tensors the loader must leave alone."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual
        self.text_projection = nn.Parameter(torch.randn(16, EMBED))
        self.logit_scale = nn.Parameter(torch.ones([]))
        self.token_embedding = nn.Embedding(10, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


def save_torchscript(model: nn.Module, x: torch.Tensor, path: Path) -> None:
    """``torch.jit.save`` of the traced model, as OpenAI's file was written."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings
        torch.jit.save(torch.jit.trace(model.eval(), x, check_trace=False), str(path))


def tiny_clip_visual(quick_gelu: bool) -> VisionTransformer:
    torch.manual_seed(1)
    return VisionTransformer(
        3, (SIDE, SIDE), PATCH, WIDTH, LAYERS, WIDTH // 64, proj_dim=EMBED,
        quick_gelu=quick_gelu,
    )  # fmt: skip


def test_openai_torchscript_archive_loads_exactly(tmp_path: Path) -> None:
    """OpenAI released ViT-B-16.pt as ``torch.jit.save`` of the whole model (``clip.load``
    reads it with ``torch.jit.load`` and builds from its ``state_dict``)."""
    ref = tiny_clip_visual(quick_gelu=True).eval()
    x = torch.randn(2, 3, SIDE, SIDE)
    path = tmp_path / "ViT-B-16.pt"
    save_torchscript(OpenAIStyle(ref), x, path)
    state, fmt = read_clip_state(path)
    assert fmt == "openai-torchscript"
    assert set(state) == set(ref.state_dict())
    enc, facts = load_clip_visual(path, (3, SIDE, SIDE))
    assert facts["quick_gelu"] and facts["blocks"] == LAYERS and facts["patch"] == PATCH
    for key, value in ref.state_dict().items():
        assert torch.equal(enc.state_dict()[key], value), key
    torch.testing.assert_close(enc.eval()(x), ref(x), atol=1e-5, rtol=1e-5)


def test_open_clip_state_dict_loads_exactly_and_resizes_positions(tmp_path: Path) -> None:
    ref = tiny_clip_visual(quick_gelu=False).eval()
    state = {f"visual.{k}": v for k, v in OpenAIStyle(ref).visual.state_dict().items()}
    state["logit_scale"] = torch.ones([])
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    enc, facts = load_clip_visual(path, (3, SIDE, SIDE))
    assert facts["format"] == "state-dict" and not facts["quick_gelu"]
    x = torch.randn(2, 3, SIDE, SIDE)
    torch.testing.assert_close(enc.eval()(x), ref(x), atol=1e-5, rtol=1e-5)
    big, facts = load_clip_visual(path, (3, 2 * SIDE, 2 * SIDE))  # 4×4 grid -> 8×8
    assert facts["checkpoint_grid"] == 4 and big.grid == (8, 8)
    assert big.positional_embedding.shape == (65, WIDTH)


def test_loader_reproduces_open_clip(tmp_path: Path) -> None:
    """The reference forward: open_clip's own CLIP at tiny width, saved both ways."""
    open_clip = pytest.importorskip("open_clip")
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    for quick in (False, True):
        torch.manual_seed(2)
        model = open_clip.CLIP(
            EMBED,
            CLIPVisionCfg(layers=LAYERS, width=WIDTH, head_width=64, patch_size=PATCH,
                          image_size=SIDE),
            CLIPTextCfg(context_length=8, vocab_size=50, width=32, heads=1, layers=1),
            quick_gelu=quick,
        ).eval()  # fmt: skip
        x = torch.randn(2, 3, SIDE, SIDE)
        with torch.no_grad():
            want = model.encode_image(x)
        if quick:  # OpenAI's format: a TorchScript archive of the model
            path = tmp_path / "openai.pt"
            save_torchscript(OpenAIStyle(model.visual), x, path)
        else:
            path = tmp_path / "open_clip.bin"
            torch.save(model.state_dict(), path)
        enc, facts = load_clip_visual(path, (3, SIDE, SIDE))
        assert facts["quick_gelu"] == quick
        with torch.no_grad():
            torch.testing.assert_close(enc.eval()(x), want, atol=1e-5, rtol=1e-4)


def test_missing_or_wrong_checkpoint_is_one_clear_line(tmp_path: Path, cli) -> None:
    missing = tmp_path / "ViT-B-16.pt"
    code, _, err = cli(
        "run", "--method", "ala", "--dataset", "objects-masks", "--quiet",
        "--results", str(tmp_path / "r"), "--set", f"backbone_weights={missing}",
    )  # fmt: skip
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "backbone_weights" in err and "ViT-B-16.pt" in err
    assert not (tmp_path / "r").exists()
    with pytest.raises(BenchError, match=r"not found.*ViT-B-16\.pt"):
        read_clip_state(missing)
    bad = tmp_path / "bad.pt"
    torch.save({"weight": torch.ones(2)}, bad)
    with pytest.raises(BenchError, match="no CLIP ViT image encoder"):
        read_clip_state(bad)


def test_ala_trains_on_a_clip_checkpoint_without_a_base(tmp_path: Path) -> None:
    ref = tiny_clip_visual(quick_gelu=True).eval()
    path = tmp_path / "ViT-B-16.pt"
    save_torchscript(OpenAIStyle(ref), torch.randn(1, 3, SIDE, SIDE), path)
    settings = {
        "dataset.per_class": "[4, 1, 2]", "dataset.size": "24", "epochs": "1",
        "batch_size": "8", "ala_epochs": "1", "side_width": "16",
        "backbone_weights": str(path),
    }  # fmt: skip
    cls = METHODS.get("ala").for_settings(settings)
    assert cls.base is None and cls.name == "ala"
    runner = Runner(Store(tmp_path / "results"), torch.device("cpu"), progress=False)
    record, _ = runner.run("ala", "objects-masks", 0, settings)
    assert record.hparams["backbone"] == "vit-b16"
    assert record.details["method"]["clip"]["format"] == "openai-torchscript"
    assert 0.0 <= record.metrics["test"]["miou"] <= 1.0


# -- shared loss and the built-in ViT base ------------------------------------------------------


@pytest.mark.parametrize("name", ["abn", "ala"])
def test_two_branch_loss_is_perception_plus_weighted_attention_ce(name: str) -> None:
    """Both explainers share one loss (``TwoBranchExplainer``): CE(perception) +
    att_weight·CE(attention branch), with the logits ``forward_all`` returns."""
    torch.manual_seed(0)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 1])
    for weight in (0.0, 0.3):
        if name == "abn":
            method = METHODS.get("abn")(
                info(32), {"backbone": "tiny-cnn", "att_weight": weight}, "cpu"
            )
            method.model = AttentionBranchNetwork(build_backbone("tiny-cnn", (3, 32, 32)), 3)
        else:
            method, _ = ala_method(32, att_weight=weight)
        method.model.eval()
        logits, att_logits, _, _ = method.model.forward_all(x)
        want = nn.functional.cross_entropy(logits, y) + weight * nn.functional.cross_entropy(
            att_logits, y
        )
        got = method.loss(Batch(x, y, {}, torch.arange(4), 0, 0))
        torch.testing.assert_close(got, want)


def test_ala_base_is_the_readme_erm_vit_run() -> None:
    """The built-in ALA base is ``erm --set backbone=vit-hybrid-tiny`` under the dataset's
    protocol (the README's command trains and caches that very checkpoint): plain ViTs do not
    learn objects-masks in CPU minutes (README)."""
    from benchmark.dataset import DATASETS

    dataset = DATASETS.get("objects-masks")
    ala = resolve_hparams(METHODS.get("ala"), dataset, {})
    erm_cls = METHODS.get("erm")
    erm = resolve_hparams(erm_cls, dataset, {"backbone": "vit-hybrid-tiny"})
    assert {k: ala[k] for k in erm_cls.declared()} == erm
    assert ala["backbone"] == "vit-hybrid-tiny" and ala["ala_epochs"] % 2 == 0
