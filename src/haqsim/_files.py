"""Name-or-file arguments: when a string names a file, and the error when that file is missing.

A workload or hardware argument is a built-in name or a file. It is taken for a file when it has
one of the file suffixes or a path separator; such a string must then be an existing file with one
of those suffixes, so a mistyped path is reported as a missing file, not as an unknown name.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from haqsim.errors import HaqsimError, valid_names

__all__ = ["named_file"]


def named_file(
    value: str,
    suffixes: tuple[str, ...],
    error: type[HaqsimError],
    subject: str,
    kind: str,
    valid: Iterable[str],
) -> Path | None:
    """The ``subject`` file ``value`` names, or ``None`` when it is a plain name.

    Args:
        value: The argument.
        suffixes: The file suffixes, lower case (``(".toml", ".json")``).
        error: The error to raise.
        subject: What the file holds, for the message (``"hardware"``).
        kind: What the built-in names are, for the message (``"hardware preset"``).
        valid: The built-in names, listed in the message in case one was meant.

    Raises:
        error: ``value`` looks like a path but is not an existing file with one of ``suffixes``.
    """
    path = Path(value)
    suffix = path.suffix.lower()
    if suffix not in suffixes and "/" not in value and os.sep not in value:
        return None
    if suffix not in suffixes:
        problem = f"must end in {' or '.join(suffixes)}"
    elif not path.is_file():
        problem = "is not a file" if path.exists() else "does not exist"
    else:
        return path
    raise error(f"{subject} file {value!r} {problem}; {valid_names(kind, valid)}")
