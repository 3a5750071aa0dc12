"""Gather-and-sum of per-layer table entries over many policies."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
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
    n, L = w_bits.shape
    out_cycles = np.zeros(n, np.int64)
    out_energy = np.zeros(n, np.float64)
    out_size = np.zeros(n, np.int64)
    out_bitops = np.zeros(n, np.int64)
    out_bad = np.full(n, -1, np.int64)
    for p in prange(n):
        c = 0
        e = 0.0
        s = 0
        ops = 0
        for i in range(L):
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
    return out_cycles, out_energy, out_size, out_bitops, out_bad
