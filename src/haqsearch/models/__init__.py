"""Model definitions (no downloaded weights) that trace to haqsim's built-in workloads.

The classes and factories follow torchvision's module names, so torchvision state dicts load into
MobileNet-V2 and the ResNets. Every model ends in global average pooling and runs at any input size
of at least 32 x 32; at 224 x 224, :func:`haqsearch.trace` gives the matching :mod:`haqsim.zoo`
table.
"""

from haqsearch.models.mobilenet import MobileNetV1, MobileNetV2, mobilenet_v1, mobilenet_v2
from haqsearch.models.resnet import ResNet, resnet18, resnet50

__all__ = [
    "MobileNetV1",
    "MobileNetV2",
    "ResNet",
    "mobilenet_v1",
    "mobilenet_v2",
    "resnet18",
    "resnet50",
]
