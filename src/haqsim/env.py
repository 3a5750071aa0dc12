"""Gymnasium environments: pick per-layer weight and activation bits under a hardware budget.

Two environments share one problem (a workload on an accelerator, a latency, energy, size or BitOps
budget, an accuracy oracle):

* :class:`MixedPrecisionEnv` (``haqsim/MixedPrecision-v0``, and ``haqsim/MixedPrecisionDiscrete-v0``
  with ``action_type="discrete"``): HAQ's sequential formulation, one decision per step.
* :class:`MixedPrecisionOneShotEnv` (``haqsim/MixedPrecisionOneShot-v0``): one step whose action is
  the whole policy, for black-box and evolutionary searchers.

Costs come from a prebuilt :class:`~haqsim.cost.CostTable`, so a step is a few list look-ups. The
ids are registered when this module is imported (``import haqsim`` does it), and by
:func:`register_envs` (the ``gymnasium.envs`` entry point). Without importing haqsim first, use
``gymnasium.make("haqsim.env:haqsim/MixedPrecision-v0", ...)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from haqsim import zoo
from haqsim.budget import METRICS, Budget
from haqsim.cost import CostTable
from haqsim.errors import PolicyError, unknown_name
from haqsim.hardware import BitFusionConfig, BitSerialConfig, Hardware, preset
from haqsim.limit import BudgetEnforcer, bit_ranges, decision_order
from haqsim.limit import _pick as _pick_kernel
from haqsim.oracle import AccuracyOracle
from haqsim.proxy import NoiseProxyOracle
from haqsim.workload import LayerKind, LayerTable

__all__ = [
    "ENV_IDS",
    "FEATURE_NAMES",
    "MixedPrecisionEnv",
    "MixedPrecisionOneShotEnv",
    "register_envs",
]

#: The registered environment ids.
ENV_IDS: tuple[str, ...] = (
    "haqsim/MixedPrecision-v0",
    "haqsim/MixedPrecisionDiscrete-v0",
    "haqsim/MixedPrecisionOneShot-v0",
)

#: Observation features of :class:`MixedPrecisionEnv`, by index.
FEATURE_NAMES: tuple[str, ...] = (
    "layer_index",
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "input_map_size",
    "params",
    "is_depthwise",
    "is_weight",
    "previous_bits",
    "budget_committed",
    "bits_headroom",
    "min_bits",
    "max_bits",
)

DEFAULT_WORKLOAD = "mobilenet_v2"
DEFAULT_HARDWARE = "bismo-edge"
DEFAULT_BUDGET = "latency=0.6x"
ENFORCEMENTS = ("limit", "project")
ACTION_TYPES = ("continuous", "discrete")
RewardFn = Callable[[dict[str, Any]], float]


def _minmax(x: np.ndarray) -> np.ndarray:
    """Min-max normalise to [0, 1] over the network; a constant column becomes 0."""
    x = x.astype(np.float64)
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def layer_features(workload: LayerTable) -> np.ndarray:
    """HAQ's 8 per-layer features (indices 0-7 of the observation), ``float64[L, 8]`` in [0, 1].

    Layer index; in channels (in features); out channels (out features); kernel size (1 for a
    linear layer); stride (0 for a linear layer); input feature-map size ``in_h * in_w`` (in
    features for a linear layer); parameters; is-depthwise. Each min-max normalised over the
    network.
    """
    linear = workload.kind == LayerKind.LINEAR
    L = len(workload)
    cols = [
        np.arange(L),
        workload.cin,
        workload.cout,
        np.maximum(workload.kh, workload.kw),
        np.where(linear, 0, workload.stride),
        np.where(linear, workload.cin, workload.in_h * workload.in_w),
        workload.params,
        (workload.kind == LayerKind.DEPTHWISE).astype(np.int64),
    ]
    feats = np.stack([_minmax(c) for c in cols], axis=1)
    feats[:, 7] = cols[7]  # a flag stays a flag, even when every layer is depthwise
    return feats


class _Problem:
    """Everything both environments share: workload, hardware, table, ranges, budget, oracle."""

    def __init__(
        self,
        workload: LayerTable | str | None,
        hardware: Hardware | str | None,
        budget: Budget | str,
        oracle: AccuracyOracle | None,
        enforcement: str,
        action_type: str,
        min_bits: Any,
        max_bits: Any,
        pin: dict[int, tuple[int, int]] | None,
        reward_scale: float,
        reward_fn: RewardFn | None,
        batch: int | None,
        table: CostTable | None,
    ) -> None:
        if enforcement not in ENFORCEMENTS:
            raise unknown_name("enforcement", enforcement, ENFORCEMENTS)
        if action_type not in ACTION_TYPES:
            raise unknown_name("action_type", action_type, ACTION_TYPES)
        ok = isinstance(reward_scale, int | float) and not isinstance(reward_scale, bool)
        if not ok or not math.isfinite(reward_scale):
            raise PolicyError(f"reward_scale must be a finite number, got {reward_scale!r}")
        if reward_fn is not None and not callable(reward_fn):
            raise PolicyError(f"reward_fn must be callable(info) -> float, got {reward_fn!r}")
        self.table = _resolve_table(workload, hardware, batch, table, min_bits, max_bits, pin)
        wl = self.table.workload
        L = len(wl)
        self.w_lo, self.w_hi, self.a_lo, self.a_hi = bit_ranges(
            L, self.table.lo, self.table.hi, min_bits, max_bits, pin
        )
        self.decision_layer, self.decision_is_w = decision_order(
            self.w_lo, self.w_hi, self.a_lo, self.a_hi
        )
        if self.decision_layer.size == 0:
            raise PolicyError(
                f"at least one decision must be free (min_bits < max_bits on some layer that is "
                f"not pinned), got none of the {2 * L} for {wl.name!r}"
            )
        self.enforcer = BudgetEnforcer(
            self.table, budget, self.w_lo, self.w_hi, self.a_lo, self.a_hi
        )
        self.budget = self.enforcer.budget
        if oracle is None:
            oracle = NoiseProxyOracle(wl)
        if not isinstance(oracle, AccuracyOracle):
            raise PolicyError(
                f"oracle must have 'reference_accuracy' and be callable(w_bits, a_bits) -> "
                f"accuracy (see haqsim.AccuracyOracle), got {type(oracle).__name__}"
            )
        self.oracle = oracle
        self.enforcement = enforcement
        self.action_type = action_type
        self.reward_scale = float(reward_scale)
        self.reward_fn = reward_fn
        self.gmin = int(min(self.w_lo.min(), self.a_lo.min()))
        self.gmax = int(max(self.w_hi.max(), self.a_hi.max()))
        # Fixed decisions start (and stay) at their only value; free ones start at their minimum.
        self.w_init = self.w_lo.copy()
        self.a_init = self.a_lo.copy()
        ref = self.table.uniform(min(8, self.table.hi))
        self.ref8 = {m: float(ref.metric(m)[0]) for m in METRICS}

    def finish(
        self, w: np.ndarray, a: np.ndarray, req_w: np.ndarray, req_a: np.ndarray, changed: bool
    ) -> tuple[float, dict[str, Any]]:
        """Enforce (limit) the final policy, price it, ask the oracle; ``(reward, info)``."""
        changed = self.enforcer.limit_actions_inplace(w, a) or changed
        tot = self.enforcer.totals(w, a)
        costs = {
            "latency": tot["latency_s"],
            "energy": tot["energy_j"],
            "size": tot["size_bytes"],
            "bitops": tot["bitops"],
        }
        acc = float(self.oracle(w, a))
        if not math.isfinite(acc) or not 0.0 <= acc <= 1.0:
            raise PolicyError(f"oracle accuracy must be a number in [0, 1], got {acc!r}")
        ref_acc = float(self.oracle.reference_accuracy)
        metric = self.budget.metric
        info: dict[str, Any] = {
            "w_bits": w,
            "a_bits": a,
            "requested_w_bits": req_w,
            "requested_a_bits": req_a,
            "limited": bool(changed),
            "accuracy": acc,
            "reference_accuracy": ref_acc,
            "cycles": tot["cycles"],
            "latency_s": costs["latency"],
            "energy_j": costs["energy"],
            "size_bytes": costs["size"],
            "bitops": costs["bitops"],
            "cost": costs[metric],
            "cost_ratio": costs[metric] / self.ref8[metric],
            "budget_limit": self.enforcer.limit,
            **{f"{m}_ratio": costs[m] / self.ref8[m] for m in METRICS},
        }
        if self.reward_fn is not None:
            reward = float(self.reward_fn(info))
        else:
            reward = self.reward_scale * (acc - ref_acc)
        return reward, info


def _resolve_table(
    workload: LayerTable | str | None,
    hardware: Hardware | str | None,
    batch: int | None,
    table: CostTable | None,
    min_bits: Any,
    max_bits: Any,
    pin: dict[int, tuple[int, int]] | None,
) -> CostTable:
    if isinstance(workload, str):
        workload = zoo.get(workload)
    if isinstance(hardware, str):
        hardware = preset(hardware)
    if workload is not None and not isinstance(workload, LayerTable):
        raise PolicyError(
            f"workload must be a LayerTable or a zoo name, got {type(workload).__name__}"
        )
    if hardware is not None and not isinstance(hardware, BitSerialConfig | BitFusionConfig):
        raise PolicyError(
            f"hardware must be a preset name or a BitSerialConfig/BitFusionConfig, got "
            f"{type(hardware).__name__}"
        )
    if table is not None:
        if not isinstance(table, CostTable):
            raise PolicyError(f"table must be a CostTable, got {type(table).__name__}")
        if workload is not None and workload != table.workload:
            raise PolicyError(
                f"table must price the given workload {workload.name!r}, got a table for "
                f"{table.workload.name!r}"
            )
        if hardware is not None and hardware != table.hardware:
            raise PolicyError(
                f"table must price the given hardware {hardware.name!r}, got a table for "
                f"{table.hardware.name!r}"
            )
        if batch is not None and batch != table.batch:
            raise PolicyError(f"table must be built for batch {batch}, got batch {table.batch}")
        return table
    workload = zoo.get(DEFAULT_WORKLOAD) if workload is None else workload
    hardware = preset(DEFAULT_HARDWARE) if hardware is None else hardware
    wanted = [8, int(np.max(max_bits))] + [int(b) for bits in (pin or {}).values() for b in bits]
    return CostTable.build(
        workload, hardware, batch=batch, max_bits=min(max(wanted), hardware.max_bits)
    )


# The projection rule on Python lists: the same function as the Numba kernel's, run as plain Python
# (a step of the environment is a few list look-ups; a kernel call would cost more than the step).
_pick = _pick_kernel.py_func


_ARGS_DOC = """
    | Parameter      | Type                           | Default                               |
    |----------------|--------------------------------|---------------------------------------|
    | `workload`     | `LayerTable` or zoo name       | the table's, else `"mobilenet_v2"`    |
    | `hardware`     | config or preset name          | the table's, else `"bismo-edge"`      |
    | `budget`       | `Budget` or string             | `"latency=0.6x"`                      |
    | `oracle`       | `AccuracyOracle`               | `NoiseProxyOracle(workload)`          |
    | `enforcement`  | `"limit"` or `"project"`       | `"limit"`                             |
    | `action_type`  | `"continuous"` or `"discrete"` | `"continuous"`                        |
    | `min_bits`     | int, `(L,)` or `(L, 2)`        | `2`                                   |
    | `max_bits`     | int, `(L,)` or `(L, 2)`        | `8`                                   |
    | `pin`          | `{layer: (w_bits, a_bits)}`    | `None`                                |
    | `reward_scale` | float                          | `0.1`                                 |
    | `reward_fn`    | `callable(info) -> float`      | `None`                                |
    | `batch`        | int                            | the workload's, else the hardware's   |
    | `table`        | `CostTable`                    | built for workload and hardware       |
    | `render_mode`  | `None` or `"ansi"`             | `None`                                |

    - `budget`: latency, energy, model size or BitOps, absolute (`"latency=12ms"`,
      `"energy=2.1mJ"`, `"size=1.5MB"`) or relative to the uniform 8-bit policy (`"0.6x"`); see
      `haqsim.Budget`. A budget below the cheapest allowed policy is refused at construction
      (`BudgetError`, with that minimum in the message).
    - `enforcement`: `"limit"` is HAQ's post-episode action limiting (lower bits one step at a
      time from the last layer back, activation then weight, until the policy fits);
      `"project"` keeps every decision completable: the requested bits are lowered to the largest
      value for which the cheapest completion of the remaining decisions still fits.
    - `min_bits`, `max_bits`: a scalar, one value per layer, or `(L, 2)` (weight, activation)
      pairs, within the hardware's range. `pin` fixes layers (negative indices count from the
      end), e.g. HAQ's `{0: (8, 8), -1: (8, 8)}`; fixed decisions are not steps.
    - `oracle`: anything with `reference_accuracy` and `__call__(w_bits, a_bits) -> accuracy`.
    - `reward_fn`: replaces the default reward; it receives the final step's `info`.
    - `table`: a prebuilt `CostTable` (workload and hardware, if given, must match it).
    - `render_mode="ansi"`: `render()` returns the current policy as text.
"""

_EPISODE_END_DOC = """
    ## Rewards

    0 on every step but the last. On the last step the policy is enforced (see `enforcement`),
    priced and passed to the oracle; the reward is HAQ's
    `reward_scale * (accuracy - oracle.reference_accuracy)`, or `reward_fn(info)` when given. The
    reward has no cost term: the budget is a constraint, never traded against accuracy.

    The final step's `info` holds: `w_bits`, `a_bits` (the enforced policy, `int64[L]`),
    `requested_w_bits`, `requested_a_bits` (before enforcement), `limited` (whether enforcement
    changed anything), `accuracy`, `reference_accuracy`, `cycles`, `latency_s`, `energy_j`,
    `size_bytes`, `bitops`, `cost` and `cost_ratio` (the budget's metric, absolute and relative
    to the uniform 8-bit policy), `budget_limit`, and `latency_ratio`, `energy_ratio`,
    `size_ratio`, `bitops_ratio`. Every enforced policy is within the budget.
"""


class _Base(gym.Env[np.ndarray, Any]):
    metadata = {"render_modes": ["ansi"], "render_fps": 4}  # noqa: RUF012 - gymnasium convention

    def __init__(self, problem: _Problem, render_mode: str | None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise unknown_name("render_mode", render_mode, self.metadata["render_modes"])
        self.render_mode = render_mode
        self.problem = problem
        self._w = problem.w_init.copy()
        self._a = problem.a_init.copy()
        self._last_info: dict[str, Any] = {}

    # ------------------------------------------------------------------ public attributes
    @property
    def table(self) -> CostTable:
        """The cost table."""
        return self.problem.table

    @property
    def workload(self) -> LayerTable:
        return self.problem.table.workload

    @property
    def hardware(self) -> Hardware:
        return self.problem.table.hardware

    @property
    def budget(self) -> Budget:
        return self.problem.budget

    @property
    def enforcer(self) -> BudgetEnforcer:
        """The budget check, limiting and projection (limit, min_cost, references...)."""
        return self.problem.enforcer

    @property
    def oracle(self) -> AccuracyOracle:
        return self.problem.oracle

    @property
    def bit_ranges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-layer ``(w_lo, w_hi, a_lo, a_hi)``; pinned layers have ``lo == hi``."""
        p = self.problem
        return p.w_lo.copy(), p.w_hi.copy(), p.a_lo.copy(), p.a_hi.copy()

    def render(self) -> str | None:
        """``"ansi"``: the current (or last final) policy, one layer per line."""
        if self.render_mode != "ansi":
            return None
        wl = self.workload
        lines = [f"{'layer':<28} {'w':>2} {'a':>2}"]
        lines += [
            f"{wl.names[i][:28]:<28} {int(self._w[i]):>2} {int(self._a[i]):>2}"
            for i in range(len(wl))
        ]
        if self._last_info:
            i = self._last_info
            lines.append(
                f"accuracy {i['accuracy']:.4f}  {self.budget.metric} "
                f"{i['cost_ratio']:.3f}x of 8-bit  limited={i['limited']}"
            )
        return "\n".join(lines)


class MixedPrecisionEnv(_Base):
    __doc__ = (
        """Choose weight and activation bits layer by layer, HAQ-style, under a hardware budget.

    ## Description

    An episode walks the quantizable layers of a workload in forward order and takes two
    decisions per layer: the weight bitwidth, then the activation (input) bitwidth, as in HAQ
    (Wang et al., CVPR 2019). Decisions with a single allowed value (pinned layers, `min_bits ==
    max_bits`) are skipped, so an episode has `n_decisions <= 2L` steps. The policy's latency,
    energy, model size or BitOps come from a prebuilt `CostTable` of the accelerator; accuracy
    from an `AccuracyOracle` (by default `NoiseProxyOracle`, analytical, no model needed).

    ## Action Space

    `action_type="continuous"` (default): `Box(-1, 1, (1,), float32)`. With `x = (action + 1) / 2`
    in [0, 1] and the decision's range `[b_min, b_max]`, the bits are HAQ's
    `round(b_min - 0.5 + x * (b_max - b_min + 1))` clipped to `[b_min, b_max]` (ties rounded up):
    each bitwidth gets an equal share of the action interval.

    `action_type="discrete"`: `Discrete(n)` with `n = gmax - gmin + 1` over the widest range of
    any decision; action `k` asks for `gmin + k` bits, clipped to the decision's range.

    ## Observation Space

    A `float32` vector of shape `(14,)`, every entry in [0, 1]. Features 0-9 are HAQ's ten
    (static ones min-max normalised over the network); 10-13 are extras.

    | Num | Observation      | Min | Max |
    |-----|------------------|-----|-----|
    | 0   | layer_index      | 0   | 1   |
    | 1   | in_channels      | 0   | 1   |
    | 2   | out_channels     | 0   | 1   |
    | 3   | kernel_size      | 0   | 1   |
    | 4   | stride           | 0   | 1   |
    | 5   | input_map_size   | 0   | 1   |
    | 6   | params           | 0   | 1   |
    | 7   | is_depthwise     | 0   | 1   |
    | 8   | is_weight        | 0   | 1   |
    | 9   | previous_bits    | 0   | 1   |
    | 10  | budget_committed | 0   | 1   |
    | 11  | bits_headroom    | 0   | 1   |
    | 12  | min_bits         | 0   | 1   |
    | 13  | max_bits         | 0   | 1   |

    0-7 describe the layer being decided: its index, input channels (input features for a linear
    layer), output channels (output features), kernel size (1 for linear), stride (0 for linear),
    input feature-map size h*w (input features for linear), weight parameters, and a depthwise
    flag. 8 is 1 for a weight decision and 0 for an activation decision. 9 is the previous step's
    bits (after projection), as `(b - gmin) / (gmax - gmin)` over the widest range; 0 at the first
    step. 10 is (cost of everything decided + cheapest completion of the rest) / budget, capped
    at 1. 11 is the largest bits this decision can take while some completion still fits, scaled
    like 9 (0 if none). 12 and 13 are this decision's allowed range, scaled like 9.
"""
        + _EPISODE_END_DOC
        + """
    ## Starting State

    Deterministic: the first layer's first free decision; nothing is random (the oracle may be).

    ## Episode End

    Termination after the last decision (`n_decisions` steps). No truncation.

    ## Arguments
"""
        + _ARGS_DOC
        + """
    ```python
    >>> import gymnasium as gym, haqsim
    >>> env = gym.make("haqsim/MixedPrecision-v0", workload="mobilenet_v2",
    ...                hardware="bismo-edge", budget="latency=0.6x", pin={0: (8, 8), -1: (8, 8)})
    ```

    Useful attributes: `n_decisions`; `decisions`, the `(layer, is_weight)` arrays of the
    episode's steps; `decision_index`; `action_for(bits)`, the action that requests `bits` at the
    current decision; `table`, `enforcer` (limit, references, the limiting and projection
    themselves), `oracle`, `budget`, `bit_ranges`. Vectorise with `gymnasium.make_vec`
    (`"sync"` or `"async"`) or SB3's `DummyVecEnv`/`SubprocVecEnv`; pass a prebuilt `table` to
    skip rebuilding it in every worker.

    ## Version History

    * v0: initial version.
    """
    )

    def __init__(
        self,
        workload: LayerTable | str | None = None,
        hardware: Hardware | str | None = None,
        budget: Budget | str = DEFAULT_BUDGET,
        *,
        oracle: AccuracyOracle | None = None,
        enforcement: str = "limit",
        action_type: str = "continuous",
        min_bits: Any = 2,
        max_bits: Any = 8,
        pin: dict[int, tuple[int, int]] | None = None,
        reward_scale: float = 0.1,
        reward_fn: RewardFn | None = None,
        batch: int | None = None,
        table: CostTable | None = None,
        render_mode: str | None = None,
    ) -> None:
        problem = _Problem(
            workload,
            hardware,
            budget,
            oracle,
            enforcement,
            action_type,
            min_bits,
            max_bits,
            pin,
            reward_scale,
            reward_fn,
            batch,
            table,
        )
        super().__init__(problem, render_mode)
        p = problem
        self._discrete = action_type == "discrete"
        self._project = enforcement == "project"
        gn = p.gmax - p.gmin + 1
        if self._discrete:
            self.action_space = spaces.Discrete(gn)
        else:
            self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.observation_space = spaces.Box(0.0, 1.0, (len(FEATURE_NAMES),), np.float32)

        layers, is_w = p.decision_layer, p.decision_is_w
        n = layers.shape[0]
        self.n_decisions = n
        self.decisions = (layers.copy(), is_w.copy())
        lo_k = np.where(is_w, p.w_lo[layers], p.a_lo[layers])
        hi_k = np.where(is_w, p.w_hi[layers], p.a_hi[layers])
        inv = 1.0 / (p.gmax - p.gmin)
        rows = np.zeros((n, len(FEATURE_NAMES)), np.float64)
        rows[:, :8] = layer_features(self.workload)[layers]
        rows[:, 8] = is_w
        rows[:, 12] = (lo_k - p.gmin) * inv
        rows[:, 13] = (hi_k - p.gmin) * inv
        self._rows = rows.astype(np.float32)
        # Per-decision constants as Python scalars and lists: the step loop reads them directly.
        e = p.enforcer
        self._layer_k = layers.tolist()
        self._is_w_k = is_w.tolist()
        self._lo_k = lo_k.tolist()
        self._hi_k = hi_k.tolist()
        self._last_k = [k == n - 1 or layers[k + 1] != layers[k] for k in range(n)]
        self._base_k = [float(e.suffix_min[lay + 1]) for lay in self._layer_k]
        self._cost = e.cost.tolist()
        self._mgw = e.min_given_w.tolist()
        self._cap = float(e.native_limit)
        self._inv_cap = 1.0 / self._cap
        self._fixed = float(e.fixed_total)
        self._start_committed = min(1.0, (self._fixed + float(e.suffix_min[0])) * self._inv_cap)
        self._tlo = self.table.lo
        self._gmin = p.gmin
        self._inv = inv
        self._k = n  # reset() required before step()
        self._spent = self._fixed
        self._req_w = p.w_init.copy()
        self._req_a = p.a_init.copy()
        self._changed = False

    # ------------------------------------------------------------------ helpers
    def _headroom(self, k: int, spent: float) -> float:
        """Normalised largest bits decision ``k`` can take with a completion in budget."""
        lay = self._layer_k[k]
        c = self._mgw[lay] if self._is_w_k[k] else self._cost[lay][int(self._w[lay]) - self._tlo]
        base, cap, off = self._base_k[k], self._cap, self._tlo
        for b in range(self._hi_k[k], self._lo_k[k] - 1, -1):
            if spent + c[b - off] + base <= cap:
                return (b - self._gmin) * self._inv
        return 0.0

    def action_for(self, bits: int) -> np.ndarray | int:
        """The action that asks for ``bits`` at the current decision (the centre of its share)."""
        k = self._k
        if k >= self.n_decisions:
            raise ResetNeeded("action_for() needs an episode in progress; call reset() first")
        if self._discrete:
            return int(bits) - self._gmin
        lo, hi = self._lo_k[k], self._hi_k[k]
        x = (min(max(int(bits), lo), hi) - lo + 0.5) / (hi - lo + 1)
        return np.array([2.0 * x - 1.0], np.float32)

    @property
    def decision_index(self) -> int:
        """Index of the next decision (``n_decisions`` once the episode is over)."""
        return self._k

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        p = self.problem
        self._k = 0
        self._w[:] = p.w_init
        self._a[:] = p.a_init
        self._req_w[:] = p.w_init
        self._req_a[:] = p.a_init
        self._spent = self._fixed
        self._changed = False
        self._last_info = {}
        obs = self._rows[0].copy()
        obs[10] = self._start_committed
        obs[11] = self._headroom(0, self._spent)
        return obs, {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        k = self._k
        if k >= self.n_decisions:
            raise ResetNeeded("step() called after the episode ended; call reset() first")
        lo = self._lo_k[k]
        hi = self._hi_k[k]
        if self._discrete:
            b = self._gmin + int(action.item() if hasattr(action, "item") else action)
        else:
            try:
                x = float(action[0])
            except (TypeError, IndexError):
                x = float(action)
            if not -1.0 <= x <= 1.0:
                if x != x:
                    raise PolicyError(f"action must be a number in [-1, 1], got {x}")
                x = -1.0 if x < -1.0 else 1.0
            b = lo + int((x + 1.0) * 0.5 * (hi - lo + 1))
        b = lo if b < lo else hi if b > hi else b
        lay = self._layer_k[k]
        is_w = self._is_w_k[k]
        off = self._tlo
        if is_w:
            self._req_w[lay] = b
            c = self._mgw[lay]
        else:
            self._req_a[lay] = b
            c = self._cost[lay][int(self._w[lay]) - off]
        if self._project:
            req = b
            b = _pick(b, lo, hi, c, off, self._spent, self._base_k[k], self._cap)
            if b != req:
                self._changed = True
        if is_w:
            self._w[lay] = b
        else:
            self._a[lay] = b
        if self._last_k[k]:
            self._spent += self._cost[lay][int(self._w[lay]) - off][int(self._a[lay]) - off]
            pending = 0.0
        else:
            pending = c[b - off]
        self._k = k = k + 1
        if k < self.n_decisions:
            obs = self._rows[k].copy()
            obs[9] = (b - self._gmin) * self._inv
            committed = (self._spent + pending + self._base_k[k - 1]) * self._inv_cap
            obs[10] = committed if committed < 1.0 else 1.0
            obs[11] = self._headroom(k, self._spent)
            return obs, 0.0, False, False, {}
        # The episode ends: enforce, price, evaluate.
        p = self.problem
        w, a = self._w.copy(), self._a.copy()
        reward, info = p.finish(w, a, self._req_w.copy(), self._req_a.copy(), self._changed)
        self._w[:] = w
        self._a[:] = a
        self._last_info = info
        obs = self._rows[k - 1].copy()
        obs[9] = (b - self._gmin) * self._inv
        obs[10] = min(1.0, info["cost"] / p.enforcer.limit)
        obs[11] = 0.0
        return obs, reward, True, False, info


class MixedPrecisionOneShotEnv(_Base):
    __doc__ = (
        """Choose a whole mixed-precision policy in one step, under a hardware budget.

    ## Description

    The same problem as `MixedPrecisionEnv` (a workload on an accelerator, a budget, an accuracy
    oracle), posed as a one-step episode for black-box, evolutionary and bandit methods: the
    single action is the whole policy, the reward its (enforced) accuracy reward.

    ## Action Space

    `action_type="continuous"` (default): `Box(-1, 1, (2L,), float32)`, laid out in decision
    order `(w_0, a_0, w_1, a_1, ...)`; each entry maps to bits by HAQ's rounding rule over that
    entry's range (see `MixedPrecisionEnv`). Entries of pinned layers (or any single-valued range)
    are ignored. `action_type="discrete"`: `MultiDiscrete([n] * 2L)`, entry `k` asking for
    `gmin + k` bits, clipped to its range. :meth:`encode` and :meth:`decode` convert between
    actions and bit policies.

    ## Observation Space

    A constant `float32` vector of shape `(2,)` (the problem does not change between episodes):

    | Num | Observation      | Min | Max | Meaning |
    |-----|------------------|-----|-----|---------|
    | 0   | budget_ratio     | 0   | 1   | budget / uniform 8-bit cost, capped at 1 |
    | 1   | min_cost_ratio   | 0   | 1   | cheapest allowed policy's cost / budget |
"""
        + _EPISODE_END_DOC
        + """
    With `enforcement="project"` the whole policy is projected decision by decision in the
    sequential environment's order, so the same actions give the same final policy in both.

    ## Starting State

    Deterministic and constant.

    ## Episode End

    Termination after the single step. No truncation.

    ## Arguments
"""
        + _ARGS_DOC
        + """
    ## Version History

    * v0: initial version.
    """
    )

    def __init__(
        self,
        workload: LayerTable | str | None = None,
        hardware: Hardware | str | None = None,
        budget: Budget | str = DEFAULT_BUDGET,
        *,
        oracle: AccuracyOracle | None = None,
        enforcement: str = "limit",
        action_type: str = "continuous",
        min_bits: Any = 2,
        max_bits: Any = 8,
        pin: dict[int, tuple[int, int]] | None = None,
        reward_scale: float = 0.1,
        reward_fn: RewardFn | None = None,
        batch: int | None = None,
        table: CostTable | None = None,
        render_mode: str | None = None,
    ) -> None:
        problem = _Problem(
            workload,
            hardware,
            budget,
            oracle,
            enforcement,
            action_type,
            min_bits,
            max_bits,
            pin,
            reward_scale,
            reward_fn,
            batch,
            table,
        )
        super().__init__(problem, render_mode)
        p = problem
        L = len(self.workload)
        self._discrete = action_type == "discrete"
        self._project = enforcement == "project"
        gn = p.gmax - p.gmin + 1
        if self._discrete:
            self.action_space = spaces.MultiDiscrete(np.full(2 * L, gn, np.int64))
        else:
            self.action_space = spaces.Box(-1.0, 1.0, (2 * L,), np.float32)
        self.observation_space = spaces.Box(0.0, 1.0, (2,), np.float32)
        e = p.enforcer
        self._obs = np.array([min(1.0, e.limit / e.reference), e.min_cost / e.limit], np.float32)
        self._lo = np.stack([p.w_lo, p.a_lo], axis=1).reshape(-1)
        self._hi = np.stack([p.w_hi, p.a_hi], axis=1).reshape(-1)
        self._n = (self._hi - self._lo + 1).astype(np.float64)
        self._done = True

    def decode(self, action: Any) -> tuple[np.ndarray, np.ndarray]:
        """The requested ``(w_bits, a_bits)`` of an action, before enforcement."""
        x = np.asarray(action, np.float64)
        if x.shape != self.action_space.shape:
            raise PolicyError(
                f"action must have shape {self.action_space.shape}, got {np.shape(action)}"
            )
        if self._discrete:
            bits = self.problem.gmin + x.astype(np.int64)
        else:
            if np.isnan(x).any():
                raise PolicyError(f"action must hold numbers in [-1, 1], got {x.tolist()}")
            u = (np.clip(x, -1.0, 1.0) + 1.0) * 0.5
            bits = self._lo + (u * self._n).astype(np.int64)
        bits = np.clip(bits, self._lo, self._hi)
        return bits[0::2].copy(), bits[1::2].copy()

    def encode(self, w_bits: Any, a_bits: Any) -> np.ndarray:
        """An action that requests the policy ``(w_bits, a_bits)`` (clipped to the ranges)."""
        L = len(self.workload)
        bits = np.stack(
            [
                np.broadcast_to(np.asarray(w_bits, np.int64), (L,)),
                np.broadcast_to(np.asarray(a_bits, np.int64), (L,)),
            ],
            axis=1,
        ).reshape(-1)
        bits = np.clip(bits, self._lo, self._hi)
        if self._discrete:
            return (bits - self.problem.gmin).astype(np.int64)
        return (2.0 * (bits - self._lo + 0.5) / self._n - 1.0).astype(np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._done = False
        self._last_info = {}
        return self._obs.copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise ResetNeeded("step() called after the episode ended; call reset() first")
        req_w, req_a = self.decode(action)
        e = self.problem.enforcer
        if self._project:
            w, a, changed = e.project(req_w, req_a)
        else:
            w, a = req_w.copy(), req_a.copy()
            changed = False
        reward, info = self.problem.finish(w, a, req_w, req_a, changed)
        self._w[:] = w
        self._a[:] = a
        self._done = True
        self._last_info = info
        return self._obs.copy(), reward, True, False, info


def register_envs() -> None:
    """Register the haqsim environment ids with Gymnasium (idempotent)."""
    entries = (
        (ENV_IDS[0], "haqsim.env:MixedPrecisionEnv", {}),
        (ENV_IDS[1], "haqsim.env:MixedPrecisionEnv", {"action_type": "discrete"}),
        (ENV_IDS[2], "haqsim.env:MixedPrecisionOneShotEnv", {}),
    )
    for env_id, entry_point, kwargs in entries:
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, kwargs=kwargs)


register_envs()
