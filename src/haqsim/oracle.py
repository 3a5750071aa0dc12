"""The accuracy oracle protocol: how a model's accuracy enters the (torch-free) environment.

Anything with these two members is an oracle: :class:`haqsim.proxy.NoiseProxyOracle` (analytical,
no model), ``haqsearch.TorchAccuracyOracle`` (quantize, fine-tune, evaluate a real model), or a
user's own.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["AccuracyOracle"]


@runtime_checkable
class AccuracyOracle(Protocol):
    """Maps a per-layer bit policy to an accuracy in [0, 1].

    Attributes:
        reference_accuracy: Accuracy of the reference model (full precision, or whatever the
            reward's baseline is), in [0, 1].
    """

    reference_accuracy: float

    def __call__(self, w_bits: np.ndarray, a_bits: np.ndarray) -> float:
        """Accuracy in [0, 1] of the model quantized with these per-layer bits.

        Args:
            w_bits: Weight bits per layer, ``int64`` array of shape ``(n_layers,)``.
            a_bits: Input-activation bits per layer, same shape.
        """
        ...
