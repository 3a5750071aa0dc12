"""Exceptions raised by haqsearch.

Every error subclasses :class:`HaqsearchError`, which subclasses :class:`ValueError`, so callers can
catch either. Messages name the subject, the rule and the offending value, e.g.
``module 'features.3' (Conv2d) dilation must be 1, got (2, 2)``.
"""

from __future__ import annotations

__all__ = ["HaqsearchError", "TraceError"]


class HaqsearchError(ValueError):
    """Base class of every error haqsearch raises on bad input."""


class TraceError(HaqsearchError):
    """A model cannot be traced into a workload.

    Raised when the model has no quantizable layers, fails on the example input, calls a module
    more than once (under ``shared="error"``), or has a layer the workload cannot describe
    (dilation, unequal strides).
    """
