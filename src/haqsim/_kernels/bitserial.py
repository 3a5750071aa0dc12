"""Bit-serial (BISMO-style) cycles, traffic and energy; see COST_MODELS.md section 2."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit, prange

from haqsim._kernels.launch import parallel_pays

# Below this many tasks one thread beats starting the thread pool.
PARALLEL_MIN_TASKS = 16_384


@njit(cache=True, inline="always")
def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@njit(cache=True)
def _gemms(layers: np.ndarray, dm: int, dn: int, dk: int) -> np.ndarray:
    """Per layer, the bit-independent part of its GEMMs: ``[m, n, k tiles, count, m x n tiles]``.

    A linear layer is one GEMM per image (n = 1); a depthwise layer is block-diagonal GEMMs of
    ``Dm`` channels; a dense or grouped convolution is one GEMM per group.
    """
    out = np.empty((layers.shape[0], 5), np.int64)
    for i in range(layers.shape[0]):
        row = layers[i]
        kind, cin, cout, kk, groups = row[0], row[1], row[2], row[3] * row[4], row[7]
        n = row[10] * row[11]
        if kind == 3:
            m, k, n, count = cout, cin, 1, 1
        elif kind == 1:
            m, k, count = dm, kk * dm, _cdiv(cin, dm)
        else:
            m, k, count = cout // groups, kk * (cin // groups), groups
        out[i, 0] = m
        out[i, 1] = n
        out[i, 2] = _cdiv(k, dk)
        out[i, 3] = count
        out[i, 4] = _cdiv(m, dm) * _cdiv(n, dn)
    return out


@njit(cache=True)
def _passes(bits: np.ndarray, per_pass: int) -> np.ndarray:
    """``ceil(b / per_pass)`` for every ``b`` up to ``max(bits)``, indexed by ``b``."""
    top = 0
    for b in bits:
        top = max(top, b)
    out = np.empty(top + 1, np.int64)
    for b in range(top + 1):
        out[b] = _cdiv(b, per_pass)
    return out


def _make_costs(parallel: bool) -> Callable[..., None]:
    """The task kernel, run over tasks in Numba's thread pool or in one thread."""
    loop = prange if parallel else range

    @njit(cache=True, parallel=parallel)
    def costs(
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
        dm, dn, dk, fetch_width, result_bits = (
            hw_int[0],
            hw_int[1],
            hw_int[2],
            hw_int[3],
            hw_int[6],
        )
        gemms = _gemms(layers, dm, dn, dk)
        w_passes = _passes(w_bits, hw_int[4])
        a_passes = _passes(a_bits, hw_int[5])
        for t in loop(layer_index.shape[0]):
            i = layer_index[t]
            w = w_bits[t]
            a = a_bits[t]
            m, n, kt, count, tiles = gemms[i, 0], gemms[i, 1], gemms[i, 2], gemms[i, 3], gemms[i, 4]
            passes = w_passes[w] * a_passes[a]
            execute = tiles * passes * kt
            fetched_bits = kt * dk * (m * w + n * a)
            fetch = _cdiv(fetched_bits, fetch_width)
            scale = count * batch
            buf_r = execute * (dm + dn) * dk * scale
            dram_r = fetched_bits * scale
            dram_w = m * n * result_bits * scale
            out_int[t, 0] = execute * scale
            out_int[t, 1] = max(0, fetch - execute) * scale
            out_int[t, 2] = fetch * scale
            out_int[t, 3] = dram_r
            out_int[t, 4] = dram_w
            out_int[t, 5] = buf_r
            out_int[t, 6] = dram_r  # every fetched bit is written to the buffers once
            out_float[t, 0] = hw_pj[0] * float(m * n * passes * kt * scale)
            out_float[t, 1] = buf_r * hw_pj[1] + dram_r * hw_pj[2]
            out_float[t, 2] = float(dram_r + dram_w) * hw_pj[3]

    return costs


_COSTS = (_make_costs(False), _make_costs(True))


def bitserial_costs(n_tasks: int) -> Callable[..., None]:
    """The kernel for ``n_tasks`` tasks: in the thread pool when that pays, else in one thread.

    ``kernel(layers, layer_index, w_bits, a_bits, batch, hw_int, hw_pj, out_int, out_float)``
    writes the cost of task ``t`` = layer ``layer_index[t]`` at ``(w_bits[t], a_bits[t])`` into
    row ``t``. The bit-independent part of each layer and the passes of each bitwidth are
    computed once and shared by all tasks, so a task costs one division and a few products.

    Args of the kernel:
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
    return _COSTS[parallel_pays(n_tasks, PARALLEL_MIN_TASKS)]
