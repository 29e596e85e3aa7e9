"""The bias track's building blocks against hand-computed cases: the MDN layer, GroupDRO's
weights, LfF's GCE gradient, PGI's penalty, OccamNets' gates and exits, the groups, and dcor²
on a categorical attribute against the ``dcor`` package."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.dataset import Split
from benchmark.metric import METRICS, EvalView
from benchmark.outputs import Outputs
from benchmark.plugins import load_plugins
from benchmark.tracks.bias import (
    Groups,
    MetadataNorm,
    OccamCNN,
    balanced_gate_loss,
    cam_suppression_loss,
    exit_choice,
    gate_targets,
    generalized_ce,
    group_means,
    groupdro_update,
    metadata_columns,
    pgi_penalty,
)

load_plugins()


# -- Metadata Normalization -----------------------------------------------------------------
def test_mdn_removes_exactly_the_confounder_component() -> None:
    g = torch.Generator().manual_seed(0)
    n = 400
    y = (torch.arange(n) >= n // 2).long()
    cf = torch.rand(n, generator=g) * 3 + 2 * y  # confounder correlated with the label
    # features: label part, confounder part, a constant, on 3 feature columns
    a, b, c = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([3.0, 0.0, -4.0]), 1.5
    f = y[:, None].float() * a + cf[:, None] * b + c
    lab, conf = metadata_columns(y, cf, num_classes=2, num_values=2)
    x = torch.cat([lab, conf], dim=1)  # [y, cf, 1]
    layer = MetadataNorm(3, 3, label_columns=1, scale=1.0, momentum=1.0)
    layer.set_kernel(x)
    r = layer.train()(f, x)  # the whole set as one batch: s = N / N = 1
    torch.testing.assert_close(r, y[:, None].float() * a, atol=1e-4, rtol=0)
    # evaluation: the running β (momentum 1: the last batch's) gives the same residual
    torch.testing.assert_close(layer.eval()(f, x), r, atol=1e-4, rtol=0)
    # the label's column does not matter at inference
    x0 = x.clone()
    x0[:, 0] = 0
    torch.testing.assert_close(layer(f, x0), r, atol=1e-4, rtol=0)


def test_mdn_batch_scale_matches_full_data_on_a_balanced_batch() -> None:
    # a batch that repeats the full set's rows in the same proportions: s·K·X_bᵀY = β
    y = torch.tensor([0, 0, 1, 1]).long()
    cf = torch.tensor([1.0, 2.0, 3.0, 5.0])
    f = (0.7 * y + 2.0 * cf)[:, None]
    lab, conf = metadata_columns(y, cf, 2, 2)
    full = torch.cat([lab, conf], 1).repeat(3, 1)  # N = 12
    layer = MetadataNorm(1, 3, 1, scale=12 / 4, momentum=1.0)
    layer.set_kernel(full)
    r = layer.train()(f, torch.cat([lab, conf], 1))
    torch.testing.assert_close(r, 0.7 * y[:, None].float(), atol=1e-4, rtol=0)


def test_metadata_columns_categorical_one_hot() -> None:
    lab, conf = metadata_columns(torch.tensor([0, 2, 1]), torch.tensor([1, 0, 2]), 3, 3)
    assert lab.tolist() == [[0, 0], [0, 1], [1, 0]]  # one-hot without class 0
    assert conf.tolist() == [[1, 0, 1], [0, 0, 1], [0, 1, 1]]  # one-hot w/o value 0, then 1


# -- GroupDRO ---------------------------------------------------------------------------------
def test_groupdro_weights_move_to_the_worst_group() -> None:
    q = torch.full((3,), 1 / 3)
    losses = torch.tensor([0.2, 0.5, 2.0])
    history = [q]
    for _ in range(50):
        q = groupdro_update(q, losses, eta=0.1)
        history.append(q)
    assert torch.allclose(q.sum(), torch.tensor(1.0))
    assert int(q.argmax()) == 2 and q[2] > 0.9
    assert all(b[2] > a[2] for a, b in itertools.pairwise(history))
    # one step by the formula q_g ∝ q_g exp(η L_g)
    expected = torch.exp(0.1 * losses) / torch.exp(0.1 * losses).sum()
    torch.testing.assert_close(groupdro_update(torch.full((3,), 1 / 3), losses, 0.1), expected)


def test_groupdro_adjustment_and_group_means() -> None:
    losses = torch.tensor([1.0, 3.0, 2.0, 4.0])
    g = torch.tensor([0, 0, 2, 2])
    assert group_means(losses, g, 3).tolist() == [2.0, 0.0, 3.0]  # absent group: 0
    adj = torch.tensor([0.0, 5.0, 0.0])
    q = groupdro_update(torch.full((3,), 1 / 3), torch.zeros(3), 1.0, adj)
    assert int(q.argmax()) == 1


# -- LfF --------------------------------------------------------------------------------------
@pytest.mark.parametrize("q", [0.3, 0.7, 1.0])
def test_gce_gradient_matches_its_formula(q: float) -> None:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 1, 0])
    (grad_gce,) = torch.autograd.grad(generalized_ce(z, y, q).sum(), z)
    z2 = z.detach().clone().requires_grad_(True)
    (grad_ce,) = torch.autograd.grad(F.cross_entropy(z2, y, reduction="none").sum(), z2)
    p_y = torch.softmax(z.detach(), 1).gather(1, y[:, None])
    torch.testing.assert_close(grad_gce.double(), (p_y**q * grad_ce).double(), atol=1e-6, rtol=0)
    # the value: (1 − p_y^q) / q
    torch.testing.assert_close(
        generalized_ce(z.detach(), y, q).double(),
        ((1 - p_y**q) / q).squeeze(1),
        atol=1e-6,
        rtol=0,
    )


# -- PGI --------------------------------------------------------------------------------------
def test_pgi_penalty_is_the_kl_of_mean_predictions_over_k() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.7, 0.3], [0.4, 0.6], [0.5, 0.5]])
    y = torch.tensor([0, 0, 0, 1])
    minority = torch.tensor([False, False, True, False])
    p_maj, p_min = torch.tensor([0.8, 0.2]), torch.tensor([0.4, 0.6])
    expected = (p_min * (p_min / p_maj).log()).mean()  # class 1 has no minority: skipped
    torch.testing.assert_close(pgi_penalty(probs, y, minority, 2), expected)
    same = pgi_penalty(torch.tensor([[0.6, 0.4], [0.6, 0.4]]), torch.tensor([0, 0]),
                       torch.tensor([False, True]), 2)  # fmt: skip
    assert float(same) == pytest.approx(0.0, abs=1e-7)


# -- groups ------------------------------------------------------------------------------------
def test_class_aligned_groups_and_attribute_groups() -> None:
    y = torch.tensor([0, 0, 1, 1, 1])
    attrs = {
        "aligned": torch.tensor([True, False, True, True, False]),
        "group": torch.tensor([7, 3, 9, 9, 3]),
    }
    split = Split(torch.zeros(5, 1, 2, 2), y, attrs)
    g = Groups("auto", split, num_classes=2)
    assert g.mode == "class-aligned" and g.num_groups == 4
    assert g.of(y, attrs).tolist() == [1, 0, 3, 3, 2]
    assert g.counts.tolist() == [1, 1, 1, 2]
    a = Groups("attribute", split, num_classes=2)
    assert a.of(y, attrs).tolist() == [1, 0, 2, 2, 0] and a.num_groups == 3


# -- OccamNets ---------------------------------------------------------------------------------
def test_gate_targets_and_exit_choice() -> None:
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert gate_targets(logits, torch.tensor([0, 0, 0])).tolist() == [1.0, 0.0, 1.0]
    gates = torch.tensor(
        [
            [0.9, 0.2, 0.7, 0.9],  # E0 is never used at inference: first gate ≥ .5 from E1 = E2
            [0.1, 0.6, 0.9, 0.1],  # E1
            [0.9, 0.1, 0.2, 0.3],  # none from E1 on: the last exit
            [0.0, 0.5, 0.0, 0.0],  # a gate of exactly 0.5 exits
        ]
    )
    assert exit_choice(gates, earliest=1).tolist() == [2, 1, 3, 1]
    assert exit_choice(gates, earliest=0).tolist() == [0, 1, 0, 1]


def test_balanced_gate_loss_weights() -> None:
    logit = torch.zeros(4)
    t = torch.tensor([1.0, 0.0, 0.0, 0.0])  # n_exit = 1/3, n_cont = 1 (normalised by max)
    bce = math.log(2.0)
    expected = (math.sqrt(3.0) * bce + 3 * 1.0 * bce) / 4
    assert float(balanced_gate_loss(logit, t)) == pytest.approx(expected, rel=1e-6)


def test_cam_suppression_loss() -> None:
    cam = torch.zeros(1, 3, 2, 2)
    assert float(cam_suppression_loss(cam, torch.tensor([0]))) == pytest.approx(0.0, abs=1e-7)
    cam[0, 0, 0, 0] = 5.0  # the GT CAM's one strong location is kept; others are uniform
    assert float(cam_suppression_loss(cam, torch.tensor([0]))) == pytest.approx(0.0, abs=1e-6)
    cam[0, 1, 1, 1] = 4.0  # a suppressed location (GT score 0 ≤ mean) that is not uniform
    p = torch.softmax(torch.tensor([0.0, 4.0, 0.0]), 0)
    kl = float((math.log(1 / 3) - p.log()).mean())
    assert float(cam_suppression_loss(cam, torch.tensor([0]))) == pytest.approx(kl / 4, rel=1e-5)


def test_occam_network_exits_from_the_second_exit() -> None:
    torch.manual_seed(0)
    net = OccamCNN(1, num_classes=3, width=4).eval()
    with torch.no_grad():
        for i, e in enumerate(net.exits):  # E0 and E1 would exit, the others would not
            e.gate[-1].weight.zero_()
            e.gate[-1].bias.fill_(10.0 if i < 2 else -10.0)
        outs = net(torch.randn(5, 1, 12, 12))
    gates = torch.stack([torch.sigmoid(o["gate_logit"]) for o in outs], 1)
    choice = exit_choice(gates, earliest=1)
    assert choice.tolist() == [1] * 5
    assert [o["cam"].shape[-1] for o in outs] == [12, 6, 3, 3]


# -- dcor² on a categorical attribute ---------------------------------------------------------
def test_dcor2_categorical_equals_dcor_on_one_hot() -> None:
    dcor = pytest.importorskip("dcor")
    rng = np.random.RandomState(0)
    n = 90
    labels = rng.randint(0, 2, n)
    bias = rng.randint(0, 4, n)
    features = rng.randn(n, 5) + 0.8 * bias[:, None] * (labels[:, None] == 1)
    view = EvalView(
        split="test",
        labels=torch.as_tensor(labels),
        outputs=Outputs(features=torch.as_tensor(features)),
        attrs={"bias": torch.as_tensor(bias)},
        track="bias",
        num_classes=2,
    )
    metric = METRICS.get("dcor")()
    assert metric.applies(view)
    got = metric.compute(view)["dcor2"]
    one_hot = np.eye(4)[bias]
    expected = np.mean(
        [dcor.u_distance_correlation_sqr(features[labels == c], one_hot[labels == c])
         for c in (0, 1)]
    )  # fmt: skip
    assert got == pytest.approx(expected, abs=1e-10)
    details = metric.details(view)
    assert details["attribute"] == "bias" and details["encoding"] == "one-hot"


def test_dcor_prefers_the_float_confounder() -> None:
    rng = np.random.RandomState(1)
    f, y = rng.randn(40, 3), np.repeat([0, 1], 20)
    view = EvalView("test", torch.as_tensor(y), Outputs(features=torch.as_tensor(f)),
                    {"confounder": torch.as_tensor(f[:, 0]), "bias": torch.as_tensor(y)},
                    track="bias", num_classes=2)  # fmt: skip
    metric = METRICS.get("dcor")()
    assert metric.details(view)["attribute"] == "confounder"
    no_attr = EvalView("test", torch.as_tensor(y), Outputs(features=torch.as_tensor(f)), {},
                       track="bias", num_classes=2)  # fmt: skip
    assert not metric.applies(no_attr)


def test_pgi_weight_ramps_per_iteration_after_the_first_epoch() -> None:
    """λ is 0 in epoch 0, then rises linearly per step over ``ramp_epochs`` epochs (official
    ``wc·min(1, (it − ipe + 1)/(ipe·u))``)."""
    from types import SimpleNamespace

    from benchmark.method import METHODS

    cls = METHODS.get("pgi")
    m = cls.__new__(cls)
    m.hp = SimpleNamespace(pgi_weight=50.0, ramp_epochs=5)
    ipe = 10
    assert m.weight(0, 9, ipe) == 0.0
    assert m.weight(1, 10, ipe) == pytest.approx(50.0 * 1 / 50)
    assert m.weight(3, 34, ipe) == pytest.approx(50.0 * 25 / 50)
    assert m.weight(5, 59, ipe) == pytest.approx(50.0)
    assert m.weight(9, 99, ipe) == pytest.approx(50.0)


def test_occam_gate_target_set_when_a_sample_is_first_seen_after_the_freeze() -> None:
    """A sample that ``drop_last`` kept out of epoch 0 gets its gate targets the first time it
    is seen, even when the exits' accuracy has frozen the targets (review finding: they
    stayed 0). Samples already seen keep their frozen targets."""
    from benchmark.dataset import DATASETS, DatasetInfo
    from benchmark.method import METHODS
    from benchmark.runner import resolve_hparams
    from benchmark.training import Batch

    info = DatasetInfo("toy", "bias", 2, (1, 8, 8), (0.5,), (0.5,), torch.ones(2), (), "f")
    cls = METHODS.get("occamnets")
    hp = resolve_hparams(cls, DATASETS.get("colored-mnist"), {"width": 4, "thresholds": [0.0] * 4})
    m = cls(info, hp, torch.device("cpu"))
    m.setup()
    n = 6
    m.targets = torch.zeros(4, n)
    m.has_target = torch.zeros(n, dtype=torch.bool)
    m.correct, m.seen, m.wmax = torch.zeros(4, 2), torch.zeros(2), [0.0] * 4
    torch.manual_seed(0)
    x, y = torch.randn(n, 1, 8, 8), torch.tensor([0, 1, 0, 1, 0, 1])
    m.model.train()
    # epoch 0 saw samples 0-3 only (4 and 5 were dropped); their targets are set there
    m.loss(Batch(x[:4], y[:4], {}, torch.arange(4), epoch=0, step=0))
    before = m.targets[:, :4].clone()
    # epoch 1: thresholds 0 -> frozen; every exit now answers class 0 on every sample
    with torch.no_grad():
        for e in m.model.exits:
            e.cam.weight.zero_()
            e.cam.bias.copy_(torch.tensor([5.0, -5.0]))
    m.loss(Batch(x, y, {}, torch.arange(n), epoch=1, step=1))
    assert torch.equal(m.targets[:, :4], before)  # frozen
    assert m.targets[:, 4:].tolist() == [[1.0, 0.0]] * 4  # right on sample 4 (y 0), not on 5


def test_mdn_features_on_the_paper_cnn_are_fc1_before_its_relu() -> None:
    """With ``backbone=metanorm-cnn`` the features that dcor² reads are FC1's MDN output before
    the ReLU (where the MDN paper measures them; review finding: they were after it), and the
    head reads their ReLU."""
    from benchmark.dataset import DATASETS, DatasetInfo
    from benchmark.method import METHODS
    from benchmark.runner import resolve_hparams

    info = DatasetInfo("toy", "bias", 2, (1, 12, 12), (0.5,), (0.5,), torch.ones(2),
                       ("confounder",), "f")  # fmt: skip
    cls = METHODS.get("mdn")
    hp = resolve_hparams(cls, DATASETS.get("metanorm-synth"), {"backbone": "metanorm-cnn"})
    m = cls(info, hp, torch.device("cpu"))
    m.setup()
    torch.manual_seed(0)
    layer = m.model.backbone.mdn["fc1"]
    layer.set_kernel(torch.randn(20, 3))
    layer.beta.normal_()
    m.model.eval()
    x, cf = torch.randn(5, 1, 12, 12), torch.randn(5)
    with torch.no_grad():
        out = m.predict_batch(x, {"confounder": cf})
        b = m.model.backbone
        meta = torch.stack([torch.zeros(5), cf, torch.ones(5)], 1)
        pre = layer(b.fc1(b.forward_map(x).flatten(1)), meta)
        assert bool((pre < 0).any())  # the case tells before from after the ReLU
        assert torch.allclose(out.features, pre, atol=1e-6)
        assert torch.allclose(out.logits, m.model.head(torch.relu(pre)), atol=1e-6)


def test_occam_trunk_follows_the_protocol_backbone() -> None:
    """``trunk=auto``: bias-cnn's stages (stride-2 stem, pools before stages 3 and 4) when the
    protocol backbone is ``bias-cnn``, else the small-cnn layout (pools before stages 2, 3)."""
    from benchmark.dataset import DATASETS, DatasetInfo
    from benchmark.method import METHODS
    from benchmark.runner import resolve_hparams

    info = DatasetInfo("toy", "bias", 3, (3, 20, 20), (0.5,) * 3, (0.5,) * 3, torch.ones(3),
                       (), "f")  # fmt: skip
    cls = METHODS.get("occamnets")
    sides = {}
    for backbone in ("bias-cnn", "tiny-cnn"):
        hp = resolve_hparams(cls, DATASETS.get("biased-mnist"), {"width": 4, "backbone": backbone})
        m = cls(info, hp, torch.device("cpu"))
        m.setup()
        with torch.no_grad():
            outs = m.model.eval()(torch.randn(2, 3, 20, 20))
        sides[backbone] = [o["cam"].shape[-1] for o in outs]
    assert sides == {"bias-cnn": [10, 10, 5, 2], "tiny-cnn": [20, 10, 5, 5]}


def test_occam_resnet18_is_the_papers_network() -> None:
    """``trunk=resnet18`` (or ``auto`` with ``backbone=resnet18``): OccamResNet-18, BasicBlocks
    [2, 2, 2, 2] at width 58 with one exit per stage, about ResNet-18's parameter count
    (methods.md §3.1: the width is chosen so); 160 px → CAMs of 40/20/10/5 px with the 7×7
    stem, 64/32/16/8 at 64 px with the ``img64`` stem; the paper's protocol resolves."""
    import torchvision

    from benchmark.dataset import DATASETS, DatasetInfo
    from benchmark.method import METHODS
    from benchmark.runner import resolve_hparams

    cls, biased = METHODS.get("occamnets"), DATASETS.get("biased-mnist")
    hp = resolve_hparams(cls, biased, {}, "biased-mnist-paper")
    assert (hp["backbone"], hp["width"], hp["epochs"], hp["milestones"]) == (
        "resnet18",
        58,
        90,
        [50, 70],
    )
    info = DatasetInfo("toy", "bias", 10, (3, 160, 160), (0.5,) * 3, (0.5,) * 3, torch.ones(10),
                       (), "f")  # fmt: skip
    m = cls(info, hp, torch.device("cpu"))
    m.setup()
    n_occam = sum(p.numel() for p in m.model.parameters())
    n_resnet = sum(p.numel() for p in torchvision.models.resnet18(num_classes=10).parameters())
    assert 0.9 * n_resnet < n_occam < n_resnet  # 10.49 M vs 11.18 M
    with torch.no_grad():
        outs = m.model.eval()(torch.randn(1, 3, 160, 160))
    assert [o["cam"].shape[-1] for o in outs] == [40, 20, 10, 5]
    assert [o["features"].shape[1] for o in outs] == [58, 116, 232, 464]
    hp64 = resolve_hparams(cls, biased, {"width": 4, "trunk": "resnet18-img64"})
    info64 = DatasetInfo("toy", "bias", 3, (3, 64, 64), (0.5,) * 3, (0.5,) * 3, torch.ones(3),
                         (), "f")  # fmt: skip
    m64 = cls(info64, hp64, torch.device("cpu"))
    m64.setup()
    with torch.no_grad():
        outs = m64.model.eval()(torch.randn(2, 3, 64, 64))
    assert [o["cam"].shape[-1] for o in outs] == [64, 32, 16, 8]
    # erm under the same protocol trains torchvision's ResNet-18 (512-d features)
    from benchmark.backbones import build_backbone

    assert build_backbone("resnet18", (3, 160, 160)).feature_dim == 512
