"""Fake quantization with straight-through gradients, and applying a bit policy to a model copy.

The quantizers are HAQ's linear ones:

- **Weights**: symmetric, ``scale = c / (2^(b-1) - 1)``, per output channel or per tensor. The
  clip ``c`` is the maximum ``|w|`` (``"max"``), the value minimising the squared quantization error
  (``"mse"``), or, at 6 bits and below, the one minimising a TensorRT-style KL divergence between
  the weight histogram and its quantized version (``"kl"``); per channel, each channel's clip is
  searched on its own weights. The clip is stored as a fraction of the channel's maximum, so it
  follows the weights during fine-tuning.
  One-bit weights are binary, ``sign(w) * mean|w|`` (XNOR-Net).
- **Activations** (the *input* of each quantizable layer: HAQ's ``a_bits``): unsigned over
  ``[0, c]`` when the input cannot be negative, otherwise symmetric signed. That is decided from
  the dataflow by :func:`haqsearch.signs.input_signs` (after a ReLU, a ReLU6, a sigmoid, ...,
  through pooling, reshapes and the like: unsigned), not from the values calibration happened to
  see; only the model's input itself, and what sign-preserving ops make of it, is judged by the
  layer's calibration inputs (unsigned when they never go negative). ``c`` is calibrated on data
  (max, percentile or MSE) and optionally learned during fine-tuning (PACT-style,
  ``learn_clip=True``).
- ``b`` is 1 to 8 or 16 bits; :data:`FULL_PRECISION` (32) leaves the tensor in floating point.

Rounding uses a straight-through estimator (the detach trick): the forward pass rounds, the
backward pass treats rounding as the identity, so gradients pass inside the clip range and stop
outside it.

:func:`quantize` deep-copies the model, folds BatchNorm into the preceding convolution, replaces
every layer :func:`haqsearch.trace.trace` finds (row ``i`` of the traced workload is policy index
``i``; a :class:`haqsim.Policy` is matched by layer name) by a :class:`QuantConv2d`,
:class:`QuantConv1d` or :class:`QuantLinear`, and calibrates the activation clips. The original
model is never modified.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from haqsearch.data import as_batches, check_batch
from haqsearch.errors import HaqsearchError
from haqsearch.signs import Sign, input_signs
from haqsearch.trace import Traced, trace
from haqsim.errors import PolicyError
from haqsim.policy import Policy

__all__ = [
    "FULL_PRECISION",
    "ActClipCache",
    "KL_MAX_BITS",
    "QuantConv1d",
    "QuantConv2d",
    "QuantLinear",
    "QuantModule",
    "check_bits",
    "fake_quant_signed",
    "fake_quant_unsigned",
    "fold_batchnorm",
    "quant_modules",
    "quantize",
    "trace_for_quantization",
    "weight_clip_value",
]

#: Bit width meaning "leave this tensor in floating point".
FULL_PRECISION = 32
#: Allowed bit widths: 1 to 8, 16, and :data:`FULL_PRECISION`.
ALLOWED_BITS: frozenset[int] = frozenset([*range(1, 9), 16, FULL_PRECISION])
#: ``weight_clip="kl"`` searches a KL threshold at this many bits or fewer (max clip above).
KL_MAX_BITS = 6

WeightClip = Literal["max", "mse", "kl"]
ActClip = Literal["max", "percentile", "mse"]
_WEIGHT_CLIPS = ("max", "mse", "kl")
_ACT_CLIPS = ("max", "percentile", "mse")
_MIN_CLIP = 1e-8
_SAMPLES_PER_BATCH = 1 << 14
_MAX_SAMPLES = 1 << 15
_GRID = 64  # candidate clips of the MSE and KL searches
_KL_BINS_PER_STEP = 8  # histogram bins per quantization step in the KL search
_SHARED_HINT = (
    "give each call its own module instance (e.g. a copy.deepcopy of the layer per use) to "
    "quantize it: a quantized layer holds one bit width and one set of clips"
)


# --------------------------------------------------------------------------------------------
# Quantizers
# --------------------------------------------------------------------------------------------


def _ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``q`` in the forward pass, the gradient of ``x`` in the backward pass."""
    return x + (q - x).detach()


def fake_quant_signed(x: torch.Tensor, clip: torch.Tensor | float, bits: int) -> torch.Tensor:
    """Symmetric linear fake quantization to ``bits`` bits over ``[-clip, clip]``.

    Levels are ``k * clip / (2^(bits-1) - 1)`` for integer ``|k| <= 2^(bits-1) - 1``; one bit gives
    ``{-clip, +clip}``. Gradients pass straight through inside the range and are zero outside it
    (and flow into ``clip`` where it is a tensor requiring gradients).

    Args:
        x: Tensor to quantize.
        clip: Clip value, positive; a scalar or a tensor broadcastable to ``x`` (per channel).
        bits: 1 to 16, or :data:`FULL_PRECISION` to return ``x`` unchanged.
    """
    if bits >= FULL_PRECISION:
        return x
    c = torch.as_tensor(clip, dtype=x.dtype, device=x.device).clamp_min(_MIN_CLIP)
    xc = torch.minimum(torch.maximum(x, -c), c)
    if bits == 1:
        return _ste(xc, torch.where(xc >= 0, c, -c))
    scale = c / (2 ** (bits - 1) - 1)
    v = xc / scale
    return _ste(v, torch.round(v)) * scale


def fake_quant_unsigned(x: torch.Tensor, clip: torch.Tensor | float, bits: int) -> torch.Tensor:
    """Unsigned linear fake quantization to ``bits`` bits over ``[0, clip]``.

    Levels are ``k * clip / (2^bits - 1)`` for ``k = 0 .. 2^bits - 1``. Straight-through gradients
    as in :func:`fake_quant_signed`.
    """
    if bits >= FULL_PRECISION:
        return x
    c = torch.as_tensor(clip, dtype=x.dtype, device=x.device).clamp_min(_MIN_CLIP)
    xc = torch.minimum(torch.relu(x), c)
    scale = c / (2**bits - 1)
    v = xc / scale
    return _ste(v, torch.round(v)) * scale


def _binarize(w: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """One-bit weights: ``sign(w) * mean|w|`` per channel (or tensor), straight-through."""
    if per_channel:
        alpha = w.detach().abs().flatten(1).mean(1).view(-1, *[1] * (w.ndim - 1))
    else:
        alpha = w.detach().abs().mean()
    return _ste(w, torch.where(w >= 0, alpha, -alpha))


def _channel_max(w: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """``max|w|`` per output channel, shaped to broadcast against ``w``, or a scalar."""
    if per_channel:
        return w.detach().abs().flatten(1).amax(1).view(-1, *[1] * (w.ndim - 1))
    return w.detach().abs().amax()


def _mse_ratio(x: torch.Tensor, amax: torch.Tensor, bits: int, signed: bool) -> torch.Tensor:
    """Fraction of ``amax`` minimising ``sum (Q(x) - x)^2`` per row of ``x`` (rows, values)."""
    ratios = torch.linspace(1.0 / _GRID, 1.0, _GRID, dtype=x.dtype, device=x.device)
    clips = ratios.view(-1, 1, 1) * amax.view(1, -1, 1)  # (grid, rows, 1)
    xs = x.unsqueeze(0)
    q = fake_quant_signed(xs, clips, bits) if signed else fake_quant_unsigned(xs, clips, bits)
    err = (q - xs).pow(2).sum(-1)  # (grid, rows)
    return ratios[err.argmin(0)]  # ratio 1 (max) is a candidate, so the result is <= max


def _kl_ratio(x: torch.Tensor, amax: torch.Tensor, bits: int) -> torch.Tensor:
    """Fraction of ``amax`` minimising ``KL(P || Q)`` per row of ``x`` (rows, values).

    For each candidate clip ``c`` on the grid of :func:`_mse_ratio`, ``P`` is the histogram of
    ``min(|x|, c)`` (TensorRT's reference: clipped values pile into the last bin) with
    :data:`_KL_BINS_PER_STEP` bins per quantization step ``c / (2^(b-1) - 1)``, and ``Q`` spreads
    the unclipped mass of each rounding cell (the values rounding to one level) evenly over its
    bins. Because the histogram resolution follows the step, every candidate is judged on both
    its rounding and its clipping error (a fixed histogram cannot see rounding once the step
    is down to a bin or two, and then favours small clips). Ties go to the larger clip.

    A row with fewer than two values per bin (``2 * 8 * (2^(b-1) - 1)``) gets ratio 1 (the max
    clip): its histogram is too sparse for a divergence to mean anything.
    """
    n_rows, n_values = x.shape
    steps = 2 ** (bits - 1) - 1
    n_bins = steps * _KL_BINS_PER_STEP
    if n_values < 2 * n_bins:
        return torch.ones(n_rows, dtype=x.dtype, device=x.device)
    mags = x.detach().abs().double()
    top = amax.detach().double().clamp_min(_MIN_CLIP).view(-1, 1)
    device = mags.device
    # rounding cell of each bin: half a step for level 0 and for the last level, a step between
    cell = (torch.arange(n_bins, device=device) + _KL_BINS_PER_STEP // 2) // _KL_BINS_PER_STEP
    cell_bins = torch.bincount(cell).double()
    offsets = torch.arange(n_rows, device=device).view(-1, 1) * n_bins
    ratios = torch.linspace(1.0 / _GRID, 1.0, _GRID, dtype=torch.float64, device=device)
    kl = torch.empty(n_rows, _GRID, dtype=torch.float64, device=device)
    for j, ratio in enumerate(ratios):
        clip = top * ratio
        inside = mags <= clip
        index = (mags / clip * n_bins).long().clamp_(max=n_bins - 1) + offsets
        hist = torch.bincount(index[inside], minlength=n_rows * n_bins)
        hist = hist.view(n_rows, n_bins).double()
        mass = torch.zeros(n_rows, steps + 1, dtype=torch.float64, device=device)
        q = (mass.index_add_(1, cell, hist) / cell_bins)[:, cell]
        p = hist
        p[:, -1] += (~inside).sum(1)
        p = p / p.sum(1, keepdim=True)
        q = q / q.sum(1, keepdim=True).clamp_min(1e-300)
        terms = torch.where(p > 0, p * torch.log(p / q.clamp_min(1e-12)), 0.0)
        kl[:, j] = terms.sum(1)
    best = kl.amin(1, keepdim=True)
    last = (kl <= best + 1e-12).double() * torch.arange(_GRID, device=device)
    return ratios[last.argmax(1)].to(x.dtype)


@torch.no_grad()
def weight_clip_value(
    w: torch.Tensor, bits: int, method: WeightClip = "max", *, per_channel: bool = True
) -> torch.Tensor:
    """Clip value(s) for symmetric weight quantization.

    Args:
        w: Weight, output channels first.
        bits: Weight bits (2 to 16; one-bit weights use ``mean|w|`` instead of a clip).
        method: ``"max"`` (``max|w|``), ``"mse"`` (grid search of the clip minimising the squared
            error, including ``max|w|``), or ``"kl"`` (grid search of the clip minimising the
            KL divergence between the weight histogram and its quantized version, see
            :func:`_kl_ratio`, at :data:`KL_MAX_BITS` bits or fewer; ``"max"`` above).
        per_channel: One clip per output channel (shape broadcastable to ``w``), each searched
            on its own channel's weights, or one for the whole tensor.

    Returns:
        The clip, never above ``max|w|`` of its channel. More bits make rounding finer, so the
        MSE and KL clips grow with the bits on average (fewer values are worth clipping); the
        KL optimum is flat, though, and on a few hundred weights sampling noise can make a
        higher width pick a clip a grid step or two smaller.

    Raises:
        HaqsearchError: If ``method`` is unknown.
    """
    if method not in _WEIGHT_CLIPS:
        raise HaqsearchError(f"weight_clip must be one of {list(_WEIGHT_CLIPS)}, got {method!r}")
    amax = _channel_max(w, per_channel)
    if method == "max" or bits >= FULL_PRECISION or bits < 2:
        return amax
    if method == "kl" and bits > KL_MAX_BITS:
        return amax
    rows = w.detach().flatten(1) if per_channel else w.detach().reshape(1, -1)
    if method == "mse":
        ratio = _mse_ratio(rows, amax.reshape(-1), bits, signed=True)
    else:
        ratio = _kl_ratio(rows, amax.reshape(-1), bits)
    return (ratio.view_as(amax) if per_channel else ratio[0]) * amax


# --------------------------------------------------------------------------------------------
# Quantized layers
# --------------------------------------------------------------------------------------------


class _Observer:
    """Running min / max and a bounded random sample of a layer's inputs during calibration."""

    def __init__(self, keep_samples: bool) -> None:
        self.lo = math.inf
        self.hi = -math.inf
        self.keep_samples = keep_samples
        self.samples: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(0)

    def update(self, x: torch.Tensor) -> None:
        x = x.detach()
        self.lo = min(self.lo, float(x.min()))
        self.hi = max(self.hi, float(x.max()))
        if self.keep_samples:
            flat = x.flatten().float().cpu()
            if flat.numel() > _SAMPLES_PER_BATCH:
                idx = torch.randint(flat.numel(), (_SAMPLES_PER_BATCH,), generator=self.generator)
                flat = flat[idx]
            self.samples.append(flat)

    def sample(self) -> torch.Tensor:
        s = torch.cat(self.samples)
        if s.numel() > _MAX_SAMPLES:
            s = s[torch.randint(s.numel(), (_MAX_SAMPLES,), generator=self.generator)]
        return s


class QuantModule(nn.Module):
    """Mixin of the quantized layers: fake-quantizes the weight and the layer's input.

    Attributes:
        w_bits: Weight bits (1 to 8, 16, or :data:`FULL_PRECISION`).
        a_bits: Input-activation bits (same range).
        per_channel: One weight clip per output channel.
        w_clip_ratio: Buffer, the weight clip as a fraction of each channel's (or the tensor's)
            current ``max|w|``.
        a_clip: The input clip (a parameter when learned, else a buffer).
        a_signed: Buffer, whether the input is quantized symmetric (it can be negative).
        mode: ``"quantize"`` (normal use), ``"calibrate"`` (float, recording inputs) or ``"float"``.
    """

    float_type: ClassVar[type[nn.Module]]
    weight: nn.Parameter
    w_bits: int
    a_bits: int
    per_channel: bool
    mode: str
    w_clip_ratio: torch.Tensor
    a_clip: torch.Tensor
    a_signed: torch.Tensor

    def _setup(self, w_bits: int, a_bits: int, per_channel: bool, learn_clip: bool) -> None:
        self.w_bits = int(w_bits)
        self.a_bits = int(a_bits)
        self.per_channel = per_channel
        self.mode = "quantize"
        self._observer: _Observer | None = None
        dev, dt = self.weight.device, self.weight.dtype
        n = self.weight.shape[0] if per_channel else 1
        self.register_buffer("w_clip_ratio", torch.ones(n, device=dev, dtype=dt))
        clip = torch.ones((), device=dev, dtype=dt)
        if learn_clip:
            self.a_clip = nn.Parameter(clip)
        else:
            self.register_buffer("a_clip", clip)
        self.register_buffer("a_signed", torch.ones((), dtype=torch.bool, device=dev))

    @classmethod
    def from_float(
        cls,
        module: nn.Module,
        w_bits: int,
        a_bits: int,
        *,
        per_channel: bool = True,
        learn_clip: bool = False,
    ) -> QuantModule:
        """A quantized layer sharing ``module``'s parameters (no weight is copied)."""
        q = cls._empty_like(module)
        q.weight = module.weight
        q.bias = module.bias
        q.train(module.training)
        q._setup(w_bits, a_bits, per_channel, learn_clip)
        return q

    @classmethod
    def _empty_like(cls, module: nn.Module) -> QuantModule:
        raise NotImplementedError

    def quant_weight(self) -> torch.Tensor:
        """The fake-quantized weight."""
        w = self.weight
        if self.mode != "quantize" or self.w_bits >= FULL_PRECISION:
            return w
        if self.w_bits == 1:
            return _binarize(w, self.per_channel)
        amax = _channel_max(w, self.per_channel)
        ratio = self.w_clip_ratio.view_as(amax) if self.per_channel else self.w_clip_ratio[0]
        return fake_quant_signed(w, ratio * amax, self.w_bits)

    def quant_input(self, x: torch.Tensor) -> torch.Tensor:
        """The fake-quantized input (records it instead while calibrating)."""
        if self.mode == "calibrate":
            if self._observer is not None:
                self._observer.update(x)
            return x
        if self.mode != "quantize" or self.a_bits >= FULL_PRECISION:
            return x
        if bool(self.a_signed):
            return fake_quant_signed(x, self.a_clip, self.a_bits)
        return fake_quant_unsigned(x, self.a_clip, self.a_bits)

    def start_calibration(self, act_clip: ActClip) -> None:
        """Switch to calibration: run in float and record the inputs."""
        self.mode = "calibrate"
        self._observer = _Observer(keep_samples=act_clip != "max")

    @torch.no_grad()
    def finish_calibration(
        self,
        weight_clip_method: WeightClip,
        act_clip: ActClip,
        act_percentile: float,
        act_clip_value: float | None = None,
        *,
        sign: Sign,
    ) -> float:
        """Set the weight clip ratio and the input clip from what was recorded; quantize again.

        ``sign`` is the input's sign from the dataflow (see :func:`quantize`): the input is
        quantized signed when it is :attr:`Sign.SIGNED`, or :attr:`Sign.DATA` and a recorded
        input was negative. ``act_clip_value``, when given, is the input clip this layer got from
        the same recorded inputs at the same bits before (the search is skipped). Returns the
        input clip set.
        """
        obs = self._observer
        if obs is None or obs.lo == math.inf:
            raise HaqsearchError(
                f"{type(self).__name__} input clip must be calibrated on at least one batch, "
                "got none (did the layer run?)"
            )
        if 1 < self.w_bits < FULL_PRECISION:
            amax = _channel_max(self.weight, self.per_channel)
            clip = weight_clip_value(
                self.weight, self.w_bits, weight_clip_method, per_channel=self.per_channel
            )
            ratio = torch.where(amax > 0, clip / amax.clamp_min(_MIN_CLIP), torch.ones_like(amax))
            self.w_clip_ratio.copy_(ratio.reshape(-1))
        signed = sign == Sign.SIGNED or (sign == Sign.DATA and obs.lo < 0)
        top = max(abs(obs.lo), obs.hi) if signed else obs.hi
        clip_value = top
        if act_clip_value is not None:
            clip_value = act_clip_value
        elif act_clip != "max" and top > 0 and self.a_bits < FULL_PRECISION:
            s = obs.sample()
            s = s.abs() if signed else s.clamp_min(0.0)
            if act_clip == "percentile":
                clip_value = float(torch.quantile(s, act_percentile / 100.0))
            else:
                ratio = _mse_ratio(s.view(1, -1), torch.tensor([top]), self.a_bits, signed)
                clip_value = float(ratio[0]) * top
        self.a_clip.copy_(torch.tensor(max(clip_value, _MIN_CLIP)))
        self.a_signed.fill_(signed)
        self._observer = None
        self.mode = "quantize"
        return clip_value

    def extra_repr(self) -> str:
        """Adds the bits to the float layer's description."""
        a_kind = "signed" if bool(self.a_signed) else "unsigned"
        return (
            f"{super().extra_repr()}, w_bits={self.w_bits}, a_bits={self.a_bits} ({a_kind}), "
            f"a_clip={float(self.a_clip):.4g}"
        )


class QuantConv2d(QuantModule, nn.Conv2d):
    """:class:`~torch.nn.Conv2d` with fake-quantized weight and input."""

    float_type = nn.Conv2d

    @classmethod
    def _empty_like(cls, module: nn.Module) -> QuantModule:
        return cls(**_conv_kwargs(module))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve the quantized input with the quantized weight."""
        return self._conv_forward(self.quant_input(x), self.quant_weight(), self.bias)


class QuantConv1d(QuantModule, nn.Conv1d):
    """:class:`~torch.nn.Conv1d` with fake-quantized weight and input."""

    float_type = nn.Conv1d

    @classmethod
    def _empty_like(cls, module: nn.Module) -> QuantModule:
        return cls(**_conv_kwargs(module))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve the quantized input with the quantized weight."""
        return self._conv_forward(self.quant_input(x), self.quant_weight(), self.bias)


class QuantLinear(QuantModule, nn.Linear):
    """:class:`~torch.nn.Linear` with fake-quantized weight and input."""

    float_type = nn.Linear

    @classmethod
    def _empty_like(cls, module: nn.Module) -> QuantModule:
        assert isinstance(module, nn.Linear)
        return cls(
            module.in_features,
            module.out_features,
            bias=module.bias is not None,
            device="meta",
            dtype=module.weight.dtype,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the quantized weight to the quantized input."""
        return F.linear(self.quant_input(x), self.quant_weight(), self.bias)


def _conv_kwargs(m: nn.Module) -> dict[str, Any]:
    assert isinstance(m, (nn.Conv1d, nn.Conv2d))
    return {
        "in_channels": m.in_channels,
        "out_channels": m.out_channels,
        "kernel_size": m.kernel_size,
        "stride": m.stride,
        "padding": m.padding,
        "dilation": m.dilation,
        "groups": m.groups,
        "bias": m.bias is not None,
        "padding_mode": m.padding_mode,
        "device": "meta",  # parameters come from the float module; no initialisation, no RNG
        "dtype": m.weight.dtype,
    }


_QUANT_TYPES: tuple[type[QuantModule], ...] = (QuantConv2d, QuantConv1d, QuantLinear)


def quant_modules(model: nn.Module) -> list[tuple[str, QuantModule]]:
    """The quantized layers of ``model`` as ``(qualified name, module)``, in definition order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, QuantModule)]


# --------------------------------------------------------------------------------------------
# Policies
# --------------------------------------------------------------------------------------------


def _describe_bits() -> str:
    return f"[1, 8] or 16 or {FULL_PRECISION} (full precision)"


def check_bits(
    bits: Any, n_layers: int, *, what: str = "w_bits", names: Sequence[str] | None = None
) -> np.ndarray:
    """Validate a per-layer bit vector and return it as ``int64``.

    Args:
        bits: One bit width per layer (sequence or array).
        n_layers: Number of quantizable layers of the model.
        what: The vector's name in error messages (``"w_bits"`` or ``"a_bits"``).
        names: Layer names, quoted in error messages.

    Raises:
        HaqsearchError: If the length is not ``n_layers`` or a value is not an allowed integer
            bit width (1 to 8, 16 or :data:`FULL_PRECISION`).
    """
    try:
        arr = np.asarray(bits)
    except Exception as exc:  # ragged input
        raise HaqsearchError(f"{what} must be a 1-D sequence of integers, got {bits!r}") from exc
    if arr.ndim != 1:
        raise HaqsearchError(f"{what} must be a 1-D sequence of integers, got shape {arr.shape}")
    if len(arr) != n_layers:
        raise HaqsearchError(
            f"{what} must have one entry per quantizable layer ({n_layers}), got {len(arr)}"
        )
    for i, b in enumerate(arr.tolist()):
        label = f"layer {i} {names[i]!r}" if names is not None else f"layer {i}"
        if isinstance(b, bool) or not isinstance(b, (int, float)) or b != int(b):
            raise HaqsearchError(f"{label} {what} must be an integer, got {b!r}")
        if int(b) not in ALLOWED_BITS:
            raise HaqsearchError(f"{label} {what} must be in {_describe_bits()}, got {int(b)}")
    return arr.astype(np.int64)


# --------------------------------------------------------------------------------------------
# BatchNorm folding
# --------------------------------------------------------------------------------------------

_FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Linear)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


def _as_args(example_input: torch.Tensor | tuple[Any, ...]) -> tuple[Any, ...]:
    return example_input if isinstance(example_input, tuple) else (example_input,)


def _find_bn_pairs(
    model: nn.Module, example_input: torch.Tensor | tuple[Any, ...]
) -> list[tuple[nn.Module, nn.Module]]:
    """(layer, BatchNorm) pairs where the BatchNorm's input is exactly the layer's output."""
    produced: dict[int, tuple[torch.Tensor, nn.Module]] = {}
    calls: dict[int, int] = {}
    pairs: list[tuple[nn.Module, nn.Module]] = []

    def layer_hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        calls[id(module)] = calls.get(id(module), 0) + 1
        if isinstance(out, torch.Tensor):
            produced[id(out)] = (out, module)

    def bn_hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        calls[id(module)] = calls.get(id(module), 0) + 1
        x = args[0] if args else None
        hit = produced.get(id(x)) if isinstance(x, torch.Tensor) else None
        if hit is not None and hit[0] is x:
            pairs.append((hit[1], module))

    handles = []
    for m in model.modules():
        if isinstance(m, _FOLDABLE) and not isinstance(m, QuantModule):
            handles.append(m.register_forward_hook(layer_hook))
        elif isinstance(m, _BN):
            handles.append(m.register_forward_pre_hook(bn_hook))
    try:
        _run(model, _as_args(example_input), "example_input")
    finally:
        for h in handles:
            h.remove()
    used = [m for pair in pairs for m in pair]
    return [
        (layer, bn)
        for layer, bn in pairs
        if calls[id(layer)] == 1 and calls[id(bn)] == 1 and used.count(layer) == 1
    ]


@torch.no_grad()
def _fold_pair(layer: nn.Module, bn: nn.Module) -> bool:
    assert isinstance(layer, _FOLDABLE) and isinstance(bn, _BN)
    out_features = layer.weight.shape[0]
    if bn.running_mean is None or bn.running_var is None or bn.num_features != out_features:
        return False
    inv_std = torch.rsqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(inv_std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(inv_std)
    factor = gamma * inv_std
    w = layer.weight
    layer.weight = nn.Parameter(w * factor.view(-1, *[1] * (w.ndim - 1)))
    bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
    layer.bias = nn.Parameter((bias - bn.running_mean) * factor + beta)
    return True


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, child = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, child, module)


def _fold_inplace(model: nn.Module, example_input: torch.Tensor | tuple[Any, ...]) -> int:
    """Fold BatchNorms into their producers in ``model`` (eval mode); the number folded.

    All pairs are folded at once and the output compared with the unfolded model's. If it moved
    (a layer's pre-BatchNorm output is also consumed elsewhere, e.g. by a shortcut), the pairs
    are folded again one at a time, keeping only those that leave the output unchanged.
    """
    names = {id(m): n for n, m in model.named_modules()}
    args = _as_args(example_input)
    before = _run(model, args, "example_input")
    if not isinstance(before, torch.Tensor):
        return 0
    tol = 1e-4 * (1.0 + float(before.abs().max()))

    def unchanged() -> bool:
        return float((_run(model, args, "example_input") - before).abs().max()) <= tol

    pairs = [(layer, bn) for layer, bn in _find_bn_pairs(model, example_input) if names.get(id(bn))]
    saved = [(layer.weight, layer.bias) for layer, _ in pairs]

    def fold(i: int) -> bool:
        layer, bn = pairs[i]
        if not _fold_pair(layer, bn):
            return False
        _set_submodule(model, names[id(bn)], nn.Identity())
        return True

    def undo(i: int) -> None:
        layer, bn = pairs[i]
        layer.weight, layer.bias = saved[i]
        _set_submodule(model, names[id(bn)], bn)

    done = [i for i in range(len(pairs)) if fold(i)]
    if not done or unchanged():
        return len(done)
    for i in reversed(done):
        undo(i)
    kept = 0
    for i in range(len(pairs)):
        if fold(i):
            if unchanged():
                kept += 1
            else:
                undo(i)
    return kept


def fold_batchnorm(model: nn.Module, example_input: torch.Tensor | tuple[Any, ...]) -> nn.Module:
    """A copy of ``model`` with each BatchNorm folded into the layer that feeds it.

    Pairs are found by execution order with hooks: a ``BatchNorm1d``/``BatchNorm2d`` whose input
    is exactly the output tensor of a ``Conv1d``, ``Conv2d`` or ``Linear`` (each called once) is
    folded into it, using the running statistics, and replaced by :class:`~torch.nn.Identity`.
    A pair whose folding would change the output on ``example_input`` (the layer's output also
    feeds something else) is left alone. The copy is in eval mode; in eval mode its output
    equals the original's up to rounding.

    Args:
        model: The model (not modified).
        example_input: An input batch (a tensor, or a tuple of positional arguments).

    Returns:
        The folded copy, in eval mode.

    Raises:
        HaqsearchError: If the model fails on ``example_input``.
    """
    folded = copy.deepcopy(model).eval()
    _fold_inplace(folded, example_input)
    return folded


# --------------------------------------------------------------------------------------------
# quantize()
# --------------------------------------------------------------------------------------------


class ActClipCache:
    """Input clips of one model by ``(layer, a_bits)``, for one set of calibration inputs.

    Pass the same instance to every :func:`quantize` call on the same model and options; the
    clips are kept while the calibration inputs stay the same (by :meth:`clips_for`).
    """

    def __init__(self) -> None:
        self.fingerprint: tuple[Any, ...] | None = None
        self.clips: dict[tuple[int, int], float] = {}

    def clips_for(self, fingerprint: tuple[Any, ...]) -> dict[tuple[int, int], float]:
        """The clips recorded for these calibration inputs (emptied when they changed)."""
        if fingerprint != self.fingerprint:
            self.fingerprint = fingerprint
            self.clips = {}
        return self.clips

    def __len__(self) -> int:
        return len(self.clips)


def _fingerprint(x: torch.Tensor) -> tuple[Any, ...]:
    """Shape, sum and sum of squares of a calibration batch (float64): tells batches apart."""
    d = x.detach().double()
    return (tuple(x.shape), float(d.sum()), float((d * d).sum()))


def _model_device(model: nn.Module) -> torch.device:
    p = next(itertools.chain(model.parameters(), model.buffers()), None)
    return p.device if p is not None else torch.device("cpu")


def _checked_batches(
    data: Any, sample_shape: Sequence[int] | None, limit: int | None, name: str
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor | None]]:
    """Batches of ``data``, each checked against ``sample_shape`` (default: the first batch's)."""
    for i, (x, y) in enumerate(itertools.islice(as_batches(data, name=name), limit)):
        check_batch(x, y, sample_shape, where=f"{name} batch {i}")
        if sample_shape is None:
            sample_shape = tuple(x.shape[1:])
        yield i, x, y


def _run(model: nn.Module, args: tuple[Any, ...], where: str) -> Any:
    """``model(*args)`` without gradients; a failure becomes a :class:`HaqsearchError`."""
    with torch.no_grad():
        try:
            return model(*args)
        except Exception as exc:
            shapes = [tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
                      for a in args]  # fmt: skip
            raise HaqsearchError(
                f"{where}: model {type(model).__name__!r} must run on inputs of shape "
                f"{', '.join(map(str, shapes))}, got {type(exc).__name__}: {exc}"
            ) from exc


Bits = Sequence[int] | np.ndarray


def _resolve_policy(
    policy: Any, a_bits: Any, calibration_data: Any
) -> tuple[Policy | tuple[Bits, Bits], Iterable[Any]]:
    """Tell the two call forms of :func:`quantize` apart: the policy and the calibration data."""
    if isinstance(policy, Policy):
        if calibration_data is None:
            calibration_data = a_bits
        elif a_bits is not None:
            raise HaqsearchError(
                "quantize: a haqsim.Policy holds its a_bits; call quantize(model, policy, "
                "calibration_data), got a_bits as well"
            )
        if calibration_data is None:
            raise HaqsearchError("quantize: calibration_data must be given, got none")
        return policy, calibration_data
    if isinstance(policy, (str, bytes)) or not isinstance(
        policy, (Sequence, np.ndarray, torch.Tensor)
    ):
        raise HaqsearchError(
            "quantize: the policy must be a haqsim.Policy or a sequence of w_bits (followed by "
            f"a_bits), got {type(policy).__name__}"
        )
    if a_bits is None or calibration_data is None:
        raise HaqsearchError(
            "quantize: with w_bits, a_bits and calibration_data must follow: call "
            "quantize(model, w_bits, a_bits, calibration_data), or pass a haqsim.Policy"
        )
    return (policy, a_bits), calibration_data


def _policy_bits(
    policy: Policy | tuple[Bits, Bits], names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Weight and input bits in trace order (a :class:`~haqsim.Policy` is matched by name)."""
    if isinstance(policy, Policy):
        target = f"the model's {len(names)} quantizable layers (as haqsearch.trace names them)"
        try:
            w_bits, a_bits = policy.ordered_as(names, target)
        except PolicyError as exc:
            raise HaqsearchError(str(exc)) from exc
    else:
        w_bits, a_bits = policy
    w = check_bits(w_bits, len(names), what="w_bits", names=names)
    a = check_bits(a_bits, len(names), what="a_bits", names=names)
    return w, a


def trace_for_quantization(
    model: nn.Module, example_input: torch.Tensor | tuple[Any, ...]
) -> Traced:
    """:func:`haqsearch.trace.trace`, requiring each quantizable module to run once per pass.

    A quantized module holds one weight and input bit width and one set of clips, so a module
    called more than once (weight sharing, a layer applied in a loop) cannot take a bit width
    per call; the error says so.

    Raises:
        TraceError: As :func:`~haqsearch.trace.trace` with ``shared="error"``.
    """
    return trace(model, example_input, hint=_SHARED_HINT)


def _quant_type(module: nn.Module) -> type[QuantModule] | None:
    """The quantized type replacing ``module``; ``None`` if it overrides the standard forward."""
    for qtype in _QUANT_TYPES:
        base = qtype.float_type
        if isinstance(module, base):
            standard = all(
                getattr(type(module), attr) is getattr(base, attr)
                for attr in ("forward", "_conv_forward")
                if hasattr(base, attr)
            )
            return qtype if standard else None
    return None


def quantize(
    model: nn.Module,
    policy: Policy | Bits,
    a_bits: Bits | Iterable[Any] | None = None,
    calibration_data: Iterable[Any] | None = None,
    *,
    example_input: torch.Tensor | None = None,
    fold_bn: bool = True,
    weight_clip: WeightClip = "max",
    per_channel: bool = True,
    act_clip: ActClip = "max",
    act_percentile: float = 99.99,
    learn_clip: bool = False,
    calibration_batches: int | None = None,
    act_clip_cache: ActClipCache | None = None,
    signs: Sequence[Sign] | None = None,
) -> nn.Module:
    """A fake-quantized copy of ``model`` under a per-layer bit policy; ``model`` is untouched.

    Two call forms: ``quantize(model, policy, calibration_data)`` with a :class:`haqsim.Policy`
    (layers matched by name, as in a policy file: ``Policy.from_json(path)``), or
    ``quantize(model, w_bits, a_bits, calibration_data)`` with bits indexed by layer.

    Layer ``i`` is row ``i`` of :func:`haqsearch.trace.trace` on the (BatchNorm-folded) model:
    every ``Conv1d``, ``Conv2d`` and ``Linear`` (or a subclass keeping the standard forward) in
    execution order, each of which must run once per forward pass. Its weight bits quantize the
    weight, its input bits its input (HAQ's convention); :data:`FULL_PRECISION` (32) leaves
    either in floating point. An input is quantized unsigned when the dataflow makes it
    non-negative (see :func:`haqsearch.signs.input_signs`), or when it is the model's input (or
    a sign-preserving function of it) and none of its calibration inputs is negative;
    otherwise signed.
    A subclass of a quantizable layer is replaced by the plain quantized layer, keeping its
    parameters (not its other attributes).

    Args:
        model: The float model; deep-copied, never modified.
        policy: A :class:`haqsim.Policy` whose layer names are those of the traced model, or
            the weight bits per layer (``w_bits``): 1 to 8, 16 or 32.
        a_bits: Input-activation bits per layer, same range, after ``w_bits``; with a
            :class:`~haqsim.Policy`, the calibration data goes here (positionally).
        calibration_data: Batches of ``(inputs, labels)`` (a DataLoader, a list, ...) on which
            the input clips are calibrated; labels are not used.
        example_input: Input used to trace the model and fold BatchNorm; defaults to the first
            sample of the first calibration batch. When given, calibration batches must have its
            per-sample shape.
        fold_bn: Fold each BatchNorm into the preceding layer before quantizing.
        weight_clip: ``"max"``, ``"mse"`` or ``"kl"`` (see :func:`weight_clip_value`).
        per_channel: Weight clips per output channel (else per tensor).
        act_clip: Input clip from the calibration ``"max"``, a ``"percentile"`` of the values or
            an ``"mse"`` search.
        act_percentile: Percentile (of ``|x|``) for ``act_clip="percentile"``.
        learn_clip: Make each input clip a trainable parameter (PACT-style) for fine-tuning.
        calibration_batches: Use at most this many batches (default: all of them).
        act_clip_cache: An :class:`ActClipCache` kept by the caller across calls that quantize
            the *same* model with the same options (as an accuracy oracle does): input clips
            are reused by ``(layer, a_bits)``, which skips the ``"mse"``/``"percentile"``
            searches, as long as the calibration inputs are the same (checked by a fingerprint;
            other inputs start the cache afresh). Calibration runs the float model, so a
            layer's recorded inputs, hence its clip at given bits, do not depend on the rest of
            the policy: the result equals that without the cache.
        signs: The sign of each layer's input, as :func:`haqsearch.signs.input_signs` gives
            them for the traced layers on ``example_input``; computed (one more forward pass)
            when not given. A caller quantizing the same model many times (an accuracy oracle)
            computes them once; BatchNorm folding does not change them (a folded BatchNorm's
            input and output are both signed).

    Returns:
        The quantized copy, in eval mode, on the model's device.

    Raises:
        HaqsearchError: On a policy of the wrong type or length, policy layer names that are not
            the model's, bits out of range, an unknown option, no calibration batch, a batch of
            the wrong shape, a model that cannot be traced, a layer run more than once per
            forward pass, a layer subclass overriding the standard forward, or ``signs`` of the
            wrong length or type.
    """
    bits, calibration_data = _resolve_policy(policy, a_bits, calibration_data)
    if weight_clip not in _WEIGHT_CLIPS:
        raise HaqsearchError(
            f"weight_clip must be one of {list(_WEIGHT_CLIPS)}, got {weight_clip!r}"
        )
    if act_clip not in _ACT_CLIPS:
        raise HaqsearchError(f"act_clip must be one of {list(_ACT_CLIPS)}, got {act_clip!r}")
    if not 0.0 < act_percentile <= 100.0:
        raise HaqsearchError(f"act_percentile must be in (0, 100], got {act_percentile}")
    if calibration_batches is not None and calibration_batches < 1:
        raise HaqsearchError(f"calibration_batches must be >= 1, got {calibration_batches}")
    if not isinstance(model, nn.Module):
        raise HaqsearchError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if quant_modules(model):
        raise HaqsearchError("model must be a float model, got one that is already quantized")

    expected = getattr(model, "input_shape", None)
    if example_input is not None:
        check_batch(example_input, None, expected, where="example_input")
        expected = tuple(example_input.shape[1:])
    batches = _checked_batches(calibration_data, expected, calibration_batches, "calibration_data")
    first = next(batches, None)
    if first is None:
        raise HaqsearchError("calibration_data must yield at least one (inputs, labels) batch")
    device = _model_device(model)
    if example_input is None:
        example_input = first[1][:1]
    example_input = example_input.to(device)

    qmodel = copy.deepcopy(model).eval()
    if fold_bn:
        _fold_inplace(qmodel, example_input)
    traced = trace_for_quantization(qmodel, example_input)
    names = list(traced.names)
    w, a = _policy_bits(bits, names)
    if signs is None:
        signs = input_signs(qmodel, example_input, traced.modules)
    elif len(signs) != len(names) or not all(isinstance(s, Sign) for s in signs):
        raise HaqsearchError(
            f"signs must be one haqsearch.signs.Sign per quantizable layer ({len(names)}), got "
            f"{len(signs)} values: {list(signs)[:5]}"
        )

    paths = {id(m): n for n, m in qmodel.named_modules()}
    layers: list[QuantModule] = []
    for i, module in enumerate(traced.modules):
        qtype = _quant_type(module)
        if qtype is None:
            raise HaqsearchError(
                f"layer {i} {names[i]!r} must be an nn.Conv1d, nn.Conv2d or nn.Linear, or a "
                "subclass keeping their forward, to be quantized, got "
                f"{type(module).__name__}, which overrides it"
            )
        q = qtype.from_float(module, int(w[i]), int(a[i]), per_channel=per_channel,
                             learn_clip=learn_clip)  # fmt: skip
        if paths[id(module)]:
            _set_submodule(qmodel, paths[id(module)], q)
        else:  # the model is a single layer
            qmodel = q
        layers.append(q)

    for q in layers:
        q.start_calibration(act_clip)
    fingerprint = []
    for i, x, _ in itertools.chain([first], batches):
        if act_clip_cache is not None:
            fingerprint.append(_fingerprint(x))
        _run(qmodel, (x.to(device),), f"calibration_data batch {i}")
    clips = act_clip_cache.clips_for(tuple(fingerprint)) if act_clip_cache is not None else None
    for i, q in enumerate(layers):
        key = (i, int(a[i]))
        cached = clips.get(key) if clips is not None else None
        try:
            clip = q.finish_calibration(
                weight_clip, act_clip, act_percentile, cached, sign=signs[i]
            )
        except HaqsearchError as exc:
            raise HaqsearchError(f"layer {i} {names[i]!r}: {exc}") from exc
        if clips is not None:
            clips[key] = clip
    return qmodel.eval()
