"""Slow, obviously correct reference implementations of the haqsim cost models.

Plain Python, no Numba, no pruning, every loop order tried: a transcription of
``shared/docs/COST_MODELS.md`` that the optimised kernels are compared against.
Each function returns a dict with the same figures the kernels produce.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from haqsim.hardware import BitFusionConfig, BitSerialConfig
from haqsim.workload import Layer, LayerKind


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


# --------------------------------------------------------------------------- bit-serial


def bitserial_gemms(layer: Layer, dm: int) -> list[tuple[int, int, int, int]]:
    """(m, k, n, count) of the GEMMs one image of ``layer`` lowers to."""
    kk = layer.kh * layer.kw
    n = layer.out_h * layer.out_w
    if layer.kind == LayerKind.LINEAR:
        return [(layer.cout, layer.cin, 1, 1)]
    if layer.kind == LayerKind.DEPTHWISE:
        return [(dm, kk * dm, n, _cdiv(layer.cin, dm))]
    g = layer.groups
    return [(layer.cout // g, kk * layer.cin // g, n, g)]


def bitserial_layer(layer: Layer, w: int, a: int, hw: BitSerialConfig, batch: int) -> dict:
    passes = _cdiv(w, hw.w_bits_per_pass) * _cdiv(a, hw.a_bits_per_pass)
    out = dict.fromkeys(("compute", "stall", "memory", "dram_r", "dram_w", "buf_r", "buf_w"), 0)
    active = 0
    for m, k, n, count in bitserial_gemms(layer, hw.dm):
        kt = _cdiv(k, hw.dk)
        execute = _cdiv(m, hw.dm) * _cdiv(n, hw.dn) * passes * kt
        fetched_bits = kt * hw.dk * (m * w + n * a)
        fetch = _cdiv(fetched_bits, hw.fetch_bits_per_cycle)
        out["compute"] += execute * count
        out["stall"] += max(0, fetch - execute) * count
        out["memory"] += fetch * count
        out["dram_r"] += fetched_bits * count
        out["dram_w"] += m * n * hw.result_bits * count
        out["buf_w"] += fetched_bits * count
        out["buf_r"] += execute * (hw.dm + hw.dn) * hw.dk * count
        active += m * n * passes * kt * count
    out = {key: value * batch for key, value in out.items()}
    out["e_compute"] = hw.dpu_pj_per_cycle * float(active * batch)
    out["e_onchip"] = out["buf_r"] * hw.buffer_read_pj_per_bit + out["buf_w"] * (
        hw.buffer_write_pj_per_bit
    )
    out["e_dram"] = float(out["dram_r"] + out["dram_w"]) * hw.dram_pj_per_bit
    return out


# --------------------------------------------------------------------------- Bit Fusion

LOOPS = ("B", "OW", "OH", "IC", "OC")
INDEXES = {  # which loops index which stream
    "w": {"IC", "OC"},
    "a": {"B", "OW", "OH", "IC"},
    "of": {"B", "OW", "OH", "OC"},
    "wb": {"B", "OW", "OH", "OC"},
}


def _pow2_tiles(size: int, step: int = 1, count_of: int | None = None) -> list[int]:
    count_of = size if count_of is None else count_of
    top = math.ceil(math.log2(count_of)) if count_of > 1 else 0
    return sorted({min(2**i * step, size) for i in range(top + 1)})


def promote(
    order: tuple[str, ...],
    trips: dict[str, int],
    footprint: int,
    indexes: set[str],
    half_buffer: int,
) -> tuple[int, int]:
    """(DRAM bits, held block bits) of one stream, walking ``order`` (outermost first)."""
    value, held, promoting = footprint, footprint, True
    for loop in reversed(order):
        t = trips[loop]
        if promoting:
            if loop in indexes:
                value *= t
                if value <= half_buffer:
                    held = value
                else:
                    promoting = False
        else:
            value *= t
    return value, held


def bitfusion_mode(
    K: tuple[int, int],
    S: int,
    OH: int,
    OW: int,
    IC: int,
    OC: int,
    B: int,
    a: int,
    w: int,
    im2col: bool,
    hw: BitFusionConfig,
) -> dict[str, Any] | None:
    """Best tiling and loop order of one (ungrouped) layer in one mode, or None if none fits."""
    kh, kw = K
    KK = kh * kw
    N, M, IF = hw.n_rows, hw.m_cols, hw.dram_bits_per_cycle
    if a <= 8 and w <= 8:
        pf, mult = (8 // max(a, 2)) * (8 // max(w, 2)), 1
    else:
        pf, mult = 1, _cdiv(a, 8) * _cdiv(w, 8)
    half = {
        "w": hw.wbuf_bytes * 4,
        "a": hw.ibuf_bytes * 4,
        "of": hw.obuf_bytes * 4,
        "wb": hw.obuf_bytes * 4,
    }
    spatial = sorted(
        {(min(2**i, OW), min(2**i, OH)) for i in range(math.ceil(math.log2(max(OH, OW))) + 1)}
    )
    ocs = _pow2_tiles(OC) if im2col else _pow2_tiles(OC, M, _cdiv(OC, M))
    best: dict[str, Any] | None = None
    for b, (ow, oh), ic, oc in itertools.product(_pow2_tiles(B), spatial, _pow2_tiles(IC), ocs):
        fw = _cdiv(KK * ic, N * pf) * N * pf * oc * w
        if im2col:
            fa = ow * oh * KK * ic * b * a
        else:
            fa = (kw + (ow - 1) * S) * (kh + (oh - 1) * S) * ic * b * a
        fo = ow * oh * _cdiv(oc, M) * M * b * 32
        if fw > half["w"] or fa > half["a"] or fo > half["of"]:
            continue
        trips = {
            "B": _cdiv(B, b),
            "OW": _cdiv(OW, ow),
            "OH": _cdiv(OH, oh),
            "IC": _cdiv(IC, ic),
            "OC": _cdiv(OC, oc),
        }
        T = math.prod(trips.values())
        if im2col:
            per_tile = b * oh * ow * _cdiv(oc, M) * _cdiv(KK * ic, N * pf)
            cols = _cdiv(ic * KK, N * pf) * N * pf
        else:
            per_tile = b * _cdiv(oc, M) * ow * oh * KK * _cdiv(ic, N * pf)
            cols = _cdiv(ic, N * pf) * N * pf * KK
        compute = per_tile * T * mult
        rows, pix = _cdiv(oc, M) * M, b * oh * ow
        flows = [
            cols * pix * (a + rows * (w + 32)),
            rows * pix * (32 + cols * (a + w)),
            cols * rows * (w + pix * (a + 32)),
        ]
        flow = flows.index(min(flows))
        if flow == 0:
            base = T * KK * ic * oh * ow * b
            ibuf_r, obuf_rw, wbuf_r = base * a, base * oc * 32, base * oc * w
        elif flow == 1:
            base = T * oc * oh * ow * b
            ibuf_r, obuf_rw, wbuf_r = base * KK * ic * a, base * 32, base * KK * ic * w
        else:
            base = T * KK * ic * oc
            ibuf_r, obuf_rw, wbuf_r = base * b * ow * oh * a, base * b * ow * oh * 32, base * w
        feet = {"w": fw, "a": fa, "of": fo, "wb": fo}
        for order in itertools.permutations(LOOPS):
            traffic, held = {}, {}
            for s in feet:
                traffic[s], held[s] = promote(order, trips, feet[s], INDEXES[s], half[s])
            dram_r = traffic["w"] + traffic["a"] + traffic["of"]
            dram_w = traffic["wb"]
            first = held["w"] + held["a"] + held["of"]
            last = held["wb"]
            middle = dram_r + dram_w - first - last
            stall = max(0, _cdiv(middle, IF) - compute) + _cdiv(first, IF) + _cdiv(last, IF)
            cycles = compute + stall
            bufs = {
                "wbuf_r": wbuf_r,
                "wbuf_w": traffic["w"],
                "ibuf_r": ibuf_r,
                "ibuf_w": traffic["a"],
                "obuf_r": obuf_rw + dram_w,
                "obuf_w": obuf_rw + traffic["of"],
            }
            e_compute = hw.core_pj_per_fu_cycle * float(N * M * compute)
            e_onchip = (
                bufs["wbuf_r"] * hw.wbuf_read_pj_per_bit
                + bufs["wbuf_w"] * hw.wbuf_write_pj_per_bit
                + bufs["ibuf_r"] * hw.ibuf_read_pj_per_bit
                + bufs["ibuf_w"] * hw.ibuf_write_pj_per_bit
                + bufs["obuf_r"] * hw.obuf_read_pj_per_bit
                + bufs["obuf_w"] * hw.obuf_write_pj_per_bit
            )
            e_dram = float(dram_r + dram_w) * hw.dram_pj_per_bit
            energy = e_compute + e_onchip + e_dram
            if best is None or (cycles, energy) < (best["cycles"], best["energy"]):
                best = {
                    "cycles": cycles,
                    "energy": energy,
                    "compute": compute,
                    "stall": stall,
                    "memory": _cdiv(dram_r + dram_w, IF),
                    "dram_r": dram_r,
                    "dram_w": dram_w,
                    "buf_r": bufs["wbuf_r"] + bufs["ibuf_r"] + bufs["obuf_r"],
                    "buf_w": bufs["wbuf_w"] + bufs["ibuf_w"] + bufs["obuf_w"],
                    "e_compute": e_compute,
                    "e_onchip": e_onchip,
                    "e_dram": e_dram,
                    "tiles": (b, ow, oh, ic, oc),
                    "order": order,
                    "flow": flow,
                }
    return best


def bitfusion_layer(layer: Layer, w: int, a: int, hw: BitFusionConfig, batch: int) -> dict:
    """Bit Fusion cost of one layer; grouped layers cost one group in both modes, times groups."""
    g = layer.groups
    args = (
        (layer.kh, layer.kw),
        layer.stride,
        layer.out_h,
        layer.out_w,
        layer.cin // g,
        layer.cout // g,
        batch,
        a,
        w,
    )
    if g == 1:
        best = bitfusion_mode(*args, bool(layer.reads_image), hw)
    else:
        found = [r for r in (bitfusion_mode(*args, m, hw) for m in (False, True)) if r]
        best = min(found, key=lambda r: (r["cycles"], r["energy"])) if found else None
    if best is None:
        raise ValueError(f"no tiling of layer {layer.name!r} fits the buffers")
    out = {
        k: best[k] * g
        for k in (
            "compute",
            "stall",
            "memory",
            "dram_r",
            "dram_w",
            "buf_r",
            "buf_w",
            "e_compute",
            "e_onchip",
            "e_dram",
        )
    }
    out["tiles"], out["order"], out["flow"] = best["tiles"], best["order"], best["flow"]
    return out
