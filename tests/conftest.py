"""Shared test setup.

* A private Numba cache and haqsim cache (trained models, cost tables) per test session, so tests
  never write into the source tree or the user's cache.
* One intra-op thread for torch (and anything else using OpenMP): the built-in models are tiny,
  and on a small machine whose cores are shared (CI, subprocess tests, parallel workers) several
  spinning OpenMP pools slow training and fine-tuning by an order of magnitude.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("NUMBA_CACHE_DIR", tempfile.mkdtemp(prefix="haqsim-numba-"))
os.environ.setdefault("HAQSIM_CACHE_DIR", tempfile.mkdtemp(prefix="haqsim-cache-"))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "1")
