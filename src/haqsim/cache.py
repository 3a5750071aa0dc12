"""Where haqsim and haqsearch keep what they compute once: cost tables, trained models, runs.

One root for all of it: ``$HAQSIM_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/haqsim``, else
``~/.cache/haqsim``; each kind of file lives in its own subfolder.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(kind: str) -> Path:
    """The folder for one kind of cached file (``"tables"``, ``"models"``...); not created."""
    root = os.environ.get("HAQSIM_CACHE_DIR")
    if root:
        return Path(root) / kind
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "haqsim" / kind
