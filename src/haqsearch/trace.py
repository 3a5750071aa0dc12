"""Trace a PyTorch model into a haqsim workload.

:func:`trace` runs the model once on an example input with forward hooks on every quantizable
module (:class:`~torch.nn.Conv1d`, :class:`~torch.nn.Conv2d`, :class:`~torch.nn.Linear` and their
subclasses) and records the shapes each call sees. It needs no ``torch.fx`` graph, so residual
connections, nested containers and data-dependent control flow all work: whatever the forward pass
actually executes is what the workload describes.

How modules become rows (shapes are per image; the table's batch is ``None``):

- ``Conv2d``: one row; the kind follows from ``groups`` (1: conv, ``groups == cin == cout``:
  depthwise, otherwise grouped). The stride must be equal along both axes. Dilation other than 1
  is rejected (a row cannot describe it).
- ``Conv1d``: a ``1 x k`` convolution on a ``1 x L`` map.
- Padding: a row has one zero padding for both axes. When the padding is the same on all four
  sides it is kept as is; otherwise (``Conv1d`` with padding, unequal ``(ph, pw)``, ``"same"``
  with an even kernel) it is folded into the input map: ``pad = 0`` and ``in_h``/``in_w`` grow by
  the padding, which keeps output size, MACs and parameters exact.
- ``Linear`` on a 1-D or 2-D input (``(F,)`` or ``(batch, F)``): a linear row.
- ``Linear`` on an input with more dimensions, ``(batch, d1, ..., dk, F)``: the tokens are folded
  into a feature map, a ``1 x 1`` convolution on a ``1 x (d1 * ... * dk)`` map, so MACs count
  every token. (A 2-D input's first dimension is always taken as the batch.)
- A module that never runs in the forward pass gives no row. Other layer types (``Conv3d``,
  transposed convolutions, attention's fused projections) are not quantizable here and are
  ignored.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import attrs
import torch
from torch import nn

from haqsearch.errors import TraceError
from haqsim.workload import Layer, LayerTable, conv, linear

__all__ = ["QUANTIZABLE", "Traced", "trace"]

#: Module types that become workload rows (subclasses included).
QUANTIZABLE: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Linear)

_SHARED_MODES = ("error", "rows")
_SHARED_HINT = "pass shared='rows' for one row per call"


@attrs.frozen
class Traced:
    """A traced model: its workload and the module behind each row.

    Attributes:
        workload: One row per call of a quantizable module, in execution order; per-image shapes
            (``batch`` is ``None``).
        modules: The module of each row (the same object appears once per call when
            ``shared="rows"``).
        names: The row names, equal to ``workload.names``: the module's qualified name, with
            ``#1``, ``#2``, ... appended for each call of a module called more than once.
    """

    workload: LayerTable
    modules: tuple[nn.Module, ...] = attrs.field(converter=tuple)
    names: tuple[str, ...] = attrs.field(converter=tuple)

    def __attrs_post_init__(self) -> None:
        if not len(self.modules) == len(self.names) == len(self.workload):
            raise TraceError(
                f"Traced must have one module and one name per workload row ({len(self.workload)}),"
                f" got {len(self.modules)} modules and {len(self.names)} names"
            )

    def __len__(self) -> int:
        return len(self.names)


@attrs.define
class _Call:
    """One call of a quantizable module, as the hooks saw it."""

    module: nn.Module
    in_shape: tuple[int, ...] | None
    reads_input: bool
    out_shape: tuple[int, ...] | None = None


def trace(
    model: nn.Module,
    example_input: torch.Tensor | tuple[Any, ...],
    *,
    name: str | None = None,
    shared: Literal["error", "rows"] = "error",
    hint: str = _SHARED_HINT,
) -> Traced:
    """Run ``model`` once on ``example_input`` and describe its quantizable layers as a workload.

    The forward pass runs under :func:`torch.no_grad` in eval mode; every module's training flag
    is restored afterwards and the hooks are removed, so the model is left as it was.

    Args:
        model: Any module built from standard layers; it need not be ``torch.fx``-traceable.
        example_input: The input, a tensor (called as ``model(x)``) or a tuple of positional
            arguments (``model(*args)``). Its spatial size sets the workload's shapes; use batch 1
            to keep the pass cheap. The first convolution that reads this tensor itself (the same
            object, or a view of it with the same shape) gets ``reads_image=True``.
        name: The workload's name; defaults to the model's class name.
        shared: What to do with a module called more than once in one pass: ``"error"`` raises,
            ``"rows"`` gives each call its own row, named ``"<module>#1"``, ``"<module>#2"``, ...
        hint: The fix the ``shared="error"`` message suggests, after the repeated modules; a
            caller that cannot use ``shared="rows"`` states its own.

    Returns:
        The workload, and the module and name of each row, in execution order.

    Raises:
        TraceError: The model has no quantizable layer, or none of them ran; the model fails on
            the example input; a module is called more than once under ``shared="error"``; or a
            layer has a shape a workload row cannot describe (dilation, unequal strides).
    """
    if not isinstance(model, nn.Module):
        raise TraceError(f"trace: 'model' must be a torch.nn.Module, got {type(model).__name__}")
    if shared not in _SHARED_MODES:
        raise TraceError(f"trace: 'shared' must be one of {list(_SHARED_MODES)}, got {shared!r}")
    if isinstance(example_input, torch.Tensor):
        args: tuple[Any, ...] = (example_input,)
    elif isinstance(example_input, tuple):
        args = example_input
    else:
        raise TraceError(
            "trace: 'example_input' must be a tensor or a tuple of positional arguments, "
            f"got {type(example_input).__name__}"
        )
    model_name = type(model).__name__
    qualified = {m: n for n, m in model.named_modules() if isinstance(m, QUANTIZABLE)}
    if not qualified:
        raise TraceError(
            f"model {model_name!r} must have at least one quantizable layer "
            f"({', '.join(t.__name__ for t in QUANTIZABLE)}), got none"
        )

    calls = _run(model, args, qualified)
    if not calls:
        raise TraceError(
            f"model {model_name!r} has {len(qualified)} quantizable layer(s) but none of them ran "
            "on the example input"
        )
    counts = Counter(id(c.module) for c in calls)
    if shared == "error" and max(counts.values()) > 1:
        repeated = [
            f"{_display_name(qualified[c.module], model_name)!r} ({type(c.module).__name__}) "
            f"{counts[id(c.module)]} times"
            for c in _first_calls(calls)
            if counts[id(c.module)] > 1
        ]
        raise TraceError(
            f"model {model_name!r}: each quantizable module must run once per forward pass, got "
            f"{', '.join(repeated)}; {hint}"
        )

    rows: list[Layer] = []
    seen: Counter[int] = Counter()
    image_read = False
    for call in calls:
        key = id(call.module)
        seen[key] += 1
        row_name = _display_name(qualified[call.module], model_name)
        if counts[key] > 1:
            row_name = f"{row_name}#{seen[key]}"
        reads_image = call.reads_input and not image_read and not isinstance(call.module, nn.Linear)
        image_read = image_read or reads_image
        rows.append(_row(call, row_name, reads_image))
    workload = LayerTable.from_layers(rows, batch=None, name=name or model_name)
    return Traced(workload, [c.module for c in calls], workload.names)


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode; restore every module's training flag afterwards."""
    flags = {m: m.training for m in model.modules()}
    try:
        model.eval()
        yield
    finally:
        for module, flag in flags.items():
            module.training = flag


def _display_name(qualified_name: str, model_name: str) -> str:
    """The row name of a module: its qualified name, or the class name for the root module."""
    return qualified_name or model_name


def _first_calls(calls: list[_Call]) -> list[_Call]:
    seen: set[int] = set()
    first = []
    for c in calls:
        if id(c.module) not in seen:
            seen.add(id(c.module))
            first.append(c)
    return first


def _is_example(t: Any, examples: list[torch.Tensor]) -> bool:
    """Whether ``t`` is one of the example tensors, or a same-shaped view of one."""
    if not isinstance(t, torch.Tensor):
        return False
    for x in examples:
        if t is x:
            return True
        if (
            t.layout == torch.strided
            and x.layout == torch.strided
            and t.device == x.device
            and t.dtype == x.dtype
            and t.shape == x.shape
            and t.stride() == x.stride()
            and t.numel() > 0
            and t.data_ptr() == x.data_ptr()
        ):
            return True
    return False


def _run(model: nn.Module, args: tuple[Any, ...], qualified: dict[nn.Module, str]) -> list[_Call]:
    """Run the forward pass with hooks; return the calls of quantizable modules in call order."""
    examples = [a for a in args if isinstance(a, torch.Tensor)]
    calls: list[_Call] = []
    pending: dict[int, list[int]] = {}

    def pre_hook(module: nn.Module, hook_args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        x = hook_args[0] if hook_args else kwargs.get("input")
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else None
        pending.setdefault(id(module), []).append(len(calls))
        calls.append(_Call(module, shape, _is_example(x, examples)))

    def post_hook(
        module: nn.Module, hook_args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
    ) -> None:
        index = pending[id(module)].pop()
        if isinstance(output, torch.Tensor):
            calls[index].out_shape = tuple(output.shape)

    handles = []
    try:
        for module in qualified:
            handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
            handles.append(module.register_forward_hook(post_hook, with_kwargs=True))
        with evaluating(model), torch.no_grad():
            try:
                model(*args)
            except Exception as exc:
                shapes = [tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
                          for a in args]  # fmt: skip
                raise TraceError(
                    f"model {type(model).__name__!r} must run on the example input "
                    f"{shapes}, got {type(exc).__name__}: {exc}"
                ) from exc
    finally:
        for handle in handles:
            handle.remove()
    for call in calls:
        if call.in_shape is None or call.out_shape is None:
            raise TraceError(
                f"module {qualified[call.module]!r} ({type(call.module).__name__}) must take and "
                "return a tensor, got another type"
            )
    return calls


def _row(call: _Call, name: str, reads_image: bool) -> Layer:
    """The workload row of one call."""
    module = call.module
    where = f"module {name!r} ({type(module).__name__})"
    assert call.in_shape is not None and call.out_shape is not None
    if isinstance(module, nn.Linear):
        return _linear_row(module, call.in_shape, name, where)
    spatial = 2 if isinstance(module, nn.Conv2d) else 1
    return _conv_row(module, spatial, call.in_shape, call.out_shape, name, where, reads_image)


def _linear_row(module: nn.Linear, in_shape: tuple[int, ...], name: str, where: str) -> Layer:
    if not in_shape or in_shape[-1] != module.in_features:
        raise TraceError(
            f"{where} input must end in in_features={module.in_features}, got shape {in_shape}"
        )
    if len(in_shape) <= 2:
        return linear(name, module.in_features, module.out_features)
    tokens = math.prod(in_shape[1:-1])
    if tokens < 1:
        raise TraceError(f"{where} input must have at least one token, got shape {in_shape}")
    return conv(name, module.in_features, module.out_features, 1, (1, tokens), stride=1, pad=0)


def _padding(module: nn.Conv1d | nn.Conv2d, where: str) -> list[tuple[int, int]]:
    """``(before, after)`` zero padding per spatial axis."""
    padding = module.padding
    kernel = module.kernel_size
    if padding == "valid":
        return [(0, 0) for _ in kernel]
    if padding == "same":
        return [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel]
    if isinstance(padding, str):
        raise TraceError(f"{where} padding must be 'same', 'valid' or integers, got {padding!r}")
    return [(int(p), int(p)) for p in padding]


def _conv_row(
    module: nn.Conv1d | nn.Conv2d,
    spatial: int,
    in_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    name: str,
    where: str,
    reads_image: bool,
) -> Layer:
    if len(in_shape) not in (spatial + 1, spatial + 2) or in_shape[-spatial - 1] != (
        module.in_channels
    ):
        raise TraceError(
            f"{where} input must be (batch, {module.in_channels}, ...) with {spatial} spatial "
            f"dimension(s), got shape {in_shape}"
        )
    if any(d != 1 for d in module.dilation):
        raise TraceError(
            f"{where} dilation must be 1 (a workload row cannot describe dilated convolution), "
            f"got {tuple(module.dilation)}"
        )
    pads = _padding(module, where)
    if spatial == 1:
        kh, kw = 1, module.kernel_size[0]
        in_h, in_w = 1, in_shape[-1]
        out_h, out_w = 1, out_shape[-1]
        stride = module.stride[0]
        pads = [(0, 0), pads[0]]
    else:
        kh, kw = module.kernel_size
        in_h, in_w = in_shape[-2:]
        out_h, out_w = out_shape[-2:]
        if module.stride[0] != module.stride[1]:
            raise TraceError(
                f"{where} stride must be equal along both axes, got {tuple(module.stride)}"
            )
        stride = module.stride[0]
    (top, bottom), (left, right) = pads
    if top == bottom == left == right:
        pad = top
    else:  # fold unequal padding into the input map; MACs and output size stay exact
        pad = 0
        in_h, in_w = in_h + top + bottom, in_w + left + right
    layer = conv(
        name,
        module.in_channels,
        module.out_channels,
        (kh, kw),
        (in_h, in_w),
        stride=stride,
        pad=pad,
        groups=module.groups,
        reads_image=reads_image,
    )
    if (layer.out_h, layer.out_w) != (out_h, out_w):
        raise TraceError(
            f"{where} output size must follow from its kernel, stride and padding "
            f"({layer.out_h} x {layer.out_w}), got {out_h} x {out_w} (a custom forward?)"
        )
    return layer
