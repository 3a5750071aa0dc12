"""haqsearch: hardware-aware mixed-precision search over PyTorch models.

Trace a model into a haqsim workload with :func:`trace`; the module-level imports stay light
(torch and haqsim's workload only).
"""

from haqsearch.errors import HaqsearchError
from haqsearch.trace import Traced, trace

__all__ = [
    # errors
    "HaqsearchError",
    # tracing
    "Traced",
    "trace",
]
