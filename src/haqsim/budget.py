"""Resource budgets: latency, energy, model size or BitOps, absolute or relative to 8 bits.

A :class:`Budget` is a frozen value: a metric, a number and whether the number is relative to the
uniform 8-bit policy. :meth:`Budget.parse` reads the compact string form used on command lines and
in ``gymnasium.make`` keyword arguments::

    >>> Budget.parse("latency=0.5x")          # half the uniform 8-bit latency
    Budget(metric='latency', value=0.5, relative=True)
    >>> Budget.parse("energy=2.1mJ").value    # absolute, in joules
    0.0021
    >>> Budget.parse("size=1.5MiB").value     # absolute, in bytes
    1572864.0

Units (case-sensitive; a plain number means the base unit):

========  =========  ==========================================================
metric    base unit  accepted units
========  =========  ==========================================================
latency   s          ``s``, ``ms``, ``us`` (``µs``), ``ns``
energy    J          ``J``, ``mJ``, ``uJ`` (``µJ``), ``nJ``, ``pJ``
size      B          ``B``, ``kB``/``KB``, ``MB``, ``GB`` (powers of 1000),
                     ``KiB``, ``MiB``, ``GiB`` (powers of 1024)
bitops    ops        ``ops``, ``Kops``, ``Mops``, ``Gops``, ``Tops``
========  =========  ==========================================================

A relative budget is written with an ``x`` suffix (``0.6x``) or as a percentage (``60%``). Latency
is for the whole batch the :class:`~haqsim.cost.CostTable` was built for; BitOps are per image.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import attrs

from haqsim.errors import BudgetError

if TYPE_CHECKING:
    from haqsim.cost import CostTable

__all__ = ["BASE_UNITS", "METRICS", "UNITS", "Budget", "format_quantity"]

#: The budgetable metrics, in the order they are listed in messages.
METRICS: tuple[str, ...] = ("latency", "energy", "size", "bitops")

#: Base unit of each metric: what :meth:`Budget.resolve` returns.
BASE_UNITS: dict[str, str] = {"latency": "s", "energy": "J", "size": "B", "bitops": "ops"}

#: Accepted units per metric and their factor to the base unit.
UNITS: dict[str, dict[str, float]] = {
    "latency": {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9},
    "energy": {"J": 1.0, "mJ": 1e-3, "uJ": 1e-6, "µJ": 1e-6, "nJ": 1e-9, "pJ": 1e-12},
    "size": {
        "B": 1.0,
        "kB": 1e3,
        "KB": 1e3,
        "MB": 1e6,
        "GB": 1e9,
        "KiB": 1024.0,
        "MiB": 1024.0**2,
        "GiB": 1024.0**3,
    },
    "bitops": {"ops": 1.0, "Kops": 1e3, "Mops": 1e6, "Gops": 1e9, "Tops": 1e12},
}

# Units used to print a quantity, largest first.
_DISPLAY: dict[str, tuple[tuple[str, float], ...]] = {
    "latency": (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)),
    "energy": (("J", 1.0), ("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9), ("pJ", 1e-12)),
    "size": (("GB", 1e9), ("MB", 1e6), ("kB", 1e3), ("B", 1.0)),
    "bitops": (("Tops", 1e12), ("Gops", 1e9), ("Mops", 1e6), ("Kops", 1e3), ("ops", 1.0)),
}

_PATTERN = re.compile(
    r"^\s*(?P<metric>[A-Za-z_]+)\s*=\s*"
    r"(?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<unit>[A-Za-zµ%]*)\s*$"
)


def format_quantity(metric: str, value: float) -> str:
    """Print ``value`` (in the metric's base unit) with a readable unit, e.g. ``2.4 ms``."""
    for unit, factor in _DISPLAY[metric]:
        if abs(value) >= factor:
            return f"{value / factor:.4g} {unit}"
    unit, factor = _DISPLAY[metric][-1]
    return f"{value / factor:.4g} {unit}"


def _valid_metric(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value not in METRICS:
        raise BudgetError(f"budget metric must be one of {', '.join(METRICS)}, got {value!r}")


def _valid_value(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value <= 0:
        raise BudgetError(f"budget value must be a finite number > 0, got {value!r}")


@attrs.frozen
class Budget:
    """A resource budget on one cost metric.

    Attributes:
        metric: ``"latency"``, ``"energy"``, ``"size"`` or ``"bitops"``.
        value: The limit: a fraction of the uniform 8-bit policy's cost when ``relative``, else
            an absolute amount in the metric's base unit (seconds, joules, bytes or BitOps).
        relative: Whether ``value`` is relative to the uniform 8-bit policy.
    """

    metric: str = attrs.field(validator=_valid_metric)
    value: float = attrs.field(validator=_valid_value)
    relative: bool = attrs.field(default=False, converter=bool)

    @classmethod
    def parse(cls, text: str) -> Budget:
        """Read ``"metric=number[unit]"``; ``x`` or ``%`` as the unit makes it relative.

        Examples: ``"latency=0.5x"``, ``"latency=12ms"``, ``"energy=2.1mJ"``, ``"size=1.5MB"``,
        ``"bitops=3.2Gops"``, ``"size=60%"``.

        Raises:
            BudgetError: malformed text, an unknown metric, or a unit that does not belong to
                the metric (the message lists the valid metrics or units).
        """
        if not isinstance(text, str):
            raise BudgetError(
                f"budget must be a Budget or a string like 'latency=0.5x', got "
                f"{type(text).__name__}"
            )
        m = _PATTERN.match(text)
        if m is None:
            raise BudgetError(
                f"budget must look like 'metric=number[unit]' (e.g. 'latency=0.5x', "
                f"'energy=2.1mJ', 'size=1.5MB'), got {text!r}; valid metrics are "
                f"{', '.join(METRICS)}"
            )
        metric = m["metric"].lower()
        if metric not in METRICS:
            raise BudgetError(
                f"budget {text!r} metric must be one of {', '.join(METRICS)}, got {m['metric']!r}"
            )
        number = float(m["number"])
        unit = m["unit"]
        if unit in ("x", "X", "%"):
            value = number / 100.0 if unit == "%" else number
            return cls(metric, _checked(text, value), relative=True)
        if unit == "":
            return cls(metric, _checked(text, number), relative=False)
        factor = UNITS[metric].get(unit)
        if factor is None:
            valid = ", ".join([*UNITS[metric], "x (relative to 8 bits)", "%"])
            raise BudgetError(
                f"budget {text!r} unit for {metric} must be one of {valid}, got {unit!r}"
            )
        return cls(metric, _checked(text, number * factor), relative=False)

    @classmethod
    def coerce(cls, budget: Budget | str) -> Budget:
        """A :class:`Budget` as is, or a string through :meth:`parse`."""
        return budget if isinstance(budget, Budget) else cls.parse(budget)

    @property
    def unit(self) -> str:
        """``"x"`` for a relative budget, else the metric's base unit."""
        return "x" if self.relative else BASE_UNITS[self.metric]

    def reference(self, table: CostTable) -> float:
        """The uniform 8-bit policy's cost on ``table`` in the metric's base unit.

        Uses the table's largest bitwidth when the hardware cannot run 8 bits.
        """
        bits = min(8, table.hi)
        return float(table.uniform(bits).metric(self.metric)[0])

    def resolve(self, table: CostTable) -> float:
        """The absolute limit on ``table``, in the metric's base unit."""
        return self.value * self.reference(table) if self.relative else float(self.value)

    def __str__(self) -> str:
        if self.relative:
            return f"{self.metric}={self.value:g}x"
        return f"{self.metric}={format_quantity(self.metric, self.value).replace(' ', '')}"


def _checked(text: str, value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise BudgetError(f"budget {text!r} value must be a finite number > 0, got {value:g}")
    return value
