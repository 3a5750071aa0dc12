"""Shared test setup: a private Numba cache so tests never write into the source tree."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("NUMBA_CACHE_DIR", tempfile.mkdtemp(prefix="haqsim-numba-"))
os.environ.setdefault("HAQSIM_CACHE_DIR", tempfile.mkdtemp(prefix="haqsim-cache-"))
os.environ.setdefault("MPLBACKEND", "Agg")
