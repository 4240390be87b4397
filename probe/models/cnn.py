"""A small ResNet-style CNN for 28x28 inputs.

Based on: He et al. 2016, "Deep Residual Learning for Image Recognition"
(https://arxiv.org/abs/1512.03385), with a 3x3 stride-1 stem (no max-pool) so
a 28x28 image keeps a 28 -> 14 -> 7 spatial pyramid; the last stage's 7x7 grid
matches the 7x7 token grid of the patch-4 token models.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

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
        channels: width of each stage; every stage after the first halves the
            spatial size.
        depths: BasicBlocks per stage.
    """

    def __init__(
            self,
            num_classes: int = 10,
            in_chans: int = 1,
            channels: Sequence[int] = (32, 64, 128),
            depths: Sequence[int] = (1, 1, 2),
    ) -> None:
        super().__init__()
        if len(channels) != len(depths):
            raise ValueError("channels and depths need one entry per stage")
        self.num_classes = num_classes
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, channels[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=True),
        )
        stages = []
        prev = channels[0]
        for i, (chs, depth) in enumerate(zip(channels, depths)):
            blocks = []
            for j in range(depth):
                stride = 2 if (i > 0 and j == 0) else 1
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
