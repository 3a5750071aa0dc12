"""Fake quantizers, BatchNorm folding, quantize() and policies."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from haqsearch.errors import HaqsearchError
from haqsearch.models.digits import load_builtin
from haqsearch.quant import (
    FULL_PRECISION,
    ActClipCache,
    QuantConv1d,
    QuantConv2d,
    QuantLinear,
    check_bits,
    fake_quant_signed,
    fake_quant_unsigned,
    fold_batchnorm,
    quant_modules,
    quantize,
    weight_clip_value,
)
from haqsearch.signs import Sign, input_signs
from haqsearch.trace import trace
from haqsim.policy import Policy

BITS = [1, 2, 3, 4, 5, 6, 7, 8]


@pytest.fixture(scope="module")
def cnn():
    """The trained built-in digits CNN (trained once per session through the cache)."""
    return load_builtin("digits_cnn")


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_state(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(after[k], v), k


def _accuracy(model: nn.Module, batches) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in batches:
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return correct / total


# ----------------------------------------------------------------------------- quantizers


@pytest.mark.parametrize("bits", [*BITS[1:], 16])
def test_signed_values_on_symmetric_grid(bits):
    torch.manual_seed(0)
    x = torch.randn(10_000) * 2
    clip = 1.5
    q = fake_quant_signed(x, clip, bits)
    qmax = 2 ** (bits - 1) - 1
    k = q / (clip / qmax)
    assert torch.allclose(k, k.round(), atol=1e-3)
    assert k.round().abs().max() <= qmax
    assert q.max() == pytest.approx(clip) and q.min() == pytest.approx(-clip)  # symmetric range
    assert torch.equal(fake_quant_signed(-x, clip, bits), -q)  # odd function
    step = clip / qmax
    inside = x.abs() <= clip
    assert (q - x)[inside].abs().max() <= step / 2 + 1e-6


@pytest.mark.parametrize("bits", [*BITS, 16])
def test_unsigned_values_on_grid(bits):
    torch.manual_seed(0)
    x = torch.rand(10_000) * 3 - 0.5
    clip = 2.0
    q = fake_quant_unsigned(x, clip, bits)
    k = q / (clip / (2**bits - 1))
    assert torch.allclose(k, k.round(), atol=1e-3)
    assert q.min() == 0.0 and q.max() == pytest.approx(clip)
    assert torch.all(q[x <= 0] == 0)


def test_one_bit_signed_is_binary():
    x = torch.tensor([-3.0, -0.2, 0.0, 0.1, 5.0])
    assert torch.equal(fake_quant_signed(x, 2.0, 1), torch.tensor([-2.0, -2.0, 2.0, 2.0, 2.0]))


@pytest.mark.parametrize(
    ("signed", "bits"), [(True, 1), (True, 2), (True, 4), (True, 8), (False, 2), (False, 8)]
)
def test_ste_gradient_passes_inside_clip_range_only(signed, bits):
    x = torch.linspace(-3, 3, 601, requires_grad=True)
    clip = 2.0
    fq = fake_quant_signed if signed else fake_quant_unsigned
    fq(x, clip, bits).sum().backward()
    lo = -clip if signed else 0.0
    inside = (x > lo) & (x < clip)
    outside = (x < lo) | (x > clip)
    assert torch.all(x.grad[inside] == 1.0)
    assert torch.all(x.grad[outside] == 0.0)


def test_learned_clip_gets_gradient():
    x = torch.linspace(-1, 4, 100)
    clip = torch.tensor(2.0, requires_grad=True)
    fake_quant_unsigned(x, clip, 4).sum().backward()
    assert clip.grad is not None and clip.grad > 0  # values above the clip pull it up


def test_full_precision_is_identity():
    x = torch.randn(100)
    assert fake_quant_signed(x, 1.0, FULL_PRECISION) is x
    assert fake_quant_unsigned(x, 1.0, FULL_PRECISION) is x


def test_per_channel_clips_follow_each_channel():
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3) * torch.tensor([0.01, 0.1, 1.0, 10.0]).view(4, 1, 1, 1)
    per_ch = weight_clip_value(w, 4, "max", per_channel=True)
    assert per_ch.shape == (4, 1, 1, 1)
    assert torch.allclose(per_ch.flatten(), w.abs().flatten(1).amax(1))
    per_t = weight_clip_value(w, 4, "max", per_channel=False)
    assert per_t.ndim == 0 and per_t == w.abs().max()
    err_ch = (fake_quant_signed(w, per_ch, 4) - w).pow(2).flatten(1).sum(1)
    err_t = (fake_quant_signed(w, per_t, 4) - w).pow(2).flatten(1).sum(1)
    assert torch.all(err_ch[:3] < err_t[:3])  # small channels keep their resolution


@pytest.mark.parametrize("method", ["mse", "kl"])
@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
def test_mse_and_kl_clip_at_most_max_clip(method, per_channel, bits):
    torch.manual_seed(bits)
    w = torch.randn(8, 16, 3, 3)
    w[0, 0, 0, 0] = 12.0  # an outlier worth clipping
    amax = weight_clip_value(w, bits, "max", per_channel=per_channel)
    clip = weight_clip_value(w, bits, method, per_channel=per_channel)
    assert clip.shape == amax.shape
    assert torch.all(clip <= amax) and torch.all(clip > 0)
    if method == "mse":  # max is a candidate, so the search can only reduce the error
        err_mse = (fake_quant_signed(w, clip, bits) - w).pow(2).sum()
        err_max = (fake_quant_signed(w, amax, bits) - w).pow(2).sum()
        assert err_mse <= err_max + 1e-6
        if bits <= 4:
            assert clip.min() < amax.max()  # the outlier is clipped


def _with_outliers(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A Gaussian weight with five large outliers in channel 0, and the outliers' mask."""
    torch.manual_seed(seed)
    w = torch.randn(16, 64, 3, 3)
    w.view(-1)[:5] = torch.tensor([9.0, -10.0, 11.0, 12.0, -12.0])
    outliers = torch.zeros_like(w, dtype=torch.bool)
    outliers.view(-1)[:5] = True
    return w, outliers


@pytest.mark.parametrize("per_channel", [False, True])
def test_kl_clips_outliers_and_beats_max_on_the_bulk(per_channel):
    w, outliers = _with_outliers()
    amax = weight_clip_value(w, 4, "max", per_channel=per_channel)
    kl = weight_clip_value(w, 4, "kl", per_channel=per_channel)
    assert float(kl.flatten()[0]) < 0.4 * float(amax.flatten()[0])  # the outliers' channel

    def bulk_mse(clip: torch.Tensor) -> float:
        return float((fake_quant_signed(w, clip, 4) - w)[~outliers].pow(2).mean())

    assert bulk_mse(kl) < 0.6 * bulk_mse(amax)


def test_kl_searches_each_channel_on_its_own():
    torch.manual_seed(0)
    scales = torch.tensor([0.01, 0.1, 1.0, 10.0])
    w = torch.randn(4, 64, 3, 3) * scales.view(4, 1, 1, 1)
    clip = weight_clip_value(w, 3, "kl", per_channel=True).flatten()
    amax = w.abs().flatten(1).amax(1)
    assert torch.all(clip < 0.9 * amax)  # small channels are clipped too, not left at their max
    ratio = clip / scales  # the same distribution in each channel: about the same clip in sigmas
    assert float(ratio.max() / ratio.min()) < 1.5


@pytest.mark.parametrize("seed", range(4))
def test_kl_clip_grows_with_bits(seed):
    torch.manual_seed(seed)
    w = torch.randn(8, 16, 3, 3)
    w[0, 0, 0, 0] = 12.0
    clips = [float(weight_clip_value(w, b, "kl", per_channel=False)) for b in range(2, 7)]
    assert clips == sorted(clips), clips  # finer rounding: clipping costs relatively more
    assert clips[2] < 4.0  # 4 bits clip the outlier
    assert clips[-1] == pytest.approx(12.0)  # 6 bits keep it (its clipping error would dominate)


def test_kl_falls_back_to_max_on_too_few_weights():
    torch.manual_seed(0)
    w = torch.randn(16, 1, 3, 3)  # 9 weights per channel: no meaningful histogram
    assert torch.equal(weight_clip_value(w, 4, "kl"), weight_clip_value(w, 4, "max"))


def test_unknown_weight_clip_method():
    with pytest.raises(HaqsearchError, match="weight_clip must be one of"):
        weight_clip_value(torch.randn(2, 2), 4, "median")


# ----------------------------------------------------------------------------- BN folding


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.1)
            m.weight.data.copy_(torch.randn(n, generator=g))
            m.bias.data.copy_(torch.randn(n, generator=g))
    return model


class _Mixed(nn.Module):
    """Conv1d with bias + BN, a conv whose output also feeds a residual, Linear + BN1d."""

    input_shape = (2, 16)

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm1d(4)
        self.conv2 = nn.Conv1d(4, 4, 3, padding=1, bias=False)
        self.fc = nn.Linear(64, 8)
        self.bn_fc = nn.BatchNorm1d(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x)))
        h = h + self.conv2(h)
        return self.head(torch.relu(self.bn_fc(self.fc(h.flatten(1)))))


@pytest.mark.parametrize("name", ["digits_cnn", "digits_mobilenet", "mixed"])
def test_fold_batchnorm_preserves_output(name):
    from haqsearch.models.digits import digits_cnn, digits_mobilenet

    torch.manual_seed(0)
    model = {"digits_cnn": digits_cnn, "digits_mobilenet": digits_mobilenet, "mixed": _Mixed}[
        name
    ]()
    model = _randomize_bn(model).eval()
    x = torch.randn(8, *model.input_shape)
    before = _state(model)
    folded = fold_batchnorm(model, x[:1])
    _assert_same_state(model, before)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-4, rtol=1e-4)
    assert [type(m) for m in trace(folded, x[:1]).modules] == [
        type(m) for m in trace(model, x[:1]).modules
    ]


class _PreBnShortcut(nn.Module):
    """The convolution's output feeds the BatchNorm and a shortcut: folding must not happen."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.bn = nn.BatchNorm2d(2)
        self.conv2 = nn.Conv2d(2, 2, 1)
        self.bn2 = nn.BatchNorm2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn2(self.conv2(self.bn(y) + y))


def test_fold_batchnorm_skips_pairs_whose_output_is_shared():
    model = _randomize_bn(_PreBnShortcut()).eval()
    x = torch.randn(4, 2, 6, 6)
    folded = fold_batchnorm(model, x[:1])
    assert isinstance(folded.bn, nn.BatchNorm2d)
    assert isinstance(folded.bn2, nn.Identity)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-4)


def test_fold_batchnorm_leaves_unpaired_bn():
    model = nn.Sequential(nn.BatchNorm2d(1), nn.Conv2d(1, 2, 3), nn.ReLU(), nn.BatchNorm2d(2))
    _randomize_bn(model).eval()
    folded = fold_batchnorm(model, torch.randn(1, 1, 5, 5))
    assert isinstance(folded[0], nn.BatchNorm2d)  # nothing feeds it
    assert isinstance(folded[3], nn.BatchNorm2d)  # a ReLU sits between
    x = torch.randn(4, 1, 5, 5)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5)


# ----------------------------------------------------------------------------- quantize()


def test_quantize_leaves_original_untouched(cnn):
    model = copy.deepcopy(cnn.model).train()  # train mode: a forward pass would move BN stats
    before = _state(model)
    q = quantize(model, [4] * 4, [4] * 4, cnn.train_data, calibration_batches=2)
    _assert_same_state(model, before)
    assert model.training
    assert all(not isinstance(m, QuantConv2d) for m in model.modules())
    assert q is not model and not q.training
    ptrs = {p.data_ptr() for p in model.parameters()}
    assert not ptrs & {p.data_ptr() for p in q.parameters()}


def test_quantize_replaces_every_traced_layer_in_order(cnn):
    x = cnn.val_data.inputs[:1]
    names = list(trace(cnn.model, x).names)
    w = [8, 6, 4, 2]
    a = [8, 5, 3, FULL_PRECISION]
    q = quantize(cnn.model, w, a, cnn.train_data, calibration_batches=2)
    layers = dict(quant_modules(q))
    assert list(layers) == names
    assert [layers[n].w_bits for n in names] == w
    assert [layers[n].a_bits for n in names] == a
    assert isinstance(layers[names[0]], QuantConv2d)
    assert isinstance(layers[names[-1]], QuantLinear)
    assert list(trace(q, x).names) == names  # a quantized model traces to the same workload
    first, second = layers[names[0]], layers[names[1]]
    assert bool(first.a_signed)  # the standardised image is signed
    assert not bool(second.a_signed)  # after a ReLU
    assert float(first.a_clip) == pytest.approx(float(cnn.train_data.inputs.abs().max()), rel=0.5)


def test_quantized_weights_on_grid(cnn):
    q = quantize(cnn.model, [3] * 4, [8] * 4, cnn.train_data, calibration_batches=1)
    for _, m in quant_modules(q):
        wq = m.quant_weight().detach().flatten(1)
        scale = wq.abs().amax(1, keepdim=True) / 3  # 3 bits: levels -3..3
        k = wq / scale
        assert torch.allclose(k, k.round(), atol=1e-4)
        assert len(torch.unique(k.round())) <= 7


def test_sixteen_bit_and_full_precision_nearly_lossless(cnn):
    x, y = cnn.val_data.inputs[:64], cnn.val_data.labels[:64]
    calibration = [(x, y)]  # clips cover these inputs, so only rounding differs
    with torch.no_grad():
        ref = cnn.model(x)
        fp = quantize(cnn.model, [32] * 4, [32] * 4, calibration)(x)
        q16 = quantize(cnn.model, [16] * 4, [16] * 4, calibration)(x)
        q8 = quantize(cnn.model, [8] * 4, [8] * 4, calibration)(x)
    assert torch.allclose(fp, ref, atol=1e-4)
    err16, err8 = (q16 - ref).abs().max(), (q8 - ref).abs().max()
    assert err16 <= 1e-3 * ref.abs().max()
    assert err16 < err8 / 50


def test_eight_bit_close_to_float_and_two_bit_worse(cnn):
    acc = {
        b: _accuracy(quantize(cnn.model, [b] * 4, [b] * 4, cnn.train_data), cnn.val_data)
        for b in (8, 2)
    }
    assert acc[8] >= cnn.float_accuracy - 0.005
    assert acc[2] < acc[8]


@pytest.mark.parametrize("act_clip", ["max", "percentile", "mse"])
@pytest.mark.parametrize("weight_clip", ["max", "mse", "kl"])
def test_clip_options_work(cnn, weight_clip, act_clip):
    q = quantize(
        cnn.model,
        [4] * 4,
        [4] * 4,
        cnn.train_data,
        weight_clip=weight_clip,
        act_clip=act_clip,
        calibration_batches=2,
    )
    assert _accuracy(q, cnn.val_data) > 0.9


def _clips(model: nn.Module) -> list[float]:
    return [float(m.a_clip) for _, m in quant_modules(model)]


@pytest.mark.parametrize("act_clip", ["percentile", "mse"])
def test_act_clip_cache_reuses_clips_and_changes_nothing(cnn, act_clip):
    cache = ActClipCache()
    batches = list(cnn.train_data)[:2]
    policies = [([4] * 4, [4, 3, 5, 4]), ([8, 2, 2, 8], [4, 5, 3, 6]), ([6] * 4, [4, 3, 3, 6])]
    for w, a in policies:
        plain = quantize(cnn.model, w, a, batches, act_clip=act_clip)
        cached = quantize(cnn.model, w, a, batches, act_clip=act_clip, act_clip_cache=cache)
        assert _clips(cached) == _clips(plain)
        x = batches[0][0]
        assert torch.equal(cached(x), plain(x))
    # one entry per (layer, a_bits) seen: 4, then (1, 5), (2, 3), (3, 6), then nothing new
    assert len(cache) == 7
    # a later call reuses them: the searches are skipped, the clips stay those recorded
    cache.clips[(0, 4)] = 123.0
    q = quantize(cnn.model, [4] * 4, [4] * 4, batches, act_clip=act_clip, act_clip_cache=cache)
    assert _clips(q)[0] == 123.0
    # other calibration inputs start afresh
    other = list(cnn.train_data)[2:4]
    q = quantize(cnn.model, [4] * 4, [4] * 4, other, act_clip=act_clip, act_clip_cache=cache)
    assert _clips(q) == _clips(quantize(cnn.model, [4] * 4, [4] * 4, other, act_clip=act_clip))
    assert len(cache) == 4


def test_per_tensor_and_one_bit(cnn):
    q = quantize(cnn.model, [1, 2, 2, 8], [8, 2, 2, 8], cnn.train_data, per_channel=False)
    for _, m in quant_modules(q):
        assert m.w_clip_ratio.shape == (1,)
    layers = dict(quant_modules(q))
    w = layers["features.0"].weight.detach()  # BN-folded
    w0 = layers["features.0"].quant_weight().detach()
    # one bit per tensor: two values, +-mean|w| of the whole tensor, with the weight's sign
    assert torch.allclose(w0.abs(), w.abs().mean().expand_as(w0))
    assert torch.equal(torch.sign(w0), torch.where(w >= 0, 1.0, -1.0))
    w1 = layers["features.3"].quant_weight().detach()
    assert torch.allclose(w1.abs() * (w1 != 0), w1.abs().amax() * (w1 != 0))  # 2 bits: -c, 0, c
    # one bit per channel: +-mean|w| of each channel, a different magnitude per channel
    qc = quantize(cnn.model, [1, 8, 8, 8], [8] * 4, cnn.train_data, per_channel=True)
    layer = dict(quant_modules(qc))["features.0"]
    wc = layer.quant_weight().detach().flatten(1)
    means = layer.weight.detach().abs().flatten(1).mean(1, keepdim=True)
    assert torch.allclose(wc.abs(), means.expand_as(wc))
    assert float(means.max() / means.min()) > 1.5


def test_per_tensor_is_worse_than_per_channel_at_two_bits(cnn):
    data = list(cnn.train_data)[:4]
    w2 = [2] * 4
    q_ch = quantize(cnn.model, w2, [8] * 4, data, per_channel=True)
    q_t = quantize(cnn.model, w2, [8] * 4, data, per_channel=False)
    for (name, ch), (_, t) in zip(quant_modules(q_ch), quant_modules(q_t), strict=True):
        err_ch = (ch.quant_weight() - ch.weight).pow(2).sum()
        err_t = (t.quant_weight() - t.weight).pow(2).sum()
        assert err_ch < err_t, name  # each channel gets a step fitted to its own range
    assert _accuracy(q_t, cnn.val_data) < _accuracy(q_ch, cnn.val_data) - 0.1


def test_learn_clip_makes_clip_trainable(cnn):
    q = quantize(cnn.model, [4] * 4, [4] * 4, cnn.train_data, learn_clip=True)
    layers = [m for _, m in quant_modules(q)]
    assert all(isinstance(m.a_clip, nn.Parameter) for m in layers)
    x, y = next(iter(cnn.train_data))
    nn.functional.cross_entropy(q(x), y).backward()
    assert all(m.a_clip.grad is not None for m in layers)
    assert any(float(m.a_clip.grad) != 0.0 for m in layers)
    assert all(m.weight.grad is not None for m in layers)


def test_batchnorm_is_folded_by_default():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 5 * 5, 3))  # fmt: skip
    model = _randomize_bn(model).eval()
    x = torch.randn(16, 2, 5, 5)
    q = quantize(model, [16, 16], [16, 16], [(x, torch.zeros(16, dtype=torch.long))])
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in q.modules())
    assert isinstance(q[1], nn.Identity)
    with torch.no_grad():
        folded = fold_batchnorm(model, x[:1])(x)
        out = q(x)
    assert torch.allclose(out, folded, atol=2e-3 * float(folded.abs().max()))
    assert torch.allclose(out, model(x).detach(), atol=2e-3 * float(folded.abs().max()))


def test_quantize_without_folding_keeps_batchnorm(cnn):
    q = quantize(cnn.model, [8] * 4, [8] * 4, cnn.train_data, fold_bn=False)
    assert any(isinstance(m, nn.BatchNorm2d) for m in q.modules())
    assert _accuracy(q, cnn.val_data) >= cnn.float_accuracy - 0.01


def test_conv1d_model_and_plain_list_of_numpy_batches():
    torch.manual_seed(0)
    model = _randomize_bn(_Mixed()).eval()
    data = [(np.random.default_rng(i).normal(size=(8, 2, 16)).astype(np.float32), np.zeros(8))
            for i in range(3)]  # fmt: skip
    data = [(x, y.astype(np.int64)) for x, y in data]
    q = quantize(model, [8] * 4, [8] * 4, data)
    types = [type(m) for _, m in quant_modules(q)]
    assert types == [QuantConv1d, QuantConv1d, QuantLinear, QuantLinear]
    x = torch.from_numpy(data[0][0])
    with torch.no_grad():
        assert torch.allclose(q(x), model(x), atol=0.05 * float(model(x).abs().max()))


# ----------------------------------------------------------------------------- policies


def _policy(cnn, w_bits, a_bits, order=None) -> Policy:
    names = list(trace(cnn.model, cnn.val_data.inputs[:1]).names)
    order = range(len(names)) if order is None else order
    return Policy([names[i] for i in order], [w_bits[i] for i in order],
                  [a_bits[i] for i in order])  # fmt: skip


def test_quantize_with_policy_equals_arrays(cnn):
    w, a = [8, 3, 4, 2], [8, 4, 3, 6]
    data = list(cnn.train_data)[:2]
    before = _state(cnn.model)
    by_arrays = quantize(cnn.model, w, a, data)
    by_policy = quantize(cnn.model, _policy(cnn, w, a, order=[2, 0, 3, 1]), data)  # by name
    by_keywords = quantize(cnn.model, _policy(cnn, w, a), calibration_data=data)
    _assert_same_state(cnn.model, before)
    x = data[0][0]
    for q in (by_policy, by_keywords):
        assert [(n, m.w_bits, m.a_bits) for n, m in quant_modules(q)] == [
            (n, m.w_bits, m.a_bits) for n, m in quant_modules(by_arrays)
        ]
        assert torch.equal(q(x), by_arrays(x))


def test_quantize_with_policy_file_keyed_by_name(cnn, tmp_path):
    path = tmp_path / "policy.json"
    layers = {
        "classifier": {"w_bits": 8, "a_bits": 6},
        "features.7": {"w_bits": 2, "a_bits": 3},
        "features.0": {"w_bits": 5, "a_bits": 8},
        "features.3": {"w_bits": 4, "a_bits": 4},
    }
    path.write_text(json.dumps({"workload": "digits_cnn", "layers": layers}))
    q = quantize(cnn.model, Policy.from_json(path), cnn.train_data, calibration_batches=1)
    assert {n: {"w_bits": m.w_bits, "a_bits": m.a_bits} for n, m in quant_modules(q)} == layers


def test_policy_with_other_layer_names_raises(cnn):
    before = _state(cnn.model)
    policy = Policy(["features.0", "features.3", "features.7", "fc"], [8] * 4, [8] * 4)
    match = (r"policy layer names must match the model's 4 quantizable layers .*missing "
             r"\['classifier'\], unknown \['fc'\]")  # fmt: skip
    with pytest.raises(HaqsearchError, match=match):
        quantize(cnn.model, policy, cnn.train_data)
    short = Policy(["features.0"], [8], [8])
    with pytest.raises(HaqsearchError, match=r"got 1 names; missing \['features.3'"):
        quantize(cnn.model, short, cnn.train_data)
    _assert_same_state(cnn.model, before)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (({"features.0": 8}, [8] * 4), r"policy must be a haqsim.Policy .*got dict"),
        (("8888", [8] * 4), r"policy must be a haqsim.Policy .*got str"),
        ((8, [8] * 4), r"policy must be a haqsim.Policy .*got int"),
        (([8] * 4,), r"with w_bits, a_bits and calibration_data must follow"),
        ((None,), r"policy must be a haqsim.Policy .*got NoneType"),
    ],
)
def test_wrong_policy_type_raises(cnn, args, match):
    with pytest.raises(HaqsearchError, match=match):
        quantize(cnn.model, *args, cnn.train_data)


def test_policy_with_a_bits_too_raises(cnn):
    with pytest.raises(HaqsearchError, match=r"a haqsim\.Policy holds its a_bits"):
        quantize(cnn.model, _policy(cnn, [8] * 4, [8] * 4), [8] * 4, cnn.train_data)


# ----------------------------------------------------------------------------- signedness


def _batches(x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x, torch.zeros(len(x), dtype=torch.long))]


def _signed(q: nn.Module) -> dict[str, bool]:
    return {n: bool(m.a_signed) for n, m in quant_modules(q)}


def test_input_that_can_be_negative_is_signed_even_if_calibration_was_positive():
    model = nn.Sequential(nn.Conv2d(1, 1, 1), nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.fill_(-1.0)
        model[0].bias.fill_(0.5)
    calibration = torch.rand(32, 1, 2, 2) * 0.4  # conv output in (0.1, 0.5]: never negative
    q = quantize(model, [32, 32], [32, 8], _batches(calibration))
    assert _signed(q) == {"0": False, "2": True}  # non-negative data; a conv's output
    test = 0.6 + torch.rand(8, 1, 2, 2) * 0.4  # conv output in [-0.5, -0.1): kept, not zeroed
    with torch.no_grad():
        assert torch.allclose(q(test), model(test), atol=0.01)
        assert not torch.allclose(q(test), model[2](torch.zeros(8, 4)), atol=0.05)


def test_relu_pool_flatten_linear_is_unsigned_and_signed_data_is_signed():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                          nn.Flatten(), nn.Linear(8, 2))  # fmt: skip
    x = torch.randn(16, 1, 4, 4)
    assert _signed(quantize(model, [8, 8], [8, 8], _batches(x))) == {"0": True, "4": False}
    nonneg = _signed(quantize(model, [8, 8], [8, 8], _batches(x.abs())))
    assert nonneg == {"0": False, "4": False}


class _Halves(nn.Module):
    """Two linears on two halves of the input, each a sign-preserving function of it."""

    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Linear(2, 2)
        self.right = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.left(x[:, :2]) + self.right(x[:, 2:])


def test_data_signed_layer_judged_by_its_own_calibration_inputs():
    x = torch.rand(16, 4)
    x[:, 2:] -= 2.0  # only the right half of the input is ever negative
    model = _Halves()
    assert input_signs(model, x[:1], [model.left, model.right]) == [Sign.DATA, Sign.DATA]
    assert _signed(quantize(model, [8, 8], [8, 8], _batches(x))) == {
        "left": False, "right": True
    }  # fmt: skip


def test_given_signs_are_used_and_checked():
    model, x = _Halves(), torch.rand(16, 4) - 0.5
    given = quantize(model, [8, 8], [8, 8], _batches(x), signs=[Sign.NONNEGATIVE, Sign.SIGNED])
    assert _signed(given) == {"left": False, "right": True}
    with pytest.raises(HaqsearchError, match=r"signs must be one .*Sign per quantizable layer "
                       r"\(2\), got 1 values"):  # fmt: skip
        quantize(model, [8, 8], [8, 8], _batches(x), signs=[Sign.SIGNED])
    with pytest.raises(HaqsearchError, match=r"got 2 values: \[True, False\]"):
        quantize(model, [8, 8], [8, 8], _batches(x), signs=[True, False])  # type: ignore[list-item]


class _FunctionalRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(8, 2)
        self.head = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv(x - 0.5)).flatten(1)
        return self.head(F.leaky_relu(self.fc(h)))


def test_functional_relu_in_forward_is_detected():
    x = torch.rand(16, 1, 4, 4)  # non-negative data, centred inside the forward
    q = quantize(_FunctionalRelu(), [8] * 3, [8] * 3, _batches(x))
    assert _signed(q) == {"conv": True, "fc": False, "head": True}


class _Untraceable(nn.Module):
    """Data-dependent control flow, which torch.fx cannot trace."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        if float(h.mean()) > -1e9:
            h = torch.sigmoid(h)
        return self.fc(h.flatten(1))


def test_fx_untraceable_model_is_quantized():
    model = _Untraceable()
    with pytest.raises(Exception):  # noqa: B017 - whatever torch.fx raises
        torch.fx.symbolic_trace(model)
    x = torch.randn(16, 1, 4, 4)
    q = quantize(model, [8, 8], [8, 8], _batches(x))
    assert _signed(q) == {"conv": True, "fc": False}
    with torch.no_grad():
        assert torch.allclose(q(x), model(x), atol=0.05)


# ----------------------------------------------------------------------------- layer checks


class _Tagged(nn.Conv2d):
    """A subclass keeping the standard forward."""

    def describe(self) -> str:
        return f"tagged {self.out_channels}"


class _Doubled(nn.Linear):
    """A subclass overriding forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * super().forward(x)


def test_subclass_with_standard_forward_is_quantized():
    torch.manual_seed(0)
    model = nn.Sequential(_Tagged(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    x = torch.randn(8, 1, 4, 4)
    q = quantize(model, [8, 8], [8, 8], _batches(x))
    assert isinstance(q[0], QuantConv2d)
    assert q[0].weight is not model[0].weight and torch.equal(q[0].weight, model[0].weight)
    with torch.no_grad():
        assert torch.allclose(q(x), model(x), atol=0.05)
    bad = nn.Sequential(nn.Flatten(), _Doubled(16, 2))
    before = _state(bad)
    match = r"layer 0 '1' must be .*or a subclass keeping their forward.*got _Doubled, which ov"
    with pytest.raises(HaqsearchError, match=match):
        quantize(bad, [8], [8], _batches(x))
    _assert_same_state(bad, before)


class _SharedBlock(nn.Module):
    def __init__(self, separate: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.block = nn.Conv2d(4, 4, 3, padding=1)
        self.again = copy.deepcopy(self.block) if separate else self.block
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.again(torch.relu(self.block(torch.relu(self.stem(x)))))
        return self.fc(h.mean((2, 3)))


def test_module_called_twice_raises_with_a_fix():
    x = torch.randn(8, 1, 4, 4)
    model = _SharedBlock()
    before = _state(model)
    match = (
        r"model '_SharedBlock': each quantizable module must run once per forward pass, got "
        r"'block' \(Conv2d\) 2 times; give each call its own module instance .* to quantize it"
    )
    with pytest.raises(HaqsearchError, match=match):
        quantize(model, [8] * 4, [8] * 4, _batches(x))
    _assert_same_state(model, before)
    fixed = quantize(_SharedBlock(separate=True), [8] * 4, [8] * 4, _batches(x))
    assert [n for n, _ in quant_modules(fixed)] == ["stem", "block", "again", "fc"]


def test_model_without_quantizable_layers_raises_and_is_untouched():
    model = nn.Sequential(nn.BatchNorm2d(1), nn.Flatten()).train()
    before = _state(model)
    x = torch.randn(8, 1, 4, 4)
    with pytest.raises(HaqsearchError, match=r"model 'Sequential' must have at least one quantiz"):
        quantize(model, [], [], _batches(x))
    _assert_same_state(model, before)  # no forward pass moved the BatchNorm statistics
    assert model.training and model[0].training


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("w_bits", "a_bits", "match"),
    [
        ([8] * 3, [8] * 4, r"w_bits must have one entry per quantizable layer \(4\), got 3"),
        ([8] * 4, [8] * 5, r"a_bits must have one entry per quantizable layer \(4\), got 5"),
        ([8, 8, 8, 9], [8] * 4, r"layer 3 'classifier' w_bits must be in \[1, 8\] or 16 or 32"),
        ([8] * 4, [0, 8, 8, 8], r"layer 0 'features.0' a_bits must be in .*, got 0"),
        ([8, 4.5, 8, 8], [8] * 4, r"layer 1 'features.3' w_bits must be an integer, got 4.5"),
        ([[8, 8]] * 2, [8] * 4, r"w_bits must be a 1-D sequence"),
    ],
)
def test_bad_policy_raises_and_leaves_model(cnn, w_bits, a_bits, match):
    before = _state(cnn.model)
    with pytest.raises(HaqsearchError, match=match):
        quantize(cnn.model, w_bits, a_bits, cnn.train_data)
    _assert_same_state(cnn.model, before)


def test_wrong_input_shape_from_loader(cnn):
    before = _state(cnn.model)
    flat = [(x.flatten(1), y) for x, y in cnn.val_data]
    with pytest.raises(HaqsearchError, match=r"batch 0: inputs must have shape \(N, 1, 8, 8\), "):
        quantize(cnn.model, [8] * 4, [8] * 4, flat)
    # A later bad batch is caught too (the model itself declares no input shape here).
    plain = nn.Sequential(*cnn.model.features, nn.Flatten(), cnn.model.classifier)
    good = list(cnn.val_data)[:2]
    with pytest.raises(HaqsearchError, match=r"calibration_data batch 2: inputs must have shape"):
        quantize(plain, [8] * 4, [8] * 4, [*good, (good[0][0][:, :, :4], good[0][1])])
    with pytest.raises(HaqsearchError, match="must yield at least one"):
        quantize(cnn.model, [8] * 4, [8] * 4, [])
    with pytest.raises(HaqsearchError, match=r"labels must have shape \(64,\)"):
        quantize(cnn.model, [8] * 4, [8] * 4, [(good[0][0], good[0][1][:3])])
    _assert_same_state(cnn.model, before)


def test_model_that_rejects_its_input(cnn):
    plain = nn.Sequential(*cnn.model.features, nn.Flatten(), cnn.model.classifier)
    bad = [(torch.randn(4, 1, 16, 16), torch.zeros(4, dtype=torch.long))]
    match = r"example_input: model 'Sequential' must run on inputs of shape \(1, 1, 16, 16\)"
    with pytest.raises(HaqsearchError, match=match):
        quantize(plain, [8] * 4, [8] * 4, bad)


def test_bad_options(cnn):
    with pytest.raises(HaqsearchError, match="act_clip must be one of"):
        quantize(cnn.model, [8] * 4, [8] * 4, cnn.train_data, act_clip="kl")
    with pytest.raises(HaqsearchError, match="already quantized"):
        q = quantize(cnn.model, [8] * 4, [8] * 4, cnn.train_data, calibration_batches=1)
        quantize(q, [8] * 4, [8] * 4, cnn.train_data)


def test_check_bits_returns_int64():
    out = check_bits([1, 8.0, 16, 32], 4)
    assert out.dtype == np.int64 and list(out) == [1, 8, 16, 32]
