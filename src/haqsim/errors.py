"""Exceptions raised by haqsim.

Every error subclasses :class:`HaqsimError`, which subclasses :class:`ValueError`, so callers can
catch either. Messages name the subject, the rule and the offending value, e.g.
``layer 3 'w_bits' must be in [1, 8], got 9``.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "BudgetError",
    "HaqsimError",
    "HardwareError",
    "PolicyError",
    "UnknownNameError",
    "WorkloadError",
    "unknown_name",
    "valid_names",
]


class HaqsimError(ValueError):
    """Base class of every error haqsim raises on bad input."""


class WorkloadError(HaqsimError):
    """A layer table is malformed: a non-positive shape, inconsistent sizes, a bad file."""


class HardwareError(HaqsimError):
    """A hardware configuration is inconsistent or cannot run a layer."""


class PolicyError(HaqsimError):
    """A bit policy has the wrong length or bits outside the allowed range."""


class BudgetError(HaqsimError):
    """A resource budget is malformed or cannot be met."""


class UnknownNameError(HaqsimError, KeyError):
    """A workload, preset, searcher or other named thing does not exist.

    The message lists the valid names.
    """

    def __str__(self) -> str:  # KeyError would repr() the message; keep it readable.
        return str(self.args[0]) if self.args else ""


def valid_names(subject: str, valid: Iterable[str]) -> str:
    """``valid {subject}s are: a, b, c`` (sorted): how every message listing valid names ends."""
    return f"valid {subject}s are: {', '.join(sorted(valid))}"


def unknown_name(
    subject: str, name: object, valid: Iterable[str], *, owner: str | None = None
) -> UnknownNameError:
    """Build the error for an unknown ``name`` of kind ``subject``, listing the valid names.

    With ``owner`` (e.g. ``"workload 'vgg16'"``), ``name`` is not one of that thing's own
    ``subject``s, which are listed in their given order: ``{owner} has no {subject} {name!r}; its
    {subject}s are: ...``.
    """
    if owner is None:
        return UnknownNameError(f"unknown {subject} {name!r}; {valid_names(subject, valid)}")
    return UnknownNameError(
        f"{owner} has no {subject} {name!r}; its {subject}s are: {', '.join(valid)}"
    )
