"""A small ResNet-style CNN for 28x28 inputs.

Based on: He et al. 2016, "Deep Residual Learning for Image Recognition"
(https://arxiv.org/abs/1512.03385), with a 3x3 stride-1 stem (no max-pool) and
stage strides (2, 2, 1), so a 28x28 image goes 28 -> 14 -> 7 -> 7; the last
stages' 7x7 grid matches the 7x7 token grid of the patch-4 token models.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
from timm.models.resnet import ResNet

from ..registry import last_child, register_family

__all__ = ["BasicBlock", "SmallResNet"]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1) shortcut."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.act2 = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_chs != out_chs:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_chs),
            )
        nn.init.zeros_(self.bn2.weight)  # zero-init residual branch (Goyal et al. 2017)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        return self.act2(x + shortcut)


class SmallResNet(nn.Module):
    """ResNet with a 3x3 stem and one stage per entry of ``channels``.

    Args:
        num_classes: classifier outputs.
        in_chans: input channels.
        channels: width of each stage.
        depths: BasicBlocks per stage.
        strides: stride of each stage's first block.
        stem_channels: width of the 3x3 stride-1 stem.
    """

    def __init__(
            self,
            num_classes: int = 10,
            in_chans: int = 1,
            channels: Sequence[int] = (48, 96, 160),
            depths: Sequence[int] = (1, 1, 1),
            strides: Sequence[int] = (2, 2, 1),
            stem_channels: int = 24,
    ) -> None:
        super().__init__()
        if not len(channels) == len(depths) == len(strides):
            raise ValueError("channels, depths and strides need one entry per stage")
        self.num_classes = num_classes
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, stem_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem_channels),
            nn.ReLU(inplace=True),
        )
        stages = []
        prev = stem_channels
        for i, (chs, depth) in enumerate(zip(channels, depths)):
            blocks = []
            for j in range(depth):
                stride = strides[i] if j == 0 else 1
                blocks.append(BasicBlock(prev, chs, stride))
                prev = chs
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = prev
        self.head = nn.Linear(prev, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _cnn_cam_layer(model: nn.Module) -> Optional[str]:
    """The last stage: ``net.stages.<last>`` (the zoo's :class:`SmallResNet`), ``net.layer4``
    (timm ``ResNet``), else the last child of ``net.stages`` of another timm convnet."""
    modules = dict(model.named_modules())
    if "net.layer4" in modules:
        return "net.layer4"
    return last_child("net.stages")(model)


def _is_timm_convnet(net: nn.Module) -> bool:
    """A timm ``ResNet`` (resnet18/50, ResNeXt, SE-ResNet, ...), or another purely
    convolutional timm network: convolutions and no attention or transformer block."""
    if isinstance(net, ResNet):
        return True
    names = {type(m).__name__ for m in net.modules()}
    return (any(isinstance(m, nn.Conv2d) for m in net.modules()) and "Block" not in names
            and not any(n.endswith("Attention") for n in names))


@register_family("cnn", description="small ResNet: 3x3 conv stages 28->14->7->7",
                 paper="He et al. 2016, arXiv:1512.03385", label="CNN", color="#7f7f7f",
                 mixing_kind="conv", group="conv", gradcam_layer=_cnn_cam_layer,
                 epochs=5, lr=1e-3, timm_match=_is_timm_convnet)
def _cnn(num_classes: int, in_chans: int, img_size: int) -> nn.Module:
    return SmallResNet(num_classes=num_classes, in_chans=in_chans, channels=(48, 96, 160),
                       depths=(1, 1, 1), strides=(2, 2, 1), stem_channels=24)
