"""The post-hoc explainers (CAM, Grad-CAM, RISE, the random and centre floors) against direct
computations and reference libraries, and the explanation metrics' image subset."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.backbones import build_backbone
from benchmark.errors import BenchError
from benchmark.method import Classifier
from benchmark.metric import EvalView
from benchmark.outputs import Outputs
from benchmark.tracks.backbones import VisionTransformer
from benchmark.tracks.explain import (
    _bilinear_weights,
    center_map,
    explained_subset,
    rise_masks,
    rise_saliency,
    rise_settings,
    to_input_size,
)
from benchmark.tracks.posthoc import (
    CPU_CHUNK,
    cam,
    classifier_logits,
    feature_map,
    folded,
    grad_cam,
)


def tiny_net(seed: int = 0, classes: int = 4, side: int = 16) -> Classifier:
    torch.manual_seed(seed)
    backbone = build_backbone("tiny-cnn", (3, side, side))
    model = Classifier(backbone, torch.nn.Linear(backbone.feature_dim, classes))
    for m in model.modules():  # non-trivial BN statistics, eval mode
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    return model.eval()


def images(n: int = 5, side: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(seed))


def direct_grad_cam(model: Classifier, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One image at a time: activations A and ∂y^c/∂A by autograd on the whole model."""
    maps, classes = [], []
    for i in range(len(x)):
        a = model.backbone.forward_map(x[i : i + 1])
        a.retain_grad()
        logits = model.head(a.mean(dim=(2, 3)))
        c = int(logits.argmax())
        logits[0, c].backward()
        alpha = a.grad.mean(dim=(2, 3))  # (1, K)
        maps.append(F.relu((alpha[:, :, None, None] * a).sum(1)).detach()[0])
        classes.append(c)
    return torch.stack(maps), torch.tensor(classes)


def test_grad_cam_equals_direct_computation() -> None:
    model, x = tiny_net(), images()
    with torch.no_grad():  # the harness predicts under no_grad: Grad-CAM enables it itself
        logits, maps, c = grad_cam(model, x)
    ref, ref_c = direct_grad_cam(model, x)
    assert torch.equal(c, ref_c)
    assert torch.allclose(logits, model(x).detach(), atol=1e-5)
    assert maps.shape == (5, 4, 4) and (maps >= 0).all()
    assert torch.allclose(maps, ref, atol=1e-5, rtol=1e-5)
    assert maps.abs().max() > 0  # not a trivially zero map


def test_grad_cam_equals_captum_layer_grad_cam() -> None:
    captum = pytest.importorskip("captum.attr")
    model, x = tiny_net(seed=3), images(seed=4)
    _, maps, c = grad_cam(model, x)
    layer = model.backbone.body[-1]  # the module whose output is forward_map
    ref = captum.LayerGradCam(model, layer).attribute(x, target=c, relu_attributions=True)
    assert torch.allclose(maps, ref[:, 0].detach(), atol=1e-5, rtol=1e-5)


def test_grad_cam_equals_pytorch_grad_cam() -> None:
    """jacobgil's pytorch-grad-cam: min-max at feature resolution, cv2 resize, min-max again
    over the layers' mean (= resize then min-max, affine maps commute): our saliency."""
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, x = tiny_net(seed=5), images(seed=6)
    _, maps, c = grad_cam(model, x)
    with pgc.GradCAM(model=model, target_layers=[model.backbone.body[-1]]) as lib:
        ref = lib(input_tensor=x, targets=[ClassifierOutputTarget(int(k)) for k in c])
    assert torch.allclose(to_input_size(maps, (16, 16)), torch.from_numpy(ref), atol=1e-5)


def test_cam_is_the_head_on_the_feature_map_and_relates_to_grad_cam() -> None:
    model, x = tiny_net(seed=7), images(seed=8)
    with torch.no_grad():
        _, maps, c = cam(model, x)
        a = model.backbone.forward_map(x)
    expected = torch.einsum("bk,bkhw->bhw", model.head.weight[c], a)
    assert torch.allclose(maps, expected, atol=1e-5)
    # with GAP + linear head, Grad-CAM = ReLU(CAM) / (h·w) (baselines.md §15)
    _, gmaps, _ = grad_cam(model, x)
    assert torch.allclose(gmaps, F.relu(maps) / 16, atol=1e-5)
    # CAM has no ReLU: negative evidence is kept
    assert (maps < 0).any()


def test_grad_cam_batches_beyond_one_cpu_chunk_equal_the_direct_computation() -> None:
    """More images than one channels-last chunk of the CPU forward: the same maps."""
    model, x = tiny_net(seed=9), images(n=CPU_CHUNK + 7, seed=10)
    _, maps, c = grad_cam(model, x)
    ref, ref_c = direct_grad_cam(model, x)
    assert torch.equal(c, ref_c)
    assert torch.allclose(maps, ref, atol=1e-5, rtol=1e-5)


def _has_batchnorm(module: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.BatchNorm2d) for m in module.modules())


def test_inference_copy_folds_batchnorm_and_computes_the_same_function() -> None:
    """The no-grad paths (feature map, logits) run a copy with BatchNorm folded into the
    convolutions: no BatchNorm left, the same feature maps and logits to 1e-5."""
    model, x = tiny_net(seed=11), images(n=CPU_CHUNK + 3, seed=12)
    assert not _has_batchnorm(folded(model, "map")) and not _has_batchnorm(folded(model))
    assert folded(model, "map") is folded(model, "map")  # cached per model
    with torch.no_grad():
        ref_map, ref_logits = model.backbone.forward_map(x), model(x)
    fmap = feature_map(model, x)
    assert fmap.is_contiguous() and fmap.shape == ref_map.shape
    assert torch.allclose(fmap, ref_map, atol=1e-5, rtol=1e-5)
    assert torch.allclose(classifier_logits(model, x), ref_logits, atol=1e-5, rtol=1e-5)


def test_inference_copy_follows_weight_and_mode_changes() -> None:
    """A changed parameter or BN statistic rebuilds the folded copy; a model in training
    mode is not folded (its BatchNorm uses the batch's statistics)."""
    model, x = tiny_net(seed=13), images(seed=14)
    first = folded(model, "map")
    bn = model.backbone.body[-1][1]
    with torch.no_grad():
        bn.running_mean.add_(0.5)  # in place: the same storage, a new version
        model.head.weight.mul_(2.0)
        ref_map, ref_logits = model.backbone.forward_map(x), model(x)
    assert folded(model, "map") is not first
    assert torch.allclose(feature_map(model, x), ref_map, atol=1e-5, rtol=1e-5)
    assert torch.allclose(classifier_logits(model, x), ref_logits, atol=1e-5, rtol=1e-5)
    model.train()
    assert _has_batchnorm(folded(model, "map")) and _has_batchnorm(folded(model))
    model.eval()
    assert not _has_batchnorm(folded(model, "map"))


def test_inference_copy_of_a_model_without_batchnorm_is_the_model() -> None:
    model = vit_net("gap")
    assert folded(model) is model


# -- Vision Transformers: Grad-CAM on the last block's patch tokens, CAM on gap pooling -----
def vit_net(pool: str, seed: int = 0, classes: int = 3) -> Classifier:
    """A 16-px ViT on a 4×4 grid of 4-px patches (2 blocks, width 16) with ``pool``."""
    torch.manual_seed(seed)
    backbone = VisionTransformer(3, (16, 16), 4, width=16, layers=2, heads=2, pool=pool)
    return Classifier(backbone, torch.nn.Linear(backbone.feature_dim, classes)).eval()


def patch_grid(tokens: torch.Tensor) -> torch.Tensor:
    """(B, 1 + 16, D) tokens -> (B, D, 4, 4): the class token dropped (pytorch-grad-cam's
    ``reshape_transform`` for ViTs)."""
    return tokens[:, 1:].reshape(len(tokens), 4, 4, -1).permute(0, 3, 1, 2)


def direct_vit_grad_cam(model: Classifier, x: torch.Tensor) -> torch.Tensor:
    """One image at a time, autograd through the whole model: A = the last block's ``ln_1``
    output (patch tokens), α = spatial mean of ∂y^c/∂A."""
    maps, taps = [], []

    def keep(_module: torch.nn.Module, _inputs: tuple, out: torch.Tensor) -> None:
        out.retain_grad()
        taps.append(out)

    for i in range(len(x)):
        handle = model.backbone.transformer.resblocks[-1].ln_1.register_forward_hook(keep)
        logits = model(x[i : i + 1])
        handle.remove()
        logits[0, logits[0].argmax()].backward()
        a, g = patch_grid(taps[-1]), patch_grid(taps[-1].grad)
        maps.append(F.relu((g.mean(dim=(2, 3))[:, :, None, None] * a).sum(1)).detach()[0])
    return torch.stack(maps)


@pytest.mark.parametrize("pool", ["gap", "token"])
def test_vit_grad_cam_equals_direct_computation(pool: str) -> None:
    model, x = vit_net(pool, seed=11), images(n=4, seed=12)
    with torch.no_grad():
        logits, maps, c = grad_cam(model, x)
    assert torch.allclose(logits, model(x).detach(), atol=1e-5)
    assert torch.equal(c, model(x).argmax(1))
    assert maps.shape == (4, 4, 4) and maps.abs().max() > 0
    assert torch.allclose(maps, direct_vit_grad_cam(model, x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("pool", ["gap", "token"])
def test_vit_grad_cam_equals_pytorch_grad_cam_with_a_reshape_transform(pool: str) -> None:
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, x = vit_net(pool, seed=13), images(n=4, seed=14)
    _, maps, c = grad_cam(model, x)
    layer = model.backbone.transformer.resblocks[-1].ln_1
    with pgc.GradCAM(model=model, target_layers=[layer], reshape_transform=patch_grid) as lib:
        ref = lib(input_tensor=x, targets=[ClassifierOutputTarget(int(k)) for k in c])
    assert torch.allclose(to_input_size(maps, (16, 16)), torch.from_numpy(ref), atol=1e-5)


def test_grad_cam_on_a_hybrid_vit_equals_direct_computation() -> None:
    """The hybrid ViT (CNN stem, then the ViT on its map) goes through the ViT recipe: the
    stem runs inside ``embed``, so the batched map equals per-image autograd."""
    from benchmark.tracks.vit_hybrid import HybridViT

    torch.manual_seed(17)
    backbone = HybridViT(3, (16, 16), width=16, layers=2, heads=2)
    model = Classifier(backbone, torch.nn.Linear(backbone.feature_dim, 3)).eval()
    x = images(n=4, seed=18)
    logits, maps, _ = grad_cam(model, x)
    assert torch.allclose(logits, model(x).detach(), atol=1e-5)
    assert maps.shape == (4, 4, 4) and maps.abs().max() > 0
    assert torch.allclose(maps, direct_vit_grad_cam(model, x), atol=1e-5, rtol=1e-4)


def test_vit_cam_on_patch_pooling_and_a_clear_error_on_class_token_pooling() -> None:
    model, x = vit_net("gap", seed=15), images(n=3, seed=16)
    with torch.no_grad():
        logits, maps, c = cam(model, x)
        a = model.backbone.forward_map(x)  # (B, D, 4, 4): what the head average-pools
    assert torch.allclose(logits, model(x), atol=1e-5)
    expected = torch.einsum("bk,bkhw->bhw", model.head.weight[c], a)
    assert maps.shape == (3, 4, 4) and torch.allclose(maps, expected, atol=1e-5)
    # the logit is the mean of the CAM plus the bias (Zhou et al. 2016, Eq. 2)
    picked = logits.gather(1, c.view(-1, 1))[:, 0] - model.head.bias[c]
    assert torch.allclose(maps.mean(dim=(1, 2)), picked, atol=1e-5)
    with pytest.raises(BenchError, match="backbone=vit-tiny") as err:
        cam(vit_net("token"), x)
    assert "\n" not in str(err.value) and "gradcam" in str(err.value)


def test_maps_at_input_size_in_unit_range() -> None:
    raw = torch.tensor([[[0.0, 1.0], [2.0, 3.0]], [[5.0, 5.0], [5.0, 5.0]]])
    m = to_input_size(raw, (8, 8))
    assert m.shape == (2, 8, 8)
    assert float(m[0].min()) == 0.0 and float(m[0].max()) == 1.0
    assert torch.equal(m[1], torch.zeros(8, 8))  # a constant map becomes 0


def test_rise_upsampling_matches_scipy_zoom_with_mirror_boundaries() -> None:
    """skimage ``resize(order=1, mode="reflect")`` = ``ndimage.zoom(grid_mode=True,
    mode="mirror")``: our interpolation matrices reproduce it."""
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.RandomState(0)
    for s, out in ((8, 36), (7, 40), (10, 242)):
        grid = (rng.rand(s, s) < 0.5).astype(np.float64)
        ref = ndimage.zoom(grid, out / s, order=1, mode="mirror", grid_mode=True)
        w = _bilinear_weights(s, out).numpy()
        np.testing.assert_allclose(w @ grid @ w.T, ref, atol=1e-10)


def test_rise_masks_shape_range_and_seed() -> None:
    g = torch.Generator().manual_seed(0)
    m = rise_masks(50, 8, 0.5, (32, 32), g)
    assert m.shape == (50, 32, 32) and m.min() >= 0 and m.max() <= 1
    assert 0.35 < float(m.mean()) < 0.65  # about p1 of the image is kept
    again = rise_masks(50, 8, 0.5, (32, 32), torch.Generator().manual_seed(0))
    assert torch.equal(m, again)
    other = rise_masks(50, 8, 0.5, (32, 32), torch.Generator().manual_seed(1))
    assert not torch.equal(m, other)
    # the crop is a shifted window of the (s+1)·cell upsampled grid: each mask is smooth
    assert float((m[:, :, 1:] - m[:, :, :-1]).abs().max()) <= 0.25 + 1e-6
    assert rise_settings(32) == (2000, 8, 0.5) and rise_settings(224) == (5000, 10, 0.1)


def test_rise_with_one_mask_reproduces_its_formula() -> None:
    model, x = tiny_net(seed=9), images(n=3, seed=10)
    masks = rise_masks(1, 4, 0.3, (16, 16), torch.Generator().manual_seed(2))
    target = torch.tensor([0, 2, 3])

    def probs(b: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model(b), dim=1)

    with torch.no_grad():
        sal = rise_saliency(probs, x, masks, 0.3, target)
        for i in range(3):
            p = probs(x[i : i + 1] * masks[0])[0, target[i]]
            assert torch.allclose(sal[i], p * masks[0] / 0.3, atol=1e-6)


def test_rise_sum_over_masks_and_batching() -> None:
    model, x = tiny_net(seed=11), images(n=2, seed=12)
    masks = rise_masks(7, 4, 0.5, (16, 16), torch.Generator().manual_seed(3))
    target = torch.tensor([1, 0])

    def probs(b: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model(b), dim=1)

    with torch.no_grad():
        a = rise_saliency(probs, x, masks, 0.5, target, batch_size=3)
        b = rise_saliency(probs, x, masks, 0.5, target, batch_size=1000)
        ref = torch.stack(
            [
                sum(probs(x[i : i + 1] * masks[k])[0, target[i]] * masks[k] for k in range(7))
                / (7 * 0.5)
                for i in range(2)
            ]
        )
    assert torch.allclose(a, b, atol=1e-6) and torch.allclose(a, ref, atol=1e-6)


def test_center_map() -> None:
    m = center_map((9, 12))
    assert m.shape == (9, 12) and float(m.max()) == 1.0 and float(m.min()) == 0.0
    assert torch.allclose(m, m.flip(0)) and torch.allclose(m, m.flip(1))
    assert m[4, 5] > m[0, 0]


def _view(labels: list[int], masks: torch.Tensor, classes: int) -> EvalView:
    n = len(labels)
    return EvalView(
        split="test",
        labels=torch.tensor(labels),
        outputs=Outputs(saliency=torch.rand(n, *masks.shape[1:])),
        attrs={"mask": masks},
        num_classes=classes,
    )


def test_explained_subset_skips_empty_masks_and_caps_each_class() -> None:
    masks = torch.zeros(6, 4, 4, dtype=torch.uint8)
    masks[[0, 2, 3, 5], 1:3, 1:3] = 1
    view = _view([0, 0, 0, 1, 1, -1], masks, classes=600)  # cap = 1000 // 600 = 1
    idx, info = explained_subset(view)
    assert idx.tolist() == [0, 3]  # image 1 and 4: empty; 2: class 0 is full; 5: unlabelled
    assert info == {"n_images": 2, "n_empty_masks": 2, "cap_per_class": 1}
    idx, _ = explained_subset(_view([0, 0, 0, 1, 1, -1], masks, classes=2))
    assert idx.tolist() == [0, 2, 3]


@pytest.mark.parametrize("method", ["cam", "gradcam", "rise", "random-saliency", "center-saliency"])
def test_explainer_runs_and_reports_every_explanation_metric(method: str, tmp_path) -> None:
    """A tiny run records mIoU (both recipes), Insertion/Deletion/ID (both protocols) and
    the number of images scored; Insertion/Deletion query the classifier, not the explainer."""
    from benchmark.hparams import parse_assignments
    from benchmark.method import METHODS
    from benchmark.runner import Runner
    from benchmark.store import Store

    from conftest import tiny_settings

    cls = METHODS.get(method)
    calls = {"saliency": 0}
    original = cls.saliency

    def counted(self, x):
        calls["saliency"] += 1
        return original(self, x)

    runner = Runner(Store(tmp_path), torch.device("cpu"), progress=False)
    settings = parse_assignments(tiny_settings("objects-masks"))
    settings.update(cls.smoke_settings)
    try:
        cls.saliency = counted
        record, _ = runner.run(method, "objects-masks", 0, settings)
    finally:
        cls.saliency = original
    test = record.metrics["test"]
    for key in ("miou", "miou_mean", "insertion", "deletion", "id_score"):
        assert key in test and math.isfinite(test[key]), key
    for key in ("insertion_rise", "deletion_rise", "id_score_rise"):
        assert key in test and math.isfinite(test[key]), key
    details = record.details["test"]
    assert details["miou"]["n_images"] == details["insertion-deletion"]["n_images"] > 0
    # one saliency call per evaluated batch (test and val), none from insertion/deletion
    assert calls["saliency"] <= 2 * len(record.metrics)
