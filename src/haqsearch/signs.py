"""Whether each layer's input can be negative, from the model's dataflow rather than from data.

Activation quantization is unsigned after a ReLU and signed where the input can be negative. A
calibration set only shows the values it happened to produce, so :func:`input_signs` decides
structurally instead: it runs the model once under a :class:`torch.overrides.TorchFunctionMode`
that gives every tensor produced in the forward pass one of three :class:`Sign` values:

- :attr:`Sign.NONNEGATIVE`: made by an op whose result is never negative (``relu``, ``relu6``,
  ``hardtanh``/``clamp`` with a lower bound of at least 0, ``sigmoid``, ``hardsigmoid``,
  ``softmax``, ``abs``, ``exp``, ...);
- :attr:`Sign.DATA`: non-negative exactly when the model's input is: the input itself, and what
  sign-preserving ops make of it;
- :attr:`Sign.SIGNED`: anything else: convolutions, BatchNorm, subtraction, unknown ops, and
  tensors not made in the forward pass (parameters, buffers).

Sign-preserving ops keep the weakest sign of their operands (``SIGNED`` < ``DATA`` <
``NONNEGATIVE``): pooling (max, average, adaptive, functional or modules), shape and selection
ops (``flatten``, ``view``, ``reshape``, ``permute``, ``contiguous``, indexing, ``cat``,
``stack``, ...), dropout, ``interpolate``/upsampling (not bicubic), zero padding, reductions
(``sum``, ``mean``, ``max``), and ``add``, ``mul``, ``div``, ``minimum`` where every operand,
numbers included, is non-negative (``maximum`` needs one). In-place ops give their result's sign
to the mutated tensor (and can only lower the sign of other views of it).
"""

from __future__ import annotations

import enum
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from haqsearch.errors import TraceError
from haqsearch.trace import evaluating

__all__ = ["Sign", "input_signs"]


class Sign(enum.IntEnum):
    """What is known about a tensor's sign; a larger value is a stronger guarantee."""

    SIGNED = 0
    DATA = 1
    NONNEGATIVE = 2


# --------------------------------------------------------------------------------------------
# Op rules
# --------------------------------------------------------------------------------------------

#: Ops whose result is never negative, whatever their input.
_NONNEGATIVE_OPS = frozenset(
    {"relu", "relu6", "sigmoid", "hardsigmoid", "softmax", "softmin", "abs", "absolute", "exp",
     "softplus", "square", "sqrt", "norm", "zero"}
)  # fmt: skip
#: Ops whose result keeps the sign of their first argument (or of the tensors in it, for
#: ``cat``-like ops); other arguments are shapes, dimensions, indices or options.
_FIRST_ARG_OPS = frozenset(
    {
        # shape and selection
        "view", "reshape", "flatten", "unflatten", "permute", "transpose", "t", "contiguous",
        "clone", "detach", "squeeze", "unsqueeze", "expand", "expand_as", "repeat", "tile",
        "flip", "roll", "narrow", "select", "index_select", "gather", "__getitem__", "split",
        "chunk", "unbind", "tensor_split", "movedim", "moveaxis", "view_as", "reshape_as",
        "as_strided", "unfold", "masked_select", "pixel_shuffle", "pixel_unshuffle",
        "channel_shuffle", "cat", "concat", "concatenate", "stack", "hstack", "vstack",
        # dtype and device
        "to", "float", "double", "half", "bfloat16", "type", "type_as", "cpu", "cuda",
        # pooling and dropout
        "max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices",
        "max_pool2d_with_indices", "max_pool3d_with_indices", "avg_pool1d", "avg_pool2d",
        "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
        "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
        "adaptive_max_pool1d_with_indices", "adaptive_max_pool2d_with_indices",
        "adaptive_max_pool3d_with_indices", "dropout", "dropout1d", "dropout2d", "dropout3d",
        "feature_dropout",
        # reductions (an index output is non-negative anyway)
        "sum", "mean", "nanmean", "amax", "amin", "max", "min", "median", "cumsum", "sort",
        "topk",
        # upsampling that interpolates without overshoot
        "upsample", "upsample_nearest", "upsample_bilinear",
    }
)  # fmt: skip
#: Arithmetic whose result is non-negative when every operand is.
_ARITHMETIC_OPS = frozenset(
    {"add", "mul", "multiply", "div", "divide", "true_divide", "minimum", "fmin", "matmul", "mm",
     "bmm"}
)  # fmt: skip
_DUNDER = {
    "__add__": "add", "__radd__": "add", "__iadd__": "add", "__mul__": "mul", "__rmul__": "mul",
    "__imul__": "mul", "__truediv__": "div", "__rtruediv__": "div", "__itruediv__": "div",
    "__matmul__": "matmul", "__rmatmul__": "matmul",
}  # fmt: skip
#: Tensor properties read through ``__get__`` that keep the sign.
_PROPERTIES = frozenset({"T", "mT", "H", "mH", "data", "real"})
_OVERSHOOTING_MODES = frozenset({"bicubic", "lanczos"})


def _op_name(func: Callable[..., Any]) -> tuple[str, bool]:
    """The op's base name (``relu`` for ``relu_``, ``add`` for ``__iadd__``) and whether it is
    in place."""
    name = getattr(func, "__name__", "")
    if name == "__get__":  # a property: Tensor.T.__get__ and the like
        prop = getattr(getattr(func, "__self__", None), "__name__", "")
        return ("view" if prop in _PROPERTIES else "__get__"), False
    if name in _DUNDER:
        return _DUNDER[name], name.startswith("__i")
    if name.endswith("_") and not name.endswith("__"):
        return name[:-1], True
    return name, False


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Any:
    """Argument ``index`` (positional) or ``name`` (keyword), or ``None``."""
    if len(args) > index:
        return args[index]
    return kwargs.get(name)


class _SignMode(TorchFunctionMode):
    """Gives each tensor produced in the forward pass a :class:`Sign`."""

    def __init__(self, inputs: Sequence[torch.Tensor]) -> None:
        super().__init__()
        self._signs: dict[int, tuple[weakref.ref[torch.Tensor], Sign]] = {}
        for x in inputs:
            self._set(x, Sign.DATA)

    def sign(self, value: Any) -> Sign:
        """The sign of a tensor, a number, or the weakest of a list or tuple of them."""
        if isinstance(value, torch.Tensor):
            entry = self._signs.get(id(value))
            if entry is not None and entry[0]() is value:
                return entry[1]
            return Sign.SIGNED  # not made in the forward pass: a parameter, a buffer, ...
        if isinstance(value, bool):
            return Sign.NONNEGATIVE
        if isinstance(value, (int, float)):
            return Sign.NONNEGATIVE if value >= 0 else Sign.SIGNED
        if isinstance(value, (list, tuple)):
            return min((self.sign(v) for v in value), default=Sign.NONNEGATIVE)
        return Sign.SIGNED

    def _set(self, t: torch.Tensor, sign: Sign) -> None:
        self._signs[id(t)] = (weakref.ref(t), sign)

    def _lower_aliases(self, t: torch.Tensor, sign: Sign) -> None:
        """After ``t`` was changed in place: other views of its storage are at most ``sign``."""
        try:
            ptr = t.untyped_storage().data_ptr()
        except (RuntimeError, NotImplementedError):
            return
        for key, (ref, old) in list(self._signs.items()):
            other = ref()
            if other is None:
                del self._signs[key]
            elif other is not t and old > sign:
                try:
                    if other.untyped_storage().data_ptr() == ptr:
                        self._signs[key] = (ref, sign)
                except (RuntimeError, NotImplementedError):
                    continue

    def _rule(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Sign:
        """The sign of the op's result."""
        first = _arg(args, kwargs, 0, "input")
        if name in _NONNEGATIVE_OPS:
            return Sign.NONNEGATIVE
        if name == "hardtanh":
            low = _arg(args, kwargs, 1, "min_val")
            bound = self.sign(-1.0 if low is None else low)
            return Sign.NONNEGATIVE if bound == Sign.NONNEGATIVE else Sign.SIGNED
        if name in ("clamp", "clip", "clamp_min", "clamp_max"):
            if name == "clamp_max":
                low, high = None, _arg(args, kwargs, 1, "max")
            else:
                low, high = _arg(args, kwargs, 1, "min"), _arg(args, kwargs, 2, "max")
            if low is not None and self.sign(low) == Sign.NONNEGATIVE:
                return Sign.NONNEGATIVE
            return self.sign([first, 0.0 if high is None else high])
        if name in ("maximum", "fmax"):  # at least as large as either operand
            return max(self.sign(first), self.sign(_arg(args, kwargs, 1, "other")))
        if name == "min" and isinstance(_arg(args, kwargs, 1, "other"), torch.Tensor):
            return self.sign([first, _arg(args, kwargs, 1, "other")])
        if name == "threshold":
            bounds = (_arg(args, kwargs, 1, "threshold"), _arg(args, kwargs, 2, "value"))
            return Sign.NONNEGATIVE if self.sign(bounds) == Sign.NONNEGATIVE else Sign.SIGNED
        if name in _FIRST_ARG_OPS:
            return self.sign(first)
        if name == "interpolate":
            mode = _arg(args, kwargs, 3, "mode") or "nearest"
            return Sign.SIGNED if mode in _OVERSHOOTING_MODES else self.sign(first)
        if name == "pad":
            mode = _arg(args, kwargs, 2, "mode") or "constant"
            value = _arg(args, kwargs, 3, "value")
            fill = self.sign(0.0 if value is None or mode != "constant" else value)
            return min(self.sign(first), fill)
        if name in _ARITHMETIC_OPS:
            operands = [first, _arg(args, kwargs, 1, "other"), kwargs.get("alpha", 1)]
            return self.sign(operands)
        if name in ("pow", "__pow__"):
            return self.sign(first)
        if name == "__rpow__":
            return self.sign(_arg(args, kwargs, 1, "other"))
        if name == "where":
            return self.sign([_arg(args, kwargs, 1, "input"), _arg(args, kwargs, 2, "other")])
        if name == "masked_fill":
            return self.sign([first, _arg(args, kwargs, 2, "value")])
        if name in ("copy", "fill"):
            return self.sign(_arg(args, kwargs, 1, "src" if name == "copy" else "value"))
        return Sign.SIGNED

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name, in_place = _op_name(func)
        if name == "__setitem__":  # x[index] = value: x keeps the weaker of the two signs
            target, sign, in_place = args[0], self.sign([args[0], args[2]]), True
        else:
            target = kwargs.get("out", out)
            in_place = in_place or "out" in kwargs
            sign = self._rule(name, args, kwargs)
        for t in _tensors(target):
            self._set(t, sign)
            if in_place:
                self._lower_aliases(t, sign)
        if target is not out:
            for t in _tensors(out):
                self._set(t, sign)
        return out


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    """The tensors in an op's result (a tensor, or a tuple or list of them)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)


# --------------------------------------------------------------------------------------------
# input_signs()
# --------------------------------------------------------------------------------------------


def input_signs(
    model: nn.Module, example_input: torch.Tensor | tuple[Any, ...], modules: Sequence[nn.Module]
) -> list[Sign]:
    """The sign of the input of each of ``modules``, from one forward pass on ``example_input``.

    The pass runs in eval mode under :func:`torch.no_grad`; the model is left as it was. It needs
    no ``torch.fx`` graph: whatever the forward pass executes on this input is what counts.

    Args:
        model: The model.
        example_input: A tensor (``model(x)``) or a tuple of positional arguments; its tensors
            are the model's inputs, of sign :attr:`Sign.DATA`.
        modules: Submodules of ``model``; a module called several times gets the weakest sign of
            its calls.

    Returns:
        One :class:`Sign` per module, in the order given. :attr:`Sign.DATA` means the input is
        non-negative exactly when the model's input is; a caller judges that on its data.

    Raises:
        TraceError: If the model fails on the example input, or one of ``modules`` does not run.
    """
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    mode = _SignMode([a for a in args if isinstance(a, torch.Tensor)])
    seen: dict[int, Sign] = {}

    def pre_hook(module: nn.Module, hook_args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        x = hook_args[0] if hook_args else kwargs.get("input")
        sign = mode.sign(x) if isinstance(x, torch.Tensor) else Sign.SIGNED
        seen[id(module)] = min(sign, seen.get(id(module), Sign.NONNEGATIVE))

    handles = [m.register_forward_pre_hook(pre_hook, with_kwargs=True) for m in modules]
    try:
        with evaluating(model), torch.no_grad():
            try:
                with mode:
                    model(*args)
            except Exception as exc:
                raise TraceError(
                    f"model {type(model).__name__!r} must run on the example input to find the "
                    f"sign of its layer inputs, got {type(exc).__name__}: {exc}"
                ) from exc
    finally:
        for handle in handles:
            handle.remove()
    names = {id(m): n for n, m in model.named_modules()}
    missing = [names.get(id(m), type(m).__name__) for m in modules if id(m) not in seen]
    if missing:
        raise TraceError(
            f"model {type(model).__name__!r}: every layer must run on the example input to find "
            f"the sign of its input, got {missing[:5]} not run"
        )
    return [seen[id(m)] for m in modules]
