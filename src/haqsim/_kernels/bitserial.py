"""Bit-serial (BISMO-style) cycles, traffic and energy; see COST_MODELS.md section 2."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@njit(cache=True)
def _layer(
    row: np.ndarray,
    w: int,
    a: int,
    batch: int,
    hw_int: np.ndarray,
    hw_pj: np.ndarray,
    out_int: np.ndarray,
    out_float: np.ndarray,
) -> None:
    dm, dn, dk, fetch_width, w_pass, a_pass, result_bits = (
        hw_int[0],
        hw_int[1],
        hw_int[2],
        hw_int[3],
        hw_int[4],
        hw_int[5],
        hw_int[6],
    )
    kind, cin, cout, kh, kw, groups, out_h, out_w = (
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[7],
        row[10],
        row[11],
    )
    kk = kh * kw
    n = out_h * out_w
    if kind == 3:  # linear: one GEMM per image, n = 1
        m, k, n, count = cout, cin, 1, 1
    elif kind == 1:  # depthwise: block-diagonal GEMMs of Dm channels
        m, k, count = dm, kk * dm, _cdiv(cin, dm)
    else:  # dense or grouped: one GEMM per group
        m, k, count = cout // groups, kk * (cin // groups), groups
    passes = _cdiv(w, w_pass) * _cdiv(a, a_pass)
    kt = _cdiv(k, dk)
    execute = _cdiv(m, dm) * _cdiv(n, dn) * passes * kt
    fetched_bits = kt * dk * (m * w + n * a)
    fetch = _cdiv(fetched_bits, fetch_width)
    scale = count * batch
    out_int[0] = execute * scale
    out_int[1] = max(0, fetch - execute) * scale
    out_int[2] = fetch * scale
    out_int[3] = fetched_bits * scale
    out_int[4] = m * n * result_bits * scale
    out_int[5] = execute * (dm + dn) * dk * scale
    out_int[6] = fetched_bits * scale
    active = m * n * passes * kt * scale
    out_float[0] = hw_pj[0] * float(active)
    out_float[1] = out_int[5] * hw_pj[1] + out_int[6] * hw_pj[2]
    out_float[2] = float(out_int[3] + out_int[4]) * hw_pj[3]


@njit(cache=True, parallel=True)
def bitserial_costs(
    layers: np.ndarray,
    layer_index: np.ndarray,
    w_bits: np.ndarray,
    a_bits: np.ndarray,
    batch: int,
    hw_int: np.ndarray,
    hw_pj: np.ndarray,
    out_int: np.ndarray,
    out_float: np.ndarray,
) -> None:
    """Cost of task ``t`` = layer ``layer_index[t]`` at ``(w_bits[t], a_bits[t])``, into row ``t``.

    Args:
        layers: ``int64[n_layers, 13]`` shape columns.
        layer_index, w_bits, a_bits: ``int64[n_tasks]``.
        batch: Images per inference.
        hw_int: ``[dm, dn, dk, fetch_bits_per_cycle, w_bits_per_pass, a_bits_per_pass,
            result_bits]``.
        hw_pj: ``[dpu_pj_per_cycle, buffer_read_pj_per_bit, buffer_write_pj_per_bit,
            dram_pj_per_bit]``.
        out_int: ``int64[n_tasks, 7]`` output.
        out_float: ``float64[n_tasks, 3]`` output.
    """
    for t in prange(layer_index.shape[0]):
        _layer(
            layers[layer_index[t]],
            w_bits[t],
            a_bits[t],
            batch,
            hw_int,
            hw_pj,
            out_int[t],
            out_float[t],
        )
