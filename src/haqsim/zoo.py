"""Built-in workloads: ImageNet classics and the Bit Fusion paper's benchmarks as layer tables.

Every function returns a :class:`~haqsim.workload.LayerTable` with one row per quantizable layer
(convolutions and fully connected layers; pooling, normalisation, activations and residual
additions are not rows, but the feature-map sizes follow them). Shapes are per image; the batch is
``None`` (use the hardware's deployment batch) unless given.

The ImageNet networks follow the torchvision architectures and name each row after the torchvision
module that holds its weights (``features.1.conv.0.0``, ``layer1.0.downsample.0``, ...), in the
order in which torchvision's ``forward`` runs them, so that a table traced from a PyTorch model can
be compared with these row by row. The Bit Fusion benchmarks follow the network definitions of the
paper's public simulator (``hsharma35/bitfusion``, ``bitfusion/src/benchmarks/benchmarks.py``) and
keep its layer names.

Look a workload up by name with :func:`get`; :func:`names` lists them.

Example:
    >>> from haqsim import zoo
    >>> table = zoo.get("mobilenet_v2", num_classes=100)
    >>> len(table), table[-1].cin, table[-1].cout
    (53, 1280, 100)
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

from haqsim._files import named_file
from haqsim.errors import WorkloadError, unknown_name
from haqsim.workload import Layer, LayerTable, conv, linear

__all__ = [
    "MOBILENET_V1_CFG",
    "MOBILENET_V2_CFG",
    "WORKLOADS",
    "alexnet",
    "bitfusion_alexnet",
    "bitfusion_cifar10",
    "bitfusion_lenet5",
    "bitfusion_lstm",
    "bitfusion_resnet18",
    "bitfusion_rnn",
    "bitfusion_svhn",
    "bitfusion_vgg7",
    "get",
    "make_divisible",
    "mobilenet_v1",
    "mobilenet_v2",
    "names",
    "resnet18",
    "resnet50",
    "vgg16",
]


# ---------------------------------------------------------------------------------- helpers
def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor`` the way torchvision does.

    Never below ``min_value`` (default ``divisor``), and never more than 10 % below ``value``.
    """
    floor = divisor if min_value is None else min_value
    new = max(floor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def _check_width(net: str, width: float) -> None:
    ok = isinstance(width, int | float) and not isinstance(width, bool) and math.isfinite(width)
    if not ok or width <= 0:
        raise WorkloadError(f"{net} 'width' must be a finite number > 0, got {width!r}")


def _check_int(net: str, field: str, value: int, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise WorkloadError(f"{net} {field!r} must be an integer >= {minimum}, got {value!r}")


def _check_batch(net: str, batch: int | None) -> None:
    if batch is not None:
        _check_int(net, "batch", batch, 1)


def _check_image_net(
    net: str, width: float, resolution: int, num_classes: int, batch: int | None
) -> None:
    _check_width(net, width)
    _check_int(net, "resolution", resolution, 32)
    _check_int(net, "num_classes", num_classes, 1)
    _check_batch(net, batch)


def _pool(net: str, resolution: int, size: int, kernel: int, stride: int, pad: int = 0) -> int:
    """Output size of a pooling layer; raise if the feature map has vanished."""
    out = (size + 2 * pad - kernel) // stride + 1
    if out < 1:
        raise WorkloadError(
            f"{net} 'resolution' must keep every feature map non-empty, got {resolution} "
            f"(a {kernel}x{kernel} stride-{stride} pooling receives a {size}x{size} map)"
        )
    return out


def _table(rows: list[Layer], batch: int | None, name: str) -> LayerTable:
    return LayerTable.from_layers(rows, batch=batch, name=name)


# ---------------------------------------------------------------------------------- MobileNets
MOBILENET_V1_CFG: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    *((512, 1),) * 5,
    (1024, 2),
    (1024, 1),
)


def mobilenet_v1(
    width: float = 1.0, resolution: int = 224, num_classes: int = 1000, batch: int | None = None
) -> LayerTable:
    """MobileNet-V1 (Howard et al., 2017): 28 rows, about 569 M MACs and 4.2 M weights at 224.

    A 3x3 stride-2 convolution, 13 depthwise-separable blocks (3x3 depthwise, 1x1 pointwise) and
    the classifier. There is no torchvision MobileNet-V1; row names follow HAQ's
    ``models/mobilenet.py`` (``conv1.0``; ``features.{i}.0`` depthwise and ``features.{i}.3``
    pointwise for block ``i`` in 0..12; ``classifier.0``).

    Args:
        width: Width multiplier; every channel count ``c`` becomes ``make_divisible(c * width, 8)``
            (identical to the paper's ``int(c * width)`` for the usual 0.25, 0.5, 0.75, 1.0).
        resolution: Input image side in pixels (square).
        num_classes: Classifier outputs.
        batch: Images per inference, or ``None`` for the hardware's deployment batch.

    Returns:
        The layer table, named ``"mobilenet_v1"``.

    Raises:
        WorkloadError: A parameter is out of range.
    """
    net = "mobilenet_v1"
    _check_image_net(net, width, resolution, num_classes, batch)
    cin = make_divisible(32 * width)
    rows = [conv("conv1.0", 3, cin, 3, resolution, stride=2, pad=1, reads_image=True)]
    hw = rows[-1].out_h
    for i, (channels, stride) in enumerate(MOBILENET_V1_CFG):
        cout = make_divisible(channels * width)
        dw = conv(f"features.{i}.0", cin, cin, 3, hw, stride=stride, pad=1, groups=cin)
        hw = dw.out_h
        rows += [dw, conv(f"features.{i}.3", cin, cout, 1, hw, pad=0)]
        cin = cout
    rows.append(linear("classifier.0", cin, num_classes))
    return _table(rows, batch, net)


# (expand ratio t, output channels c, repeats n, first stride s), as in the MobileNet-V2 paper.
MOBILENET_V2_CFG: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def mobilenet_v2(
    width: float = 1.0, resolution: int = 224, num_classes: int = 1000, batch: int | None = None
) -> LayerTable:
    """MobileNet-V2 (Sandler et al., 2018) as torchvision builds it: 53 rows in HAQ's order.

    Rows: the first 3x3 stride-2 convolution (``features.0.0``); the first inverted-residual
    block, which has no expansion (depthwise ``features.1.conv.0.0``, pointwise-linear
    ``features.1.conv.1``); the other 16 blocks (pointwise expand ``features.{i}.conv.0.0``,
    depthwise ``features.{i}.conv.1.0``, pointwise-linear ``features.{i}.conv.2``); the final 1x1
    convolution (``features.18.0``); the classifier (``classifier.1``). About 300 M MACs and
    3.4 M weights (biases and batch-norm parameters excluded) at width 1.0 and 224 x 224. HAQ's
    released latency table is this network with ``num_classes=100``.

    Args:
        width: Width multiplier; channel counts are ``make_divisible(c * width, 8)`` as in
            torchvision, and the last channel count is 1280, or ``make_divisible(1280 * width)``
            when ``width > 1``.
        resolution: Input image side in pixels (square).
        num_classes: Classifier outputs.
        batch: Images per inference, or ``None`` for the hardware's deployment batch.

    Returns:
        The layer table, named ``"mobilenet_v2"``.

    Raises:
        WorkloadError: A parameter is out of range.
    """
    net = "mobilenet_v2"
    _check_image_net(net, width, resolution, num_classes, batch)
    cin = make_divisible(32 * width)
    last = make_divisible(1280 * max(1.0, width))
    rows = [conv("features.0.0", 3, cin, 3, resolution, stride=2, pad=1, reads_image=True)]
    hw = rows[-1].out_h
    block = 1
    for t, c, n, s in MOBILENET_V2_CFG:
        cout = make_divisible(c * width)
        for i in range(n):
            prefix = f"features.{block}.conv"
            hidden = round(cin * t)
            j = 0
            if t != 1:
                rows.append(conv(f"{prefix}.0.0", cin, hidden, 1, hw, pad=0))
                j = 1
            dw = conv(
                f"{prefix}.{j}.0",
                hidden,
                hidden,
                3,
                hw,
                stride=s if i == 0 else 1,
                pad=1,
                groups=hidden,
            )
            hw = dw.out_h
            rows += [dw, conv(f"{prefix}.{j + 1}", hidden, cout, 1, hw, pad=0)]
            cin = cout
            block += 1
    rows.append(conv(f"features.{block}.0", cin, last, 1, hw, pad=0))
    rows.append(linear("classifier.1", last, num_classes))
    return _table(rows, batch, net)


# ---------------------------------------------------------------------------------- ResNets
def _resnet(
    net: str,
    blocks: tuple[int, int, int, int],
    bottleneck: bool,
    num_classes: int,
    resolution: int,
    batch: int | None,
    width: float,
) -> LayerTable:
    _check_image_net(net, width, resolution, num_classes, batch)
    stem = make_divisible(64 * width)
    rows = [conv("conv1", 3, stem, 7, resolution, stride=2, pad=3, reads_image=True)]
    hw = _pool(net, resolution, rows[-1].out_h, 3, 2, 1)  # maxpool 3x3, stride 2, pad 1
    inplanes = stem
    expansion = 4 if bottleneck else 1
    for stage, (base, count) in enumerate(zip((64, 128, 256, 512), blocks, strict=True), 1):
        planes = make_divisible(base * width)
        out = planes * expansion
        for b in range(count):
            stride = 2 if stage > 1 and b == 0 else 1
            p = f"layer{stage}.{b}"
            if bottleneck:  # ResNet v1.5: the stride sits on the 3x3 convolution
                c1 = conv(f"{p}.conv1", inplanes, planes, 1, hw, pad=0)
                c2 = conv(f"{p}.conv2", planes, planes, 3, hw, stride=stride, pad=1)
                main = [c1, c2, conv(f"{p}.conv3", planes, out, 1, c2.out_h, pad=0)]
            else:
                c1 = conv(f"{p}.conv1", inplanes, planes, 3, hw, stride=stride, pad=1)
                main = [c1, conv(f"{p}.conv2", planes, planes, 3, c1.out_h, pad=1)]
            rows += main
            if stride != 1 or inplanes != out:  # torchvision runs downsample after the main path
                rows.append(conv(f"{p}.downsample.0", inplanes, out, 1, hw, stride=stride, pad=0))
            hw = main[-1].out_h
            inplanes = out
    rows.append(linear("fc", inplanes, num_classes))
    return _table(rows, batch, net)


def resnet18(
    num_classes: int = 1000, resolution: int = 224, batch: int | None = None, width: float = 1.0
) -> LayerTable:
    """ResNet-18 as torchvision builds it: 21 rows, about 1.82 G MACs and 11.7 M weights at 224.

    ``conv1`` (7x7, stride 2, pad 3) and a 3x3 stride-2 max pool, four stages of two basic blocks
    (rows ``layer{s}.{b}.conv1``, ``layer{s}.{b}.conv2`` and, where the shape changes,
    ``layer{s}.{b}.downsample.0`` after them, the order of torchvision's ``forward``), then ``fc``.

    Args:
        num_classes: Classifier outputs.
        resolution: Input image side in pixels (square).
        batch: Images per inference, or ``None`` for the hardware's deployment batch.
        width: Multiplier of every channel count (``make_divisible(c * width, 8)``), WRPN style.
            This is not torchvision's ``wide_resnet``, which widens only bottleneck interiors.

    Returns:
        The layer table, named ``"resnet18"``.

    Raises:
        WorkloadError: A parameter is out of range.
    """
    return _resnet("resnet18", (2, 2, 2, 2), False, num_classes, resolution, batch, width)


def resnet50(
    num_classes: int = 1000, resolution: int = 224, batch: int | None = None, width: float = 1.0
) -> LayerTable:
    """ResNet-50 (v1.5) as torchvision builds it: 54 rows, about 4.09 G MACs and 25.5 M weights.

    ``conv1`` (7x7, stride 2, pad 3) and a 3x3 stride-2 max pool, four stages of 3, 4, 6 and 3
    bottleneck blocks (rows ``conv1`` 1x1, ``conv2`` 3x3 carrying the stride, ``conv3`` 1x1, then
    ``downsample.0`` in the first block of each stage, the order of torchvision's ``forward``),
    then ``fc``.

    Args:
        num_classes: Classifier outputs.
        resolution: Input image side in pixels (square).
        batch: Images per inference, or ``None`` for the hardware's deployment batch.
        width: Multiplier of every channel count (``make_divisible(c * width, 8)``), WRPN style.
            This is not torchvision's ``wide_resnet50_2``, which widens only bottleneck interiors.

    Returns:
        The layer table, named ``"resnet50"``.

    Raises:
        WorkloadError: A parameter is out of range.
    """
    return _resnet("resnet50", (3, 4, 6, 3), True, num_classes, resolution, batch, width)


# ---------------------------------------------------------------------------------- VGG, AlexNet
_VGG16_CFG: tuple[int | str, ...] = (
    *(64, 64, "M", 128, 128, "M", 256, 256, 256, "M"),
    *(512, 512, 512, "M", 512, 512, 512, "M"),
)


def vgg16(num_classes: int = 1000, resolution: int = 224, batch: int | None = None) -> LayerTable:
    """VGG-16 (configuration D) as torchvision builds it: 16 rows, 15.5 G MACs, 138 M weights.

    Thirteen 3x3 convolutions (``features.{i}``) with five 2x2 max pools, an adaptive average pool
    to 7 x 7 (so the first classifier layer always takes 25,088 features, whatever the
    resolution), and three fully connected layers (``classifier.0``, ``.3``, ``.6``).

    Args:
        num_classes: Classifier outputs.
        resolution: Input image side in pixels (square).
        batch: Images per inference, or ``None`` for the hardware's deployment batch.

    Returns:
        The layer table, named ``"vgg16"``.

    Raises:
        WorkloadError: A parameter is out of range.
    """
    net = "vgg16"
    _check_image_net(net, 1.0, resolution, num_classes, batch)
    rows: list[Layer] = []
    cin, hw, index = 3, resolution, 0
    for v in _VGG16_CFG:
        if v == "M":
            hw = _pool(net, resolution, hw, 2, 2)
            index += 1
        else:
            assert isinstance(v, int)
            rows.append(conv(f"features.{index}", cin, v, 3, hw, pad=1, reads_image=index == 0))
            cin = v
            index += 2  # Conv2d, ReLU
    rows += [
        linear("classifier.0", 512 * 7 * 7, 4096),
        linear("classifier.3", 4096, 4096),
        linear("classifier.6", 4096, num_classes),
    ]
    return _table(rows, batch, net)


def alexnet(num_classes: int = 1000, resolution: int = 224, batch: int | None = None) -> LayerTable:
    """AlexNet as torchvision builds it (single tower): 8 rows, 0.71 G MACs, 61 M weights.

    Five convolutions (``features.0`` 11x11 stride 4 pad 2 with 64 filters, ``features.3`` 5x5
    with 192, ``features.6``, ``.8``, ``.10`` 3x3 with 384, 256, 256) with three 3x3 stride-2 max
    pools, an adaptive average pool to 6 x 6, and three fully connected layers (``classifier.1``,
    ``.4``, ``.6``). The smallest resolution that keeps every feature map non-empty is 63.

    Args:
        num_classes: Classifier outputs.
        resolution: Input image side in pixels (square).
        batch: Images per inference, or ``None`` for the hardware's deployment batch.

    Returns:
        The layer table, named ``"alexnet"``.

    Raises:
        WorkloadError: A parameter is out of range, or the resolution is too small.
    """
    net = "alexnet"
    _check_image_net(net, 1.0, resolution, num_classes, batch)
    c1 = conv("features.0", 3, 64, 11, resolution, stride=4, pad=2, reads_image=True)
    hw = _pool(net, resolution, c1.out_h, 3, 2)
    c2 = conv("features.3", 64, 192, 5, hw, pad=2)
    hw = _pool(net, resolution, c2.out_h, 3, 2)
    rows = [
        c1,
        c2,
        conv("features.6", 192, 384, 3, hw, pad=1),
        conv("features.8", 384, 256, 3, hw, pad=1),
        conv("features.10", 256, 256, 3, hw, pad=1),
    ]
    _pool(net, resolution, hw, 3, 2)
    rows += [
        linear("classifier.1", 256 * 6 * 6, 4096),
        linear("classifier.4", 4096, 4096),
        linear("classifier.6", 4096, num_classes),
    ]
    return _table(rows, batch, net)


# ---------------------------------------------------------------------------------- Bit Fusion
# The Bit Fusion simulator describes its benchmarks as TensorFlow-style graphs: 'SAME' padding
# (pad = kernel // 2 for the odd kernels used here, which gives ceil(in / stride) outputs),
# 2x2 stride-2 'VALID' max pools, and a flatten before the first fully connected layer. It runs
# every convolution whose input is the graph's input in im2col mode: those rows have
# reads_image=True. Its graphs are built with batch 16.


def _bf_conv(
    name: str, cin: int, cout: int, kernel: int, hw: int, stride: int = 1, *, first: bool = False
) -> Layer:
    return conv(name, cin, cout, kernel, hw, stride=stride, pad=kernel // 2, reads_image=first)


def _check_wrpn(net: str, wrpn: bool) -> None:
    if not isinstance(wrpn, bool):
        raise WorkloadError(f"{net} 'wrpn' must be a bool, got {wrpn!r}")


def bitfusion_alexnet(wrpn: bool = True, batch: int | None = None) -> LayerTable:
    """AlexNet as the Bit Fusion paper ran it: two towers, 13 rows (10 conv + 3 fully connected).

    Shapes from ``get_alex_net_wrpn`` / ``get_alex_net`` in the Bit Fusion simulator
    (``hsharma35/bitfusion``, ``bitfusion/src/benchmarks/benchmarks.py``). The paper's numbers
    (the simulator's sweep, ``get_bench_nn(..., WRPN=True)``) use the WRPN variant (Mishra et al.,
    2x wide), the default here. Input 227 x 227 x 3. Per tower (``_a``, ``_b``), WRPN widths first,
    the original AlexNet's in brackets:

    - ``conv1``: 11x11 stride 4, no padding, 3 -> 96 [48], 55 x 55, reads the image; 2x2 pool.
    - ``conv2``: 5x5, 96 -> 256 [48 -> 128], 27 x 27 (the paper's reference layer
      K = 5, O = 27, S = 1, IC = 96, OC = 256); 2x2 pool; the towers are concatenated.
    - ``conv3``: 3x3, 512 -> 384 [256 -> 192], 13 x 13 (both towers read the concatenation).
    - ``conv4``: 3x3, 384 -> 384 [192 -> 192], 13 x 13.
    - ``conv5``: 3x3, 384 -> 256 [192 -> 128], 13 x 13; 2x2 pool to 6 x 6; concatenated.
    - ``fc1``: 18432 -> 8192 [9216 -> 4096]; ``fc2``: 8192 -> 8192 [4096 -> 4096];
      ``fc3``: 8192 [4096] -> 1000.

    Rows are in the simulator's order (``conv1_a``, ``conv1_b``, ``conv2_a``, ...). The paper ran
    conv1 at 8-bit weights, 8-bit input; fc3 at 8-bit weights; the rest at 4 bits.

    Args:
        wrpn: The 2x-wide WRPN network (True, as in the paper) or the original widths.
        batch: Images per inference (the simulator uses 16), or ``None``.

    Returns:
        The layer table, named ``"bitfusion_alexnet"``.

    Raises:
        WorkloadError: A parameter is out of range.
    """
    net = "bitfusion_alexnet"
    _check_wrpn(net, wrpn)
    _check_batch(net, batch)
    m = 2 if wrpn else 1
    rows: list[Layer] = []
    for tower in "ab":
        rows.append(conv(f"conv1_{tower}", 3, 48 * m, 11, 227, stride=4, pad=0, reads_image=True))
    for tower in "ab":  # input: pool1 of the own tower, (55 - 2) // 2 + 1 = 27
        rows.append(_bf_conv(f"conv2_{tower}", 48 * m, 128 * m, 5, 27))
    for tower in "ab":  # input: concat of both pool2 outputs, 13 x 13
        rows.append(_bf_conv(f"conv3_{tower}", 256 * m, 192 * m, 3, 13))
    for tower in "ab":
        rows.append(_bf_conv(f"conv4_{tower}", 192 * m, 192 * m, 3, 13))
    for tower in "ab":
        rows.append(_bf_conv(f"conv5_{tower}", 192 * m, 128 * m, 3, 13))
    rows += [  # concat of both pool5 outputs: 6 x 6 x (2 * 128 * m)
        linear("fc1", 6 * 6 * 256 * m, 4096 * m),
        linear("fc2", 4096 * m, 4096 * m),
        linear("fc3", 4096 * m, 1000),
    ]
    return _table(rows, batch, net)


def _bf_qnn(net: str, widths: tuple[int, int, int], batch: int | None) -> LayerTable:
    """The QNN (Hubara et al.) SVHN / CIFAR-10 network: 6 conv, 3 fully connected, 32 x 32 x 3."""
    _check_batch(net, batch)
    w1, w2, w3 = widths
    rows = [
        _bf_conv("conv0", 3, w1, 3, 32, first=True),
        _bf_conv("conv1", w1, w1, 3, 32),
        _bf_conv("conv2", w1, w2, 3, 16),
        _bf_conv("conv3", w2, w2, 3, 16),
        _bf_conv("conv4", w2, w3, 3, 8),
        _bf_conv("conv5", w3, w3, 3, 8),
        linear("fc6", 4 * 4 * w3, 1024),
        linear("fc7", 1024, 1024),
        linear("fc8", 1024, 10),
    ]
    return _table(rows, batch, net)


def bitfusion_svhn(batch: int | None = None) -> LayerTable:
    """The Bit Fusion paper's SVHN benchmark (QNN, binary weights and activations): 9 rows.

    Shapes from ``get_svhn_qnn`` in the Bit Fusion simulator (``hsharma35/bitfusion``,
    ``bitfusion/src/benchmarks/benchmarks.py``). Input 32 x 32 x 3; 3x3 'same' convolutions
    ``conv0`` 3 -> 64 (reads the image), ``conv1`` 64 -> 64 (the paper's reference layer K = 3,
    O = 32, IC = 64, OC = 64), 2x2 pool, ``conv2`` 64 -> 128, ``conv3`` 128 -> 128 at 16 x 16,
    pool, ``conv4`` 128 -> 256, ``conv5`` 256 -> 256 at 8 x 8, pool, then ``fc6`` 4096 -> 1024,
    ``fc7`` 1024 -> 1024, ``fc8`` 1024 -> 10. The paper ran every layer at 1-bit weights and
    activations (8-bit image input).

    Args:
        batch: Images per inference (the simulator uses 16), or ``None``.

    Returns:
        The layer table, named ``"bitfusion_svhn"``.
    """
    return _bf_qnn("bitfusion_svhn", (64, 128, 256), batch)


def bitfusion_cifar10(batch: int | None = None) -> LayerTable:
    """The Bit Fusion paper's CIFAR-10 benchmark (QNN, 2-bit): 9 rows.

    Shapes from ``get_cifar10_qnn`` in the Bit Fusion simulator (``hsharma35/bitfusion``,
    ``bitfusion/src/benchmarks/benchmarks.py``): the SVHN network at twice the width. Input
    32 x 32 x 3; 3x3 'same' convolutions ``conv0`` 3 -> 128 (reads the image), ``conv1``
    128 -> 128 at 32 x 32, pool, ``conv2`` 128 -> 256, ``conv3`` 256 -> 256 at 16 x 16, pool,
    ``conv4`` 256 -> 512, ``conv5`` 512 -> 512 at 8 x 8, pool, then ``fc6`` 8192 -> 1024, ``fc7``
    1024 -> 1024, ``fc8`` 1024 -> 10. The paper ran 2-bit weights and activations (conv0: 8-bit
    weights and image).

    Args:
        batch: Images per inference (the simulator uses 16), or ``None``.

    Returns:
        The layer table, named ``"bitfusion_cifar10"``.
    """
    return _bf_qnn("bitfusion_cifar10", (128, 256, 512), batch)


def bitfusion_lenet5(batch: int | None = None) -> LayerTable:
    """The Bit Fusion paper's LeNet-5 benchmark (TWN, ternary/2-bit): 4 rows.

    Shapes from ``get_lenet_5_twn`` in the Bit Fusion simulator (``hsharma35/bitfusion``,
    ``bitfusion/src/benchmarks/benchmarks.py``). Input 32 x 32 x 1 (MNIST); ``conv0`` 5x5 'same'
    1 -> 32 at 32 x 32 (reads the image), 2x2 pool, ``conv1`` 5x5 'same' 32 -> 64 at 16 x 16,
    pool, ``fc1`` 4096 -> 512, ``fc2`` 512 -> 10. These are the simulator's shapes (padded
    convolutions, wider than LeCun's LeNet-5); every layer ran at 2 bits.

    Args:
        batch: Images per inference (the simulator uses 16), or ``None``.

    Returns:
        The layer table, named ``"bitfusion_lenet5"``.
    """
    net = "bitfusion_lenet5"
    _check_batch(net, batch)
    rows = [
        _bf_conv("conv0", 1, 32, 5, 32, first=True),
        _bf_conv("conv1", 32, 64, 5, 16),
        linear("fc1", 8 * 8 * 64, 512),
        linear("fc2", 512, 10),
    ]
    return _table(rows, batch, net)


def bitfusion_vgg7(batch: int | None = None) -> LayerTable:
    """The Bit Fusion paper's VGG-7 benchmark on CIFAR-10 (TWN, 2-bit): 7 rows.

    Shapes exactly as ``get_vgg_7_twn`` in the Bit Fusion simulator (``hsharma35/bitfusion``,
    ``bitfusion/src/benchmarks/benchmarks.py``) defines them, which is not the sequential VGG-7
    of the TWN paper: two towers ``_a`` and ``_b``, each ``conv1`` 3x3 3 -> 128 at 32 x 32
    reading the image (both rows have ``reads_image=True``), 2x2 pool, ``conv2`` 128 -> 256 at
    16 x 16, pool, ``conv3`` 256 -> 512 at 8 x 8, pool; the towers are added and flattened into
    ``fc1`` 8192 -> 1024 (the simulator has no 10-way classifier). Rows are in the simulator's
    order (``conv1_a``, ``conv1_b``, ``conv2_a``, ...).

    Args:
        batch: Images per inference (the simulator uses 16), or ``None``.

    Returns:
        The layer table, named ``"bitfusion_vgg7"``.
    """
    net = "bitfusion_vgg7"
    _check_batch(net, batch)
    rows = [_bf_conv(f"conv1_{t}", 3, 128, 3, 32, first=True) for t in "ab"]
    rows += [_bf_conv(f"conv2_{t}", 128, 256, 3, 16) for t in "ab"]
    rows += [_bf_conv(f"conv3_{t}", 256, 512, 3, 8) for t in "ab"]
    rows.append(linear("fc1", 4 * 4 * 512, 1024))
    return _table(rows, batch, net)


def bitfusion_resnet18(wrpn: bool = True, batch: int | None = None) -> LayerTable:
    """ResNet-18 as the Bit Fusion simulator defines it: 17 convolution rows, no classifier.

    Shapes from ``get_resnet_18_wrpn`` / ``get_resnet_18_twn`` in the Bit Fusion simulator
    (``hsharma35/bitfusion``, ``bitfusion/src/benchmarks/benchmarks.py``); the paper's sweep uses
    the WRPN (2x wide) variant, the default here. Input 224 x 224 x 3; ``conv1_a`` 7x7 stride 2
    'same', 3 -> 128 [64] at 112 x 112 (reads the image), 2x2 pool to 56; then four modules
    ``module{m}`` (m = 2..5) of two units, each a 1x1 convolution ``conv{m}_{i}_a`` (stride 2 in
    the first unit of modules 3 to 5) and a 3x3 ``conv{m}_{i}_b``, at widths 128, 256, 512, 1024
    [64, 128, 256, 512] and sizes 56, 28, 14, 7. This is the simulator's simplification: its
    blocks pair a 1x1 and a 3x3 convolution, there are no shortcut convolutions and the
    fully connected layer is left out. The paper ran conv1 at 8-bit weights and image, the rest
    at 4 bits.

    Args:
        wrpn: The 2x-wide WRPN network (True, as in the paper) or the TWN widths.
        batch: Images per inference (the simulator uses 16), or ``None``.

    Returns:
        The layer table, named ``"bitfusion_resnet18"``.

    Raises:
        WorkloadError: A parameter is out of range.
    """
    net = "bitfusion_resnet18"
    _check_wrpn(net, wrpn)
    _check_batch(net, batch)
    m = 2 if wrpn else 1
    rows = [_bf_conv("conv1_a", 3, 64 * m, 7, 224, 2, first=True)]
    cin, hw = 64 * m, 56
    for module, base in zip((2, 3, 4, 5), (64, 128, 256, 512), strict=True):
        cout = base * m
        for i in (1, 2):
            stride = 2 if module > 2 and i == 1 else 1
            a = _bf_conv(f"module{module}/conv{module}_{i}_a", cin, cout, 1, hw, stride)
            hw = a.out_h
            rows += [a, _bf_conv(f"module{module}/conv{module}_{i}_b", cout, cout, 3, hw)]
            cin = cout
    return _table(rows, batch, net)


def bitfusion_rnn(size: int = 2048, batch: int | None = None) -> LayerTable:
    """The Bit Fusion paper's RNN benchmark (PTB): one fully connected row, 4096 -> 4096.

    From ``get_RNN('RNN', 2048)`` in the Bit Fusion simulator (``hsharma35/bitfusion``,
    ``bitfusion/src/benchmarks/benchmarks.py``): one time step is modelled as a single
    matrix product ``matmul`` from ``2 * size`` inputs (input and hidden state concatenated) to
    ``2 * size`` outputs, run at 4-bit weights and activations. With the default ``size`` this is
    the paper's reference layer "RNN 4096 -> 4096". No row reads an image.

    Args:
        size: The simulator's size parameter (2048 in the paper).
        batch: Sequences per inference (the simulator uses 16), or ``None``.

    Returns:
        The layer table, named ``"bitfusion_rnn"``.

    Raises:
        WorkloadError: A parameter is out of range.
    """
    net = "bitfusion_rnn"
    _check_int(net, "size", size, 1)
    _check_batch(net, batch)
    return _table([linear("matmul", 2 * size, 2 * size)], batch, net)


def bitfusion_lstm(size: int = 900, batch: int | None = None) -> LayerTable:
    """The Bit Fusion paper's LSTM benchmark (PTB): one fully connected row, 3600 -> 3600.

    From ``get_LSTM('LSTM', 900)`` in the Bit Fusion simulator (``hsharma35/bitfusion``,
    ``bitfusion/src/benchmarks/benchmarks.py``): the four gates of one time step are modelled as a
    single matrix product ``matmul`` from ``4 * size`` inputs to ``4 * size`` outputs (a real LSTM
    cell with hidden size 900 would be 1800 -> 3600; we keep the simulator's shape), run at 4-bit
    weights and activations. No row reads an image.

    Args:
        size: The simulator's size parameter (900 in the paper).
        batch: Sequences per inference (the simulator uses 16), or ``None``.

    Returns:
        The layer table, named ``"bitfusion_lstm"``.

    Raises:
        WorkloadError: A parameter is out of range.
    """
    net = "bitfusion_lstm"
    _check_int(net, "size", size, 1)
    _check_batch(net, batch)
    return _table([linear("matmul", 4 * size, 4 * size)], batch, net)


# ---------------------------------------------------------------------------------- registry
#: Every built-in workload by name; each value takes keyword arguments and returns a table.
WORKLOADS: dict[str, Callable[..., LayerTable]] = {
    "mobilenet_v1": mobilenet_v1,
    "mobilenet_v2": mobilenet_v2,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "vgg16": vgg16,
    "alexnet": alexnet,
    "bitfusion_alexnet": bitfusion_alexnet,
    "bitfusion_svhn": bitfusion_svhn,
    "bitfusion_cifar10": bitfusion_cifar10,
    "bitfusion_lenet5": bitfusion_lenet5,
    "bitfusion_vgg7": bitfusion_vgg7,
    "bitfusion_resnet18": bitfusion_resnet18,
    "bitfusion_rnn": bitfusion_rnn,
    "bitfusion_lstm": bitfusion_lstm,
}


def names() -> list[str]:
    """The names of the built-in workloads, sorted."""
    return sorted(WORKLOADS)


def get(name: str, **kwargs: object) -> LayerTable:
    """Build a built-in workload by name, or load a workload file.

    Args:
        name: One of :func:`names`, or a ``.json`` (from :meth:`LayerTable.to_json`) or ``.csv``
            workload file; ``name`` is taken for a file when it has one of those suffixes or a
            path separator.
        **kwargs: Passed to the workload's function (``width``, ``resolution``, ``num_classes``,
            ``batch``, ... as that function accepts); a file takes none.

    Returns:
        The layer table.

    Raises:
        UnknownNameError: ``name`` is neither a built-in workload nor a path, or that workload has
            no option by one of the ``kwargs`` names; the message lists the valid ones.
        WorkloadError: A parameter is out of range; or ``name`` looks like a path but is not an
            existing ``.json``/``.csv`` file (the message lists the built-in workloads too, in
            case one was meant), the file is bad, or options were given with it.
    """
    try:
        factory = WORKLOADS[name]
    except (KeyError, TypeError):
        return _load(name, kwargs)
    options = list(inspect.signature(factory).parameters)
    unknown = [key for key in kwargs if key not in options]
    if unknown:
        raise unknown_name("option", unknown[0], options, owner=f"workload {name!r}")
    return factory(**kwargs)


def _load(name: object, kwargs: dict[str, object]) -> LayerTable:
    """The workload file ``name`` names (see :func:`get`)."""
    path = None
    if isinstance(name, str):
        path = named_file(name, (".json", ".csv"), WorkloadError, "workload", "workload", names())
    if path is None:
        raise unknown_name("workload", name, names())
    if kwargs:
        raise WorkloadError(f"workload file {name!r} takes no options, got {', '.join(kwargs)}")
    if path.suffix.lower() == ".csv":
        return LayerTable.from_csv(path)
    return LayerTable.from_json(path)
