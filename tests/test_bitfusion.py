"""Bit Fusion model: public reference numbers, kernel vs reference, properties."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import haqsim
from haqsim import LayerTable, conv, linear
from haqsim.errors import HardwareError
from reference import bitfusion_layer

BF = haqsim.preset("bitfusion")
FIGURES = ("compute", "stall", "memory", "dram_r", "dram_w", "buf_r", "buf_w")


def kernel_row(layer: haqsim.Layer, w: int, a: int, hw=BF, batch: int = 16) -> dict:
    rep = haqsim.estimate(LayerTable.from_layers([layer]), hw, w, a, batch=batch)
    return {
        **dict(zip(FIGURES, (int(v) for v in rep.ints[0]), strict=True)),
        "e_compute": float(rep.pj[0, 0]),
        "e_onchip": float(rep.pj[0, 1]),
        "e_dram": float(rep.pj[0, 2]),
        "tiles": tuple(int(v) for v in rep.mapping[0, :5]),
        "flow": int(rep.mapping[0, 6]),
    }


# --------------------------------------------------------------- public reference numbers
@pytest.mark.parametrize(
    ("layer", "w", "a", "cycles", "stall"),
    [
        (conv("alexnet_wrpn_conv2", 96, 256, 5, 27, pad=2), 4, 4, 5_018_849, 1_249),
        (conv("svhn_conv1", 64, 64, 3, 32), 1, 1, 358_316, 63_404),
        (linear("rnn", 4096, 4096), 4, 4, 394_583, 263_511),
    ],
)
def test_public_reference_layers(layer, w, a, cycles, stall):
    rep = haqsim.estimate(LayerTable.from_layers([layer]), BF, w, a, batch=16)
    assert rep.total_cycles == cycles
    assert int(rep.stall_cycles[0]) == stall


def test_alexnet_conv2_winning_tiling():
    rep = haqsim.estimate(
        LayerTable.from_layers([conv("c", 96, 256, 5, 27, pad=2)]), BF, 4, 4, batch=16
    )
    b, ow, oh, ic, oc = rep.mapping[0, :5]
    assert (b, ow, oh, ic, oc) == (2, 2, 2, 64, 32)
    mapping = rep.mapping_of(0)
    assert mapping["loop_order"] == ["IC", "OC", "B", "OW", "OH"]  # outermost first
    assert mapping["im2col"] is False
    assert rep.layers()[0]["mapping"] == mapping


@pytest.mark.parametrize(("bits", "compute"), [(8, 14_450_688), (4, 3_612_672), (2, 903_168)])
def test_3x3_layer_compute_scales_with_fusion(bits, compute):
    layer = LayerTable.from_layers([conv("l", 256, 256, 3, 28)])
    rep = haqsim.estimate(layer, BF, bits, bits, batch=16)
    assert int(rep.compute_cycles[0]) == compute
    if bits == 2:
        assert rep.total_cycles == 1_678_678
        assert bool(rep.memory_bound[0])


# --------------------------------------------------------------- kernel == reference
HANDCRAFTED = [
    (conv("alex2", 96, 256, 5, 27, pad=2), 4, 4),
    (conv("first", 3, 64, 3, 32, reads_image=True), 8, 8),
    (conv("first7", 3, 16, 7, 32, stride=2, pad=3, reads_image=True), 2, 8),
    (conv("dw", 32, 32, 3, 14, groups=32), 4, 6),
    (conv("grouped", 64, 128, 3, 8, groups=4), 3, 5),
    (conv("strided", 64, 96, 3, 16, stride=2), 16, 8),
    (conv("wide16", 48, 40, 1, 7), 12, 16),
    (linear("fc", 500, 10), 1, 2),
    (conv("rect", 16, 24, (1, 5), (1, 40), pad=0), 5, 3),
]


@pytest.mark.parametrize(("layer", "w", "a"), HANDCRAFTED, ids=lambda v: getattr(v, "name", v))
def test_kernel_matches_reference_handcrafted(layer, w, a):
    for batch in (1, 3, 16):
        assert kernel_row(layer, w, a, batch=batch) == _ref_figures(layer, w, a, BF, batch)


def _ref_figures(layer, w, a, hw, batch):
    r = bitfusion_layer(layer, w, a, hw, batch)
    # Ties in (cycles, energy) go to the first tiling in ascending tiles in both.
    return {k: r[k] for k in (*FIGURES, "e_compute", "e_onchip", "e_dram", "tiles", "flow")}


@st.composite
def small_layers(draw):
    kind = draw(st.sampled_from(["conv", "dw", "grouped", "linear", "image"]))
    if kind == "linear":
        return linear("l", draw(st.integers(1, 300)), draw(st.integers(1, 300)))
    k = draw(st.sampled_from([1, 3, 5]))
    size = draw(st.integers(k, 20))
    stride = draw(st.sampled_from([1, 2]))
    if kind == "dw":
        c = draw(st.integers(1, 48))
        return (
            conv("l", c, c, k, size, stride=stride, groups=c)
            if c > 1
            else conv("l", 1, 1, k, size, stride=stride)
        )
    if kind == "grouped":
        g = draw(st.integers(2, 4))
        return conv(
            "l",
            g * draw(st.integers(1, 12)),
            g * draw(st.integers(2, 12)),
            k,
            size,
            stride=stride,
            groups=g,
        )
    cin = 3 if kind == "image" else draw(st.integers(1, 130))
    return conv(
        "l", cin, draw(st.integers(1, 130)), k, size, stride=stride, reads_image=kind == "image"
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    layer=small_layers(),
    w=st.integers(1, 16),
    a=st.integers(1, 16),
    batch=st.integers(1, 9),
    small_buffers=st.booleans(),
)
def test_kernel_matches_reference_random(layer, w, a, batch, small_buffers):
    hw = (
        attrs.evolve(
            BF,
            wbuf_bytes=4096,
            ibuf_bytes=2048,
            obuf_bytes=2048,
            n_rows=4,
            m_cols=8,
            dram_bits_per_cycle=64,
        )
        if small_buffers
        else BF
    )
    try:
        ref = _ref_figures(layer, w, a, hw, batch)
    except ValueError:
        with pytest.raises(HardwareError, match="must fit at least one tile"):
            kernel_row(layer, w, a, hw=hw, batch=batch)
        return
    assert kernel_row(layer, w, a, hw=hw, batch=batch) == ref


# --------------------------------------------------------------- properties
def test_grouped_costs_one_group_times_groups():
    g = 4
    grouped = kernel_row(conv("g", 64, 128, 3, 8, groups=g), 4, 4)
    direct = kernel_row(conv("one", 16, 32, 3, 8), 4, 4)
    im2col = kernel_row(conv("one", 16, 32, 3, 8, reads_image=True), 4, 4)
    best = min(
        (direct, im2col),
        key=lambda r: (r["compute"] + r["stall"], r["e_compute"] + r["e_onchip"] + r["e_dram"]),
    )
    assert {k: grouped[k] for k in FIGURES} == {k: best[k] * g for k in FIGURES}


def test_above_8_bits_uses_temporal_passes():
    layer = conv("l", 64, 64, 3, 8)
    r8 = kernel_row(layer, 8, 8)
    r16 = kernel_row(layer, 16, 16)
    assert r16["compute"] == 4 * r8["compute"]
    r_mixed = kernel_row(layer, 16, 8)
    assert r_mixed["compute"] == 2 * r8["compute"]


def test_one_bit_computes_as_two_bits_but_moves_as_one():
    layer = LayerTable.from_layers([conv("l", 64, 64, 3, 16)])
    one = haqsim.estimate(layer, BF, 1, 1)
    two = haqsim.estimate(layer, BF, 2, 2)
    assert int(one.compute_cycles[0]) == int(two.compute_cycles[0])
    assert int(one.dram_read_bits[0]) < int(two.dram_read_bits[0])


def test_wide_interface_never_slower():
    wl = haqsim.zoo.resnet18()
    narrow = haqsim.estimate(wl, "bitfusion", 4, 4)
    wide = haqsim.estimate(wl, "bitfusion-wide", 4, 4)
    assert np.all(wide.cycles <= narrow.cycles)
    assert np.array_equal(wide.compute_cycles, narrow.compute_cycles)


def test_buffer_too_small_is_a_clear_error():
    hw = attrs.evolve(BF, obuf_bytes=64)
    with pytest.raises(HardwareError, match=r"no tile of layer 0 \('l'\)"):
        haqsim.estimate(LayerTable.from_layers([conv("l", 64, 64, 3, 8)]), hw, 8, 8)
