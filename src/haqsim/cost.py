"""Cost estimation: per-layer and total cycles, latency, energy, traffic, size and BitOps.

* :func:`estimate` runs the hardware model on one policy and returns a :class:`CostReport`.
* :class:`CostTable` runs it once for every layer and every (w, a) pair; a policy is then a gather
  and a sum, and :meth:`CostTable.evaluate` prices thousands of policies in one call. Its entries
  are exactly the per-layer :func:`estimate` results, and its totals exactly :func:`estimate`'s.

Units: cycles and bits are integers; energy is in joules at this API (picojoules per layer in the
``*_pj`` arrays); latency in seconds, for the whole batch; size in bytes; BitOps per image.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import attrs
import numba
import numpy as np

from haqsim._kernels import FLOAT_FIELDS, INT_FIELDS
from haqsim._kernels.bitfusion import STREAM_MASKS, bitfusion_costs, permutation_tables
from haqsim._kernels.bitserial import bitserial_costs
from haqsim._kernels.launch import force_parallel
from haqsim._kernels.policy import gather_totals
from haqsim._numbers import first_non_integer, plain_scalar
from haqsim.cache import cache_dir
from haqsim.errors import HardwareError, PolicyError
from haqsim.hardware import BitFusionConfig, BitSerialConfig, Hardware, preset
from haqsim.workload import LayerTable

__all__ = ["CostReport", "CostTable", "PolicyCosts", "estimate", "warmup"]

PJ_TO_J = 1e-12
_TABLE_FORMAT = 2  # bump when the kernels' arithmetic or the file layout changes
_PERMS, _PERM_OFFSETS = permutation_tables()
MAP_FIELDS = (
    "tile_b",
    "tile_ow",
    "tile_oh",
    "tile_ic",
    "tile_oc",
    "loop_order",
    "dataflow",
    "im2col",
)
_LOOP_NAMES = ("B", "OW", "OH", "IC", "OC")  # loop codes 0..4 of the Bit Fusion kernel
_DATAFLOWS = ("input-stationary", "output-stationary", "weight-stationary")


def _resolve_batch(workload: LayerTable, hardware: Hardware, batch: int | None) -> int:
    b = batch if batch is not None else workload.batch if workload.batch is not None else None
    b = hardware.batch if b is None else b
    if isinstance(b, bool) or not isinstance(b, int | np.integer) or b < 1:
        raise PolicyError(f"batch must be a positive integer, got {b!r}")
    return int(b)


def as_bits(bits: Any, n_layers: int, lo: int, hi: int, name: str) -> np.ndarray:
    """Broadcast a scalar or check a per-layer sequence of bits; ``int64`` array of length L.

    Raises:
        PolicyError: wrong length, non-integer values, or bits outside ``[lo, hi]``.
    """
    arr = np.asarray(bits)
    if arr.ndim == 0:
        arr = np.full(n_layers, arr)
    if arr.ndim != 1 or arr.shape[0] != n_layers:
        raise PolicyError(
            f"policy {name!r} must have {n_layers} entries (one per layer), got shape {arr.shape}"
        )
    i = first_non_integer(arr)
    if i is not None:
        value = plain_scalar(arr.flat[i])
        raise PolicyError(f"layer {i} {name!r} must be an integer, got {value!r}")
    out = arr.astype(np.int64)
    bad = np.flatnonzero((out < lo) | (out > hi))
    if bad.size:
        i = int(bad[0])
        raise PolicyError(f"layer {i} {name!r} must be in [{lo}, {hi}], got {int(out[i])}")
    return out


def _kernel_args(hardware: Hardware) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(hardware, BitSerialConfig):
        hw_int = [
            hardware.dm,
            hardware.dn,
            hardware.dk,
            hardware.fetch_bits_per_cycle,
            hardware.w_bits_per_pass,
            hardware.a_bits_per_pass,
            hardware.result_bits,
        ]
        hw_pj = [
            hardware.dpu_pj_per_cycle,
            hardware.buffer_read_pj_per_bit,
            hardware.buffer_write_pj_per_bit,
            hardware.dram_pj_per_bit,
        ]
    else:
        hw_int = [
            hardware.n_rows,
            hardware.m_cols,
            hardware.dram_bits_per_cycle,
            hardware.wbuf_bytes * 8,
            hardware.ibuf_bytes * 8,
            hardware.obuf_bytes * 8,
        ]
        hw_pj = [
            hardware.core_pj_per_fu_cycle,
            hardware.wbuf_read_pj_per_bit,
            hardware.wbuf_write_pj_per_bit,
            hardware.ibuf_read_pj_per_bit,
            hardware.ibuf_write_pj_per_bit,
            hardware.obuf_read_pj_per_bit,
            hardware.obuf_write_pj_per_bit,
            hardware.dram_pj_per_bit,
        ]
    return np.array(hw_int, np.int64), np.array(hw_pj, np.float64)


def _run_kernel(
    workload: LayerTable,
    hardware: Hardware,
    layer_index: np.ndarray,
    w_bits: np.ndarray,
    a_bits: np.ndarray,
    batch: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-task (int figures, pJ figures, mapping) for tasks (layer, w, a); validated inputs."""
    n = layer_index.shape[0]
    out_int = np.zeros((n, len(INT_FIELDS)), np.int64)
    out_float = np.zeros((n, len(FLOAT_FIELDS)), np.float64)
    out_map = np.zeros((n, len(MAP_FIELDS)), np.int64)
    layers = workload.kernel_array()
    hw_int, hw_pj = _kernel_args(hardware)
    if isinstance(hardware, BitSerialConfig):
        bitserial_costs(n)(
            layers, layer_index, w_bits, a_bits, batch, hw_int, hw_pj, out_int, out_float
        )
        return out_int, out_float, out_map
    found = np.ones(n, np.int64)
    with numba.parallel_chunksize(1):  # tasks differ widely in cost: hand them out one by one
        bitfusion_costs(n)(
            *(layers, layer_index, w_bits, a_bits, batch, hw_int, hw_pj, STREAM_MASKS),
            *(_PERMS, _PERM_OFFSETS, out_int, out_float, out_map, found),
        )
    if not found.all():
        t = int(np.flatnonzero(found == 0)[0])
        i = int(layer_index[t])
        raise HardwareError(
            f"{hardware.name!r} buffers (WBUF {hardware.wbuf_bytes} B, IBUF "
            f"{hardware.ibuf_bytes} B, OBUF {hardware.obuf_bytes} B) must fit at least one tile "
            f"in half their capacity, but no tile of layer {i} ({workload.names[i]!r}) at "
            f"w={int(w_bits[t])}, a={int(a_bits[t])}, batch {batch} fits"
        )
    return out_int, out_float, out_map


@attrs.frozen(eq=False)
class CostReport:
    """Per-layer and total costs of one policy on one accelerator.

    Per-layer arrays (length ``n_layers``): the integer figures ``compute_cycles``,
    ``stall_cycles``, ``memory_cycles`` (DRAM transfer time alone), ``dram_read_bits``,
    ``dram_write_bits``, ``buffer_read_bits``, ``buffer_write_bits``; energies ``compute_pj``,
    ``onchip_pj``, ``dram_pj``; and ``mapping`` (Bit Fusion's chosen tiles, loop order, dataflow
    and mode, columns :data:`MAP_FIELDS`; zeros for bit-serial). Derived per-layer properties and
    totals are below; totals of energy are in joules, latency in seconds (whole batch).
    """

    workload: LayerTable
    hardware: Hardware
    w_bits: np.ndarray
    a_bits: np.ndarray
    batch: int
    ints: np.ndarray  # (L, 7) int64, columns INT_FIELDS
    pj: np.ndarray  # (L, 3) float64, columns FLOAT_FIELDS
    mapping: np.ndarray  # (L, 8) int64, columns MAP_FIELDS

    def __getattr__(self, name: str) -> np.ndarray:
        if name in INT_FIELDS:
            return self.ints[:, INT_FIELDS.index(name)]
        if name in FLOAT_FIELDS:
            return self.pj[:, FLOAT_FIELDS.index(name)]
        raise AttributeError(f"CostReport has no attribute {name!r}")

    # per layer -------------------------------------------------------------
    @property
    def cycles(self) -> np.ndarray:
        """Total cycles per layer (compute + stall)."""
        return self.ints[:, 0] + self.ints[:, 1]

    @property
    def energy_pj(self) -> np.ndarray:
        """Energy per layer in picojoules (compute + on-chip + DRAM)."""
        return self.pj[:, 0] + self.pj[:, 1] + self.pj[:, 2]

    @property
    def latency_s(self) -> np.ndarray:
        return self.cycles / self.hardware.clock_hz

    @property
    def memory_bound(self) -> np.ndarray:
        """True where DRAM transfer time exceeds compute time (the layer's roofline bound)."""
        return self.ints[:, 2] > self.ints[:, 0]

    @property
    def size_bits(self) -> np.ndarray:
        return self.workload.params * self.w_bits

    @property
    def bitops(self) -> np.ndarray:
        """MACs x w x a per layer, for one image."""
        return self.workload.macs * self.w_bits * self.a_bits

    # totals ---------------------------------------------------------------
    @property
    def total_cycles(self) -> int:
        return int(self.cycles.sum())

    @property
    def total_latency_s(self) -> float:
        return self.total_cycles / self.hardware.clock_hz

    @property
    def total_energy_j(self) -> float:
        return float(np.cumsum(self.energy_pj)[-1]) * PJ_TO_J

    def total_energy_split_j(self) -> dict[str, float]:
        """Total energy by component, joules: compute, on-chip buffers, DRAM."""
        return {
            name[:-3]: float(np.cumsum(self.pj[:, i])[-1]) * PJ_TO_J
            for i, name in enumerate(FLOAT_FIELDS)
        }

    @property
    def total_size_bytes(self) -> float:
        return int(self.size_bits.sum()) / 8

    @property
    def total_bitops(self) -> int:
        return int(self.bitops.sum())

    def totals(self) -> dict[str, float | int]:
        """All totals as a flat dict (JSON-ready)."""
        ints = {name: int(self.ints[:, i].sum()) for i, name in enumerate(INT_FIELDS)}
        return {
            "cycles": self.total_cycles,
            **ints,
            "latency_s": self.total_latency_s,
            "energy_j": self.total_energy_j,
            **{f"energy_{k}_j": v for k, v in self.total_energy_split_j().items()},
            "size_bytes": self.total_size_bytes,
            "bitops": self.total_bitops,
            "memory_bound_layers": int(self.memory_bound.sum()),
        }

    def mapping_of(self, layer: int) -> dict[str, Any]:
        """Bit Fusion's chosen mapping of one layer, readable: tiles, loop order (outermost
        first), dataflow (input-, output- or weight-stationary) and whether it runs im2col."""
        row = self.mapping[layer]
        code, order = int(row[5]), []
        for _ in _LOOP_NAMES:
            order.append(_LOOP_NAMES[code % 5])
            code //= 5
        return {
            **{f: int(v) for f, v in zip(MAP_FIELDS[:5], row[:5], strict=True)},
            "loop_order": order[::-1],
            "dataflow": _DATAFLOWS[int(row[6])],
            "im2col": bool(row[7]),
        }

    def layers(self) -> list[dict[str, Any]]:
        """Per-layer figures as a list of dicts (JSON-ready)."""
        rows = []
        for i, name in enumerate(self.workload.names):
            row: dict[str, Any] = {
                "name": name,
                "w_bits": int(self.w_bits[i]),
                "a_bits": int(self.a_bits[i]),
                "cycles": int(self.cycles[i]),
            }
            row.update({f: int(self.ints[i, j]) for j, f in enumerate(INT_FIELDS)})
            row["latency_s"] = float(self.latency_s[i])
            row["energy_j"] = float(self.energy_pj[i]) * PJ_TO_J
            row.update({f: float(self.pj[i, j]) for j, f in enumerate(FLOAT_FIELDS)})
            row["bound"] = "memory" if self.memory_bound[i] else "compute"
            row["size_bytes"] = int(self.size_bits[i]) / 8
            row["bitops"] = int(self.bitops[i])
            if isinstance(self.hardware, BitFusionConfig):
                row["mapping"] = self.mapping_of(i)
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload.name,
            "hardware": self.hardware.name,
            "batch": self.batch,
            "totals": self.totals(),
            "layers": self.layers(),
        }


def estimate(
    workload: LayerTable,
    hardware: Hardware | str,
    w_bits: int | np.ndarray | list[int] = 8,
    a_bits: int | np.ndarray | list[int] = 8,
    *,
    batch: int | None = None,
) -> CostReport:
    """Latency, energy, traffic, size and BitOps of one bit policy on one accelerator.

    Args:
        workload: The layer table.
        hardware: A config, a preset name (see :func:`haqsim.preset_names`) or a config file.
        w_bits: Weight bits, a scalar for all layers or one per layer.
        a_bits: Input-activation bits, a scalar or one per layer.
        batch: Images per inference; default: the workload's, else the hardware's.

    Raises:
        PolicyError: bits out of the hardware's range or a policy of the wrong length.
        HardwareError: the hardware cannot run a layer (no tile fits its buffers).
    """
    hw = preset(hardware)
    n = len(workload)
    w = as_bits(w_bits, n, hw.min_bits, hw.max_bits, "w_bits")
    a = as_bits(a_bits, n, hw.min_bits, hw.max_bits, "a_bits")
    b = _resolve_batch(workload, hw, batch)
    ints, pj, mapping = _run_kernel(workload, hw, np.arange(n, dtype=np.int64), w, a, b)
    return CostReport(workload, hw, w, a, b, ints, pj, mapping)


@attrs.frozen(eq=False)
class PolicyCosts:
    """Totals for a batch of policies (arrays of length ``n_policies``)."""

    cycles: np.ndarray
    latency_s: np.ndarray
    energy_j: np.ndarray
    size_bytes: np.ndarray
    bitops: np.ndarray

    def metric(self, name: str) -> np.ndarray:
        """One of ``latency``, ``energy``, ``size``, ``bitops`` or ``cycles`` by name."""
        key = {
            "latency": "latency_s",
            "energy": "energy_j",
            "size": "size_bytes",
            "bitops": "bitops",
            "cycles": "cycles",
        }.get(name)
        if key is None:
            raise PolicyError(
                f"cost metric must be one of cycles, latency, energy, size, bitops, got {name!r}"
            )
        return getattr(self, key)


@attrs.frozen(eq=False)
class CostTable:
    """Per-layer costs of one (workload, hardware, batch) for every (w, a) in ``[lo, hi]``.

    Arrays are indexed ``[layer, w - lo, a - lo]``; with ``lo = 1`` that is HAQ's lookup-table
    layout ``[layer, w - 1, a - 1]``. Build with :meth:`build` (cached on disk by default).

    Attributes:
        workload, hardware, batch: What the table prices.
        lo, hi: Smallest and largest bitwidth in the table.
        ints: ``int64[L, nb, nb, 7]`` figures, columns as ``INT_FIELDS``.
        pj: ``float64[L, nb, nb, 3]`` energies in picojoules, columns as ``FLOAT_FIELDS``.
        mapping: ``int64[L, nb, nb, 8]`` Bit Fusion mapping (zeros for bit-serial).
        cycles: ``int64[L, nb, nb]`` total cycles (HAQ's latency lookup table when ``lo == 1``).
        energy_pj: ``float64[L, nb, nb]`` energy per layer in picojoules.
    """

    workload: LayerTable
    hardware: Hardware
    batch: int
    lo: int
    hi: int
    ints: np.ndarray
    pj: np.ndarray
    mapping: np.ndarray
    cycles: np.ndarray = attrs.field(init=False)
    energy_pj: np.ndarray = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        # The two tables every policy evaluation gathers from, computed once.
        object.__setattr__(self, "cycles", self.ints[..., 0] + self.ints[..., 1])
        object.__setattr__(self, "energy_pj", self.pj[..., 0] + self.pj[..., 1] + self.pj[..., 2])

    @classmethod
    def build(
        cls,
        workload: LayerTable,
        hardware: Hardware | str,
        *,
        batch: int | None = None,
        max_bits: int | None = None,
        cache: bool = True,
    ) -> CostTable:
        """Compute (or load from the user cache) the table.

        Args:
            workload: The layer table.
            hardware: A config, a preset name or a config file (see :func:`haqsim.preset`).
            batch: Images per inference; default: the workload's, else the hardware's.
            max_bits: Largest bitwidth priced; default ``min(8, hardware.max_bits)``.
            cache: Read and write ``$HAQSIM_CACHE_DIR/tables`` (default ``~/.cache/haqsim``).
        """
        hw = preset(hardware)
        b = _resolve_batch(workload, hw, batch)
        hi = min(8, hw.max_bits) if max_bits is None else max_bits
        lo = hw.min_bits
        if isinstance(hi, bool) or not isinstance(hi, int) or not lo <= hi <= hw.max_bits:
            raise PolicyError(
                f"CostTable max_bits must be an integer in [{lo}, {hw.max_bits}] for "
                f"{hw.name!r}, got {hi!r}"
            )
        path = cache_dir("tables") / f"{cls._key(workload, hw, b, lo, hi)}.npz" if cache else None
        if path is not None and path.exists():
            try:
                return cls.load(path, workload, hw)
            except (OSError, ValueError, KeyError):
                pass  # a stale or damaged cache file is recomputed and overwritten
        nb = hi - lo + 1
        L = len(workload)
        grid = np.arange(lo, hi + 1, dtype=np.int64)
        layer_index = np.repeat(np.arange(L, dtype=np.int64), nb * nb)
        w = np.tile(np.repeat(grid, nb), L)
        a = np.tile(grid, L * nb)
        ints, pj, mapping = _run_kernel(workload, hw, layer_index, w, a, b)
        table = cls(
            workload,
            hw,
            b,
            lo,
            hi,
            ints.reshape(L, nb, nb, -1),
            pj.reshape(L, nb, nb, -1),
            mapping.reshape(L, nb, nb, -1),
        )
        if path is not None:
            table.save(path)
        return table

    @staticmethod
    def _key(workload: LayerTable, hw: Hardware, batch: int, lo: int, hi: int) -> str:
        h = hashlib.sha256()
        h.update(workload.fingerprint().encode())
        h.update(json.dumps(hw.to_dict(), sort_keys=True).encode())
        h.update(f"{batch}:{lo}:{hi}:{_TABLE_FORMAT}".encode())
        return f"{workload.name}-{hw.name}-b{batch}-{h.hexdigest()[:16]}"

    def save(self, path: str | Path) -> None:
        """Write the arrays to an ``.npz`` file (atomically)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
        meta = json.dumps(
            {
                "batch": self.batch,
                "lo": self.lo,
                "hi": self.hi,
                "format": _TABLE_FORMAT,
                "workload": self.workload.fingerprint(),
                "hardware": self.hardware.to_dict(),
            }
        )
        np.savez(tmp, ints=self.ints, pj=self.pj, mapping=self.mapping, meta=np.array(meta))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, workload: LayerTable, hardware: Hardware | str) -> CostTable:
        """Read a table written by :meth:`save`; checks it belongs to this workload and hardware."""
        hw = preset(hardware)
        with np.load(Path(path)) as data:
            meta = json.loads(str(data["meta"]))
            if meta["format"] != _TABLE_FORMAT or meta["workload"] != workload.fingerprint():
                raise ValueError(f"cost table {str(path)!r} is for another workload or format")
            if meta["hardware"] != json.loads(json.dumps(hw.to_dict())):
                raise ValueError(f"cost table {str(path)!r} is for other hardware")
            return cls(
                workload,
                hw,
                meta["batch"],
                meta["lo"],
                meta["hi"],
                data["ints"],
                data["pj"],
                data["mapping"],
            )

    # -------------------------------------------------------------- lookups
    @property
    def n_layers(self) -> int:
        return len(self.workload)

    def _check_policies(self, w_bits: Any, a_bits: Any) -> tuple[np.ndarray, np.ndarray]:
        w = np.asarray(w_bits)
        a = np.asarray(a_bits)
        w2 = np.atleast_2d(w)
        a2 = np.atleast_2d(a)
        for name, arr in (("w_bits", w2), ("a_bits", a2)):
            if arr.ndim != 2 or arr.shape[1] != self.n_layers:
                raise PolicyError(
                    f"policies {name!r} must have shape (n_policies, {self.n_layers}), "
                    f"got {np.shape(w_bits if name == 'w_bits' else a_bits)}"
                )
            if not np.issubdtype(arr.dtype, np.integer):
                raise PolicyError(f"policies {name!r} must hold integers, got {arr.dtype}")
        if w2.shape != a2.shape:
            raise PolicyError(
                f"policies 'w_bits' and 'a_bits' must have the same shape, got {w2.shape} and "
                f"{a2.shape}"
            )
        return np.ascontiguousarray(w2, np.int64), np.ascontiguousarray(a2, np.int64)

    def evaluate(self, w_bits: Any, a_bits: Any) -> PolicyCosts:
        """Totals of many policies: ``w_bits``, ``a_bits`` of shape ``(n, L)`` (or ``(L,)``).

        Totals equal :func:`estimate`'s exactly.
        """
        w, a = self._check_policies(w_bits, a_bits)
        cycles, energy_pj, size_bits, bitops, bad = gather_totals(
            (self.cycles, self.energy_pj, self.workload.params, self.workload.macs),
            *(w, a, self.lo, self.hi),
        )
        if bad.max(initial=-1) >= 0:
            p = int(np.flatnonzero(bad >= 0)[0])
            i = int(bad[p])
            where = f"layer {i}" if np.ndim(w_bits) == 1 else f"policy {p} layer {i}"
            name, value = (
                ("w_bits", w[p, i]) if not self.lo <= w[p, i] <= self.hi else ("a_bits", a[p, i])
            )
            raise PolicyError(
                f"{where} {name!r} must be in [{self.lo}, {self.hi}], got {int(value)}"
            )
        return PolicyCosts(
            cycles=cycles,
            latency_s=cycles / self.hardware.clock_hz,
            energy_j=energy_pj * PJ_TO_J,
            size_bytes=size_bits / 8,
            bitops=bitops,
        )

    def report(self, w_bits: Any, a_bits: Any) -> CostReport:
        """The full :class:`CostReport` of one policy, gathered from the table."""
        w = as_bits(w_bits, self.n_layers, self.lo, self.hi, "w_bits")
        a = as_bits(a_bits, self.n_layers, self.lo, self.hi, "a_bits")
        rows = np.arange(self.n_layers)
        wi, ai = w - self.lo, a - self.lo
        return CostReport(
            self.workload,
            self.hardware,
            w,
            a,
            self.batch,
            self.ints[rows, wi, ai].copy(),
            self.pj[rows, wi, ai].copy(),
            self.mapping[rows, wi, ai].copy(),
        )

    def uniform(self, bits: int) -> PolicyCosts:
        """Totals of the uniform policy (every layer at ``bits`` for weights and activations)."""
        full = np.full((1, self.n_layers), bits, np.int64)
        return self.evaluate(full, full)


def warmup() -> None:
    """Compile (or load from Numba's cache) every kernel, so first real calls are fast."""
    from haqsim.workload import conv, linear

    tiny = LayerTable.from_layers(
        [
            conv("c", 3, 8, 3, 8, reads_image=True),
            conv("d", 8, 8, 3, 8, groups=8),
            linear("fc", 8, 4),
        ],
        name="warmup",
    )
    for hw in (
        BitSerialConfig("w", 2, 2, 64, 1e6, 64, 4096),
        BitFusionConfig("w", 2, 4, 1e6, 4096, 4096, 4096, 64),
    ):
        for parallel in (False, True):  # each kernel has a serial and a parallel form
            with force_parallel(parallel):
                CostTable.build(tiny, hw, batch=1, max_bits=2, cache=False).uniform(2)
