"""Whole-number checks of user input: bit policies, bit ranges and workload columns.

Whole numbers are integers and floats with no fractional part (``3.0``, not ``3.5``); bools, NaN,
infinities, strings, complex numbers and other objects are not.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["first_non_integer", "first_non_int64", "int64_rule", "plain_scalar"]

_INT64 = np.iinfo(np.int64)
_NOT_INTEGER = "must be an integer"
_OUTSIDE_INT64 = f"must be an integer in [{_INT64.min}, {_INT64.max}]"


def first_non_integer(arr: np.ndarray) -> int | None:
    """Flat index of the first entry that is not a whole number (bools count as not), or None."""
    if np.issubdtype(arr.dtype, np.integer):
        return None
    if np.issubdtype(arr.dtype, np.floating):
        bad = np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)))
        return int(bad[0]) if bad.size else None
    for i, v in enumerate(arr.flat):  # objects or strings: look at each entry
        if isinstance(v, bool | np.bool_ | np.complexfloating) or not isinstance(
            v, int | float | np.integer | np.floating
        ):
            return i
        if isinstance(v, float | np.floating) and not float(v).is_integer():
            return i
    return None


def first_non_int64(arr: np.ndarray) -> tuple[int, str] | None:
    """Flat index of the first entry that is not a whole number in ``int64``'s range, and the rule
    it breaks (``must be an integer``, or ``must be an integer in [min, max]``), or None."""
    i = first_non_integer(arr)
    if i is not None:
        return i, _NOT_INTEGER
    if arr.dtype.kind == "i" or (arr.dtype.kind == "u" and arr.dtype.itemsize < 8):
        return None
    if arr.dtype.kind == "f":
        outside = (arr < -(2.0**63)) | (arr >= 2.0**63)
    elif arr.dtype.kind == "u":
        outside = arr > _INT64.max
    else:  # whole-number objects: Python ints of any size among them
        outside = np.array([not _INT64.min <= int(v) <= _INT64.max for v in arr.flat], bool)
    bad = np.flatnonzero(outside)
    return (int(bad[0]), _OUTSIDE_INT64) if bad.size else None


def int64_rule(value: Any) -> str | None:
    """The rule one ``value`` breaks as an ``int64`` (see :func:`first_non_int64`), or None."""
    cell = np.empty(1, dtype=object)  # holds any value as one entry, a list or an array too
    cell[0] = value
    found = first_non_int64(cell)
    return None if found is None else found[1]


def plain_scalar(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (for error messages)."""
    return value.item() if isinstance(value, np.generic) else value
