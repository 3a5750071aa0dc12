"""Bit-serial model: hand-computed layers, kernel vs reference, variants, HAQ's table shape."""

from __future__ import annotations

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

import haqsim
from haqsim import LayerTable, conv, linear
from reference import bitserial_layer

CLOUD = haqsim.preset("bismo-cloud")
EDGE = haqsim.preset("bismo-edge")
FIGURES = ("compute", "stall", "memory", "dram_r", "dram_w", "buf_r", "buf_w")


def kernel_row(layer, w, a, hw, batch):
    rep = haqsim.estimate(LayerTable.from_layers([layer]), hw, w, a, batch=batch)
    out = dict(zip(FIGURES, (int(v) for v in rep.ints[0]), strict=True))
    out.update(
        e_compute=float(rep.pj[0, 0]), e_onchip=float(rep.pj[0, 1]), e_dram=float(rep.pj[0, 2])
    )
    return out


def test_first_mobilenet_v2_layer_by_hand():
    # m = 32, k = 27, n = 112*112 on 16 x 16 x 256, fetch 256 bits/cycle, batch 16, w1a1:
    # exec = 2 * 784 * 1 = 1568 per image; fetch = 256 * (32 + 12544) / 256 = 12576 (memory bound)
    layer = conv("c", 3, 32, 3, 224, stride=2, reads_image=True)
    rep = haqsim.estimate(LayerTable.from_layers([layer]), CLOUD, 1, 1, batch=16)
    assert int(rep.compute_cycles[0]) == 1568 * 16
    assert rep.total_cycles == 12576 * 16
    assert bool(rep.memory_bound[0])


def test_depthwise_lowers_to_block_diagonal_gemms():
    # 32 channels -> 2 GEMMs of m = 16, k = 9 * 16 = 144 (kt = 1), n = 112 * 112.
    layer = conv("dw", 32, 32, 3, 112, groups=32)
    rep = haqsim.estimate(LayerTable.from_layers([layer]), CLOUD, 1, 1, batch=16)
    per_gemm = max(1 * 784 * 1, 16 + 12544)
    assert rep.total_cycles == 2 * per_gemm * 16


def test_partial_depthwise_block_occupies_full_rows():
    a = haqsim.estimate(LayerTable.from_layers([conv("d", 20, 20, 3, 8, groups=20)]), CLOUD, 4, 4)
    b = haqsim.estimate(LayerTable.from_layers([conv("d", 32, 32, 3, 8, groups=32)]), CLOUD, 4, 4)
    assert a.total_cycles == b.total_cycles


def test_linear_is_one_gemm_per_image():
    layer = linear("fc", 1280, 1000)
    one = haqsim.estimate(LayerTable.from_layers([layer]), EDGE, 8, 8, batch=1)
    many = haqsim.estimate(LayerTable.from_layers([layer]), EDGE, 8, 8, batch=7)
    assert many.total_cycles == 7 * one.total_cycles
    # k = 1280 -> kt = 5; weights 1000 x 8 bits, activations 1 x 8 bits per 256-bit word.
    assert int(one.dram_read_bits[0]) == 5 * 256 * (1000 * 8 + 8)


def test_compute_scales_with_bit_product_and_stripes_with_activations_only():
    layer = LayerTable.from_layers([conv("c", 256, 256, 1, 14, pad=0)])
    c = {b: int(haqsim.estimate(layer, CLOUD, b, b).compute_cycles[0]) for b in (2, 4, 8)}
    assert c[8] == 4 * c[4] == 16 * c[2]
    stripes = haqsim.preset("stripes")
    s = [int(haqsim.estimate(layer, stripes, w, 4).compute_cycles[0]) for w in (2, 5, 8)]
    assert s[0] == s[1] == s[2]
    loom = haqsim.preset("loom")
    assert int(haqsim.estimate(layer, loom, 4, 4).compute_cycles[0]) == c[2]


@st.composite
def layers(draw):
    kind = draw(st.sampled_from(["conv", "dw", "grouped", "linear"]))
    if kind == "linear":
        return linear("l", draw(st.integers(1, 3000)), draw(st.integers(1, 3000)))
    k = draw(st.sampled_from([1, 3, 5, 7]))
    size = draw(st.integers(k, 64))
    stride = draw(st.sampled_from([1, 2]))
    if kind == "dw":
        c = draw(st.integers(2, 200))
        return conv("l", c, c, k, size, stride=stride, groups=c)
    if kind == "grouped":
        g = draw(st.integers(2, 8))
        return conv(
            "l",
            g * draw(st.integers(1, 30)),
            g * draw(st.integers(2, 30)),
            k,
            size,
            stride=stride,
            groups=g,
        )
    return conv("l", draw(st.integers(1, 600)), draw(st.integers(1, 600)), k, size, stride=stride)


@settings(max_examples=150, deadline=None)
@given(
    layer=layers(),
    w=st.integers(1, 8),
    a=st.integers(1, 8),
    batch=st.integers(1, 32),
    preset=st.sampled_from(["bismo-edge", "bismo-cloud", "stripes", "loom"]),
    fetch=st.sampled_from([None, 32, 100, 1024]),
)
def test_kernel_matches_reference(layer, w, a, batch, preset, fetch):
    hw = haqsim.preset(preset)
    if fetch is not None:
        hw = attrs.evolve(hw, fetch_bits_per_cycle=fetch)
    ref = bitserial_layer(layer, w, a, hw, batch)
    assert kernel_row(layer, w, a, hw, batch) == ref
