"""When a parallel kernel is worth starting: Numba's thread pool costs about 0.1 ms a launch."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numba

_forced: bool | None = None


def parallel_pays(work: int, threshold: int) -> bool:
    """True when ``work`` items reach ``threshold`` and more than one Numba thread is set
    (or whatever :func:`force_parallel` set)."""
    if _forced is not None:
        return _forced
    return work >= threshold and numba.get_num_threads() > 1


@contextmanager
def force_parallel(parallel: bool) -> Iterator[None]:
    """Run every kernel in its parallel (or its serial) form inside the block: for compiling
    both forms ahead of use, and for tests that the two agree."""
    global _forced
    before, _forced = _forced, parallel
    try:
        yield
    finally:
        _forced = before
