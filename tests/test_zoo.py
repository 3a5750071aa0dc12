"""Tests of the built-in workloads against independently published or hand-derived figures."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from haqsim import zoo
from haqsim.errors import UnknownNameError, WorkloadError
from haqsim.workload import KERNEL_COLUMNS, LayerKind, LayerTable

# ------------------------------------------------------------------------------- published totals
# Weights only (biases and batch-norm parameters excluded), MACs per image at 224 x 224.
# Exact weight counts derive from the published totals:
#   MobileNet-V1: Keras MobileNet(alpha=1) trainable 4,231,976 - 21,888 BN - 1,000 fc bias.
#   MobileNet-V2: torchvision 3,504,872 - 34,112 BN - 1,000 classifier bias.
#   ResNet-18: torchvision 11,689,512 - 9,600 BN - 1,000 fc bias.
#   ResNet-50: torchvision 25,557,032 - 53,120 BN - 1,000 fc bias.
#   VGG-16: torchvision 138,357,544 - 13,416 biases.  AlexNet: torchvision 61,100,840 - 10,344.
# MACs: MobileNet-V1 569 M (paper), MobileNet-V2 300 M (paper), ResNet-18 1.81 G and ResNet-50
# 4.09 G (torchvision model table), VGG-16 15.47 G, AlexNet 0.714 G (hand sum of its 8 layers).
PUBLISHED = {
    # name: (rows, macs, macs relative tolerance, weights)
    "mobilenet_v1": (28, 569e6, 0.005, 4_209_088),
    "mobilenet_v2": (53, 300e6, 0.01, 3_469_760),
    "resnet18": (21, 1.814e9, 0.005, 11_678_912),
    "resnet50": (54, 4.09e9, 0.005, 25_502_912),
    "vgg16": (16, 15.47e9, 0.002, 138_344_128),
    "alexnet": (8, 714_188_480, 0.0, 61_090_496),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_imagenet_totals_match_published_figures(name):
    rows, macs, rel, params = PUBLISHED[name]
    table = zoo.get(name)
    assert len(table) == rows
    assert table.total_macs == pytest.approx(macs, rel=rel)
    assert table.total_params == params
    assert table.batch is None
    assert table.name == name


# ------------------------------------------------------------------------------- Bit Fusion shapes
# (name, K, S, O, IC, OC), transcribed from hsharma35/bitfusion benchmarks.py (WRPN variants, as
# the paper's sweep uses them); a fully connected layer is K = S = O = 1.
BITFUSION = {
    "bitfusion_alexnet": [
        ("conv1_a", 11, 4, 55, 3, 96),
        ("conv1_b", 11, 4, 55, 3, 96),
        ("conv2_a", 5, 1, 27, 96, 256),
        ("conv2_b", 5, 1, 27, 96, 256),
        ("conv3_a", 3, 1, 13, 512, 384),
        ("conv3_b", 3, 1, 13, 512, 384),
        ("conv4_a", 3, 1, 13, 384, 384),
        ("conv4_b", 3, 1, 13, 384, 384),
        ("conv5_a", 3, 1, 13, 384, 256),
        ("conv5_b", 3, 1, 13, 384, 256),
        ("fc1", 1, 1, 1, 18432, 8192),
        ("fc2", 1, 1, 1, 8192, 8192),
        ("fc3", 1, 1, 1, 8192, 1000),
    ],
    "bitfusion_svhn": [
        ("conv0", 3, 1, 32, 3, 64),
        ("conv1", 3, 1, 32, 64, 64),
        ("conv2", 3, 1, 16, 64, 128),
        ("conv3", 3, 1, 16, 128, 128),
        ("conv4", 3, 1, 8, 128, 256),
        ("conv5", 3, 1, 8, 256, 256),
        ("fc6", 1, 1, 1, 4096, 1024),
        ("fc7", 1, 1, 1, 1024, 1024),
        ("fc8", 1, 1, 1, 1024, 10),
    ],
    "bitfusion_cifar10": [
        ("conv0", 3, 1, 32, 3, 128),
        ("conv1", 3, 1, 32, 128, 128),
        ("conv2", 3, 1, 16, 128, 256),
        ("conv3", 3, 1, 16, 256, 256),
        ("conv4", 3, 1, 8, 256, 512),
        ("conv5", 3, 1, 8, 512, 512),
        ("fc6", 1, 1, 1, 8192, 1024),
        ("fc7", 1, 1, 1, 1024, 1024),
        ("fc8", 1, 1, 1, 1024, 10),
    ],
    "bitfusion_lenet5": [
        ("conv0", 5, 1, 32, 1, 32),
        ("conv1", 5, 1, 16, 32, 64),
        ("fc1", 1, 1, 1, 4096, 512),
        ("fc2", 1, 1, 1, 512, 10),
    ],
    "bitfusion_vgg7": [
        ("conv1_a", 3, 1, 32, 3, 128),
        ("conv1_b", 3, 1, 32, 3, 128),
        ("conv2_a", 3, 1, 16, 128, 256),
        ("conv2_b", 3, 1, 16, 128, 256),
        ("conv3_a", 3, 1, 8, 256, 512),
        ("conv3_b", 3, 1, 8, 256, 512),
        ("fc1", 1, 1, 1, 8192, 1024),
    ],
    "bitfusion_resnet18": [
        ("conv1_a", 7, 2, 112, 3, 128),
        ("module2/conv2_1_a", 1, 1, 56, 128, 128),
        ("module2/conv2_1_b", 3, 1, 56, 128, 128),
        ("module2/conv2_2_a", 1, 1, 56, 128, 128),
        ("module2/conv2_2_b", 3, 1, 56, 128, 128),
        ("module3/conv3_1_a", 1, 2, 28, 128, 256),
        ("module3/conv3_1_b", 3, 1, 28, 256, 256),
        ("module3/conv3_2_a", 1, 1, 28, 256, 256),
        ("module3/conv3_2_b", 3, 1, 28, 256, 256),
        ("module4/conv4_1_a", 1, 2, 14, 256, 512),
        ("module4/conv4_1_b", 3, 1, 14, 512, 512),
        ("module4/conv4_2_a", 1, 1, 14, 512, 512),
        ("module4/conv4_2_b", 3, 1, 14, 512, 512),
        ("module5/conv5_1_a", 1, 2, 7, 512, 1024),
        ("module5/conv5_1_b", 3, 1, 7, 1024, 1024),
        ("module5/conv5_2_a", 1, 1, 7, 1024, 1024),
        ("module5/conv5_2_b", 3, 1, 7, 1024, 1024),
    ],
    "bitfusion_rnn": [("matmul", 1, 1, 1, 4096, 4096)],
    "bitfusion_lstm": [("matmul", 1, 1, 1, 3600, 3600)],
}
# Rows run in im2col mode by the Bit Fusion simulator: convolutions fed by the graph's input.
BITFUSION_IMAGE_READERS = {
    "bitfusion_alexnet": {"conv1_a", "conv1_b"},
    "bitfusion_svhn": {"conv0"},
    "bitfusion_cifar10": {"conv0"},
    "bitfusion_lenet5": {"conv0"},
    "bitfusion_vgg7": {"conv1_a", "conv1_b"},
    "bitfusion_resnet18": {"conv1_a"},
    "bitfusion_rnn": set(),
    "bitfusion_lstm": set(),
}


def _shape(layer):
    return (layer.name, layer.kh, layer.stride, layer.out_h, layer.cin, layer.cout)


@pytest.mark.parametrize("name", sorted(BITFUSION))
def test_bitfusion_shapes_follow_the_reference_simulator(name):
    table = zoo.get(name)
    expected = BITFUSION[name]
    assert [_shape(layer) for layer in table] == expected
    assert all(layer.kh == layer.kw and layer.out_h == layer.out_w for layer in table)
    assert all(layer.groups == 1 for layer in table)
    for layer in table:
        fc = layer.kh == 1 and layer.out_h == 1 and layer.in_h == 1
        assert (layer.kind == LayerKind.LINEAR) == (fc and layer.name.startswith(("fc", "mat")))
    macs = sum(o * o * k * k * ic * oc for _, k, _, o, ic, oc in expected)
    params = sum(k * k * ic * oc for _, k, _, _, ic, oc in expected)
    assert table.total_macs == macs
    assert table.total_params == params
    readers = {n for n, r in zip(table.names, table.reads_image, strict=True) if r}
    assert readers == BITFUSION_IMAGE_READERS[name]


def test_bitfusion_svhn_total_macs_hand_sum():
    # 1,769,472 + 37,748,736 + 18,874,368 + 37,748,736 + 18,874,368 + 37,748,736 conv,
    # 4,194,304 + 1,048,576 + 10,240 fully connected.
    assert zoo.bitfusion_svhn().total_macs == 158_017_536


def test_cost_model_reference_layers_are_in_their_networks():
    """The layers quoted in docs/COST_MODELS.md exist with exactly those shapes."""
    alex = zoo.bitfusion_alexnet()
    conv2 = [layer for layer in alex if layer.name.startswith("conv2")]
    assert len(conv2) == 2
    for layer in conv2:
        assert (layer.kh, layer.out_h, layer.stride, layer.cin, layer.cout) == (5, 27, 1, 96, 256)
        assert layer.kind == LayerKind.CONV and not layer.reads_image
    svhn_conv1 = zoo.bitfusion_svhn()[1]
    assert svhn_conv1.name == "conv1"
    assert (svhn_conv1.kh, svhn_conv1.out_h, svhn_conv1.cin, svhn_conv1.cout) == (3, 32, 64, 64)
    (rnn,) = zoo.bitfusion_rnn()
    assert (rnn.kind, rnn.cin, rnn.cout, rnn.reads_image) == (LayerKind.LINEAR, 4096, 4096, False)


def test_bitfusion_original_widths():
    alex = zoo.bitfusion_alexnet(wrpn=False)
    assert [(layer.cin, layer.cout) for layer in alex][::2] == [
        (3, 48), (48, 128), (256, 192), (192, 192), (192, 128), (9216, 4096), (4096, 1000),
    ]  # fmt: skip
    assert alex.total_params == 2 * (
        11 * 11 * 3 * 48 + 25 * 48 * 128 + 9 * 256 * 192 + 9 * 192 * 192 + 9 * 192 * 128
    ) + (9216 * 4096 + 4096 * 4096 + 4096 * 1000)
    res = zoo.bitfusion_resnet18(wrpn=False)
    assert len(res) == 17
    assert [layer.cout for layer in res][::4] == [64, 64, 128, 256, 512]
    wide = zoo.bitfusion_resnet18()
    assert wide.macs[0] == 2 * res.macs[0]  # the image keeps 3 channels
    assert np.array_equal(wide.macs[1:], 4 * res.macs[1:])


def test_bitfusion_recurrent_sizes():
    assert _shape(zoo.bitfusion_rnn(size=512)[0]) == ("matmul", 1, 1, 1, 1024, 1024)
    assert _shape(zoo.bitfusion_lstm(size=100)[0]) == ("matmul", 1, 1, 1, 400, 400)


# ------------------------------------------------------------------------------- exact layer shapes
def _conv_shape(layer):
    return (layer.name, LayerKind(layer.kind).name, layer.cin, layer.cout, layer.kh,
            layer.stride, layer.pad, layer.groups, layer.in_h, layer.out_h)  # fmt: skip


def test_mobilenet_v2_layers_in_haq_order():
    table = zoo.mobilenet_v2(num_classes=100)  # HAQ's released table: 53 rows, 100 classes
    assert len(table) == 53
    assert _conv_shape(table[0]) == ("features.0.0", "CONV", 3, 32, 3, 2, 1, 1, 224, 112)
    assert table[0].reads_image and not table.reads_image[1:].any()
    assert _conv_shape(table[1]) == ("features.1.conv.0.0", "DEPTHWISE", 32, 32, 3, 1, 1, 32,
                                     112, 112)  # fmt: skip
    assert _conv_shape(table[2]) == ("features.1.conv.1", "CONV", 32, 16, 1, 1, 0, 1, 112, 112)
    assert _conv_shape(table[3]) == ("features.2.conv.0.0", "CONV", 16, 96, 1, 1, 0, 1, 112, 112)
    assert _conv_shape(table[4]) == ("features.2.conv.1.0", "DEPTHWISE", 96, 96, 3, 2, 1, 96,
                                     112, 56)  # fmt: skip
    assert _conv_shape(table[5]) == ("features.2.conv.2", "CONV", 96, 24, 1, 1, 0, 1, 56, 56)
    assert _conv_shape(table[-2]) == ("features.18.0", "CONV", 320, 1280, 1, 1, 0, 1, 7, 7)
    last = table[-1]
    assert (last.name, last.kind, last.cin, last.cout) == ("classifier.1", LayerKind.LINEAR,
                                                           1280, 100)  # fmt: skip
    kinds = table.kind.tolist()
    assert kinds.count(LayerKind.DEPTHWISE) == 17
    assert kinds.count(LayerKind.LINEAR) == 1
    # Pattern: conv, (dw, pw), 16 x (pw, dw, pw), conv, linear.
    dw_rows = [i for i, k in enumerate(kinds) if k == LayerKind.DEPTHWISE]
    assert dw_rows == [1] + [4 + 3 * b for b in range(16)]
    strided_dw = [table.names[i] for i in dw_rows if table.stride[i] == 2]
    assert strided_dw == [f"features.{b}.conv.1.0" for b in (2, 4, 7, 14)]
    assert zoo.mobilenet_v2().total_macs - table.total_macs == 1280 * 900


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2", "vgg16"])
def test_sequential_networks_chain_channels(name):
    table = zoo.get(name)
    for i in range(1, len(table)):
        if table.kind[i] != LayerKind.LINEAR:
            assert table.cin[i] == table.cout[i - 1], table.names[i]
    if name != "vgg16":  # no pooling between MobileNet convolutions
        convs = [layer for layer in table if layer.kind != LayerKind.LINEAR]
        for prev, cur in itertools.pairwise(convs):
            assert cur.in_h == prev.out_h, cur.name


def test_mobilenet_v1_layers():
    table = zoo.mobilenet_v1()
    assert _conv_shape(table[0]) == ("conv1.0", "CONV", 3, 32, 3, 2, 1, 1, 224, 112)
    assert _conv_shape(table[1]) == ("features.0.0", "DEPTHWISE", 32, 32, 3, 1, 1, 32, 112, 112)
    assert _conv_shape(table[2]) == ("features.0.3", "CONV", 32, 64, 1, 1, 0, 1, 112, 112)
    assert _conv_shape(table[-2]) == ("features.12.3", "CONV", 1024, 1024, 1, 1, 0, 1, 7, 7)
    assert (table[-1].name, table[-1].cin, table[-1].cout) == ("classifier.0", 1024, 1000)
    assert table.kind.tolist().count(LayerKind.DEPTHWISE) == 13


def test_resnet50_rows_in_execution_order():
    table = zoo.resnet50()
    assert _conv_shape(table[0]) == ("conv1", "CONV", 3, 64, 7, 2, 3, 1, 224, 112)
    assert table.names[1:5] == (
        "layer1.0.conv1", "layer1.0.conv2", "layer1.0.conv3", "layer1.0.downsample.0",
    )  # fmt: skip
    assert _conv_shape(table[1]) == ("layer1.0.conv1", "CONV", 64, 64, 1, 1, 0, 1, 56, 56)
    assert _conv_shape(table[4]) == ("layer1.0.downsample.0", "CONV", 64, 256, 1, 1, 0, 1, 56, 56)
    i = table.names.index("layer2.0.conv1")
    assert table.names[i : i + 5] == (
        "layer2.0.conv1", "layer2.0.conv2", "layer2.0.conv3", "layer2.0.downsample.0",
        "layer2.1.conv1",
    )  # fmt: skip
    assert _conv_shape(table[i]) == ("layer2.0.conv1", "CONV", 256, 128, 1, 1, 0, 1, 56, 56)
    # ResNet v1.5: the stride is on the 3x3 convolution.
    assert _conv_shape(table[i + 1]) == ("layer2.0.conv2", "CONV", 128, 128, 3, 2, 1, 1, 56, 28)
    assert _conv_shape(table[i + 3]) == ("layer2.0.downsample.0", "CONV", 256, 512, 1, 2, 0, 1,
                                         56, 28)  # fmt: skip
    assert sum(n.endswith("downsample.0") for n in table.names) == 4
    assert _conv_shape(table[-2]) == ("layer4.2.conv3", "CONV", 512, 2048, 1, 1, 0, 1, 7, 7)
    assert (table[-1].name, table[-1].cin, table[-1].cout) == ("fc", 2048, 1000)
    assert table.reads_image.tolist() == [True] + [False] * 53


def test_resnet18_rows():
    table = zoo.resnet18()
    assert table.names[1:5] == (
        "layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1", "layer1.1.conv2",
    )  # fmt: skip
    assert table.names[5:8] == ("layer2.0.conv1", "layer2.0.conv2", "layer2.0.downsample.0")
    assert _conv_shape(table[5]) == ("layer2.0.conv1", "CONV", 64, 128, 3, 2, 1, 1, 56, 28)
    assert _conv_shape(table[7]) == ("layer2.0.downsample.0", "CONV", 64, 128, 1, 2, 0, 1, 56, 28)
    assert sum(n.endswith("downsample.0") for n in table.names) == 3
    assert (table[-1].name, table[-1].cin, table[-1].cout) == ("fc", 512, 1000)


def test_vgg16_and_alexnet_rows():
    vgg = zoo.vgg16()
    conv_index = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert vgg.names[:13] == tuple(f"features.{i}" for i in conv_index)
    assert vgg.names[13:] == ("classifier.0", "classifier.3", "classifier.6")
    assert vgg.out_h[:13].tolist() == [224] * 2 + [112] * 2 + [56] * 3 + [28] * 3 + [14] * 3
    assert (vgg[13].cin, vgg[13].cout) == (25088, 4096)
    alex = zoo.alexnet()
    assert [(layer.name, layer.in_h, layer.out_h) for layer in alex][:5] == [
        ("features.0", 224, 55), ("features.3", 27, 27), ("features.6", 13, 13),
        ("features.8", 13, 13), ("features.10", 13, 13),
    ]  # fmt: skip
    assert [(layer.cin, layer.cout) for layer in alex][5:] == [
        (9216, 4096), (4096, 4096), (4096, 1000),
    ]  # fmt: skip


# ------------------------------------------------------------------------------- parameters
def test_width_and_resolution_match_published_variants():
    # MobileNet-V1 paper, tables 6 and 7 (M MACs); MobileNet-V2 published checkpoints table.
    v1 = {(0.75, 224): 325, (0.5, 224): 149, (0.25, 224): 41, (1.0, 192): 418,
          (1.0, 160): 290, (1.0, 128): 186}  # fmt: skip
    for (width, res), macs in v1.items():
        got = zoo.mobilenet_v1(width=width, resolution=res).total_macs / 1e6
        assert got == pytest.approx(macs, rel=0.01), (width, res)
    v2 = {(1.4, 224): 582, (0.75, 224): 209, (0.5, 224): 97, (0.35, 224): 59,
          (1.0, 192): 221, (1.0, 160): 154, (1.0, 128): 99}  # fmt: skip
    for (width, res), macs in v2.items():
        got = zoo.mobilenet_v2(width=width, resolution=res).total_macs / 1e6
        assert got == pytest.approx(macs, rel=0.01), (width, res)
    assert zoo.mobilenet_v1(width=0.5).total_params == pytest.approx(1.3e6, rel=0.02)


def test_width_changes_channels():
    wide = zoo.mobilenet_v2(width=1.4)
    assert len(wide) == 53
    assert wide[0].cout == 48  # _make_divisible(44.8) = 48
    assert (wide[-2].cout, wide[-1].cin) == (1792, 1792)  # last channel widens above 1.0
    narrow = zoo.mobilenet_v2(width=0.5)
    assert (narrow[0].cout, narrow[2].cout) == (16, 8)
    assert (narrow[-2].cout, narrow[-1].cin) == (1280, 1280)  # and stays 1280 below
    half = zoo.resnet50(width=0.5)
    assert (half[0].cout, half[-1].cin, len(half)) == (32, 1024, 54)
    assert zoo.resnet18(width=2.0).total_params == pytest.approx(
        4 * (zoo.resnet18().total_params - 512 * 1000) + 1024 * 1000, rel=1e-3
    )


def test_resolution_changes_spatial_sizes_only():
    for name in ("mobilenet_v2", "resnet50", "resnet18", "vgg16", "alexnet", "mobilenet_v1"):
        base, small = zoo.get(name), zoo.get(name, resolution=160)
        assert base.names == small.names
        assert np.array_equal(base.cin, small.cin) and np.array_equal(base.cout, small.cout)
        assert base.total_params == small.total_params
        assert small.in_h[0] == 160 and small.total_macs < base.total_macs
    r = zoo.resnet50(resolution=128)
    assert (r[0].out_h, r[1].in_h, r[-2].out_h) == (64, 32, 4)
    assert zoo.mobilenet_v2(resolution=32)[-2].out_h == 1
    assert zoo.alexnet(resolution=63)[-4].out_h == 3


def test_num_classes_and_batch():
    for name in PUBLISHED:
        table = zoo.get(name, num_classes=10, batch=8)
        assert table.batch == 8
        assert table[-1].cout == 10 and table[-1].kind == LayerKind.LINEAR
    for name in BITFUSION:
        assert zoo.get(name, batch=16).batch == 16
        assert zoo.get(name).batch is None


# ------------------------------------------------------------------------------- registry, I/O
def test_registry():
    assert zoo.names() == sorted(zoo.WORKLOADS)
    assert set(zoo.names()) == set(PUBLISHED) | set(BITFUSION)
    for name in zoo.names():
        assert zoo.get(name) == zoo.WORKLOADS[name]()
    assert zoo.get("mobilenet_v2", width=0.5) == zoo.mobilenet_v2(width=0.5)


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownNameError) as info:
        zoo.get("resnet-50")
    message = str(info.value)
    assert "'resnet-50'" in message
    for name in zoo.names():
        assert name in message
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", sorted(zoo.WORKLOADS))
def test_tables_validate_and_round_trip(name, tmp_path):
    table = zoo.get(name, batch=4)
    # Rebuilding from the raw columns re-runs every validation rule.
    columns = {f: getattr(table, f) for f in KERNEL_COLUMNS}
    rebuilt = LayerTable(names=table.names, **columns, batch=table.batch, name=table.name)
    assert rebuilt == table
    assert len(set(table.names)) == len(table)
    table.to_json(tmp_path / "t.json")
    from_json = LayerTable.from_json(tmp_path / "t.json")
    assert from_json == table and from_json.name == name and from_json.batch == 4
    table.to_csv(tmp_path / "t.csv")
    from_csv = LayerTable.from_csv(tmp_path / "t.csv", batch=4)
    assert from_csv == table
    assert from_csv.total_macs == table.total_macs


@pytest.mark.parametrize(
    ("call", "field", "value"),
    [
        (lambda: zoo.mobilenet_v2(width=0), "width", "0"),
        (lambda: zoo.mobilenet_v1(width=-1.0), "width", "-1.0"),
        (lambda: zoo.mobilenet_v2(width=math.nan), "width", "nan"),
        (lambda: zoo.mobilenet_v2(width="1"), "width", "'1'"),
        (lambda: zoo.resnet50(width=True), "width", "True"),
        (lambda: zoo.mobilenet_v2(resolution=31), "resolution", "31"),
        (lambda: zoo.resnet18(resolution=224.0), "resolution", "224.0"),
        (lambda: zoo.vgg16(num_classes=0), "num_classes", "0"),
        (lambda: zoo.alexnet(num_classes=2.5), "num_classes", "2.5"),
        (lambda: zoo.alexnet(resolution=62), "resolution", "62"),
        (lambda: zoo.mobilenet_v2(batch=0), "batch", "0"),
        (lambda: zoo.bitfusion_svhn(batch=-3), "batch", "-3"),
        (lambda: zoo.bitfusion_alexnet(wrpn="yes"), "wrpn", "'yes'"),
        (lambda: zoo.bitfusion_rnn(size=0), "size", "0"),
        (lambda: zoo.get("bitfusion_lstm", size=1.5), "size", "1.5"),
    ],
)
def test_bad_parameters_raise(call, field, value):
    with pytest.raises(WorkloadError) as info:
        call()
    message = str(info.value)
    assert f"'{field}'" in message
    assert message.endswith(value) or f"got {value}" in message
    assert "must" in message


@pytest.mark.parametrize(
    ("name", "option", "options"),
    [
        ("vgg16", "width", "num_classes, resolution, batch"),
        ("bitfusion_svhn", "bogus", "batch"),
        ("mobilenet_v2", "widht", "width, resolution, num_classes, batch"),
    ],
)
def test_get_unknown_option_lists_the_options(name, option, options):
    with pytest.raises(UnknownNameError) as info:
        zoo.get(name, **{option: 1})
    assert (
        str(info.value) == f"workload {name!r} has no option {option!r}; its options are: {options}"
    )


def test_get_loads_workload_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    table = zoo.resnet18()
    (tmp_path / "net.json").write_text(table.to_json())
    (tmp_path / "net.csv").write_text(table.to_csv())
    assert zoo.get("net.json") == table
    assert zoo.get(str(tmp_path / "net.csv")).kernel_array().tolist() == (
        table.kernel_array().tolist()
    )
    with pytest.raises(WorkloadError, match=r"file 'net\.json' takes no options, got batch$"):
        zoo.get("net.json", batch=2)
    with pytest.raises(WorkloadError) as info:
        zoo.get("missing.json")
    assert str(info.value).startswith(
        "workload file 'missing.json' does not exist; valid workloads are: alexnet, "
    )
    with pytest.raises(UnknownNameError, match=r"^unknown workload 'net'; valid workloads are"):
        zoo.get("net")
