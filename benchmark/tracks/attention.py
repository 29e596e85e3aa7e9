"""Trained explainers of the explanation track: the pieces ``abn`` and ``ala`` share.

- ``AttentionBranchNetwork``: ABN (Fukui et al., CVPR 2019) on a convolutional backbone split
  into a trunk g(x) and its last stage (``split_backbone``).
- ``AttentionLatticeModel``: the Attention Lattice Adapter (Hirano et al., JSAI 2024; the
  Alternating Epoch Architect of arXiv 2509.14664) on a ViT encoder with CLIP's layout
  (``benchmark.tracks.backbones.VisionTransformer``).
- ``load_clip_visual``: CLIP's image encoder from a local checkpoint file, OpenAI's released
  TorchScript archive (``ViT-B-16.pt``) or an open_clip state dict, loaded key for key.
- ``upsample_map``: an attention map (N, h, w) in [0, 1] to the input size, still in [0, 1].
- ``TwoBranchExplainer``: the loss and inference both methods share (a mixin for their
  ``Method`` classes).

A track module: it hashes with the plugins that import it (``methods/abn.py``,
``methods/ala.py``).
"""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.backbones import Backbone, BasicBlockA, CifarResNet, SmallCNN, TorchvisionResNet
from benchmark.contracts import Batch
from benchmark.errors import BenchError
from benchmark.hparams import Valid
from benchmark.outputs import Outputs
from benchmark.tracks.backbones import (
    ResidualAttentionBlock,
    VisionTransformer,
    resize_positional_embedding,
)


def upsample_map(m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Maps (N, h, w) or (N, 1, h, w) in [0, 1] -> (N, H, W) float32, bilinear (a convex
    combination of the cells, so the result stays in [0, 1])."""
    if m.ndim == 3:
        m = m[:, None]
    out = F.interpolate(m.float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    return out.clamp_(0.0, 1.0)


class TwoBranchExplainer:
    """Loss and inference of a method whose ``model.forward_all(x)`` returns (perception
    logits (N, K), attention-branch logits (N, K), map M (N, h, w) or (N, 1, h, w) in [0, 1],
    pooled features (N, D)): ABN and ALA. Mix in before ``Method``; reads ``hp.att_weight``.

    Loss = CE(perception) + ``att_weight``·CE(attention branch) (ABN §3.3; the JSAI ALA code's
    two terms). Accuracy and Insertion/Deletion use the perception logits; the explanation is
    M bilinearly upsampled to the input (no min-max step, as ABN's official visualiser)."""

    model: Any
    hp: Any

    def loss(self, batch: Batch) -> torch.Tensor:
        logits, att_logits, _, _ = self.model.forward_all(batch.x)
        return F.cross_entropy(logits, batch.y) + self.hp.att_weight * F.cross_entropy(
            att_logits, batch.y
        )

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def predict_batch(self, x: torch.Tensor) -> Outputs:
        logits, _, m, features = self.model.forward_all(x)
        probs = torch.softmax(logits.float(), dim=1)
        return Outputs(
            logits=logits,
            features=features,
            ood_score=probs.max(dim=1).values,
            ood_score_kind="msp",
            saliency=upsample_map(m, tuple(x.shape[-2:])),
        )


# -- ABN --------------------------------------------------------------------------------------


def _stride_one(stage: nn.Module) -> nn.Module:
    """A copy of a ResNet stage whose first block keeps the resolution (ABN's attention trunk:
    "a copy of layer4 with stride 1")."""
    stage = copy.deepcopy(stage)
    for m in stage.modules():
        if isinstance(m, nn.Conv2d) and m.stride != (1, 1):
            m.stride = (1, 1)
        if isinstance(m, BasicBlockA):
            m.stride = 1
    return stage


def split_backbone(backbone: Backbone) -> tuple[nn.Module, nn.Module, int, int]:
    """(trunk g, last stage, channels of g, channels of the last stage) of a convolutional
    backbone: torchvision ResNets (g = stem + layer1–3, last = layer4), CIFAR ResNets (g = the
    first two stages), the small CNNs (g = all but the last conv). Raises ``BenchError`` for
    other backbones (a ViT has no stage to copy: use ``ala``)."""
    if isinstance(backbone, TorchvisionResNet):
        n = backbone.net
        trunk = nn.Sequential(n.conv1, n.bn1, n.relu, n.maxpool, n.layer1, n.layer2, n.layer3)
        return trunk, n.layer4, n.layer4[0].conv1.in_channels, backbone.feature_dim
    if isinstance(backbone, CifarResNet):
        blocks = list(backbone.stages)
        last = [i for i, b in enumerate(blocks) if b.stride == 2][-1]
        trunk = nn.Sequential(backbone.stem, *blocks[:last])
        return trunk, nn.Sequential(*blocks[last:]), blocks[last].conv1.in_channels, 64
    if isinstance(backbone, SmallCNN):
        body = list(backbone.body)
        return nn.Sequential(*body[:-1]), body[-1], body[-1][0].in_channels, backbone.feature_dim
    raise BenchError(
        f"abn needs a convolutional backbone (small-cnn, tiny-cnn, resnet32, resnet50, "
        f"resnext50-32x4d), not {type(backbone).__name__}; for a ViT use ala"
    )


class AttentionBranchNetwork(nn.Module):
    """ABN (Fukui et al. 2019, §3; official ``models/imagenet/resnet.py``).

    g = trunk(x) (N, Cg, h, w). Attention branch: a stride-1 copy of the last stage -> BN ->
    Conv1×1(→K) -> BN -> ReLU; map M = σ(BN(Conv3×3(K→1))) (N, 1, h, w) in [0, 1]; branch
    logits = GAP(Conv1×1(K→K)). Perception branch: (1 + M)·g -> last stage -> GAP -> FC.
    ``forward`` returns the perception logits (N, K); ``forward_all`` returns
    (perception logits, attention logits, M, pooled perception features).
    """

    def __init__(self, backbone: Backbone, num_classes: int) -> None:
        super().__init__()
        trunk, last, _, c_last = split_backbone(backbone)
        k = num_classes
        self.trunk, self.perception = trunk, last
        self.att_stage = _stride_one(last)
        self.att_bn = nn.BatchNorm2d(c_last)
        self.att_conv = nn.Conv2d(c_last, k, 1, bias=False)
        self.att_bn2 = nn.BatchNorm2d(k)
        self.att_map = nn.Conv2d(k, 1, 3, padding=1, bias=False)
        self.att_map_bn = nn.BatchNorm2d(1)
        self.att_logits = nn.Conv2d(k, k, 1, bias=False)
        self.fc = nn.Linear(c_last, k)
        self.feature_dim = c_last

    def forward_all(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        g = self.trunk(x)
        a = F.relu(self.att_bn2(self.att_conv(self.att_bn(self.att_stage(g)))))
        m = torch.sigmoid(self.att_map_bn(self.att_map(a)))
        att_logits = self.att_logits(a).mean(dim=(2, 3))
        features = self.perception(g * (1 + m)).mean(dim=(2, 3))
        return self.fc(features), att_logits, m, features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x)[0]


# -- ALA --------------------------------------------------------------------------------------


def lattice_taps(depth: int, count: int) -> list[int]:
    """``count`` evenly spaced block indices (0-based) of a ``depth``-block encoder, ending at
    the last block: 12 blocks, 4 taps -> [2, 5, 8, 11] (blocks 3, 6, 9, 12)."""
    count = min(count, depth)
    return sorted({round(depth * (i + 1) / count) - 1 for i in range(count)})


class AttentionLattice(nn.Module):
    """ALA's side branch: a lattice of transformer blocks reading several encoder blocks.

    Tap i's patch tokens (N, g, D) enter through LayerNorm + Linear(D→d) and are added to the
    side stream before side block i: h_i = Block_i(h_{i-1} + in_i(z_{t_i})), h_0 = 0. The
    attention branch reads the last side stream: map M = σ(Linear(d→1)(LN(h))) (N, g) in
    [0, 1], logits = Linear(d→K)(mean over patches of LN(h)).
    """

    def __init__(self, enc_width: int, taps: int, width: int, num_classes: int) -> None:
        super().__init__()
        heads = max(1, width // 32)
        self.inputs = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(enc_width), nn.Linear(enc_width, width)) for _ in range(taps)
        )
        self.blocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(taps))
        self.norm = nn.LayerNorm(width)
        self.map_head = nn.Linear(width, 1)
        self.att_head = nn.Linear(width, num_classes)

    def forward(self, tapped: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h: torch.Tensor | float = 0.0
        for inp, block, z in zip(self.inputs, self.blocks, tapped, strict=True):
            h = block(h + inp(z[:, 1:]))
        assert isinstance(h, torch.Tensor)
        h = self.norm(h)
        return torch.sigmoid(self.map_head(h))[..., 0], self.att_head(h.mean(dim=1))


class AttentionLatticeModel(nn.Module):
    """ALA on a ViT encoder (the variant built here; see the README).

    One pass of the encoder keeps the tokens of every block; the lattice reads the tapped
    blocks (``lattice_taps``) and gives the map M (N, g) and the attention-branch logits. The
    perception branch weights the patch tokens of block ``inject`` (the second-to-last tap,
    block 9 of 12 as the JSAI code's layer-9 injection) by (1 + M), runs them through the
    encoder's own later blocks, pools as the encoder does (class token or patch mean) and
    classifies with ``head``. ``forward`` returns the perception logits; ``forward_all``
    (perception logits, attention logits, M (N, gh, gw), pooled features).
    """

    def __init__(
        self,
        encoder: VisionTransformer,
        num_classes: int,
        taps: int,
        side_width: int,
        head: nn.Linear | None = None,
        renormalise: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.taps = lattice_taps(encoder.depth, taps)
        if len(self.taps) < 2:
            raise BenchError("ala needs an encoder of at least 2 blocks and lattice_taps >= 2")
        self.inject = self.taps[-2]
        self.lattice = AttentionLattice(encoder.width, len(self.taps), side_width, num_classes)
        self.head = head if head is not None else nn.Linear(encoder.feature_dim, num_classes)
        # (scale, shift) from the dataset's normalisation to the encoder's (CLIP's statistics)
        if renormalise is not None:
            self.register_buffer("renorm_scale", renormalise[0].view(1, -1, 1, 1))
            self.register_buffer("renorm_shift", renormalise[1].view(1, -1, 1, 1))
        else:
            self.renorm_scale = self.renorm_shift = None

    def ala_parameters(self) -> list[nn.Parameter]:
        """The parameters the Alternating Epoch Architect freezes: the lattice (side branch
        and attention branch)."""
        return list(self.lattice.parameters())

    def forward_all(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.renorm_scale is not None:
            x = x * self.renorm_scale + self.renorm_shift
        enc = self.encoder
        outs = enc.blocks(x)
        m, att_logits = self.lattice([outs[t] for t in self.taps])
        z = outs[self.inject]
        z = torch.cat([z[:, :1], z[:, 1:] * (1 + m[..., None].to(z.dtype))], dim=1)
        for block in enc.transformer.resblocks[self.inject + 1 :]:
            z = block(z)
        features = enc.pooled(z)
        n = x.shape[0]
        return self.head(features), att_logits, m.reshape(n, *enc.grid), features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x)[0]


def set_ala_frozen(model: AttentionLatticeModel, frozen: bool) -> None:
    """The Alternating Epoch Architect's switch: freeze (no gradient, so no update and no
    weight decay) or release the ALA parameters; the perception branch is untouched."""
    for p in model.ala_parameters():
        p.requires_grad_(not frozen)
        if frozen:
            p.grad = None


def aea_frozen(epoch: int) -> bool:
    """True on the epochs on which the ALA is frozen: the odd epochs of the 0-based count the
    trainer uses (the 2nd, 4th, ... epoch), so the ALA is updated every other epoch starting
    with the first."""
    return epoch % 2 == 1


# -- CLIP checkpoints ------------------------------------------------------------------------

CLIP_EXPECTED = (
    "a CLIP ViT-B/16 checkpoint file: OpenAI's released ViT-B-16.pt (TorchScript) or an "
    "open_clip state dict (.pt/.bin/.safetensors)"
)
#: CLIP's input normalisation (OpenAI's preprocessing; open_clip's OPENAI_DATASET_MEAN/STD)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ExistingFile(Valid):
    """An empty string (no file) or the path of an existing file."""

    def ok(self, value: Any) -> bool:
        return isinstance(value, str) and (value == "" or Path(value).expanduser().is_file())

    def describe(self) -> str:
        return f"{CLIP_EXPECTED}, and no such file exists"


def read_clip_state(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """The image-encoder tensors (``visual.`` prefix removed, float32) of a CLIP checkpoint and
    its format: ``"openai-torchscript"`` (``torch.jit.save`` of the whole model, as OpenAI
    released ViT-B-16.pt; read with ``torch.jit.load(...).state_dict()`` as OpenAI's
    ``clip.load`` does) or ``"state-dict"`` (a plain state dict, possibly under
    ``"state_dict"`` with DDP's ``module.`` prefix, as open_clip saves; ``.safetensors`` too).
    Raises ``BenchError`` (one line) when the file is missing or holds no ``visual.*`` keys."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BenchError(f"backbone_weights: {path} not found; expected {CLIP_EXPECTED}")
    fmt = "state-dict"
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path))
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # jit.load's deprecation notice
                state = torch.jit.load(str(path), map_location="cpu").state_dict()
            fmt = "openai-torchscript"
        except RuntimeError:
            state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BenchError(f"backbone_weights: {path} holds no state dict; expected {CLIP_EXPECTED}")
    visual = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("visual.") and isinstance(value, torch.Tensor):
            visual[key.removeprefix("visual.")] = value.float()
    if "conv1.weight" not in visual or "positional_embedding" not in visual:
        raise BenchError(
            f"backbone_weights: {path} has no CLIP ViT image encoder (visual.conv1, "
            f"visual.positional_embedding); expected {CLIP_EXPECTED}"
        )
    return visual, fmt


def load_clip_visual(
    path: str | Path,
    input_shape: tuple[int, ...],
    activation: str = "auto",
) -> tuple[VisionTransformer, dict[str, Any]]:
    """CLIP's image encoder from ``path`` as a ``VisionTransformer`` for inputs (3, H, W),
    with every tensor of the file's ``visual`` tower loaded (strict: no key missing or left
    over). The configuration is read from the shapes as OpenAI's ``build_model`` does: width =
    conv1's output channels, patch = its kernel, blocks = the ``attn.in_proj_weight`` keys,
    heads = width / 64, projection = ``proj``'s columns. The positional embedding is resized
    bicubically when H/patch differs from the checkpoint's grid (224 px for ViT-B/16).
    ``activation``: ``auto`` = QuickGELU for OpenAI's TorchScript file (its models were trained
    with it), GELU for a state dict (open_clip's non-``quickgelu`` configs); or ``gelu`` /
    ``quickgelu``. Returns (encoder, facts about the file: format, width, blocks, patch, grid).
    """
    visual, fmt = read_clip_state(path)
    c, h, w = input_shape
    if c != 3:
        raise BenchError(
            f"backbone_weights: CLIP needs RGB inputs, this dataset has {c} channel(s)"
        )
    width, _, patch, _ = visual["conv1.weight"].shape
    layers = sum(1 for k in visual if k.endswith(".attn.in_proj_weight"))
    proj = visual.get("proj")
    if h % patch or w % patch:
        raise BenchError(f"backbone_weights: image size {h}×{w} is not a multiple of {patch}")
    quick = fmt == "openai-torchscript" if activation == "auto" else activation == "quickgelu"
    encoder = VisionTransformer(
        3,
        (h, w),
        patch,
        width=width,
        layers=layers,
        heads=max(1, width // 64),
        proj_dim=None if proj is None else proj.shape[1],
        pool="token",
        quick_gelu=quick,
    )
    old_grid = math.isqrt(visual["positional_embedding"].shape[0] - 1)
    visual["positional_embedding"] = resize_positional_embedding(
        visual["positional_embedding"], encoder.grid
    )
    try:
        encoder.load_state_dict(visual, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise BenchError(f"backbone_weights: {path} does not fit a CLIP ViT: {first}") from None
    facts = {
        "format": fmt,
        "width": width,
        "blocks": layers,
        "patch": patch,
        "checkpoint_grid": old_grid,
        "grid": list(encoder.grid),
        "quick_gelu": quick,
    }
    return encoder, facts


def clip_renormalise(
    mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) turning an image normalised with the dataset's (mean, std) into one
    normalised with CLIP's: x_clip = x·std/std_clip + (mean − mean_clip)/std_clip."""
    m, s = torch.tensor(mean), torch.tensor(std)
    mc, sc = torch.tensor(CLIP_MEAN), torch.tensor(CLIP_STD)
    return s / sc, (m - mc) / sc
