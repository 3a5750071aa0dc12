"""Gather-and-sum of per-layer table entries over many policies."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit, prange

from haqsim._kernels.launch import parallel_pays

# Below this many (policy, layer) entries one thread beats starting the thread pool.
PARALLEL_MIN_ENTRIES = 200_000


def _make_gather(parallel: bool) -> Callable[..., None]:
    """The gather kernel, run over policies in Numba's thread pool or in one thread."""
    loop = prange if parallel else range

    @njit(cache=True, parallel=parallel)
    def gather(
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
        for p in loop(w_bits.shape[0]):
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

    return gather


_GATHER = (_make_gather(False), _make_gather(True))


def gather_totals(
    tables: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    w_bits: np.ndarray,
    a_bits: np.ndarray,
    lo: int,
    hi: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Totals per policy: cycles, energy (pJ), size (bits) and BitOps.

    ``tables`` are the ``[L, nb, nb]`` cycles and energy (pJ) tables, holding bitwidths from
    ``lo`` up, and the per-layer parameter and MAC counts; ``w_bits``/``a_bits`` the ``(n, L)``
    policies. Energies are summed layer by layer in order, exactly as a sequential sum of the
    per-layer values. The last output holds, per policy, the first layer whose bits lie outside
    ``[lo, hi]`` (-1 if none); such a policy's totals are not computed.
    """
    n = w_bits.shape[0]
    out = (
        np.zeros(n, np.int64),
        np.zeros(n, np.float64),
        np.zeros(n, np.int64),
        np.zeros(n, np.int64),
        np.full(n, -1, np.int64),
    )
    kernel = _GATHER[parallel_pays(w_bits.size, PARALLEL_MIN_ENTRIES)]
    kernel(*tables, w_bits, a_bits, lo, hi, *out)
    return out
