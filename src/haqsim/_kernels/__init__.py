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
