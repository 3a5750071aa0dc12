"""The accuracy oracle over a real PyTorch model: quantize, briefly fine-tune, evaluate.

:class:`TorchAccuracyOracle` implements haqsim's :class:`~haqsim.oracle.AccuracyOracle` protocol,
so the torch-free environment can score policies on a real network. Each call (HAQ's reward
measurement):

1. **calibration**: :func:`haqsearch.quant.quantize` makes a fake-quantized copy of the model
   (BatchNorm folded) and calibrates its input clips on ``calibration_batches`` training batches;
2. **fine-tune**: ``finetune_steps`` SGD steps with straight-through gradients on training batches
   (HAQ fine-tunes for one epoch on a subset; 0 skips this);
3. **evaluation**: top-1 accuracy on ``eval_batches`` validation batches.

Results are cached by policy, and every call runs under its own ``torch.manual_seed(seed)`` (inside
:func:`torch.random.fork_rng`, so the caller's random state is untouched): the same policy always
gives the same accuracy. The oracle runs on CUDA when it is available (``device="auto"``).
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from haqsearch.data import as_batches, check_batch, first_batch, materialize
from haqsearch.errors import HaqsearchError
from haqsearch.quant import (
    ActClip,
    ActClipCache,
    WeightClip,
    check_bits,
    quantize,
    trace_for_quantization,
)
from haqsearch.signs import input_signs
from haqsearch.trace import Traced

__all__ = ["TorchAccuracyOracle"]

Batch = tuple[torch.Tensor, torch.Tensor]
_PHASES = ("calibration_s", "finetune_s", "evaluation_s", "total_s")


def _resolve_device(device: str | torch.device) -> torch.device:
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise HaqsearchError(
            f"device must be 'auto' or a torch device, got {device!r}: {exc}"
        ) from exc


def _reiterable(data: Any, name: str) -> Iterable[Batch]:
    """``data`` as batches that can be iterated again (a one-shot iterator is collected once)."""
    if isinstance(data, Iterator):
        return materialize(data, name=name)
    return as_batches(data, name=name)


class TorchAccuracyOracle:
    """Accuracy of a PyTorch model under a per-layer bit policy (haqsim's ``AccuracyOracle``).

    Layer ``i`` of a policy is row ``i`` of :func:`haqsearch.trace.trace` on the model (see
    :attr:`layer_names` and :attr:`workload`). Bits are 1 to 8, 16, or 32 for full precision.

    Args:
        model: The float model; never modified (every call quantizes a deep copy).
        train_data: Batches of ``(inputs, labels)`` for calibration and fine-tuning (a
            DataLoader, a :class:`haqsearch.data.Batches`, a list, ...). A one-shot iterator is
            collected into a list once.
        val_data: Held-out batches for evaluation (the first ``eval_batches`` are used).
        finetune_steps: SGD steps of the short fine-tune per call (HAQ: one epoch on a subset
            of the training data); 0 disables it.
        eval_batches: Validation batches per evaluation; ``None`` uses all of ``val_data``.
        lr: Fine-tune learning rate (SGD with momentum 0.9). HAQ's 1e-3 is the safe default for a
            large pretrained model; the tiny built-in digits models gain from 1e-2.
        seed: Seed of every call (batch order, any randomness in the model).
        device: ``"auto"`` (CUDA when available, else CPU) or a torch device.
        calibration_batches: Training batches used to calibrate the input clips.
        weight_clip: Weight clip method of :func:`haqsearch.quant.quantize` (default MSE search).
        act_clip: Input clip method of :func:`haqsearch.quant.quantize` (default MSE search,
            which at 2 to 4 bits is worth far more accuracy than it costs in calibration time).
        per_channel: Per-channel weight scales.
        learn_clip: Learn the input clips during the fine-tune (PACT-style).
        fold_bn: Fold BatchNorm into the preceding layers before quantizing.

    Attributes:
        reference_accuracy: Top-1 accuracy of the float model on the evaluation batches.
        n_layers: Number of quantizable layers (the policy length).
        layer_names: Their names, in policy order.
        workload: The traced haqsim ``LayerTable`` (per-image shapes).
        last_timing: Seconds spent in calibration, fine-tune, evaluation and in total by the last
            call that was not a cache hit.
        timing: The same, summed over all such calls.
        n_calls: Calls, cache hits included.
        n_evaluations: Calls that quantized and evaluated (cache misses).

    Raises:
        HaqsearchError: If the data is empty or has the wrong shape, an option is out of range,
            the model cannot be traced, or it runs a quantizable module more than once per
            forward pass (see :func:`haqsearch.quant.trace_for_quantization`).
    """

    def __init__(
        self,
        model: nn.Module,
        train_data: Any,
        val_data: Any,
        finetune_steps: int = 20,
        eval_batches: int | None = None,
        *,
        lr: float = 1e-3,
        seed: int = 0,
        device: str | torch.device = "auto",
        calibration_batches: int = 2,
        weight_clip: WeightClip = "mse",
        act_clip: ActClip = "mse",
        per_channel: bool = True,
        learn_clip: bool = False,
        fold_bn: bool = True,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise HaqsearchError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if finetune_steps < 0:
            raise HaqsearchError(f"finetune_steps must be >= 0, got {finetune_steps}")
        if not lr > 0:
            raise HaqsearchError(f"lr must be > 0, got {lr}")
        if eval_batches is not None and eval_batches < 1:
            raise HaqsearchError(f"eval_batches must be >= 1 or None, got {eval_batches}")
        if calibration_batches < 1:
            raise HaqsearchError(f"calibration_batches must be >= 1, got {calibration_batches}")
        self.device = _resolve_device(device)
        self.finetune_steps = int(finetune_steps)
        self.lr = float(lr)
        self.eval_batches = eval_batches
        self.seed = int(seed)
        self.calibration_batches = int(calibration_batches)
        self.quant_options: dict[str, Any] = {
            "weight_clip": weight_clip,
            "act_clip": act_clip,
            "per_channel": per_channel,
            "learn_clip": learn_clip,
            "fold_bn": fold_bn,
        }

        self.train_data = _reiterable(train_data, "train_data")
        with torch.random.fork_rng(devices=[]):  # a shuffling loader draws from the global RNG
            # Validation batches are fixed: collect them once (moved to the device per call).
            self.val_data = materialize(val_data, max_batches=eval_batches, name="val_data")
            x0, _ = first_batch(self.train_data, name="train_data")
        self.sample_shape: tuple[int, ...] = tuple(x0.shape[1:])
        declared = getattr(model, "input_shape", None)
        if declared is not None:
            check_batch(x0, None, declared, where="train_data batch 0")
        for i, (x, y) in enumerate(self.val_data):
            check_batch(x, y, self.sample_shape, where=f"val_data batch {i}")

        self.model = copy.deepcopy(model).to(self.device).eval()
        self._example = x0[:1].to(self.device)
        probe = copy.deepcopy(self.model)
        self.traced: Traced = trace_for_quantization(probe, self._example)
        # The layers' input signs follow from the model's structure: found once, not per call.
        self._signs = input_signs(probe, self._example, self.traced.modules)
        self.layer_names: tuple[str, ...] = tuple(self.traced.names)
        self.n_layers = len(self.layer_names)
        self.reference_accuracy = self._evaluate(self.model)
        self._cache: dict[tuple[tuple[int, ...], tuple[int, ...]], float] = {}
        # Input clips by (layer, a_bits): every call calibrates the same float model on the same
        # batches (same seed), so a clip found once is reused (see quantize's act_clip_cache).
        self._act_clips = ActClipCache()
        self.last_timing: dict[str, float] = dict.fromkeys(_PHASES, 0.0)
        self.timing: dict[str, float] = dict.fromkeys(_PHASES, 0.0)
        self.n_calls = 0
        self.n_evaluations = 0

    @property
    def workload(self) -> Any:
        """The traced haqsim ``LayerTable``, one row per policy entry."""
        return self.traced.workload

    @property
    def cache_size(self) -> int:
        """Number of distinct policies evaluated so far."""
        return len(self._cache)

    def clear_cache(self) -> None:
        """Forget the cached accuracies."""
        self._cache.clear()

    def __call__(self, w_bits: np.ndarray, a_bits: np.ndarray) -> float:
        """Top-1 accuracy in [0, 1] of the model quantized with these per-layer bits.

        Args:
            w_bits: Weight bits per layer, length :attr:`n_layers`.
            a_bits: Input-activation bits per layer, same length.

        Raises:
            HaqsearchError: If a vector has the wrong length or a value out of range.
        """
        w = check_bits(w_bits, self.n_layers, what="w_bits", names=self.layer_names)
        a = check_bits(a_bits, self.n_layers, what="a_bits", names=self.layer_names)
        key = (tuple(int(b) for b in w), tuple(int(b) for b in a))
        self.n_calls += 1
        if key in self._cache:
            return self._cache[key]
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            t0 = time.perf_counter()
            qmodel = quantize(
                self.model,
                w,
                a,
                self.train_data,
                example_input=self._example,
                calibration_batches=self.calibration_batches,
                act_clip_cache=self._act_clips,
                signs=self._signs,
                **self.quant_options,
            )
            t1 = time.perf_counter()
            self._finetune(qmodel)
            t2 = time.perf_counter()
            accuracy = self._evaluate(qmodel)
            t3 = time.perf_counter()
        self.last_timing = {
            "calibration_s": t1 - t0,
            "finetune_s": t2 - t1,
            "evaluation_s": t3 - t2,
            "total_s": t3 - t0,
        }
        for k, v in self.last_timing.items():
            self.timing[k] += v
        self.n_evaluations += 1
        self._cache[key] = accuracy
        return accuracy

    def _train_batches(self) -> Iterator[Batch]:
        """Training batches, restarting the data when it runs out, checked as they come."""
        for epoch in itertools.count():
            empty = True
            for i, (x, y) in enumerate(self.train_data):
                empty = False
                check_batch(x, y, self.sample_shape, where=f"train_data batch {i}")
                yield x, y
            if empty:
                raise HaqsearchError(f"train_data must yield batches, got none in epoch {epoch}")

    def _finetune(self, qmodel: nn.Module) -> None:
        if self.finetune_steps == 0:
            return
        params = [p for p in qmodel.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=self.lr, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()
        qmodel.train()
        for x, y in itertools.islice(self._train_batches(), self.finetune_steps):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(qmodel(x.to(self.device)), y.to(self.device))
            loss.backward()
            opt.step()
        qmodel.eval()

    @torch.no_grad()
    def _evaluate(self, model: nn.Module) -> float:
        model.eval()
        correct = total = 0
        for x, y in self.val_data:
            pred = model(x.to(self.device)).argmax(1)
            correct += int((pred == y.to(self.device)).sum())
            total += len(y)
        return correct / total

    def __repr__(self) -> str:
        return (
            f"TorchAccuracyOracle(model={type(self.model).__name__}, n_layers={self.n_layers}, "
            f"finetune_steps={self.finetune_steps}, reference_accuracy="
            f"{self.reference_accuracy:.4f}, device={self.device}, cached={self.cache_size})"
        )
