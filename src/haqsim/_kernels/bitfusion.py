"""Bit Fusion tiling search, cycles, DRAM traffic and energy; see COST_MODELS.md section 1.

The search is exact: it returns the figures of the best (fewest cycles, then least energy) tiling
and loop order over all power-of-two tiles and all 120 loop orders. It is fast because it

* visits tilings in ascending order of a lower bound on their cycles (compute plus the unavoidable
  first and last transfers, and all transfers when each stream moves once per trip of the loops
  that index it) and stops once that bound exceeds the best total found;
* skips a tiling, and then each loop order, whose bound by its one or two innermost loops (which
  decide how far each stream's block grows in the buffers) exceeds the best total found;
* tries only the orders of the loops whose trip count exceeds one (a loop of one trip changes no
  stream), and only one of the two orders of the width and height loops when their trip counts are
  equal (they index the same streams, so swapping them changes nothing).

Ties in (cycles, energy) go to the tiling that comes first in ascending (batch, spatial, input
channel, output channel) tiles, then to the first loop order tried, so the result, mapping
included, does not depend on how much the bounds prune.

Loop codes: 0 batch, 1 output width, 2 output height, 3 input channels, 4 output channels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit, prange

from haqsim._kernels.launch import parallel_pays

# Below this many tasks (a few tens of microseconds each) one thread beats starting the pool.
PARALLEL_MIN_TASKS = 8

# Which streams each loop indexes, as bit masks over loop codes (passed to kernels as arguments).
_MASK_W = (1 << 3) | (1 << 4)
_MASK_A = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3)
_MASK_O = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 4)
STREAM_MASKS = np.array([_MASK_W, _MASK_A, _MASK_O], dtype=np.int64)


def permutation_tables() -> tuple[np.ndarray, np.ndarray]:
    """All permutations of k = 0..5 items, concatenated, and the offset of each k's block."""
    import itertools

    rows: list[list[int]] = []
    offsets = []
    for k in range(6):
        offsets.append(len(rows))
        for p in itertools.permutations(range(k)):
            rows.append(list(p) + [0] * (5 - k))
    offsets.append(len(rows))
    return np.array(rows, dtype=np.int64), np.array(offsets, dtype=np.int64)


@njit(cache=True, inline="always")
def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@njit(cache=True)
def _ceil_log2(n: int) -> int:
    top = 0
    while (1 << top) < n:
        top += 1
    return top


@njit(cache=True)
def _tiles(size: int, step: int, count_of: int, out: np.ndarray) -> int:
    """Write the distinct ``min(2**i * step, size)``, i = 0..ceil(log2 count_of); return count."""
    n = 0
    for i in range(_ceil_log2(count_of) + 1):
        v = min((1 << i) * step, size)
        if n == 0 or out[n - 1] != v:
            out[n] = v
            n += 1
    return n


@njit(cache=True, inline="always")
def _promote(
    order: np.ndarray, k: int, trips: np.ndarray, foot: int, mask: int, half: int
) -> tuple[int, int]:
    """(DRAM bits, held block bits) of one stream under loop ``order`` (outermost first)."""
    value = foot
    held = foot
    promoting = True
    for j in range(k - 1, -1, -1):
        loop = order[j]
        t = trips[loop]
        if promoting:
            if (mask >> loop) & 1:
                value *= t
                if value <= half:
                    held = value
                else:
                    promoting = False
        else:
            value *= t
    return value, held


@njit(cache=True, inline="always")
def _indexed(trips: np.ndarray, mask: int) -> int:
    """Product of the trips of the loops in ``mask``."""
    out = 1
    for loop in range(5):
        if (mask >> loop) & 1:
            out *= trips[loop]
    return out


@njit(cache=True, inline="always")
def _stream_bound(
    foot: int,
    mask: int,
    half: int,
    indexed: int,
    inner: np.ndarray,
    depth: int,
    trips: np.ndarray,
    every: int,
) -> tuple[int, int]:
    """Least (DRAM bits, held block bits) of one stream over all loop orders whose ``depth``
    innermost loops are ``inner[0]`` (innermost), ``inner[1]``, ...

    ``_promote`` walks those loops first. If the block overflows the buffer half there, every
    outer loop multiplies the stream; otherwise each outer loop that indexes it still does.
    ``indexed`` and ``every`` are the products of the trips of the stream's loops and of all.
    """
    value = foot
    held = foot
    walked = 1
    walked_indexed = 1
    for j in range(depth):
        loop = inner[j]
        walked *= trips[loop]
        if (mask >> loop) & 1:
            value *= trips[loop]
            walked_indexed *= trips[loop]
            if value > half:
                return value * (every // walked), held
            held = value
    return value * (indexed // walked_indexed), held


@njit(cache=True, inline="always")
def _prefix_bound(
    inner: np.ndarray,
    depth: int,
    trips: np.ndarray,
    feet: tuple[int, int, int],
    masks: np.ndarray,
    halves: tuple[int, int, int],
    indexed: tuple[int, int, int],
    IF: int,
    compute: int,
) -> int:
    """A lower bound on the cycles of every loop order of one tiling that ends in ``inner``.

    Cycles are ``max(compute, middle) + first + last`` transfers, which is at least both
    ``compute + first + last`` and all transfers together (see ``_stream_bound``).
    """
    every = trips[0] * trips[1] * trips[2] * trips[3] * trips[4]
    tw, hw = _stream_bound(feet[0], masks[0], halves[0], indexed[0], inner, depth, trips, every)
    ta, ha = _stream_bound(feet[1], masks[1], halves[1], indexed[1], inner, depth, trips, every)
    to, ho = _stream_bound(feet[2], masks[2], halves[2], indexed[2], inner, depth, trips, every)
    return max(compute + _cdiv(hw + ha + ho, IF) + _cdiv(ho, IF), _cdiv(tw + ta + 2 * to, IF))


@njit(cache=True)
def search_mode(
    kh: int,
    kw: int,
    stride: int,
    OH: int,
    OW: int,
    IC: int,
    OC: int,
    B: int,
    a: int,
    w: int,
    im2col: bool,
    hw_int: np.ndarray,
    hw_pj: np.ndarray,
    masks: np.ndarray,
    perms: np.ndarray,
    perm_off: np.ndarray,
    res_int: np.ndarray,
    res_float: np.ndarray,
    res_map: np.ndarray,
) -> bool:
    """Best tiling of one ungrouped layer in one mode; False if no tiling fits the buffers.

    ``hw_int = [N, M, dram_bits_per_cycle, wbuf_bits, ibuf_bits, obuf_bits]``;
    ``hw_pj = [core_per_fu_cycle, wbuf_r, wbuf_w, ibuf_r, ibuf_w, obuf_r, obuf_w, dram]``.
    Writes the shared 7 int / 3 float figures and ``res_map = [b, ow, oh, ic, oc, order, flow,
    im2col]`` (order: loop codes outermost first, base 5; flow 0 IS, 1 OS, 2 WS).
    """
    N, M, IF = hw_int[0], hw_int[1], hw_int[2]
    half_w, half_a, half_o = hw_int[3] // 2, hw_int[4] // 2, hw_int[5] // 2
    KK = kh * kw
    if a <= 8 and w <= 8:
        pf = (8 // max(a, 2)) * (8 // max(w, 2))
        mult = 1
    else:
        pf = 1
        mult = _cdiv(a, 8) * _cdiv(w, 8)
    lane = N * pf

    b_l = np.empty(64, np.int64)
    nb = _tiles(B, 1, B, b_l)
    sw_l = np.empty(64, np.int64)
    sh_l = np.empty(64, np.int64)
    ns = 0
    for i in range(_ceil_log2(max(OH, OW)) + 1):
        vw = min(1 << i, OW)
        vh = min(1 << i, OH)
        if ns == 0 or sw_l[ns - 1] != vw or sh_l[ns - 1] != vh:
            sw_l[ns] = vw
            sh_l[ns] = vh
            ns += 1
    ic_l = np.empty(64, np.int64)
    nic = _tiles(IC, 1, IC, ic_l)
    oc_l = np.empty(64, np.int64)
    if im2col:
        noc = _tiles(OC, 1, OC, oc_l)
    else:
        noc = _tiles(OC, M, _cdiv(OC, M), oc_l)

    total = nb * ns * nic * noc
    trips = np.empty(5, np.int64)
    lbs = np.empty(total, np.int64)
    codes = np.empty(total, np.int64)
    nvalid = 0
    for ib in range(nb):
        b = b_l[ib]
        for isp in range(ns):
            ow = sw_l[isp]
            oh = sh_l[isp]
            for iic in range(nic):
                ic = ic_l[iic]
                if im2col:
                    fa = ow * oh * KK * ic * b * a
                else:
                    fa = (kw + (ow - 1) * stride) * (kh + (oh - 1) * stride) * ic * b * a
                if fa > half_a:
                    continue
                for ioc in range(noc):
                    oc = oc_l[ioc]
                    fw = _cdiv(KK * ic, lane) * lane * oc * w
                    fo = ow * oh * _cdiv(oc, M) * M * b * 32
                    if fw > half_w or fo > half_o:
                        continue
                    trips[0] = _cdiv(B, b)
                    trips[1] = _cdiv(OW, ow)
                    trips[2] = _cdiv(OH, oh)
                    trips[3] = _cdiv(IC, ic)
                    trips[4] = _cdiv(OC, oc)
                    T = trips[0] * trips[1] * trips[2] * trips[3] * trips[4]
                    if im2col:
                        per_tile = b * oh * ow * _cdiv(oc, M) * _cdiv(KK * ic, lane)
                    else:
                        per_tile = b * _cdiv(oc, M) * ow * oh * KK * _cdiv(ic, lane)
                    compute = per_tile * T * mult
                    # Cycles are at least compute plus the first and last transfers, and at
                    # least all transfers: each stream moves once per trip of its loops (the
                    # output stream twice: read and written back).
                    least = (
                        fw * _indexed(trips, masks[0])
                        + fa * _indexed(trips, masks[1])
                        + 2 * fo * _indexed(trips, masks[2])
                    )
                    lbs[nvalid] = max(
                        compute + _cdiv(fw + fa + fo, IF) + _cdiv(fo, IF), _cdiv(least, IF)
                    )
                    codes[nvalid] = ((ib * 64 + isp) * 64 + iic) * 64 + ioc
                    nvalid += 1
    if nvalid == 0:
        return False

    visit = np.argsort(lbs[:nvalid], kind="mergesort")
    best_cycles = np.iinfo(np.int64).max
    best_energy = np.inf
    best_code = -1
    nontrivial = np.empty(5, np.int64)
    order = np.empty(5, np.int64)
    inner = np.empty(5, np.int64)
    single_lb = np.empty(5, np.int64)
    pair_lb = np.empty((5, 5), np.int64)
    halves = (half_w, half_a, half_o)
    for v in range(nvalid):
        c = visit[v]
        if lbs[c] > best_cycles:
            break
        code = codes[c]
        b = b_l[code // (64 * 64 * 64)]
        isp = (code // (64 * 64)) % 64
        ow = sw_l[isp]
        oh = sh_l[isp]
        ic = ic_l[(code // 64) % 64]
        oc = oc_l[code % 64]
        trips[0] = _cdiv(B, b)
        trips[1] = _cdiv(OW, ow)
        trips[2] = _cdiv(OH, oh)
        trips[3] = _cdiv(IC, ic)
        trips[4] = _cdiv(OC, oc)
        T = trips[0] * trips[1] * trips[2] * trips[3] * trips[4]
        fw = _cdiv(KK * ic, lane) * lane * oc * w
        if im2col:
            fa = ow * oh * KK * ic * b * a
            per_tile = b * oh * ow * _cdiv(oc, M) * _cdiv(KK * ic, lane)
            cols = _cdiv(ic * KK, lane) * lane
        else:
            fa = (kw + (ow - 1) * stride) * (kh + (oh - 1) * stride) * ic * b * a
            per_tile = b * _cdiv(oc, M) * ow * oh * KK * _cdiv(ic, lane)
            cols = _cdiv(ic, lane) * lane * KK
        fo = ow * oh * _cdiv(oc, M) * M * b * 32
        compute = per_tile * T * mult
        rows = _cdiv(oc, M) * M
        pix = b * oh * ow
        f_is = cols * pix * (a + rows * (w + 32))
        f_os = rows * pix * (32 + cols * (a + w))
        f_ws = cols * rows * (w + pix * (a + 32))
        if f_is <= f_os and f_is <= f_ws:
            flow = 0
            base = T * KK * ic * oh * ow * b
            ibuf_r = base * a
            obuf_rw = base * oc * 32
            wbuf_r = base * oc * w
        elif f_os <= f_ws:
            flow = 1
            base = T * oc * oh * ow * b
            ibuf_r = base * KK * ic * a
            obuf_rw = base * 32
            wbuf_r = base * KK * ic * w
        else:
            flow = 2
            base = T * KK * ic * oc
            ibuf_r = base * b * ow * oh * a
            obuf_rw = base * b * ow * oh * 32
            wbuf_r = base * w
        e_compute = hw_pj[0] * float(N * M * compute)

        k = 0
        pos_w = -1
        pos_h = -1
        for loop in range(5):
            if trips[loop] > 1:
                if loop == 1:
                    pos_w = k
                elif loop == 2:
                    pos_h = k
                nontrivial[k] = loop
                k += 1
        # Bounds on the orders by their innermost loop, then by their two innermost loops
        # (computed only where the first bound leaves a chance); they skip orders that cannot win.
        feet = (fw, fa, fo)
        indexed = (
            _indexed(trips, masks[0]),
            _indexed(trips, masks[1]),
            _indexed(trips, masks[2]),
        )
        if k == 0:
            lowest = _prefix_bound(inner, 0, trips, feet, masks, halves, indexed, IF, compute)
        else:
            lowest = np.iinfo(np.int64).max
            for j1 in range(k):
                inner[0] = nontrivial[j1]
                single_lb[j1] = _prefix_bound(
                    inner, 1, trips, feet, masks, halves, indexed, IF, compute
                )
                lowest = min(lowest, single_lb[j1])
        if lowest > best_cycles:
            continue  # no order of this tiling can win; the visiting order is unchanged
        for j1 in range(k):
            inner[0] = nontrivial[j1]
            for j2 in range(k):
                if j2 == j1:
                    continue
                if single_lb[j1] > best_cycles:
                    pair_lb[j1, j2] = single_lb[j1]
                else:
                    inner[1] = nontrivial[j2]
                    pair_lb[j1, j2] = _prefix_bound(
                        inner, 2, trips, feet, masks, halves, indexed, IF, compute
                    )
        symmetric = pos_w >= 0 and pos_h >= 0 and trips[1] == trips[2]
        for p in range(perm_off[k], perm_off[k + 1]):
            if k > 1 and pair_lb[perms[p, k - 1], perms[p, k - 2]] > best_cycles:
                continue
            if symmetric:
                # Keep only the orders with width outside height; the mirror image is identical.
                skip = False
                for j in range(k):
                    if perms[p, j] == pos_h:
                        skip = True
                        break
                    if perms[p, j] == pos_w:
                        break
                if skip:
                    continue
            for j in range(k):
                order[j] = nontrivial[perms[p, j]]
            tw_, hw_ = _promote(order, k, trips, fw, masks[0], half_w)
            ta_, ha_ = _promote(order, k, trips, fa, masks[1], half_a)
            to_, ho_ = _promote(order, k, trips, fo, masks[2], half_o)
            dram_r = tw_ + ta_ + to_
            dram_w = to_
            first = hw_ + ha_ + ho_
            last = ho_
            middle = dram_r + dram_w - first - last
            stall = max(0, _cdiv(middle, IF) - compute) + _cdiv(first, IF) + _cdiv(last, IF)
            cycles = compute + stall
            if cycles > best_cycles:
                continue
            obuf_r = obuf_rw + dram_w
            obuf_w = obuf_rw + to_
            e_onchip = (
                wbuf_r * hw_pj[1]
                + tw_ * hw_pj[2]
                + ibuf_r * hw_pj[3]
                + ta_ * hw_pj[4]
                + obuf_r * hw_pj[5]
                + obuf_w * hw_pj[6]
            )
            e_dram = float(dram_r + dram_w) * hw_pj[7]
            energy = e_compute + e_onchip + e_dram
            # Fewest cycles, then least energy; an exact tie goes to the tiling listed first
            # (ascending tiles: the reference's order), so pruning never changes the mapping.
            if (
                cycles < best_cycles
                or energy < best_energy
                or (energy == best_energy and code < best_code)
            ):
                best_cycles = cycles
                best_energy = energy
                best_code = code
                res_int[0] = compute
                res_int[1] = stall
                res_int[2] = _cdiv(dram_r + dram_w, IF)
                res_int[3] = dram_r
                res_int[4] = dram_w
                res_int[5] = wbuf_r + ibuf_r + obuf_r
                res_int[6] = tw_ + ta_ + obuf_w
                res_float[0] = e_compute
                res_float[1] = e_onchip
                res_float[2] = e_dram
                code5 = 0
                for j in range(k):
                    code5 = code5 * 5 + order[j]
                for loop in range(5):
                    if trips[loop] == 1:
                        code5 = code5 * 5 + loop
                res_map[0] = b
                res_map[1] = ow
                res_map[2] = oh
                res_map[3] = ic
                res_map[4] = oc
                res_map[5] = code5
                res_map[6] = flow
                res_map[7] = 1 if im2col else 0
    return True


@njit(cache=True)
def _layer(
    row: np.ndarray,
    w: int,
    a: int,
    batch: int,
    hw_int: np.ndarray,
    hw_pj: np.ndarray,
    masks: np.ndarray,
    perms: np.ndarray,
    perm_off: np.ndarray,
    out_int: np.ndarray,
    out_float: np.ndarray,
    out_map: np.ndarray,
) -> bool:
    kh, kw, stride, groups = row[3], row[4], row[5], row[7]
    out_h, out_w, reads_image = row[10], row[11], row[12]
    cin = row[1] // groups
    cout = row[2] // groups
    if groups == 1:
        found = search_mode(
            kh,
            kw,
            stride,
            out_h,
            out_w,
            cin,
            cout,
            batch,
            a,
            w,
            reads_image != 0,
            hw_int,
            hw_pj,
            masks,
            perms,
            perm_off,
            out_int,
            out_float,
            out_map,
        )
        return found
    # Grouped or depthwise: one group, direct and im2col, the cheaper of the two, times groups.
    alt_int = np.zeros(out_int.shape[0], np.int64)
    alt_float = np.zeros(out_float.shape[0], np.float64)
    alt_map = np.zeros(out_map.shape[0], np.int64)
    ok_direct = search_mode(
        kh,
        kw,
        stride,
        out_h,
        out_w,
        cin,
        cout,
        batch,
        a,
        w,
        False,
        hw_int,
        hw_pj,
        masks,
        perms,
        perm_off,
        out_int,
        out_float,
        out_map,
    )
    ok_im2col = search_mode(
        kh,
        kw,
        stride,
        out_h,
        out_w,
        cin,
        cout,
        batch,
        a,
        w,
        True,
        hw_int,
        hw_pj,
        masks,
        perms,
        perm_off,
        alt_int,
        alt_float,
        alt_map,
    )
    if not ok_direct and not ok_im2col:
        return False
    if ok_im2col:
        take_alt = not ok_direct
        if ok_direct:
            c_d = out_int[0] + out_int[1]
            c_i = alt_int[0] + alt_int[1]
            e_d = out_float[0] + out_float[1] + out_float[2]
            e_i = alt_float[0] + alt_float[1] + alt_float[2]
            take_alt = c_i < c_d or (c_i == c_d and e_i < e_d)
        if take_alt:
            out_int[:] = alt_int
            out_float[:] = alt_float
            out_map[:] = alt_map
    for i in range(out_int.shape[0]):
        out_int[i] *= groups
    for i in range(out_float.shape[0]):
        out_float[i] *= groups
    return True


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
        masks: np.ndarray,
        perms: np.ndarray,
        perm_off: np.ndarray,
        out_int: np.ndarray,
        out_float: np.ndarray,
        out_map: np.ndarray,
        found: np.ndarray,
    ) -> None:
        for t in loop(layer_index.shape[0]):
            ok = _layer(
                layers[layer_index[t]],
                w_bits[t],
                a_bits[t],
                batch,
                hw_int,
                hw_pj,
                masks,
                perms,
                perm_off,
                out_int[t],
                out_float[t],
                out_map[t],
            )
            found[t] = 1 if ok else 0

    return costs


_COSTS = (_make_costs(False), _make_costs(True))


def bitfusion_costs(n_tasks: int) -> Callable[..., None]:
    """The kernel for ``n_tasks`` tasks: in the thread pool when that pays, else in one thread.

    ``kernel(layers, layer_index, w_bits, a_bits, batch, hw_int, hw_pj, masks, perms, perm_off,
    out_int, out_float, out_map, found)`` writes the cost of task ``t`` = layer
    ``layer_index[t]`` at ``(w_bits[t], a_bits[t])`` into row ``t``, and sets ``found[t]`` to 0
    where no tiling fits the buffers (the caller raises). Tasks differ widely in cost: run the
    parallel kernel under ``numba.parallel_chunksize(1)`` so they are handed out one at a time.
    """
    return _COSTS[parallel_pays(n_tasks, PARALLEL_MIN_TASKS)]
