"""Gather-and-sum of per-layer table entries over many policies."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from haqsim._kernels.launch import parallel_pays

# Below this many (policy, layer) entries one thread beats starting the thread pool.
PARALLEL_MIN_ENTRIES = 200_000


@njit(cache=True, inline="always")
def _one_policy(
    p: int,
    cycles: np.ndarray,
    energy_pj: np.ndarray,
    params: np.ndarray,
    macs: np.ndarray,
    w_bits: np.ndarray,
    a_bits: np.ndarray,
    lo: int,
    hi: int,
    out_cycles: np.ndarray,
    out_energy: np.ndarray,
    out_size: np.ndarray,
    out_bitops: np.ndarray,
    out_bad: np.ndarray,
) -> None:
    c = 0
    e = 0.0
    s = 0
    ops = 0
    for i in range(w_bits.shape[1]):
        w = w_bits[p, i]
        a = a_bits[p, i]
        if w < lo or w > hi or a < lo or a > hi:
            out_bad[p] = i
            break
        c += cycles[i, w - lo, a - lo]
        e += energy_pj[i, w - lo, a - lo]
        s += params[i] * w
        ops += macs[i] * w * a
    out_cycles[p] = c
    out_energy[p] = e
    out_size[p] = s
    out_bitops[p] = ops


@njit(cache=True)
def _gather_serial(
    cycles: np.ndarray,
    energy_pj: np.ndarray,
    params: np.ndarray,
    macs: np.ndarray,
    w_bits: np.ndarray,
    a_bits: np.ndarray,
    lo: int,
    hi: int,
    out_cycles: np.ndarray,
    out_energy: np.ndarray,
    out_size: np.ndarray,
    out_bitops: np.ndarray,
    out_bad: np.ndarray,
) -> None:
    for p in range(w_bits.shape[0]):
        _one_policy(
            p,
            cycles,
            energy_pj,
            params,
            macs,
            w_bits,
            a_bits,
            lo,
            hi,
            out_cycles,
            out_energy,
            out_size,
            out_bitops,
            out_bad,
        )


@njit(cache=True, parallel=True)
def _gather_parallel(
    cycles: np.ndarray,
    energy_pj: np.ndarray,
    params: np.ndarray,
    macs: np.ndarray,
    w_bits: np.ndarray,
    a_bits: np.ndarray,
    lo: int,
    hi: int,
    out_cycles: np.ndarray,
    out_energy: np.ndarray,
    out_size: np.ndarray,
    out_bitops: np.ndarray,
    out_bad: np.ndarray,
) -> None:
    for p in prange(w_bits.shape[0]):
        _one_policy(
            p,
            cycles,
            energy_pj,
            params,
            macs,
            w_bits,
            a_bits,
            lo,
            hi,
            out_cycles,
            out_energy,
            out_size,
            out_bitops,
            out_bad,
        )


def gather_totals(
    cycles: np.ndarray,
    energy_pj: np.ndarray,
    params: np.ndarray,
    macs: np.ndarray,
    w_bits: np.ndarray,
    a_bits: np.ndarray,
    lo: int,
    hi: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Totals per policy: cycles, energy (pJ), size (bits) and BitOps.

    ``cycles``/``energy_pj`` are ``[L, nb, nb]`` tables; ``w_bits``/``a_bits`` the ``(n, L)``
    policies; the table holds bitwidths from ``lo`` up. Energies are summed layer by layer in
    order, exactly as a sequential sum of the per-layer values. The last output holds, per
    policy, the first layer whose bits lie outside ``[lo, hi]`` (-1 if none); such a policy's
    totals are not computed.
    """
    n = w_bits.shape[0]
    out = (
        np.zeros(n, np.int64),
        np.zeros(n, np.float64),
        np.zeros(n, np.int64),
        np.zeros(n, np.int64),
        np.full(n, -1, np.int64),
    )
    kernel = (
        _gather_parallel if parallel_pays(w_bits.size, PARALLEL_MIN_ENTRIES) else _gather_serial
    )
    kernel(cycles, energy_pj, params, macs, w_bits, a_bits, lo, hi, *out)
    return out
