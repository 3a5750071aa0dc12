"""MobileNet-V1 (Howard et al., 2017) and MobileNet-V2 (Sandler et al., 2018), without weights.

MobileNet-V2 follows torchvision's definition and module names (``features.0.0``,
``features.1.conv.0.0``, ``features.2.conv.1.0``, ``classifier.1``), so a torchvision state dict
loads into it. MobileNet-V1 has no torchvision version; its names follow HAQ's
``models/mobilenet.py`` (``conv1.0``, ``features.<i>.0`` and ``features.<i>.3``, ``classifier.0``).
Both use BatchNorm and ReLU6 and end in global average pooling, so they work at any input size of
at least 32 x 32; :func:`haqsearch.trace` at 224 x 224 gives :func:`haqsim.zoo.mobilenet_v1` and
:func:`haqsim.zoo.mobilenet_v2`.
"""

from __future__ import annotations

import torch
from torch import nn

from haqsearch.errors import HaqsearchError
from haqsim.zoo import MOBILENET_V1_CFG, MOBILENET_V2_CFG, make_divisible

__all__ = [
    "ConvBNAct",
    "InvertedResidual",
    "MobileNetV1",
    "MobileNetV2",
    "mobilenet_v1",
    "mobilenet_v2",
]


class ConvBNAct(nn.Sequential):
    """Convolution (``0``), batch norm (``1``) and activation (``2``), "same" padding.

    Torchvision's ``Conv2dNormActivation`` with the same child indices.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        activation: type[nn.Module] = nn.ReLU6,
    ) -> None:
        """Build the block.

        Args:
            cin: Input channels.
            cout: Output channels.
            kernel_size: Square, odd kernel size.
            stride: Stride.
            groups: Convolution groups (``cin`` for depthwise).
            activation: Activation class, instantiated with ``inplace=True``.
        """
        super().__init__(
            nn.Conv2d(
                cin, cout, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False
            ),
            nn.BatchNorm2d(cout),
            activation(inplace=True),
        )


class InvertedResidual(nn.Module):
    """MobileNet-V2 block: 1 x 1 expansion, 3 x 3 depthwise, 1 x 1 linear projection.

    The layers live in ``self.conv`` (torchvision's names); the residual connection is used when
    the stride is 1 and the channel count does not change.
    """

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        """Build the block.

        Args:
            cin: Input channels.
            cout: Output channels.
            stride: Stride of the depthwise convolution, 1 or 2.
            expand_ratio: Hidden channels are ``round(cin * expand_ratio)``; 1 skips the expansion.
        """
        super().__init__()
        if stride not in (1, 2):
            raise HaqsearchError(f"InvertedResidual stride must be 1 or 2, got {stride}")
        self.stride = stride
        hidden = round(cin * expand_ratio)
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(cin, hidden, kernel_size=1))
        layers += [
            ConvBNAct(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


def _init_weights(model: nn.Module) -> None:
    """Torchvision's MobileNet initialisation."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def _check(name: str, width: float, num_classes: int) -> None:
    if not width > 0:
        raise HaqsearchError(f"{name} width must be > 0, got {width}")
    if num_classes < 1:
        raise HaqsearchError(f"{name} num_classes must be >= 1, got {num_classes}")


class MobileNetV2(nn.Module):
    """MobileNet-V2: a 3 x 3 stem, 17 inverted residual blocks, a 1 x 1 head, a classifier."""

    #: (expansion t, output channels c, repeats n, first stride s) per stage, from the paper.
    SETTINGS: tuple[tuple[int, int, int, int], ...] = MOBILENET_V2_CFG

    def __init__(
        self, width: float = 1.0, num_classes: int = 1000, dropout: float = 0.2, divisor: int = 8
    ) -> None:
        """Build the network.

        Args:
            width: Width multiplier; channels are ``make_divisible(c * width, divisor)``. The last
                1 x 1 layer keeps 1280 channels for widths below 1.
            num_classes: Classifier outputs.
            dropout: Dropout before the classifier.
            divisor: Channel counts are multiples of this.
        """
        super().__init__()
        _check("MobileNetV2", width, num_classes)
        cin = make_divisible(32 * width, divisor)
        self.last_channel = make_divisible(1280 * max(1.0, width), divisor)
        features: list[nn.Module] = [ConvBNAct(3, cin, stride=2)]
        for t, c, n, s in self.SETTINGS:
            cout = make_divisible(c * width, divisor)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(ConvBNAct(cin, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes)
        )
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(batch, num_classes)`` for images ``(batch, 3, H, W)``."""
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


class MobileNetV1(nn.Module):
    """MobileNet-V1: a 3 x 3 stem, 13 depthwise-separable blocks, a classifier.

    Module names follow HAQ's ``models/mobilenet.py``: ``conv1.0`` (stem), ``features.<i>.0``
    (depthwise) and ``features.<i>.3`` (pointwise) for block ``i`` in 0..12, ``classifier.0``.
    """

    #: (output channels, stride) of the 13 depthwise-separable blocks, from the paper.
    SETTINGS: tuple[tuple[int, int], ...] = MOBILENET_V1_CFG

    def __init__(self, width: float = 1.0, num_classes: int = 1000, divisor: int = 8) -> None:
        """Build the network.

        Args:
            width: Width multiplier; channels are ``make_divisible(c * width, divisor)``, which
                equals the paper's ``int(c * width)`` for widths 0.25, 0.5, 0.75 and 1.
            num_classes: Classifier outputs.
            divisor: Channel counts are multiples of this.
        """
        super().__init__()
        _check("MobileNetV1", width, num_classes)
        cin = make_divisible(32 * width, divisor)
        self.conv1 = ConvBNAct(3, cin, stride=2)
        blocks: list[nn.Module] = []
        for c, s in self.SETTINGS:
            cout = make_divisible(c * width, divisor)
            blocks.append(
                nn.Sequential(
                    *ConvBNAct(cin, cin, stride=s, groups=cin),
                    *ConvBNAct(cin, cout, kernel_size=1),
                )
            )
            cin = cout
        self.features = nn.Sequential(*blocks)
        self.last_channel = cin
        self.classifier = nn.Sequential(nn.Linear(cin, num_classes))
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(batch, num_classes)`` for images ``(batch, 3, H, W)``."""
        x = nn.functional.adaptive_avg_pool2d(self.features(self.conv1(x)), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v1(width: float = 1.0, num_classes: int = 1000) -> MobileNetV1:
    """MobileNet-V1 with a width multiplier.

    Args:
        width: Width multiplier (1.0, 0.75, 0.5, 0.25 in the paper); channels are
            ``make_divisible(c * width, 8)``.
        num_classes: Classifier outputs.
    """
    return MobileNetV1(width=width, num_classes=num_classes)


def mobilenet_v2(width: float = 1.0, num_classes: int = 1000) -> MobileNetV2:
    """MobileNet-V2 with a width multiplier, as torchvision's ``mobilenet_v2``.

    Args:
        width: Width multiplier (1.4, 1.0, 0.75, 0.5, 0.35 in the paper).
        num_classes: Classifier outputs.
    """
    return MobileNetV2(width=width, num_classes=num_classes)
