"""Backbones the bias, OoD and explanation tracks add to the shared registry.

A track module, not the core: it hashes with every plugin that imports it. ``erm`` (the
baseline of every track) and each track module import it, so a record of any run on one of
these backbones changes key when this file changes. Register with
``@register_backbone("name")`` on a factory ``(C, H, W) -> Backbone`` (see
``benchmark.backbones``: ``forward_map`` gives the last feature map, ``forward`` its global
average pool, ``feature_dim`` the width).
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.backbones import Backbone, TorchvisionResNet, _conv_bn, register_backbone


# -- OoD track (issue 13) ----------------------------------------------------------------------
def _resnet18_cifar(input_shape: tuple[int, ...]) -> Backbone:
    """ResNet-18 with a 3×3 stem for 32×32 inputs: torchvision's ResNet-18 (He et al. 2016)
    with ``conv1`` a 3×3 stride-1 convolution and no max-pool, 512-d features (the network
    of DUQ's and OpenOOD's CIFAR-10 experiments, Gram's ``ResNet_Cifar10`` analogue)."""
    from torch import nn
    from torchvision.models import resnet18

    from benchmark.backbones import TorchvisionResNet

    net = TorchvisionResNet(resnet18(weights=None), 3)
    net.net.conv1 = nn.Conv2d(input_shape[0], 64, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(net.net.conv1.weight, mode="fan_out", nonlinearity="relu")
    net.net.maxpool = nn.Identity()
    return net


register_backbone("resnet18-cifar")(_resnet18_cifar)


class DUQCNN(Backbone):
    """DUQ's Fashion-MNIST network (van Amersfoort et al., ICML 2020; ``utils/cnn_duq.py``):
    three 3×3 conv-BN-ReLU-max-pool blocks of 64, 128, 128 channels (the third unpadded),
    28 → 14 → 7 → 2, then FC(512 → 256) + ReLU: 256-d features. To keep the backbone contract
    (``forward`` = average pool of ``forward_map``), ``forward_map`` is those features as a
    256 × 1 × 1 map (no spatial map for CAM-style explanations)."""

    def __init__(self, in_channels: int, side: int) -> None:
        from torch import nn

        super().__init__()

        def block(cin: int, cout: int, pad: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=pad), nn.BatchNorm2d(cout), nn.ReLU(),
                nn.MaxPool2d(2),
            )  # fmt: skip

        self.convs = nn.Sequential(block(in_channels, 64, 1), block(64, 128, 1), block(128, 128, 0))
        out = ((side // 2) // 2 - 2) // 2
        self.fc = nn.Linear(128 * out * out, 256)
        self.feature_dim = 256

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(x).flatten(1)).relu()[:, :, None, None]


@register_backbone("duq-cnn")
def duq_cnn(input_shape: tuple[int, ...]) -> Backbone:
    return DUQCNN(input_shape[0], input_shape[-1])


# -- explanation track (issue 14): ResNet-50 and Vision Transformers ---------------------------
# A ViT here has CLIP's image-encoder layout and parameter names (Radford et al. 2021, the
# ``visual`` tower): a patch convolution ``conv1`` without bias, ``class_embedding`` (D,),
# ``positional_embedding`` (1 + g², D), ``ln_pre``, pre-norm residual blocks
# ``transformer.resblocks.i.{ln_1, attn, ln_2, mlp.c_fc, mlp.c_proj}``, ``ln_post`` and an
# optional projection ``proj`` (D, E). The same module is the built-in small ViT and CLIP
# ViT-B/16, so CLIP checkpoints load into it key for key (``benchmark.tracks.clip``).


@register_backbone("resnet50")
def resnet50(input_shape: tuple[int, ...]) -> Backbone:
    """ResNet-50 (He et al. 2016), torchvision's architecture, random init, 2048-d features;
    ``forward_map`` is ``layer4``'s output (7×7 at 224 px), as Grad-CAM and ABN tap it."""
    from torchvision.models import resnet50 as tv_resnet50

    return TorchvisionResNet(tv_resnet50(weights=None), input_shape[0])


class QuickGELU(nn.Module):
    """x·σ(1.702x): the activation of OpenAI's released CLIP models."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x)); tokens (N, T, D)."""

    def __init__(self, width: int, heads: int, quick_gelu: bool = False) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        act: nn.Module = QuickGELU() if quick_gelu else nn.GELU()
        self.mlp = nn.Sequential(
            OrderedDict(
                [("c_fc", nn.Linear(width, 4 * width)), ("gelu", act),
                 ("c_proj", nn.Linear(4 * width, width))]
            )
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """``resblocks``: the stack of blocks (a ``ModuleList`` so that callers can tap any one)."""

    def __init__(self, width: int, layers: int, heads: int, quick_gelu: bool = False) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(
            ResidualAttentionBlock(width, heads, quick_gelu) for _ in range(layers)
        )


class VisionTransformer(Backbone):
    """ViT image encoder with CLIP's layout (see the section comment).

    Input (N, C, H, W) with H and W multiples of ``patch``; g = H/patch × W/patch tokens.
    ``forward_map(x)``: the patch tokens after ``ln_post`` (and ``proj`` when present) as a map
    (N, feature_dim, H/patch, W/patch). ``forward(x)``: the class token after ``ln_post`` and
    ``proj`` when ``pool="token"`` (CLIP), else the mean of the patch tokens (``pool="gap"``,
    which makes ``forward`` the global average pool of ``forward_map``, as CAM needs).
    ``blocks(x)``: the token sequence (N, 1 + g, D) after every block, for side branches.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: tuple[int, int],
        patch: int,
        width: int,
        layers: int,
        heads: int,
        proj_dim: int | None = None,
        pool: str = "token",
        quick_gelu: bool = False,
    ) -> None:
        super().__init__()
        h, w = image_size
        if h % patch or w % patch:
            raise ValueError(f"image size {h}×{w} is not a multiple of the patch size {patch}")
        self.patch, self.width, self.pool = patch, width, pool
        self.grid = (h // patch, w // patch)
        self.conv1 = nn.Conv2d(in_channels, width, patch, stride=patch, bias=False)
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(
            scale * torch.randn(1 + self.grid[0] * self.grid[1], width)
        )
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, quick_gelu)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, proj_dim)) if proj_dim else None
        self.feature_dim = proj_dim or width

    @property
    def depth(self) -> int:
        return len(self.transformer.resblocks)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embedding + class token + positional embedding + ``ln_pre``: (N, 1 + g, D)."""
        x = self.conv1(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        return self.ln_pre(x)

    def blocks(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The tokens (N, 1 + g, D) after each block, in order (``depth`` tensors)."""
        out, t = [], self.embed(x)
        for block in self.transformer.resblocks:
            t = block(t)
            out.append(t)
        return out

    def head_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """``ln_post`` then ``proj`` on tokens (N, T, D) -> (N, T, feature_dim)."""
        t = self.ln_post(tokens)
        return t @ self.proj if self.proj is not None else t

    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        """Features (N, feature_dim) of the last block's tokens, pooled as ``pool`` says."""
        if self.pool == "token":
            return self.head_tokens(tokens[:, :1])[:, 0]
        return self.head_tokens(tokens[:, 1:]).mean(dim=1)

    def to_map(self, patch_tokens: torch.Tensor) -> torch.Tensor:
        """Patch tokens (N, g, E) -> map (N, E, gh, gw)."""
        n, _, e = patch_tokens.shape
        return patch_tokens.transpose(1, 2).reshape(n, e, *self.grid)

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_map(self.head_tokens(self.blocks(x)[-1][:, 1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pooled(self.blocks(x)[-1])


def resize_positional_embedding(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """A (1 + g², D) positional embedding resized to ``grid`` (1 + gh·gw, D): the class
    position kept, the patch positions bicubically interpolated as a square map."""
    side = math.isqrt(pos.shape[0] - 1)
    if (side, side) == tuple(grid):
        return pos
    patch = pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2).float()
    patch = F.interpolate(patch, size=grid, mode="bicubic", align_corners=False)
    patch = patch.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1).to(pos.dtype)
    return torch.cat([pos[:1], patch])


@register_backbone("vit-tiny")
def vit_tiny(input_shape: tuple[int, ...]) -> Backbone:
    """A small ViT for the 32–64 px built-ins: an 8×8 grid of patches (patch = side/8, e.g.
    4 px at 32, 8 px at 64), width 96, 4 blocks, 3 heads, GELU, patch-token average pooling
    (Beyer et al. 2022, "Better plain ViT baselines"), 96-d features. Random init."""
    c, h, w = input_shape
    patch = max(1, min(h, w) // 8)
    size = (h - h % patch, w - w % patch)
    if size != (h, w):
        raise ValueError(f"vit-tiny needs a side that is a multiple of {patch}, got {h}×{w}")
    return VisionTransformer(c, size, patch, width=96, layers=4, heads=3, pool="gap")


@register_backbone("vit-b16")
def vit_b16(input_shape: tuple[int, ...]) -> Backbone:
    """ViT-B/16 with CLIP's image-encoder layout (width 768, 12 blocks, 12 heads, QuickGELU,
    class-token pooling, 512-d projection; Radford et al. 2021), random init. With ALA's
    ``--set backbone_weights=PATH`` the CLIP weights are loaded into it."""
    c, h, w = input_shape
    return VisionTransformer(
        c, (h, w), 16, width=768, layers=12, heads=12, proj_dim=512, quick_gelu=True
    )


@register_backbone("vit-micro")
def vit_micro(input_shape: tuple[int, ...]) -> Backbone:
    """The smallest ViT (a 4×4 grid of patches, width 32, 2 blocks, 1 head, patch-token
    pooling): smoke tests of ViT methods on a CPU, like ``tiny-cnn`` for the CNNs."""
    c, h, w = input_shape
    patch = max(1, min(h, w) // 4)
    if h % patch or w % patch:
        raise ValueError(f"vit-micro needs a side that is a multiple of {patch}, got {h}×{w}")
    return VisionTransformer(c, (h, w), patch, width=32, layers=2, heads=1, pool="gap")


# -- bias track ------------------------------------------------------------------------------
class BiasCNN(Backbone):
    """A CPU backbone for cluttered 40–80 px canvases (``biased-mnist``): a stride-2 stem
    (w), then w→2w, 2× max-pool, 2w→4w, 2× max-pool, 4w→4w (3×3 conv-BN-ReLU each), and a
    global *max* pool, so a digit anywhere on the canvas reaches the features (receptive
    field ≈ 50 px at the stem's stride). Kaiming-normal (fan-out) init."""

    def __init__(self, in_channels: int, width: int = 16) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(
            _conv_bn(in_channels, w, 2),
            _conv_bn(w, 2 * w),
            nn.MaxPool2d(2),
            _conv_bn(2 * w, 4 * w),
            nn.MaxPool2d(2),
            _conv_bn(4 * w, 4 * w),
        )
        self.feature_dim = 4 * w
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_map(x).amax(dim=(2, 3))


@register_backbone("bias-cnn")
def bias_cnn(input_shape: tuple[int, ...]) -> Backbone:
    """``BiasCNN`` of width 16 (64-d features)."""
    return BiasCNN(input_shape[0], width=16)


class MLP(Backbone):
    """LfF's Colored-MNIST network (``module/mlp.py``): flatten → 3 × (Linear(→100) → ReLU);
    the features are the last hidden layer (100-d; the head is LfF's last Linear(100→C)).
    No feature map: ``forward_map`` gives the features as a 1×1 map."""

    def __init__(self, input_shape: tuple[int, ...], hidden: int = 100, layers: int = 3) -> None:
        super().__init__()
        dims = [math.prod(input_shape), *([hidden] * layers)]
        body: list[nn.Module] = [nn.Flatten()]
        for a, b in itertools.pairwise(dims):
            body += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*body)
        self.feature_dim = hidden

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@register_backbone("mlp")
def mlp(input_shape: tuple[int, ...]) -> Backbone:
    """LfF's MLP, 3 hidden layers of 100 units (Nam et al. 2020, Colored MNIST)."""
    return MLP(input_shape)
