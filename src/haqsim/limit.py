"""Budget enforcement: HAQ's post-episode action limiting and a step-wise feasibility projection.

Both work on one (workload, hardware) :class:`~haqsim.cost.CostTable`, one :class:`Budget` and
per-layer bit ranges, through a :class:`BudgetEnforcer`:

* **Limiting** (HAQ, Wang et al. 2019): once a whole policy is chosen, while it exceeds the
  budget, lower bitwidths one step at a time sweeping from the last layer to the first (activation
  bits, then weight bits, of each layer), never below a layer's minimum (pinned layers never move),
  re-checking after every step. :meth:`BudgetEnforcer.limit_actions`, batched in
  :meth:`BudgetEnforcer.limit_actions_many`.
* **Projection**: decisions are taken in order (layer by layer, weight bits then activation bits).
  Before a decision is accepted, check that the layers decided so far plus the cheapest completion
  of everything still undecided fits; if the requested bits do not, take the largest feasible bits
  below them (or, failing that, the nearest feasible above). Every intermediate state therefore
  stays completable and the final policy fits. :meth:`BudgetEnforcer.project` projects a whole
  policy; the sequential environment runs the same rule one decision at a time.

Costs are separable by layer, so the cheapest completion is the sum of each undecided layer's
cheapest allowed entry, and "is there a completion that fits" is one comparison. Totals are summed
layer by layer in order, exactly as :meth:`CostTable.evaluate` sums them, so a policy this module
accepts is accepted by ``table.evaluate(...).metric(metric) <= limit`` too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from haqsim._numbers import first_non_integer, plain_scalar
from haqsim.budget import Budget, format_quantity
from haqsim.cost import PJ_TO_J, CostTable
from haqsim.errors import BudgetError, PolicyError

__all__ = ["BudgetEnforcer", "bit_ranges", "decision_order"]


# ----------------------------------------------------------------------------------- kernels
@njit(cache=True)
def _metric(
    cost: np.ndarray, w: np.ndarray, a: np.ndarray, lo: int, mul: float, div: float
) -> float:
    """Total of one policy in the metric's unit: layer-ordered sum, then ``* mul / div``."""
    t = 0.0
    for i in range(w.shape[0]):
        t += cost[i, w[i] - lo, a[i] - lo]
    return (t * mul) / div


@njit(cache=True)
def _totals(
    cycles: np.ndarray,
    energy_pj: np.ndarray,
    params: np.ndarray,
    macs: np.ndarray,
    w: np.ndarray,
    a: np.ndarray,
    lo: int,
) -> tuple[int, float, int, int]:
    """Cycles, energy (pJ), size (bits), BitOps of one policy; the sums of CostTable.evaluate."""
    c = 0
    e = 0.0
    s = 0
    ops = 0
    for i in range(w.shape[0]):
        c += cycles[i, w[i] - lo, a[i] - lo]
        e += energy_pj[i, w[i] - lo, a[i] - lo]
        s += params[i] * w[i]
        ops += macs[i] * w[i] * a[i]
    return c, e, s, ops


@njit(cache=True)
def _limit_one(
    cost: np.ndarray,
    w: np.ndarray,
    a: np.ndarray,
    w_lo: np.ndarray,
    a_lo: np.ndarray,
    cheap_w: np.ndarray,
    cheap_a: np.ndarray,
    lo: int,
    mul: float,
    div: float,
    limit: float,
) -> bool:
    """HAQ's action limiting of one policy, in place. Returns whether anything changed."""
    if _metric(cost, w, a, lo, mul, div) <= limit:
        return False
    n = w.shape[0]
    # A running total says when an exact (in-order) re-sum is worth doing.
    t = 0.0
    for i in range(n):
        t += cost[i, w[i] - lo, a[i] - lo]
    near = limit * (1.0 + 1e-9)
    progressed = True
    while progressed:
        progressed = False
        for i in range(n - 1, -1, -1):
            if a[i] > a_lo[i]:
                t += cost[i, w[i] - lo, a[i] - 1 - lo] - cost[i, w[i] - lo, a[i] - lo]
                a[i] -= 1
                progressed = True
                if (t * mul) / div <= near and _metric(cost, w, a, lo, mul, div) <= limit:
                    return True
            if w[i] > w_lo[i]:
                t += cost[i, w[i] - 1 - lo, a[i] - lo] - cost[i, w[i] - lo, a[i] - lo]
                w[i] -= 1
                progressed = True
                if (t * mul) / div <= near and _metric(cost, w, a, lo, mul, div) <= limit:
                    return True
    # Every bit is at its minimum and the policy still does not fit: the cost is not monotone in
    # the bits here. Replace layers by their cheapest allowed entry, last layer first.
    for i in range(n - 1, -1, -1):
        if w[i] != cheap_w[i] or a[i] != cheap_a[i]:
            w[i] = cheap_w[i]
            a[i] = cheap_a[i]
            if _metric(cost, w, a, lo, mul, div) <= limit:
                return True
    return True


@njit(cache=True)
def _limit_many(
    cost: np.ndarray,
    w: np.ndarray,
    a: np.ndarray,
    w_lo: np.ndarray,
    a_lo: np.ndarray,
    cheap_w: np.ndarray,
    cheap_a: np.ndarray,
    lo: int,
    mul: float,
    div: float,
    limit: float,
    changed: np.ndarray,
) -> None:
    for p in range(w.shape[0]):
        changed[p] = _limit_one(cost, w[p], a[p], w_lo, a_lo, cheap_w, cheap_a, lo, mul, div, limit)


@njit(cache=True)
def _pick(
    req: int, lo_b: int, hi_b: int, c: np.ndarray, off: int, spent: float, base: float, cap: float
) -> int:
    """Largest ``b <= req`` with ``spent + c[b - off] + base <= cap``; else nearest above.

    Failing both, the cheapest ``b`` in range.
    """
    for b in range(req, lo_b - 1, -1):
        if spent + c[b - off] + base <= cap:
            return b
    for b in range(req + 1, hi_b + 1):
        if spent + c[b - off] + base <= cap:
            return b
    best = lo_b
    for b in range(lo_b + 1, hi_b + 1):
        if c[b - off] < c[best - off]:
            best = b
    return best


@njit(cache=True)
def _project_many(
    cost: np.ndarray,
    min_given_w: np.ndarray,
    w: np.ndarray,
    a: np.ndarray,
    w_lo: np.ndarray,
    w_hi: np.ndarray,
    a_lo: np.ndarray,
    a_hi: np.ndarray,
    fixed_total: float,
    suffix: np.ndarray,
    cap: float,
    lo: int,
    changed: np.ndarray,
) -> None:
    """Sequential projection of each policy (rows of ``w``, ``a``), in place."""
    n, L = w.shape
    for p in range(n):
        spent = fixed_total
        ch = False
        for i in range(L):
            fw = w_hi[i] > w_lo[i]
            fa = a_hi[i] > a_lo[i]
            if not (fw or fa):
                continue
            base = suffix[i + 1]
            if fw:
                b = _pick(w[p, i], w_lo[i], w_hi[i], min_given_w[i], lo, spent, base, cap)
                ch = ch or b != w[p, i]
                w[p, i] = b
            if fa:
                b = _pick(a[p, i], a_lo[i], a_hi[i], cost[i, w[p, i] - lo], lo, spent, base, cap)
                ch = ch or b != a[p, i]
                a[p, i] = b
            spent += cost[i, w[p, i] - lo, a[p, i] - lo]
        changed[p] = ch


# ----------------------------------------------------------------------------------- helpers
def _per_layer(value: Any, n_layers: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Broadcast a scalar, ``(L,)`` or ``(L, 2)`` bit bound to (weight, activation) columns."""
    arr = np.asarray(value)
    if arr.ndim == 0:
        arr = np.full((n_layers, 2), arr)
    elif arr.ndim == 1 and arr.shape[0] == n_layers:
        arr = np.stack([arr, arr], axis=1)
    if arr.shape != (n_layers, 2):
        raise PolicyError(
            f"{name!r} must be a scalar, one value per layer ({n_layers},) or (weight, "
            f"activation) pairs ({n_layers}, 2), got shape {np.shape(value)}"
        )
    bad = first_non_integer(arr)
    if bad is not None:
        layer, which = divmod(bad, 2)
        raise PolicyError(
            f"{name!r} of layer {layer} ({('weight', 'activation')[which]}) must be an integer, "
            f"got {plain_scalar(arr.flat[bad])!r}"
        )
    out = arr.astype(np.int64)
    return out[:, 0].copy(), out[:, 1].copy()


def bit_ranges(
    n_layers: int,
    lo: int,
    hi: int,
    min_bits: Any = 2,
    max_bits: Any = 8,
    pin: dict[int, tuple[int, int]] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-layer allowed bits ``(w_lo, w_hi, a_lo, a_hi)``, each ``int64[L]``.

    Args:
        n_layers: Number of layers L.
        lo, hi: The hardware's (the cost table's) bit range; every bound must lie inside it.
        min_bits, max_bits: A scalar, one value per layer, or ``(L, 2)`` (weight, activation).
        pin: ``{layer: (w_bits, a_bits)}`` fixing layers (negative indices count from the end).

    Raises:
        PolicyError: a bound outside ``[lo, hi]``, ``min_bits > max_bits`` or a bad pin.
    """
    w_lo, a_lo = _per_layer(min_bits, n_layers, "min_bits")
    w_hi, a_hi = _per_layer(max_bits, n_layers, "max_bits")
    for name, arr in (
        ("min_bits", w_lo),
        ("min_bits", a_lo),
        ("max_bits", w_hi),
        ("max_bits", a_hi),
    ):
        bad = np.flatnonzero((arr < lo) | (arr > hi))
        if bad.size:
            i = int(bad[0])
            raise PolicyError(
                f"layer {i} {name!r} must be in the hardware's range [{lo}, {hi}], got {arr[i]}"
            )
    for lo_arr, hi_arr in ((w_lo, w_hi), (a_lo, a_hi)):
        bad = np.flatnonzero(lo_arr > hi_arr)
        if bad.size:
            i = int(bad[0])
            raise PolicyError(
                f"layer {i} 'min_bits' must be <= 'max_bits', got {lo_arr[i]} > {hi_arr[i]}"
            )
    for key, bits in (pin or {}).items():
        if isinstance(key, bool) or not isinstance(key, int | np.integer):
            raise PolicyError(f"pin keys must be layer indices (int), got {key!r}")
        if not -n_layers <= key < n_layers:
            raise PolicyError(f"pin layer index must be in [{-n_layers}, {n_layers}), got {key}")
        try:
            wb, ab = (int(b) for b in bits)
        except (TypeError, ValueError):
            raise PolicyError(
                f"pin[{key}] must be a (w_bits, a_bits) pair of integers, got {bits!r}"
            ) from None
        for name, b in (("w_bits", wb), ("a_bits", ab)):
            if not lo <= b <= hi:
                raise PolicyError(f"pin[{key}] {name!r} must be in [{lo}, {hi}], got {b}")
        i = int(key) % n_layers
        w_lo[i] = w_hi[i] = wb
        a_lo[i] = a_hi[i] = ab
    return w_lo, w_hi, a_lo, a_hi


def decision_order(
    w_lo: np.ndarray, w_hi: np.ndarray, a_lo: np.ndarray, a_hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The free decisions in episode order: ``(layer, is_weight)`` arrays.

    Layer by layer, weight bits before activation bits; decisions whose range is a single value
    (pinned layers, ``min_bits == max_bits``) are skipped.
    """
    layers: list[int] = []
    is_w: list[bool] = []
    for i in range(w_lo.shape[0]):
        if w_hi[i] > w_lo[i]:
            layers.append(i)
            is_w.append(True)
        if a_hi[i] > a_lo[i]:
            layers.append(i)
            is_w.append(False)
    return np.array(layers, np.int64), np.array(is_w, np.bool_)


# ----------------------------------------------------------------------------------- enforcer
class BudgetEnforcer:
    """Checks, limits and projects bit policies against one budget on one cost table.

    Args:
        table: The prebuilt cost table.
        budget: A :class:`Budget` or its string form (``"latency=0.6x"``).
        w_lo, w_hi, a_lo, a_hi: Per-layer allowed bits (see :func:`bit_ranges`); default: the
            whole table range.

    Attributes:
        budget: The budget.
        metric: Its metric name.
        limit: The absolute limit in the metric's base unit (s, J, B or BitOps).
        reference: The uniform 8-bit policy's cost (base unit).
        min_cost: Cost of the cheapest allowed policy (base unit); at most ``limit``.
        cheapest_w, cheapest_a: That policy (``int64[L]``); all minimum bits when costs grow
            with bits.
        cost: ``float64[L, nb, nb]`` per-layer cost in the metric's native unit (cycles, pJ,
            bits, BitOps), indexed ``[layer, w - lo, a - lo]``.
        min_given_w: ``float64[L, nb]``: per layer and weight bits, the cheapest allowed
            activation entry (``inf`` outside the weight range).
        layer_min: ``float64[L]`` cheapest allowed entry per layer (native unit).
        fixed_total: Native cost of the layers with no free decision.
        suffix_min: ``float64[L + 1]``: ``suffix_min[i]`` is the cheapest completion of the
            layers ``>= i`` that have a free decision (native unit).
        native_limit: ``limit`` in the native unit.

    Raises:
        BudgetError: the budget is below the cheapest allowed policy's cost; the message gives
            that minimum, absolute and relative to 8 bits.
    """

    def __init__(
        self,
        table: CostTable,
        budget: Budget | str,
        w_lo: np.ndarray | None = None,
        w_hi: np.ndarray | None = None,
        a_lo: np.ndarray | None = None,
        a_hi: np.ndarray | None = None,
    ) -> None:
        self.table = table
        self.budget = Budget.coerce(budget)
        self.metric = self.budget.metric
        L = table.n_layers
        full_lo, full_hi = np.full(L, table.lo, np.int64), np.full(L, table.hi, np.int64)
        self.w_lo = full_lo if w_lo is None else np.asarray(w_lo, np.int64)
        self.w_hi = full_hi if w_hi is None else np.asarray(w_hi, np.int64)
        self.a_lo = full_lo if a_lo is None else np.asarray(a_lo, np.int64)
        self.a_hi = full_hi if a_hi is None else np.asarray(a_hi, np.int64)
        self.lo = table.lo
        self.cost, self._mul, self._div = _native_cost(table, self.metric)
        self.limit = self.budget.resolve(table)
        self.reference = self.budget.reference(table)
        self.native_limit = self.limit * self._div / self._mul

        nb = table.hi - table.lo + 1
        grid = np.arange(table.lo, table.hi + 1)
        allow_w = (grid[None, :] >= self.w_lo[:, None]) & (grid[None, :] <= self.w_hi[:, None])
        allow_a = (grid[None, :] >= self.a_lo[:, None]) & (grid[None, :] <= self.a_hi[:, None])
        masked = np.where(allow_w[:, :, None] & allow_a[:, None, :], self.cost, np.inf)
        self.min_given_w = masked.min(axis=2)
        flat = masked.reshape(L, nb * nb).argmin(axis=1)
        self.cheapest_w = (flat // nb + table.lo).astype(np.int64)
        self.cheapest_a = (flat % nb + table.lo).astype(np.int64)
        self.layer_min = masked.reshape(L, nb * nb).min(axis=1)
        free = (self.w_hi > self.w_lo) | (self.a_hi > self.a_lo)
        self.free = free
        fixed = 0.0
        for i in np.flatnonzero(~free):
            fixed += float(self.cost[i, self.w_lo[i] - self.lo, self.a_lo[i] - self.lo])
        self.fixed_total = fixed
        suffix = np.zeros(L + 1, np.float64)
        for i in range(L - 1, -1, -1):
            suffix[i] = suffix[i + 1] + (self.layer_min[i] if free[i] else 0.0)
        self.suffix_min = suffix
        self._cycles = np.ascontiguousarray(table.cycles, np.int64)
        self._energy_pj = np.ascontiguousarray(table.energy_pj, np.float64)
        self._params = np.ascontiguousarray(table.workload.params, np.int64)
        self._macs = np.ascontiguousarray(table.workload.macs, np.int64)
        self.min_cost = self.total(self.cheapest_w, self.cheapest_a)
        if self.min_cost > self.limit:
            self._refuse()

    def _refuse(self) -> None:
        t = self.table
        ratio = self.min_cost / self.reference
        bits = "all-min-bits"
        if not (
            np.array_equal(self.cheapest_w, self.w_lo)
            and np.array_equal(self.cheapest_a, self.a_lo)
        ):
            bits = "cheapest allowed"
        raise BudgetError(
            f"budget {self.budget} must be >= the {bits} cost {ratio:.3g}x "
            f"({format_quantity(self.metric, self.min_cost)}) for {t.workload.name!r} on "
            f"{t.hardware.name!r}, got {self.limit / self.reference:.3g}x "
            f"({format_quantity(self.metric, self.limit)})"
        )

    # ------------------------------------------------------------------ queries
    def total(self, w_bits: np.ndarray, a_bits: np.ndarray) -> float:
        """The metric of one policy in its base unit, equal to ``table.evaluate``'s."""
        w = np.ascontiguousarray(w_bits, np.int64)
        a = np.ascontiguousarray(a_bits, np.int64)
        return float(_metric(self.cost, w, a, self.lo, self._mul, self._div))

    def totals(self, w_bits: np.ndarray, a_bits: np.ndarray) -> dict[str, float | int]:
        """``cycles``, ``latency_s``, ``energy_j``, ``size_bytes``, ``bitops`` of one policy.

        Equal to :meth:`CostTable.evaluate`'s figures; ``w_bits``/``a_bits`` must be in range.
        """
        w = np.ascontiguousarray(w_bits, np.int64)
        a = np.ascontiguousarray(a_bits, np.int64)
        c, e, s, ops = _totals(
            self._cycles, self._energy_pj, self._params, self._macs, w, a, self.lo
        )
        return {
            "cycles": int(c),
            "latency_s": int(c) / self.table.hardware.clock_hz,
            "energy_j": float(e) * PJ_TO_J,
            "size_bytes": int(s) / 8,
            "bitops": int(ops),
        }

    def fits(self, w_bits: np.ndarray, a_bits: np.ndarray) -> bool:
        """Whether one policy is within the budget."""
        return self.total(w_bits, a_bits) <= self.limit

    def completion_cost(
        self, w_bits: np.ndarray, a_bits: np.ndarray, layer: int, weight_decided: bool = False
    ) -> float:
        """Cost (base unit) of the cheapest completion of a partly decided policy.

        Layers ``< layer`` are decided (their ``w_bits``/``a_bits`` are used), as is the weight of
        ``layer`` when ``weight_decided``; everything else takes its cheapest allowed entry.
        """
        lo = self.lo
        total = 0.0
        for i in range(self.table.n_layers):
            if i < layer:
                total += self.cost[i, int(w_bits[i]) - lo, int(a_bits[i]) - lo]
            elif i == layer and weight_decided:
                total += self.min_given_w[i, int(w_bits[i]) - lo]
            else:
                total += self.layer_min[i]
        return total * self._mul / self._div

    def can_complete(
        self, w_bits: np.ndarray, a_bits: np.ndarray, layer: int, weight_decided: bool = False
    ) -> bool:
        """The projection check: does some completion of the decided part fit the budget?"""
        return self.completion_cost(w_bits, a_bits, layer, weight_decided) <= self.limit

    # ------------------------------------------------------------------ enforcement
    def _policies(self, w_bits: Any, a_bits: Any) -> tuple[np.ndarray, np.ndarray]:
        w = np.array(w_bits, dtype=np.int64, ndmin=2)
        a = np.array(a_bits, dtype=np.int64, ndmin=2)
        L = self.table.n_layers
        if w.ndim != 2 or w.shape != a.shape or w.shape[1] != L:
            raise PolicyError(
                f"policies must have shape (n_policies, {L}) for both w_bits and a_bits, got "
                f"{np.shape(w_bits)} and {np.shape(a_bits)}"
            )
        for name, arr, lo_b, hi_b in (
            ("w_bits", w, self.w_lo, self.w_hi),
            ("a_bits", a, self.a_lo, self.a_hi),
        ):
            bad = np.argwhere((arr < lo_b) | (arr > hi_b))
            if bad.size:
                p, i = (int(x) for x in bad[0])
                raise PolicyError(
                    f"policy {p} layer {i} {name!r} must be in [{lo_b[i]}, {hi_b[i]}], "
                    f"got {arr[p, i]}"
                )
        return w, a

    def _limit_into(self, w: np.ndarray, a: np.ndarray) -> np.ndarray:
        """Limit validated ``(n, L)`` policies in place; which of them changed."""
        changed = np.zeros(w.shape[0], np.bool_)
        _limit_many(
            self.cost,
            w,
            a,
            self.w_lo,
            self.a_lo,
            self.cheapest_w,
            self.cheapest_a,
            self.lo,
            self._mul,
            self._div,
            self.limit,
            changed,
        )
        return changed

    def limit_actions_many(
        self, w_bits: Any, a_bits: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """HAQ's action limiting of ``(n, L)`` policies; returns new ``(w, a, changed)`` arrays."""
        w, a = self._policies(w_bits, a_bits)
        return w, a, self._limit_into(w, a)

    def limit_actions(self, w_bits: Any, a_bits: Any) -> tuple[np.ndarray, np.ndarray, bool]:
        """HAQ's action limiting of one policy; returns new ``(w, a, changed)``."""
        w, a, changed = self.limit_actions_many(w_bits, a_bits)
        return w[0], a[0], bool(changed[0])

    def limit_actions_inplace(self, w: np.ndarray, a: np.ndarray) -> bool:
        """:meth:`limit_actions` in place on contiguous ``int64[L]`` arrays (not validated)."""
        return bool(
            _limit_one(
                self.cost,
                w,
                a,
                self.w_lo,
                self.a_lo,
                self.cheapest_w,
                self.cheapest_a,
                self.lo,
                self._mul,
                self._div,
                self.limit,
            )
        )

    def project_many(self, w_bits: Any, a_bits: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The step-wise projection applied to whole ``(n, L)`` policies, in decision order.

        Returns new ``(w, a, changed)``. A final :meth:`limit_actions_many` pass is applied on
        top, which only matters at the last ulp of the budget.
        """
        w, a = self._policies(w_bits, a_bits)
        changed = np.zeros(w.shape[0], np.bool_)
        _project_many(
            self.cost,
            self.min_given_w,
            w,
            a,
            self.w_lo,
            self.w_hi,
            self.a_lo,
            self.a_hi,
            self.fixed_total,
            self.suffix_min,
            self.native_limit,
            self.lo,
            changed,
        )
        limited = self._limit_into(w, a)
        return w, a, changed | limited

    def project(self, w_bits: Any, a_bits: Any) -> tuple[np.ndarray, np.ndarray, bool]:
        """:meth:`project_many` for one policy; returns new ``(w, a, changed)``."""
        w, a, changed = self.project_many(w_bits, a_bits)
        return w[0], a[0], bool(changed[0])


def _native_cost(table: CostTable, metric: str) -> tuple[np.ndarray, float, float]:
    """``(cost[L, nb, nb], mul, div)`` with ``metric_total = (sum of cost) * mul / div``.

    The factors reproduce :meth:`CostTable.evaluate` bit for bit: cycles / clock, pJ * 1e-12,
    bits / 8, BitOps as they are.
    """
    L, nb = table.n_layers, table.hi - table.lo + 1
    grid = np.arange(table.lo, table.hi + 1, dtype=np.int64)
    if metric == "latency":
        return table.cycles.astype(np.float64), 1.0, float(table.hardware.clock_hz)
    if metric == "energy":
        return np.ascontiguousarray(table.energy_pj, np.float64), PJ_TO_J, 1.0
    params = table.workload.params.astype(np.float64)
    if metric == "size":
        cost = np.broadcast_to(params[:, None, None] * grid[None, :, None], (L, nb, nb))
        return np.ascontiguousarray(cost, np.float64), 1.0, 8.0
    macs = table.workload.macs.astype(np.float64)
    cost = macs[:, None, None] * grid[None, :, None] * grid[None, None, :]
    return np.ascontiguousarray(cost, np.float64), 1.0, 1.0
