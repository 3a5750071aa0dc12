"""Workloads: one row per quantizable layer, stored as a struct of numpy arrays.

A :class:`LayerTable` is what every cost model consumes. Each row is a convolution (dense, depthwise
or grouped) or a fully connected layer, lowered to the convolution form the hardware models use: a
linear layer is a 1 x 1 convolution on a 1 x 1 feature map. Shapes are per image; the batch is a
property of the table (``None`` means "use the hardware's deployment batch").
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from enum import IntEnum
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from haqsim._numbers import first_non_int64, int64_rule, plain_scalar
from haqsim.errors import WorkloadError

__all__ = ["KERNEL_COLUMNS", "Layer", "LayerKind", "LayerTable", "conv", "linear"]


class LayerKind(IntEnum):
    """What a row is. Stored as ``int8`` in :attr:`LayerTable.kind`."""

    CONV = 0
    DEPTHWISE = 1
    GROUPED = 2
    LINEAR = 3


#: Integer shape fields of a row, in the column order of :meth:`LayerTable.kernel_array`.
KERNEL_COLUMNS: tuple[str, ...] = (
    "kind",
    "cin",
    "cout",
    "kh",
    "kw",
    "stride",
    "pad",
    "groups",
    "in_h",
    "in_w",
    "out_h",
    "out_w",
    "reads_image",
)
_INT_FIELDS = KERNEL_COLUMNS[1:-1]
#: The fields of one layer in a workload dict, JSON object or CSV row.
_ROW_FIELDS: tuple[str, ...] = ("name", *KERNEL_COLUMNS)
#: Columns :meth:`LayerTable.to_csv` adds for reading; recomputed from the shape, ignored on input.
_DERIVED_FIELDS: tuple[str, ...] = ("macs", "params")
#: The top-level keys of a workload dict.
_TOP_KEYS: tuple[str, ...] = ("name", "batch", "layers")
#: Spellings of ``reads_image`` accepted in a CSV cell (case-insensitive).
_CSV_BOOLS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def _kind_choices() -> str:
    return ", ".join(f"{k.name.lower()!r} ({int(k)})" for k in LayerKind)


def _parse_kind(value: Any, where: str) -> LayerKind:
    """A :class:`LayerKind` from a member, its code or its name (any case).

    Raises:
        WorkloadError: ``value`` names no kind; ``where`` says which layer it came from.
    """
    member: LayerKind | None = None
    if isinstance(value, str):
        member = LayerKind.__members__.get(value.strip().upper())
    elif isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
        with contextlib.suppress(ValueError):
            member = LayerKind(int(value))
    if member is None:
        raise WorkloadError(f"{where} 'kind' must be one of {_kind_choices()}, got {value!r}")
    return member


def _parse_int(value: Any, where: str, field: str) -> int:
    """``value`` as an ``int`` (a whole number in ``int64``'s range), or a WorkloadError."""
    rule = int64_rule(value)
    if rule is not None:
        raise WorkloadError(f"{where} {field!r} {rule}, got {value!r}")
    return int(value)


def _layer_where(i: int, row: Mapping[str, Any]) -> str:
    label = row.get("name")
    return f"layer {i} ({label!r})" if isinstance(label, str) and label else f"layer {i}"


def _check_keys(where: str, keys: Iterable[Any], what: str) -> None:
    """Every required row field is present and nothing unknown is, or a :class:`WorkloadError`."""
    keys = list(keys)
    known = (*_ROW_FIELDS, *_DERIVED_FIELDS)
    missing = [f for f in _ROW_FIELDS if f not in keys]
    if missing:
        raise WorkloadError(f"{where} must have {what} {list(_ROW_FIELDS)}, missing {missing}")
    unknown = [str(k) for k in keys if k not in known]
    if unknown:
        raise WorkloadError(f"{where} has unknown {what} {unknown}; known {what} are {list(known)}")
    duplicated = sorted({str(k) for k in keys if keys.count(k) > 1})
    if duplicated:
        raise WorkloadError(f"{where} must name each of its {what} once, got {duplicated} twice")


def _layer_from_row(i: int, row: Any) -> Layer:
    """One :class:`Layer` from a workload dict's row, every field checked."""
    if not isinstance(row, Mapping):
        raise WorkloadError(
            f"layer {i} must be an object mapping field names to values, got {row!r}"
        )
    where = _layer_where(i, row)
    _check_keys(where, row, "fields")
    reads = row["reads_image"]
    if not (isinstance(reads, bool | np.bool_) or (isinstance(reads, int) and reads in (0, 1))):
        raise WorkloadError(
            f"{where} 'reads_image' must be true or false (or 1 or 0), got {reads!r}"
        )
    return Layer(
        name=row["name"],
        kind=_parse_kind(row["kind"], where),
        reads_image=bool(reads),
        **{f: _parse_int(row[f], where, f) for f in _INT_FIELDS},
    )


def _csv_rows(text: str) -> list[dict[str, Any]]:
    """The rows of a workload CSV as workload-dict rows (ints and bools parsed, derived dropped)."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise WorkloadError(
            f"workload CSV must start with a header row naming the columns {list(_ROW_FIELDS)}, "
            "got an empty file"
        )
    header = [h.strip() for h in reader.fieldnames]
    reader.fieldnames = header
    _check_keys("workload CSV", header, "columns")
    rows = []
    for i, raw in enumerate(reader):
        where = _layer_where(i, raw)
        if None in raw:
            raise WorkloadError(
                f"{where} must have one value per header column ({len(header)}), got extra "
                f"values {raw[None]}"
            )
        empty = [c for c in header if raw[c] is None]
        if empty:
            raise WorkloadError(
                f"{where} must have one value per header column ({len(header)}), missing {empty}"
            )
        row: dict[str, Any] = {"name": raw["name"], "kind": raw["kind"]}
        for f in _INT_FIELDS:
            try:
                row[f] = int(raw[f])
            except ValueError:
                raise WorkloadError(f"{where} {f!r} must be an integer, got {raw[f]!r}") from None
        reads = _CSV_BOOLS.get(raw["reads_image"].strip().lower())
        if reads is None:
            raise WorkloadError(
                f"{where} 'reads_image' must be one of {list(_CSV_BOOLS)}, "
                f"got {raw['reads_image']!r}"
            )
        row["reads_image"] = reads
        rows.append(row)
    return rows


@contextlib.contextmanager
def _in_file(path: str | Path | None) -> Iterator[None]:
    """Prefix a :class:`WorkloadError` raised inside with the file it came from (if any)."""
    try:
        yield
    except WorkloadError as exc:
        if path is None:
            raise
        raise WorkloadError(f"workload file {str(path)!r}: {exc}") from exc


def _out_size(in_size: int, k: int, stride: int, pad: int) -> int:
    return (in_size + 2 * pad - k) // stride + 1


@attrs.frozen
class Layer:
    """One quantizable layer, per image.

    Attributes:
        name: Unique name (for a traced model, the module's qualified name).
        kind: Convolution, depthwise, grouped convolution or linear.
        cin: Input channels (input features for a linear layer).
        cout: Output channels (output features for a linear layer).
        kh: Kernel height (1 for a linear layer).
        kw: Kernel width (1 for a linear layer).
        stride: Stride, equal along both axes.
        pad: Zero padding on each side, equal along both axes.
        groups: Convolution groups (``cin`` for depthwise).
        in_h: Input feature-map height.
        in_w: Input feature-map width.
        out_h: Output feature-map height.
        out_w: Output feature-map width.
        reads_image: True for the layer that reads the network's input image; Bit Fusion runs it
            in im2col mode.
    """

    name: str
    kind: LayerKind = attrs.field(converter=lambda v: _parse_kind(v, "Layer"))
    cin: int
    cout: int
    kh: int
    kw: int
    stride: int
    pad: int
    groups: int
    in_h: int
    in_w: int
    out_h: int
    out_w: int
    reads_image: bool = False

    @property
    def macs(self) -> int:
        """Multiply-accumulates for one image."""
        return self.out_h * self.out_w * self.cout * (self.cin // self.groups) * self.kh * self.kw

    @property
    def params(self) -> int:
        """Weight parameters (biases are not quantized and not counted)."""
        return self.cout * (self.cin // self.groups) * self.kh * self.kw


def conv(
    name: str,
    cin: int,
    cout: int,
    kernel: int | tuple[int, int],
    in_hw: int | tuple[int, int],
    *,
    stride: int = 1,
    pad: int | None = None,
    groups: int = 1,
    reads_image: bool = False,
) -> Layer:
    """Make a convolution row; the kind follows from ``groups`` and the output size from the rest.

    Args:
        name: Layer name.
        cin: Input channels.
        cout: Output channels.
        kernel: Kernel size, square or ``(kh, kw)``.
        in_hw: Input feature-map size, square or ``(h, w)``.
        stride: Stride.
        pad: Padding; defaults to ``kernel // 2`` ("same" for odd kernels at stride 1).
        groups: Groups; ``groups == cin == cout`` makes a depthwise layer.
        reads_image: Whether this layer reads the network input (Bit Fusion im2col mode).
    """
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    in_h, in_w = (in_hw, in_hw) if isinstance(in_hw, int) else in_hw
    if pad is None:
        pad = max(kh, kw) // 2
    if groups == 1:
        kind = LayerKind.CONV
    elif groups == cin == cout:
        kind = LayerKind.DEPTHWISE
    else:
        kind = LayerKind.GROUPED
    return Layer(
        name=name,
        kind=kind,
        cin=cin,
        cout=cout,
        kh=kh,
        kw=kw,
        stride=stride,
        pad=pad,
        groups=groups,
        in_h=in_h,
        in_w=in_w,
        out_h=_out_size(in_h, kh, stride, pad),
        out_w=_out_size(in_w, kw, stride, pad),
        reads_image=reads_image,
    )


def linear(name: str, in_features: int, out_features: int) -> Layer:
    """Make a fully connected row (a 1 x 1 convolution on a 1 x 1 map)."""
    return Layer(name, LayerKind.LINEAR, in_features, out_features, 1, 1, 1, 0, 1, 1, 1, 1, 1)


def _int_array(values: Any, field: str) -> np.ndarray:
    try:
        arr = np.asarray(values)
    except ValueError as exc:  # ragged nesting
        raise WorkloadError(
            f"column {field!r} must be a flat sequence of integers: {exc}"
        ) from None
    if arr.ndim != 1:
        raise WorkloadError(f"column {field!r} must be one-dimensional, got shape {arr.shape}")
    found = first_non_int64(arr)
    if found is not None:
        i, rule = found
        raise WorkloadError(
            f"column {field!r} must hold integers: row {i} {rule}, got {plain_scalar(arr[i])!r}"
        )
    out = arr.astype(np.int64)
    out.setflags(write=False)
    return out


def _kind_array(values: Any) -> np.ndarray:
    arr = _int_array(values, "kind")
    bad = np.flatnonzero(~np.isin(arr, [int(k) for k in LayerKind]))
    if bad.size:
        i = int(bad[0])
        raise WorkloadError(
            f"column 'kind' must hold codes {_kind_choices()}, got {int(arr[i])} at row {i}"
        )
    return _readonly(arr.astype(np.int8))


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr


@attrs.frozen(eq=False)
class LayerTable:
    """A workload: per-layer shapes as read-only numpy columns, one row per quantizable layer.

    Build one with :meth:`from_layers`, :meth:`from_dict`, :meth:`from_json`, :meth:`from_csv`,
    from :mod:`haqsim.zoo`, or from a PyTorch model with ``haqsearch.trace``.

    Attributes:
        names: Layer names, unique.
        kind: :class:`LayerKind` codes (``int8``).
        cin, cout, kh, kw, stride, pad, groups, in_h, in_w, out_h, out_w: ``int64`` shape columns.
        reads_image: ``bool`` column; True for the layer that reads the input image.
        batch: Images per inference, or ``None`` to use the hardware's deployment batch.
        name: The workload's name.
    """

    names: tuple[str, ...] = attrs.field(converter=tuple)
    kind: np.ndarray = attrs.field(converter=_kind_array)
    cin: np.ndarray = attrs.field(converter=lambda v: _int_array(v, "cin"))
    cout: np.ndarray = attrs.field(converter=lambda v: _int_array(v, "cout"))
    kh: np.ndarray = attrs.field(converter=lambda v: _int_array(v, "kh"))
    kw: np.ndarray = attrs.field(converter=lambda v: _int_array(v, "kw"))
    stride: np.ndarray = attrs.field(converter=lambda v: _int_array(v, "stride"))
    pad: np.ndarray = attrs.field(converter=lambda v: _int_array(v, "pad"))
    groups: np.ndarray = attrs.field(converter=lambda v: _int_array(v, "groups"))
    in_h: np.ndarray = attrs.field(converter=lambda v: _int_array(v, "in_h"))
    in_w: np.ndarray = attrs.field(converter=lambda v: _int_array(v, "in_w"))
    out_h: np.ndarray = attrs.field(converter=lambda v: _int_array(v, "out_h"))
    out_w: np.ndarray = attrs.field(converter=lambda v: _int_array(v, "out_w"))
    reads_image: np.ndarray = attrs.field(
        converter=lambda v: _readonly(np.asarray(v, dtype=np.bool_))
    )
    batch: int | None = None
    name: str = "workload"

    def __attrs_post_init__(self) -> None:
        self._validate()

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        n = len(self.names)
        if n == 0:
            raise WorkloadError(f"workload {self.name!r} must have at least one layer, got 0")
        for field in ("kind", *_INT_FIELDS, "reads_image"):
            size = getattr(self, field).shape[0]
            if size != n:
                raise WorkloadError(
                    f"workload {self.name!r} column {field!r} must have {n} rows (one per name), "
                    f"got {size}"
                )
        seen: set[str] = set()
        for i, name in enumerate(self.names):
            if not isinstance(name, str) or not name:
                raise WorkloadError(f"layer {i} name must be a non-empty string, got {name!r}")
            if name in seen:
                raise WorkloadError(f"layer {i} name must be unique, got duplicate {name!r}")
            seen.add(name)
        if self.batch is not None and (
            isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1
        ):
            raise WorkloadError(
                f"workload {self.name!r} batch must be a positive integer or None, "
                f"got {self.batch!r}"
            )
        for i in range(n):
            self._validate_row(i)

    def _validate_row(self, i: int) -> None:
        where = f"layer {i} ({self.names[i]!r})"
        kind = int(self.kind[i])  # a valid code: the column's converter checked
        for field in ("cin", "cout", "kh", "kw", "stride", "groups", "in_h", "in_w"):
            value = int(getattr(self, field)[i])
            if value < 1:
                raise WorkloadError(f"{where} {field!r} must be >= 1, got {value}")
        if int(self.pad[i]) < 0:
            raise WorkloadError(f"{where} 'pad' must be >= 0, got {int(self.pad[i])}")
        cin, cout, groups = int(self.cin[i]), int(self.cout[i]), int(self.groups[i])
        if cin % groups or cout % groups:
            raise WorkloadError(
                f"{where} 'groups' must divide cin and cout, got groups={groups}, "
                f"cin={cin}, cout={cout}"
            )
        for axis in ("h", "w"):
            k = int((self.kh if axis == "h" else self.kw)[i])
            expect = _out_size(
                int(getattr(self, f"in_{axis}")[i]), k, int(self.stride[i]), int(self.pad[i])
            )
            got = int(getattr(self, f"out_{axis}")[i])
            if expect < 1:
                raise WorkloadError(
                    f"{where} kernel {k} with padding {int(self.pad[i])} must fit the input "
                    f"(in_{axis}={int(getattr(self, f'in_{axis}')[i])}), got no output"
                )
            if got != expect:
                raise WorkloadError(
                    f"{where} 'out_{axis}' must equal (in_{axis} + 2*pad - k) // stride + 1 = "
                    f"{expect}, got {got}"
                )
        expected_kind = self._kind_rule(kind, cin, cout, groups)
        if expected_kind is not None:
            raise WorkloadError(f"{where} {expected_kind}")
        if kind == LayerKind.LINEAR:
            shape = [int(getattr(self, f)[i]) for f in ("kh", "kw", "in_h", "in_w", "stride")]
            if shape != [1, 1, 1, 1, 1] or int(self.pad[i]) != 0:
                raise WorkloadError(
                    f"{where} a linear layer must have kh=kw=in_h=in_w=stride=1 and pad=0, "
                    f"got kh,kw,in_h,in_w,stride={shape}, pad={int(self.pad[i])}"
                )

    @staticmethod
    def _kind_rule(kind: int, cin: int, cout: int, groups: int) -> str | None:
        name = LayerKind(kind).name.lower()
        if kind in (LayerKind.CONV, LayerKind.LINEAR) and groups != 1:
            return f"kind {name!r} must have groups=1, got groups={groups}"
        if kind == LayerKind.DEPTHWISE and not groups == cin == cout:
            return (
                f"kind 'depthwise' must have groups == cin == cout, got groups={groups}, "
                f"cin={cin}, cout={cout}"
            )
        if kind == LayerKind.GROUPED and (groups == 1 or groups == cin == cout):
            return (
                f"kind 'grouped' must have 1 < groups and not be depthwise, got groups={groups}, "
                f"cin={cin}, cout={cout}"
            )
        return None

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_layers(
        cls, layers: Iterable[Layer], *, batch: int | None = None, name: str = "workload"
    ) -> LayerTable:
        """Build a table from :class:`Layer` rows (see :func:`conv` and :func:`linear`)."""
        rows = list(layers)
        if not rows:
            raise WorkloadError(f"workload {name!r} must have at least one layer, got 0")
        columns: dict[str, list[Any]] = {f: [getattr(r, f) for r in rows] for f in KERNEL_COLUMNS}
        return cls(
            names=[r.name for r in rows],
            **{f: columns[f] for f in KERNEL_COLUMNS},
            batch=batch,
            name=name,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerTable:
        """Inverse of :meth:`to_dict`: ``{"name", "batch", "layers": [{field: value}, ...]}``.

        Each layer has exactly the fields ``name``, ``kind`` (a name such as ``"conv"`` or its
        code), the integer shape fields of :data:`KERNEL_COLUMNS` and ``reads_image``; ``macs``
        and ``params`` may also appear (as :meth:`to_csv` writes them) and are ignored, being
        recomputed. Integer fields accept whole floats (``3.0``) but not ``3.5`` or strings.

        Raises:
            WorkloadError: a missing, unknown or ill-typed key, naming the layer, the field and
                the value, or a shape the table's validation rejects.
        """
        if not isinstance(data, Mapping):
            raise WorkloadError(
                f"workload must be an object with a 'layers' list, got {type(data).__name__}"
            )
        if "layers" not in data:
            raise WorkloadError(
                f"workload dict must have a 'layers' list, got keys {sorted(map(str, data))}"
            )
        unknown = [str(k) for k in data if k not in _TOP_KEYS]
        if unknown:
            raise WorkloadError(
                f"workload dict has unknown keys {unknown}; known keys are {list(_TOP_KEYS)}"
            )
        rows = data["layers"]
        if not isinstance(rows, list | tuple):
            raise WorkloadError(
                f"workload 'layers' must be a list of layer objects, got {type(rows).__name__}"
            )
        name = data.get("name", "workload")
        if not isinstance(name, str):
            raise WorkloadError(f"workload 'name' must be a string, got {name!r}")
        layers = [_layer_from_row(i, row) for i, row in enumerate(rows)]
        return cls.from_layers(layers, batch=data.get("batch"), name=name)

    @classmethod
    def from_json(cls, path: str | Path) -> LayerTable:
        """Read a table written by :meth:`to_json` (see :meth:`from_dict` for the format)."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WorkloadError(
                f"workload file {str(path)!r} must be readable JSON: {exc}"
            ) from exc
        with _in_file(path):
            return cls.from_dict(data)

    @classmethod
    def from_csv(
        cls, path_or_text: str | Path, *, batch: int | None = None, name: str | None = None
    ) -> LayerTable:
        """Read a table written by :meth:`to_csv` (a path, or the CSV text itself).

        The header must name the columns ``name``, :data:`KERNEL_COLUMNS` (``macs`` and
        ``params`` are allowed and ignored); ``kind`` is a name such as ``conv`` and
        ``reads_image`` is ``1``/``0``, ``true``/``false`` or ``yes``/``no``.
        """
        text = str(path_or_text)
        path: str | Path | None = None
        if "\n" not in text:
            path = path_or_text
            try:
                text = Path(path).read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise WorkloadError(f"workload file {str(path)!r} must be readable: {exc}") from exc
            name = name or Path(path).stem
        with _in_file(path):
            return cls.from_dict(
                {"layers": _csv_rows(text), "batch": batch, "name": name or "workload"}
            )

    # ------------------------------------------------------------------ conversions
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``kind`` is written by name."""
        return {
            "name": self.name,
            "batch": self.batch,
            "layers": [
                {
                    "name": layer.name,
                    **attrs.asdict(layer, filter=lambda a, _: a.name != "name"),
                    "kind": layer.kind.name.lower(),
                }
                for layer in self
            ],
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """Serialise to JSON; also write it to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text

    def to_csv(self, path: str | Path | None = None) -> str:
        """Serialise to CSV (one row per layer); also write it to ``path`` if given."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["name", *KERNEL_COLUMNS, "macs", "params"])
        for layer, macs, params in zip(self, self.macs, self.params, strict=True):
            writer.writerow(
                [
                    layer.name,
                    layer.kind.name.lower(),
                    *(getattr(layer, f) for f in _INT_FIELDS),
                    int(layer.reads_image),
                    int(macs),
                    int(params),
                ]
            )
        if path is not None:
            Path(path).write_text(buf.getvalue())
        return buf.getvalue()

    def kernel_array(self) -> np.ndarray:
        """The shape columns as one C-contiguous ``int64`` array (see :data:`KERNEL_COLUMNS`)."""
        return np.ascontiguousarray(
            np.stack([getattr(self, f).astype(np.int64) for f in KERNEL_COLUMNS], axis=1)
        )

    def with_batch(self, batch: int | None) -> LayerTable:
        """The same layers with another batch."""
        return attrs.evolve(self, batch=batch)

    def select(self, index: Sequence[int] | slice) -> LayerTable:
        """A table of a subset of rows (in the given order)."""
        idx = np.arange(len(self))[index]
        return LayerTable(
            names=[self.names[i] for i in idx],
            **{f: getattr(self, f)[idx] for f in KERNEL_COLUMNS},
            batch=self.batch,
            name=self.name,
        )

    # ------------------------------------------------------------------ derived
    @property
    def macs(self) -> np.ndarray:
        """Multiply-accumulates per layer for one image (``int64``)."""
        return self.out_h * self.out_w * self.cout * (self.cin // self.groups) * self.kh * self.kw

    @property
    def params(self) -> np.ndarray:
        """Weight parameters per layer (``int64``); biases are not counted."""
        return self.cout * (self.cin // self.groups) * self.kh * self.kw

    @property
    def total_macs(self) -> int:
        return int(self.macs.sum())

    @property
    def total_params(self) -> int:
        return int(self.params.sum())

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> Layer:
        if not -len(self) <= i < len(self):
            raise IndexError(f"layer index must be in [0, {len(self)}), got {i}")
        return Layer(
            name=self.names[i],
            **{f: int(getattr(self, f)[i]) for f in KERNEL_COLUMNS if f != "reads_image"},
            reads_image=bool(self.reads_image[i]),
        )

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LayerTable):
            return NotImplemented
        return (
            self.names == other.names
            and self.batch == other.batch
            and all(np.array_equal(getattr(self, f), getattr(other, f)) for f in KERNEL_COLUMNS)
        )

    def __hash__(self) -> int:
        return hash((self.names, self.batch, self.kernel_array().tobytes()))

    def fingerprint(self) -> str:
        """A stable hex digest of the shapes (not the name), for cache keys."""
        import hashlib

        h = hashlib.sha256()
        h.update(json.dumps(self.names).encode())
        h.update(self.kernel_array().tobytes())
        h.update(str(self.batch).encode())
        return h.hexdigest()[:16]

    def __repr__(self) -> str:
        return (
            f"LayerTable(name={self.name!r}, layers={len(self)}, batch={self.batch}, "
            f"macs={self.total_macs:,}, params={self.total_params:,})"
        )
