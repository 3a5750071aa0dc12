"""Fake quantizers, BatchNorm folding, quantize() and policies."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
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
from haqsearch.trace import trace

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
    w0 = dict(quant_modules(q))["features.0"].quant_weight().detach()
    assert torch.allclose(w0.abs(), w0.abs().max())  # binary: +-mean|w|
    assert 0.0 <= _accuracy(q, cnn.val_data) <= 1.0


def test_learn_clip_makes_clip_trainable(cnn):
    q = quantize(cnn.model, [4] * 4, [4] * 4, cnn.train_data, learn_clip=True)
    layers = [m for _, m in quant_modules(q)]
    assert all(isinstance(m.a_clip, nn.Parameter) for m in layers)
    x, y = next(iter(cnn.train_data))
    nn.functional.cross_entropy(q(x), y).backward()
    assert all(m.a_clip.grad is not None for m in layers)
    assert any(float(m.a_clip.grad) != 0.0 for m in layers)
    assert all(m.weight.grad is not None for m in layers)


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
