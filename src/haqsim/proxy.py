r"""A torch-free accuracy proxy, so the environment runs and has a meaningful optimum with no model.

:class:`NoiseProxyOracle` models accuracy as a saturating function of the total quantization
noise. Uniform quantization to ``b`` bits adds noise of variance proportional to ``4^-b`` (each
bit halves the step, quartering the variance); each layer's noise is weighted by a sensitivity that
depends on its shape:

.. math::

    N(w, a) = k \sum_l \left( s^w_l \, 4^{-w_l} + s^a_l \, 4^{-a_l} \right), \qquad
    \mathrm{acc}(w, a) = c + (r - c)\, e^{-N(w, a)}

with ``r`` the reference (full-precision) accuracy and ``c`` the chance accuracy. The
sensitivities are, before normalisation to ``sum_l (s^w_l + s^a_l) = 1``:

.. math::

    s^w_l = f_l^{-p} \cdot d_l \cdot e_l \cdot j^w_l, \qquad
    s^a_l = \alpha \cdot f_l^{-p} \cdot d_l \cdot e_l \cdot j^a_l

where ``f_l = (cin / groups) * kh * kw`` is the layer's fan-in (parameters per output; fewer means
less averaging of the noise, hence more sensitive), ``p`` = ``fan_in_exponent``, ``d_l`` =
``depthwise_factor`` for depthwise layers (else 1), ``e_l`` = ``edge_factor`` for the first and the
last layer (else 1), ``alpha`` = ``activation_factor``, and ``j`` are log-normal jitters
``exp(jitter * z)``, ``z ~ N(0, 1)`` drawn from ``seed`` (so different seeds give different, equally
plausible problems). The scale ``k`` is calibrated so that the uniform 4-bit policy loses exactly
``drop_at_4bit`` accuracy:

.. math::

    k = -4^4 \ln\left(1 - \frac{\texttt{drop\_at\_4bit}}{r - c}\right).

Consequences: accuracy is strictly increasing in every bitwidth; 8 bits everywhere lose about
``drop_at_4bit / 256``; 2 bits in a sensitive (depthwise, first or last) layer cost far more than in
a wide 1 x 1 convolution, so under a cost budget the best policy is mixed, not uniform.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from haqsim.errors import PolicyError
from haqsim.workload import LayerKind, LayerTable

__all__ = ["NoiseProxyOracle"]


def _check_positive(name: str, value: float, allow_zero: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise PolicyError(
            f"NoiseProxyOracle {name!r} must be a finite number {bound}, got {value!r}"
        )
    return float(value)


class NoiseProxyOracle:
    """Analytical accuracy of a bit policy from per-layer quantization-noise sensitivity.

    Satisfies :class:`haqsim.AccuracyOracle`. See the module docstring for the formula.

    Args:
        workload: The layer table the policies are for.
        reference_accuracy: ``r``, accuracy of the unquantized model, in (0, 1].
        chance_accuracy: ``c``, the accuracy approached as noise grows, in [0, r).
        drop_at_4bit: Accuracy lost by the uniform 4-bit policy, in (0, r - c).
        depthwise_factor: Sensitivity multiplier of depthwise layers.
        edge_factor: Sensitivity multiplier of the first and the last layer.
        activation_factor: Activation sensitivity relative to weight sensitivity.
        fan_in_exponent: ``p`` in ``fan_in ** -p``.
        jitter: Standard deviation of the log-normal per-layer jitter (0 for none).
        seed: Seed of the jitter.

    Attributes:
        reference_accuracy: As given.
        w_sensitivity, a_sensitivity: Normalised ``s^w``, ``s^a`` (``float64[L]``, summing to 1
            together).
        noise_scale: The calibrated ``k``.
    """

    def __init__(
        self,
        workload: LayerTable,
        *,
        reference_accuracy: float = 0.70,
        chance_accuracy: float = 0.001,
        drop_at_4bit: float = 0.02,
        depthwise_factor: float = 2.0,
        edge_factor: float = 3.0,
        activation_factor: float = 1.0,
        fan_in_exponent: float = 0.5,
        jitter: float = 0.2,
        seed: int = 0,
    ) -> None:
        r = _check_positive("reference_accuracy", reference_accuracy)
        c = _check_positive("chance_accuracy", chance_accuracy, allow_zero=True)
        if r > 1 or c >= r:
            raise PolicyError(
                f"NoiseProxyOracle accuracies must satisfy 0 <= chance_accuracy < "
                f"reference_accuracy <= 1, got chance {c} and reference {r}"
            )
        d4 = _check_positive("drop_at_4bit", drop_at_4bit)
        if d4 >= r - c:
            raise PolicyError(
                f"NoiseProxyOracle 'drop_at_4bit' must be < reference - chance = {r - c:g}, "
                f"got {d4}"
            )
        for name, value in (
            ("depthwise_factor", depthwise_factor),
            ("edge_factor", edge_factor),
            ("activation_factor", activation_factor),
        ):
            _check_positive(name, value)
        _check_positive("fan_in_exponent", fan_in_exponent, allow_zero=True)
        _check_positive("jitter", jitter, allow_zero=True)

        self.workload = workload
        self.reference_accuracy = r
        self.chance_accuracy = c
        self.drop_at_4bit = d4
        self.seed = seed
        L = len(workload)
        fan_in = (workload.cin // workload.groups) * workload.kh * workload.kw
        base = fan_in.astype(np.float64) ** -float(fan_in_exponent)
        base = base * np.where(workload.kind == LayerKind.DEPTHWISE, float(depthwise_factor), 1.0)
        edge = np.ones(L)
        edge[0] = edge[-1] = float(edge_factor)
        base = base * edge
        rng = np.random.default_rng(seed)
        jw = np.exp(float(jitter) * rng.standard_normal(L))
        ja = np.exp(float(jitter) * rng.standard_normal(L))
        sw = base * jw
        sa = float(activation_factor) * base * ja
        total = sw.sum() + sa.sum()
        self.w_sensitivity = sw / total
        self.a_sensitivity = sa / total
        self.noise_scale = -(4.0**4) * math.log1p(-d4 / (r - c))
        self._kw = self.noise_scale * self.w_sensitivity
        self._ka = self.noise_scale * self.a_sensitivity

    def noise(self, w_bits: Any, a_bits: Any) -> np.ndarray | float:
        """``N(w, a)`` for one policy (``(L,)`` arrays, a float) or many (``(n, L)``, an array)."""
        w = np.asarray(w_bits, np.float64)
        a = np.asarray(a_bits, np.float64)
        L = len(self.workload)
        if w.shape != a.shape or w.shape[-1:] != (L,) or w.ndim > 2:
            raise PolicyError(
                f"NoiseProxyOracle policies must have shape ({L},) or (n, {L}) for both w_bits "
                f"and a_bits, got {np.shape(w_bits)} and {np.shape(a_bits)}"
            )
        out = np.exp2(-2.0 * w) @ self._kw + np.exp2(-2.0 * a) @ self._ka
        return float(out) if w.ndim == 1 else out

    def accuracy_many(self, w_bits: Any, a_bits: Any) -> np.ndarray:
        """Accuracies of ``(n, L)`` policies."""
        n = np.atleast_1d(self.noise(np.atleast_2d(w_bits), np.atleast_2d(a_bits)))
        c = self.chance_accuracy
        return c + (self.reference_accuracy - c) * np.exp(-n)

    def __call__(self, w_bits: np.ndarray, a_bits: np.ndarray) -> float:
        """Accuracy in [0, 1] of one policy (``int`` arrays of shape ``(L,)``)."""
        c = self.chance_accuracy
        return c + (self.reference_accuracy - c) * math.exp(-self.noise(w_bits, a_bits))

    def __repr__(self) -> str:
        return (
            f"NoiseProxyOracle(workload={self.workload.name!r}, reference_accuracy="
            f"{self.reference_accuracy}, drop_at_4bit={self.drop_at_4bit}, seed={self.seed})"
        )
