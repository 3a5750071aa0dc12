"""The torch-free accuracy proxy: calibration, monotonicity, sensitivities, a mixed optimum."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from haqsim import AccuracyOracle, CostTable, LayerTable, conv, linear, zoo
from haqsim.errors import PolicyError
from haqsim.proxy import NoiseProxyOracle


@pytest.fixture(scope="module")
def tiny() -> LayerTable:
    return LayerTable.from_layers(
        [
            conv("c0", 3, 16, 3, 16, stride=2, reads_image=True),
            conv("dw", 16, 16, 3, 8, groups=16),
            conv("pw", 16, 64, 1, 8),
            linear("fc", 64, 10),
        ],
        name="tiny",
    )


def test_is_an_accuracy_oracle(tiny):
    oracle = NoiseProxyOracle(tiny)
    assert isinstance(oracle, AccuracyOracle)
    assert oracle.reference_accuracy == 0.70
    assert "tiny" in repr(oracle)


def test_calibration_at_uniform_4_bits(tiny):
    oracle = NoiseProxyOracle(tiny, reference_accuracy=0.76, drop_at_4bit=0.03)
    four = np.full(len(tiny), 4)
    assert oracle(four, four) == pytest.approx(0.76 - 0.03, abs=1e-12)
    eight = np.full(len(tiny), 8)
    assert 0.76 - oracle(eight, eight) == pytest.approx(0.03 / 256, rel=0.05)
    assert oracle.w_sensitivity.sum() + oracle.a_sensitivity.sum() == pytest.approx(1.0)


def test_bounded_and_monotone(tiny):
    oracle = NoiseProxyOracle(tiny)
    rng = np.random.default_rng(1)
    L = len(tiny)
    for _ in range(200):
        w = rng.integers(1, 9, L)
        a = rng.integers(1, 9, L)
        acc = oracle(w, a)
        assert oracle.chance_accuracy < acc < oracle.reference_accuracy
        i = int(rng.integers(L))
        if w[i] < 8:
            w2 = w.copy()
            w2[i] += 1
            assert oracle(w2, a) > acc
        if a[i] < 8:
            a2 = a.copy()
            a2[i] += 1
            assert oracle(w, a2) > acc
    one = np.ones(L, np.int64)
    assert oracle(one, one) < 0.2  # 1 bit everywhere destroys the model


def test_vectorised_matches_single(tiny):
    oracle = NoiseProxyOracle(tiny)
    rng = np.random.default_rng(2)
    w = rng.integers(2, 9, (50, len(tiny)))
    a = rng.integers(2, 9, (50, len(tiny)))
    many = oracle.accuracy_many(w, a)
    assert many.shape == (50,)
    np.testing.assert_allclose(many, [oracle(w[i], a[i]) for i in range(50)], rtol=1e-14)


def test_sensitivities_follow_layer_shapes():
    wl = zoo.mobilenet_v2()
    oracle = NoiseProxyOracle(wl, jitter=0.0)
    s = oracle.w_sensitivity
    dw = np.flatnonzero(wl.kind == 1)
    pw = np.flatnonzero((wl.kind == 0) & (wl.kh == 1))
    # Depthwise layers (9 parameters per output) are more sensitive than every 1x1 layer.
    assert s[dw].min() > s[pw].max()
    # The first and last layer get the edge factor: 3x what the same shape would get elsewhere.
    fan_in = (wl.cin // wl.groups) * wl.kh * wl.kw
    unscaled = fan_in.astype(float) ** -0.5
    ratio = s / unscaled
    assert ratio[0] == pytest.approx(3 * ratio[1] / 2)  # layer 1 is depthwise (factor 2)
    assert ratio[-1] == pytest.approx(3 * ratio[2])
    np.testing.assert_allclose(oracle.a_sensitivity, s)  # no jitter, activation_factor 1


def test_seed_changes_problem(tiny):
    a = NoiseProxyOracle(tiny, seed=0)
    b = NoiseProxyOracle(tiny, seed=0)
    c = NoiseProxyOracle(tiny, seed=1)
    np.testing.assert_array_equal(a.w_sensitivity, b.w_sensitivity)
    assert not np.allclose(a.w_sensitivity, c.w_sensitivity)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"reference_accuracy": 0.0}, "reference_accuracy"),
        ({"reference_accuracy": 1.5}, "reference_accuracy <= 1"),
        ({"chance_accuracy": 0.8}, "chance_accuracy <"),
        ({"drop_at_4bit": 0.9}, "drop_at_4bit"),
        ({"drop_at_4bit": -0.1}, "drop_at_4bit"),
        ({"depthwise_factor": float("inf")}, "depthwise_factor"),
        ({"jitter": -1.0}, "jitter"),
    ],
)
def test_invalid_parameters(tiny, kwargs, match):
    with pytest.raises(PolicyError, match=match):
        NoiseProxyOracle(tiny, **kwargs)


def test_wrong_policy_shape(tiny):
    oracle = NoiseProxyOracle(tiny)
    with pytest.raises(PolicyError, match=r"shape \(4,\)"):
        oracle(np.full(3, 8), np.full(3, 8))
    with pytest.raises(PolicyError, match="shape"):
        oracle(np.full(4, 8), np.full(5, 8))


def test_optimum_under_a_budget_is_mixed(tiny):
    """Brute force on 4 layers x bits {2, 4, 6, 8}: the best policy in budget is not uniform."""
    table = CostTable.build(tiny, "bismo-edge")
    oracle = NoiseProxyOracle(tiny)
    L = len(tiny)
    grid = np.array(list(itertools.product([2, 4, 6, 8], repeat=2 * L)))
    w, a = grid[:, :L], grid[:, L:]
    latency = table.evaluate(w, a).latency_s
    limit = 0.35 * table.uniform(8).latency_s[0]
    acc = oracle.accuracy_many(w, a)
    ok = latency <= limit
    best = int(np.flatnonzero(ok)[np.argmax(acc[ok])])
    bw, ba = w[best], a[best]
    assert len(set(bw) | set(ba)) > 1, "the optimum must be a mixed policy"
    # Better than every uniform policy that fits.
    for b in (2, 4, 6, 8):
        if table.uniform(b).latency_s[0] <= limit:
            assert acc[best] > oracle(np.full(L, b), np.full(L, b))
    assert math.isfinite(acc[best])
