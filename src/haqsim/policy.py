"""Per-layer bit policies and their JSON file format.

A policy file keys bits by layer name, so it survives reordering and is readable::

    {"workload": "mobilenet_v2", "hardware": "bismo-edge",
     "layers": {"features.0.0": {"w_bits": 8, "a_bits": 8}, ...},
     "summary": {...}}

In code, policies are indexed by layer position (numpy arrays in workload order).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from haqsim.errors import PolicyError
from haqsim.workload import LayerTable

__all__ = ["Policy"]


def _bits_array(values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=np.int64)
    arr.setflags(write=False)
    return arr


@attrs.frozen(eq=False)
class Policy:
    """Weight and input-activation bits per layer, in workload order.

    Attributes:
        names: Layer names.
        w_bits: Weight bits per layer.
        a_bits: Input-activation bits per layer.
        meta: Free-form extras written to and read from the file (summary, costs, accuracy).
    """

    names: tuple[str, ...] = attrs.field(converter=tuple)
    w_bits: np.ndarray = attrs.field(converter=_bits_array)
    a_bits: np.ndarray = attrs.field(converter=_bits_array)
    meta: dict[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        repeated = [name for name, k in Counter(self.names).items() if k > 1]
        if repeated:
            raise PolicyError(
                f"policy layer names must be unique, got {repeated[:5]} more than once"
            )
        n = len(self.names)
        for field in ("w_bits", "a_bits"):
            shape = getattr(self, field).shape
            if shape != (n,):
                raise PolicyError(f"policy {field!r} must have {n} entries, got shape {shape}")

    def ordered_as(
        self, names: Sequence[str], target: str | None = None, source: str = "policy"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Weight and input bits in the order of ``names``, matched by layer name.

        Args:
            names: The layer names to order by (a workload's, a traced model's).
            target: What ``names`` are, for the error message (default: "the N layers").
            source: Where the policy came from, for the error message.

        Raises:
            PolicyError: If a name of ``names`` is not in the policy, or the policy has a name
                ``names`` lacks.
        """
        index = {n: i for i, n in enumerate(self.names)}
        missing = [n for n in names if n not in index]
        known = set(names)
        unknown = [n for n in self.names if n not in known]
        if missing or unknown:
            raise PolicyError(
                f"{source} layer names must match {target or f'the {len(names)} layers'}, got "
                f"{len(self.names)} names; missing {missing[:5]}, unknown {unknown[:5]}"
            )
        order = [index[n] for n in names]
        return self.w_bits[order], self.a_bits[order]

    @classmethod
    def uniform(cls, workload: LayerTable, w_bits: int, a_bits: int | None = None) -> Policy:
        n = len(workload)
        a = w_bits if a_bits is None else a_bits
        return cls(workload.names, np.full(n, w_bits), np.full(n, a))

    def to_dict(self) -> dict[str, Any]:
        layers = {
            name: {"w_bits": int(w), "a_bits": int(a)}
            for name, w, a in zip(self.names, self.w_bits, self.a_bits, strict=True)
        }
        return {**self.meta, "layers": layers}

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(
        cls, data: Any, workload: LayerTable | None = None, source: str = "policy"
    ) -> Policy:
        """Read ``{"layers": {name: {"w_bits", "a_bits"}}}``; order and check against ``workload``.

        Also accepts ``{"w_bits": [...], "a_bits": [...]}`` (positional, needs no names when a
        workload is given).
        """
        if not isinstance(data, dict):
            raise PolicyError(f"{source} must be a JSON object, got {type(data).__name__}")
        meta = {k: v for k, v in data.items() if k not in ("layers", "w_bits", "a_bits")}
        if "layers" in data:
            layers = data["layers"]
            if not isinstance(layers, dict):
                raise PolicyError(f"{source} 'layers' must map layer names to bits")
            for name, bits in layers.items():
                if not isinstance(bits, dict) or not {"w_bits", "a_bits"} <= set(bits):
                    raise PolicyError(
                        f"{source} layer {name!r} must have 'w_bits' and 'a_bits', got {bits!r}"
                    )
            names = list(layers)
            w = [layers[n]["w_bits"] for n in names]
            a = [layers[n]["a_bits"] for n in names]
        elif "w_bits" in data and "a_bits" in data:
            w, a = data["w_bits"], data["a_bits"]
            names = list(workload.names) if workload is not None else data.get("names")
            if names is None:
                raise PolicyError(f"{source} with positional bits needs 'names' or a workload")
        else:
            raise PolicyError(f"{source} must have 'layers' (or 'w_bits' and 'a_bits')")
        for field, values in (("w_bits", w), ("a_bits", a)):
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise PolicyError(f"{source} {field!r} must be integers, got {list(values)[:8]}")
            if len(values) != len(names):
                raise PolicyError(
                    f"{source} {field!r} must have {len(names)} entries (one per layer), "
                    f"got {len(values)}"
                )
        policy = cls(names, w, a, meta)
        if workload is None:
            return policy
        target = f"workload {workload.name!r} ({len(workload)} layers)"
        return cls(workload.names, *policy.ordered_as(workload.names, target, source), meta)

    @classmethod
    def from_json(cls, path: str | Path, workload: LayerTable | None = None) -> Policy:
        """Read a policy file; with ``workload``, bits come back in its layer order."""
        source = f"policy file {str(path)!r}"
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PolicyError(f"{source} must be readable JSON: {exc}") from None
        return cls.from_dict(data, workload, source)
