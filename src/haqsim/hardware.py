"""Hardware configurations: frozen attrs classes with validators, units in field names.

Two families (see ``shared/docs/COST_MODELS.md``):

* :class:`BitSerialConfig` -- BISMO-style bit-serial matrix engines (and Stripes/Loom as variants
  through the bits consumed per pass).
* :class:`BitFusionConfig` -- Bit Fusion's systolic array of fusible 2-bit BitBricks.

Presets ship as TOML files in ``haqsim/presets`` and load by name with :func:`preset`; a user's own
accelerator loads from a TOML or JSON file with :func:`load` (or ``Config.from_dict``). Use
``attrs.evolve(cfg, field=value)`` for sweeps.
"""

from __future__ import annotations

import functools
import json
import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import attrs

from haqsim._files import named_file
from haqsim.errors import HardwareError, unknown_name

__all__ = ["BitFusionConfig", "BitSerialConfig", "Hardware", "load", "preset", "preset_names"]


def _positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise HardwareError(
            f"{type(instance).__name__} {attribute.name!r} must be a positive number, got {value!r}"
        )


def _positive_int(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HardwareError(
            f"{type(instance).__name__} {attribute.name!r} must be a positive integer, "
            f"got {value!r}"
        )


def _non_negative(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise HardwareError(
            f"{type(instance).__name__} {attribute.name!r} must be a number >= 0, got {value!r}"
        )


def _pos_int(**kw: Any) -> Any:
    return attrs.field(validator=_positive_int, **kw)


def _pos(**kw: Any) -> Any:
    return attrs.field(validator=_positive, **kw)


def _energy(default: float) -> Any:
    return attrs.field(default=default, validator=_non_negative)


class _ConfigIO:
    """Named constructors and serialisation shared by both config classes."""

    kind: ClassVar[str]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        """Build a config from a flat dict of field values (a ``kind`` key, if any, must match)."""
        data = dict(data)
        kind = data.pop("kind", cls.kind)
        if kind != cls.kind:
            raise HardwareError(f"{cls.__name__} needs kind {cls.kind!r}, got kind {kind!r}")
        fields = {a.name for a in attrs.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - fields)
        if unknown:
            raise HardwareError(
                f"{cls.__name__} has no field(s) {unknown}; valid fields are {sorted(fields)}"
            )
        try:
            return cls(**data)
        except TypeError as exc:  # missing required fields
            raise HardwareError(f"{cls.__name__}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """A flat dict with a ``kind`` key; :func:`load` and ``from_dict`` read it back."""
        return {"kind": self.kind, **attrs.asdict(self)}  # type: ignore[arg-type]

    def to_toml(self) -> str:
        """The config as TOML text (flat key = value lines)."""
        lines = []
        for key, value in self.to_dict().items():
            lines.append(f"{key} = {json.dumps(value)}")
        return "\n".join(lines) + "\n"


@attrs.frozen
class BitSerialConfig(_ConfigIO):
    """A BISMO-style bit-serial matrix-multiply engine.

    A ``dm x dn`` array of dot-product units, each ANDing two ``dk``-bit words and popcounting them
    per cycle. A ``w``-bit x ``a``-bit GEMM runs as ``ceil(w / w_bits_per_pass) *
    ceil(a / a_bits_per_pass)`` binary passes.

    Attributes:
        name: Preset or user name.
        dm: Array rows (output channels per block).
        dn: Array columns (output pixels per block).
        dk: Bits per dot-product word (the reduction width of one cycle).
        clock_hz: Clock frequency in hertz.
        fetch_bits_per_cycle: Bits fetched from DRAM into the on-chip buffers per cycle.
        buffer_bytes: On-chip operand buffer capacity in bytes (informational; must hold one
            double-buffered word per array row and column).
        batch: Deployment batch (images per inference) used when the workload sets none.
        w_bits_per_pass: Weight bits consumed per pass (1 for BISMO/Loom; 8 for Stripes).
        a_bits_per_pass: Activation bits consumed per pass.
        min_bits: Smallest supported operand precision.
        max_bits: Largest supported operand precision.
        dpu_pj_per_cycle: Energy of one active dot-product-unit cycle (AND + popcount +
            accumulate), picojoules.
        buffer_read_pj_per_bit: On-chip buffer read energy, picojoules per bit.
        buffer_write_pj_per_bit: On-chip buffer write energy, picojoules per bit.
        dram_pj_per_bit: DRAM read or write energy, picojoules per bit.
        result_bits: Width of a written-back result (accumulator) in bits.
    """

    kind: ClassVar[str] = "bitserial"

    name: str
    dm: int = _pos_int()
    dn: int = _pos_int()
    dk: int = _pos_int()
    clock_hz: float = _pos()
    fetch_bits_per_cycle: int = _pos_int()
    buffer_bytes: int = _pos_int()
    batch: int = _pos_int(default=1)
    w_bits_per_pass: int = _pos_int(default=1)
    a_bits_per_pass: int = _pos_int(default=1)
    min_bits: int = _pos_int(default=1)
    max_bits: int = _pos_int(default=8)
    # Defaults: 45 nm figures of the same order as Bit Fusion's table (see presets/*.toml).
    dpu_pj_per_cycle: float = _energy(1.0)
    buffer_read_pj_per_bit: float = _energy(0.0594744)
    buffer_write_pj_per_bit: float = _energy(0.1137041)
    dram_pj_per_bit: float = _energy(15.0)
    result_bits: int = _pos_int(default=32)

    def __attrs_post_init__(self) -> None:
        if self.min_bits > self.max_bits:
            raise HardwareError(
                f"{self.name!r} min_bits must be <= max_bits, got {self.min_bits} > {self.max_bits}"
            )
        need = 2 * (self.dm + self.dn) * self.dk // 8
        if self.buffer_bytes < need:
            raise HardwareError(
                f"{self.name!r} buffer_bytes must hold one double-buffered {self.dk}-bit word per "
                f"array row and column (>= {need} bytes), got {self.buffer_bytes}"
            )

    @property
    def peak_binary_ops_per_s(self) -> float:
        """Binary AND+popcount operations per second at full utilisation."""
        return 2.0 * self.dm * self.dn * self.dk * self.clock_hz


@attrs.frozen
class BitFusionConfig(_ConfigIO):
    """A Bit Fusion accelerator: an ``n_rows x m_cols`` systolic array of Fusion Units.

    Each Fusion Unit holds 16 BitBricks (2-bit x 2-bit multipliers) that fuse into one 8b x 8b
    multiplier or split into up to 16 independent 2b x 2b ones. Above 8 bits a MAC takes
    ``ceil(a/8) * ceil(w/8)`` passes (temporal fusion).

    Attributes:
        name: Preset or user name.
        n_rows: Array rows N (along input channels).
        m_cols: Array columns M (along output channels).
        clock_hz: Clock frequency in hertz.
        wbuf_bytes: Weight buffer capacity in bytes (double-buffered: a tile may use half).
        ibuf_bytes: Input (activation) buffer capacity in bytes.
        obuf_bytes: Output (partial-sum) buffer capacity in bytes.
        dram_bits_per_cycle: DRAM interface width, bits per cycle.
        batch: Deployment batch used when the workload sets none.
        min_bits: Smallest supported operand precision.
        max_bits: Largest supported operand precision (16 with temporal fusion).
        core_pj_per_fu_cycle: Core energy per Fusion Unit per compute cycle, picojoules.
        wbuf_read_pj_per_bit, wbuf_write_pj_per_bit: WBUF access energies, picojoules per bit.
        ibuf_read_pj_per_bit, ibuf_write_pj_per_bit: IBUF access energies, picojoules per bit.
        obuf_read_pj_per_bit, obuf_write_pj_per_bit: OBUF access energies, picojoules per bit.
        dram_pj_per_bit: DRAM read or write energy, picojoules per bit.
    """

    kind: ClassVar[str] = "bitfusion"

    name: str
    n_rows: int = _pos_int()
    m_cols: int = _pos_int()
    clock_hz: float = _pos()
    wbuf_bytes: int = _pos_int()
    ibuf_bytes: int = _pos_int()
    obuf_bytes: int = _pos_int()
    dram_bits_per_cycle: int = _pos_int()
    batch: int = _pos_int(default=1)
    min_bits: int = _pos_int(default=1)
    max_bits: int = _pos_int(default=16)
    core_pj_per_fu_cycle: float = _energy(0.45918)
    wbuf_read_pj_per_bit: float = _energy(0.0213657)
    wbuf_write_pj_per_bit: float = _energy(0.0289162)
    ibuf_read_pj_per_bit: float = _energy(0.0594744)
    ibuf_write_pj_per_bit: float = _energy(0.1137041)
    obuf_read_pj_per_bit: float = _energy(0.0331553)
    obuf_write_pj_per_bit: float = _energy(0.0730841)
    dram_pj_per_bit: float = _energy(15.0)

    def __attrs_post_init__(self) -> None:
        if self.min_bits > self.max_bits:
            raise HardwareError(
                f"{self.name!r} min_bits must be <= max_bits, got {self.min_bits} > {self.max_bits}"
            )
        if self.max_bits > 64:
            raise HardwareError(f"{self.name!r} max_bits must be <= 64, got {self.max_bits}")


Hardware = BitSerialConfig | BitFusionConfig

_KINDS: dict[str, Callable[[dict[str, Any]], Hardware]] = {
    BitSerialConfig.kind: BitSerialConfig.from_dict,
    BitFusionConfig.kind: BitFusionConfig.from_dict,
}


def _from_mapping(data: dict[str, Any], source: str) -> Hardware:
    kind = data.get("kind")
    if kind not in _KINDS:
        raise HardwareError(
            f"hardware {source} 'kind' must be one of {sorted(_KINDS)}, got {kind!r}"
        )
    return _KINDS[kind](data)


def load(path: str | Path) -> Hardware:
    """Load a hardware config from a TOML or JSON file (flat keys, with ``kind``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HardwareError(f"hardware file {str(p)!r} must be readable UTF-8 text: {exc}") from exc
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise HardwareError(f"hardware file {str(p)!r} must be valid TOML or JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise HardwareError(
            f"hardware file {str(p)!r} must hold one table of keys (kind, ...), "
            f"got a {type(data).__name__}"
        )
    data.setdefault("name", p.stem)
    return _from_mapping(data, f"file {str(p)!r}")


@functools.cache
def _shipped_names() -> tuple[str, ...]:
    files = resources.files("haqsim") / "presets"
    return tuple(sorted(f.name[:-5] for f in files.iterdir() if f.name.endswith(".toml")))


def preset_names() -> list[str]:
    """Names of the shipped presets."""
    return list(_shipped_names())


def preset(name: Hardware | str) -> Hardware:
    """A shipped preset by name (see :func:`preset_names`), or a ``.toml``/``.json`` config file.

    ``name`` is taken for a file when it has one of those suffixes or a path separator (a config
    is returned as it is).

    Raises:
        UnknownNameError: ``name`` is neither a preset nor a path; the message lists the presets.
        HardwareError: ``name`` looks like a path but is not an existing ``.toml``/``.json``
            file (the message lists the presets too, in case one was meant), the file is bad, or
            ``name`` is neither a string nor a config.
    """
    if isinstance(name, BitSerialConfig | BitFusionConfig):
        return name
    if not isinstance(name, str):
        raise HardwareError(
            "hardware must be a preset name or a BitSerialConfig/BitFusionConfig, "
            f"got {type(name).__name__}"
        )
    names = preset_names()
    if name in names:
        return _shipped(name)
    path = named_file(name, (".toml", ".json"), HardwareError, "hardware", "hardware preset", names)
    if path is None:
        raise unknown_name("hardware preset", name, names)
    return load(path)


@functools.cache
def _shipped(name: str) -> Hardware:
    """A shipped preset, parsed once (configs are frozen, so sharing one is safe)."""
    text = (resources.files("haqsim") / "presets" / f"{name}.toml").read_text()
    return _from_mapping({"name": name, **tomllib.loads(text)}, f"preset {name!r}")
