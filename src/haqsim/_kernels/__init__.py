"""Private Numba kernels: arrays and scalars in, preallocated arrays out; no objects, no globals.

Shared output layout (one row per task = one layer at one (w, a) pair):

``out_int`` columns (``int64``), see :data:`INT_FIELDS`::

    0 compute_cycles   1 stall_cycles   2 memory_cycles   3 dram_read_bits
    4 dram_write_bits  5 buffer_read_bits   6 buffer_write_bits

``out_float`` columns (``float64``, picojoules), see :data:`FLOAT_FIELDS`::

    0 compute_pj   1 onchip_pj   2 dram_pj

The ``layers`` argument is :meth:`haqsim.LayerTable.kernel_array` (columns
:data:`haqsim.workload.KERNEL_COLUMNS`).
"""

import os

import numba


def _prefer_fork_safe_threads() -> None:
    """Make Numba's parallel kernels fork-safe, unless the user chose a threading layer.

    On Linux, Numba's default ``omp`` layer uses GNU OpenMP, after which ``fork()`` kills the
    child ("fork() called from a process already using GNU OpenMP"): ``AsyncVectorEnv``,
    ``SubprocVecEnv`` and multiprocessing workers with the ``fork`` start method would fail once
    a cost table was built. ``forksafe`` picks TBB when installed, else Numba's ``workqueue``
    (which also starts far faster for the small calls the environments make). It takes effect
    only before the first parallel kernel runs, which importing any kernel module guarantees;
    setting ``NUMBA_THREADING_LAYER`` overrides it.

    The choice is also written to the environment: Numba re-reads its configuration from the
    ``NUMBA_*`` variables whenever one of them changed since import (at the next compilation),
    which would silently put back ``default`` (and so GNU OpenMP) before the first kernel runs.
    Child processes inherit the same choice.
    """
    if numba.config.THREADING_LAYER == "default" and "NUMBA_THREADING_LAYER" not in os.environ:
        os.environ["NUMBA_THREADING_LAYER"] = "forksafe"
        numba.config.THREADING_LAYER = "forksafe"


_prefer_fork_safe_threads()

INT_FIELDS = (
    "compute_cycles",
    "stall_cycles",
    "memory_cycles",
    "dram_read_bits",
    "dram_write_bits",
    "buffer_read_bits",
    "buffer_write_bits",
)
FLOAT_FIELDS = ("compute_pj", "onchip_pj", "dram_pj")
