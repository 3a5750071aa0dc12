"""ResNet-18 and ResNet-50 (He et al., 2016), as in torchvision, without downloaded weights.

The module names match torchvision's (``conv1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``,
``fc``), so a torchvision state dict loads into these models. The stride of a bottleneck block is on
its 3 x 3 convolution (ResNet v1.5). Global average pooling makes the models work at any input size
of at least 32 x 32; :func:`haqsearch.trace` at 224 x 224 gives :func:`haqsim.zoo.resnet18` and
:func:`haqsim.zoo.resnet50`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from haqsearch.errors import HaqsearchError
from haqsim.zoo import make_divisible

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet50"]


def _conv3x3(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, groups=groups, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3 x 3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(
        self,
        cin: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
    ) -> None:
        """Build the block.

        Args:
            cin: Input channels.
            planes: Output channels.
            stride: Stride of the first convolution.
            downsample: The shortcut projection, or ``None`` for the identity.
            groups: Must be 1.
            base_width: Must be 64.
        """
        super().__init__()
        if groups != 1 or base_width != 64:
            raise HaqsearchError(
                f"BasicBlock groups and base_width must be 1 and 64, got {groups} and {base_width}"
            )
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1 x 1, 3 x 3 (strided, optionally grouped), 1 x 1 with a residual connection (ResNet-50)."""

    expansion = 4

    def __init__(
        self,
        cin: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
    ) -> None:
        """Build the block.

        Args:
            cin: Input channels.
            planes: Bottleneck channels before widening; the output has ``4 * planes``.
            stride: Stride of the 3 x 3 convolution.
            downsample: The shortcut projection, or ``None`` for the identity.
            groups: Groups of the 3 x 3 convolution (ResNeXt).
            base_width: Channels per group at ``planes = 64`` (64 for ResNet, 128 for Wide ResNet).
        """
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = _conv1x1(cin, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    """A ResNet: a 7 x 7 stem, four stages of residual blocks, global pooling, a classifier."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: Sequence[int],
        num_classes: int = 1000,
        groups: int = 1,
        width_per_group: int = 64,
        width: float = 1.0,
    ) -> None:
        """Build the network.

        Args:
            block: :class:`BasicBlock` or :class:`Bottleneck`.
            layers: Blocks per stage (four stages).
            num_classes: Classifier outputs.
            groups: Groups of each bottleneck's 3 x 3 convolution.
            width_per_group: Bottleneck channels per group at the first stage.
            width: Multiplier of every channel count, ``make_divisible(c * width, 8)`` (WRPN
                style, as :func:`haqsim.zoo.resnet18`'s ``width``).
        """
        super().__init__()
        if len(layers) != 4 or any(n < 1 for n in layers):
            raise HaqsearchError(f"ResNet layers must be four positive block counts, got {layers}")
        if num_classes < 1:
            raise HaqsearchError(f"ResNet num_classes must be >= 1, got {num_classes}")
        if not width > 0:
            raise HaqsearchError(f"ResNet width must be > 0, got {width}")
        self.groups = groups
        self.base_width = width_per_group
        self.inplanes = make_divisible(64 * width)
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        planes = [make_divisible(c * width) for c in (64, 128, 256, 512)]
        self.layer1 = self._make_layer(block, planes[0], layers[0])
        self.layer2 = self._make_layer(block, planes[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, planes[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, planes[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(
        self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(
                block(self.inplanes, planes, groups=self.groups, base_width=self.base_width)
            )
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(batch, num_classes)`` for images ``(batch, 3, H, W)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 1000, *, width: float = 1.0) -> ResNet:
    """ResNet-18: basic blocks, (2, 2, 2, 2) per stage.

    Args:
        num_classes: Classifier outputs.
        width: Multiplier of every channel count (``make_divisible(c * width, 8)``).
    """
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes=num_classes, width=width)


def resnet50(
    num_classes: int = 1000, *, width: float = 1.0, groups: int = 1, width_per_group: int = 64
) -> ResNet:
    """ResNet-50: bottleneck blocks, (3, 4, 6, 3) per stage.

    Args:
        num_classes: Classifier outputs.
        width: Multiplier of every channel count (``make_divisible(c * width, 8)``), WRPN style,
            as :func:`haqsim.zoo.resnet50`; not torchvision's Wide ResNet.
        groups: Groups of each 3 x 3 convolution (32 with ``width_per_group=4`` is ResNeXt-50
            32x4d).
        width_per_group: Bottleneck channels per group (128 is Wide ResNet-50-2).
    """
    return ResNet(
        Bottleneck, (3, 4, 6, 3), num_classes=num_classes, groups=groups,
        width_per_group=width_per_group, width=width,
    )  # fmt: skip
