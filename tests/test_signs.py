"""Sign of each layer's input from the dataflow (haqsearch.signs)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from haqsearch.errors import TraceError
from haqsearch.models.digits import digits_cnn, digits_mobilenet
from haqsearch.signs import Sign, input_signs
from haqsearch.trace import trace

SIGNED, DATA, NONNEG = Sign.SIGNED, Sign.DATA, Sign.NONNEGATIVE
_ONES = torch.ones(())  # non-negative, but made outside the forward pass: unknown


class _Probe(nn.Module):
    """A Linear reading ``fn(source)``: the convolution's output, its ReLU, or the input."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], source: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fn, self.source = fn, source
        with torch.no_grad():
            n = self._features(torch.zeros(1, 1, 4, 4)).shape[-1]
        self.fc = nn.Linear(n, 2)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        source = {"signed": h, "nonneg": torch.relu(h), "data": x}[self.source]
        return self.fn(source).reshape(1, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self._features(x))


def _sign_of(fn: Callable[[torch.Tensor], torch.Tensor], source: str) -> Sign:
    model = _Probe(fn, source)
    return input_signs(model, torch.randn(1, 1, 4, 4), [model.fc])[0]


def _sub_in_place(p: torch.Tensor) -> torch.Tensor:
    view = p.view(-1)
    p.sub_(1.0)  # changes the storage the view reads
    return view


def _set_item(p: torch.Tensor) -> torch.Tensor:
    p = p.clone()
    p[:, 0] = -p[:, 1]
    return p


CASES: list[tuple[str, Callable[[torch.Tensor], torch.Tensor], str, Sign]] = [
    # producers of non-negative values
    ("relu", F.relu, "signed", NONNEG),
    ("relu in place", lambda h: h.relu_(), "signed", NONNEG),
    ("relu6 module", nn.ReLU6(), "signed", NONNEG),
    ("hardtanh(-1, 1)", nn.Hardtanh(), "signed", SIGNED),
    ("sigmoid", torch.sigmoid, "signed", NONNEG),
    ("hardsigmoid", F.hardsigmoid, "signed", NONNEG),
    ("softmax", lambda h: F.softmax(h, 1), "signed", NONNEG),
    ("abs", torch.abs, "signed", NONNEG),
    ("clamp(min=0)", lambda h: h.clamp(min=0.0), "signed", NONNEG),
    ("clamp(-1, 1)", lambda h: torch.clamp(h, -1.0, 1.0), "signed", SIGNED),
    ("leaky_relu", F.leaky_relu, "signed", SIGNED),
    ("gelu", F.gelu, "signed", SIGNED),
    # ops that keep a non-negative input non-negative
    ("avg_pool2d", lambda p: F.avg_pool2d(p, 2), "nonneg", NONNEG),
    ("adaptive pool module", nn.AdaptiveAvgPool2d(1), "nonneg", NONNEG),
    ("max_pool2d with indices", lambda p: F.max_pool2d(p, 2, return_indices=True)[0], "nonneg",
     NONNEG),
    ("flatten/permute/contiguous", lambda p: p.permute(0, 2, 3, 1).contiguous().flatten(1),
     "nonneg", NONNEG),
    ("dropout", nn.Dropout(0.5), "nonneg", NONNEG),
    ("cat and getitem", lambda p: torch.cat([p[:, :2], p[:, 2:]], 1), "nonneg", NONNEG),
    ("stack", lambda p: torch.stack([p, p]), "nonneg", NONNEG),
    ("add, mul, div", lambda p: (p + p) * 2 / 3, "nonneg", NONNEG),
    ("max over a dim", lambda p: p.max(1).values, "nonneg", NONNEG),
    ("bilinear upsampling", nn.Upsample(scale_factor=2, mode="bilinear"), "nonneg", NONNEG),
    ("zero padding", lambda p: F.pad(p, (1, 1)), "nonneg", NONNEG),
    ("transpose property", lambda p: p.flatten(1).mT, "nonneg", NONNEG),
    ("maximum with a signed tensor", lambda p: torch.maximum(p, -p), "nonneg", NONNEG),
    # ops that can make it negative
    ("subtract", lambda p: p - 0.5, "nonneg", SIGNED),
    ("negative scale", lambda p: p * -1.0, "nonneg", SIGNED),
    ("add with negative alpha", lambda p: torch.add(p, p, alpha=-2), "nonneg", SIGNED),
    ("add an unknown tensor", lambda p: p + torch.randn_like(p), "nonneg", SIGNED),
    ("bicubic upsampling", lambda p: F.interpolate(p, scale_factor=2, mode="bicubic"), "nonneg",
     SIGNED),
    ("padding with -1", lambda p: F.pad(p, (1, 1), value=-1.0), "nonneg", SIGNED),
    ("a tensor not made in the forward", lambda p: p * _ONES, "nonneg", SIGNED),
    ("in-place change seen by a view", _sub_in_place, "nonneg", SIGNED),
    ("item assignment", _set_item, "nonneg", SIGNED),
    ("unknown op", torch.tanh, "nonneg", SIGNED),
    # the model's input
    ("input", lambda x: x, "data", DATA),
    ("input scaled", lambda x: x.flatten(1) / 255, "data", DATA),
    ("input relu", F.relu, "data", NONNEG),
    ("input centred", lambda x: x - 0.5, "data", SIGNED),
]  # fmt: skip


@pytest.mark.parametrize(("fn", "source", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_op_rules(fn, source, expected):
    assert _sign_of(fn, source) == expected


def test_builtin_models():
    cnn = digits_cnn()
    x = torch.randn(1, *cnn.input_shape)
    assert input_signs(cnn, x, trace(cnn, x).modules) == [DATA, NONNEG, NONNEG, NONNEG]
    mbv2 = digits_mobilenet()
    x = torch.randn(1, *mbv2.input_shape)
    traced = trace(mbv2, x)
    signs = dict(zip(traced.names, input_signs(mbv2, x, traced.modules), strict=True))
    assert signs["features.0.0"] == DATA  # the stem reads the image
    assert signs["features.1.conv.0.0"] == NONNEG  # depthwise after the stem's ReLU6
    assert signs["features.2.conv.0.0"] == SIGNED  # block input: projection plus shortcut
    assert signs["features.6.0"] == SIGNED  # after the last linear projection
    assert signs["classifier"] == NONNEG  # ReLU6, average pooling, flatten


class _Branchy(nn.Module):
    """Data-dependent control flow: not torch.fx-traceable."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        h = F.relu(h) if float(x.mean()) > 0 else h
        return self.fc(h.flatten(1))


def test_untraceable_model_follows_the_branch_taken():
    model = _Branchy()
    with pytest.raises(Exception):  # noqa: B017 - whatever torch.fx raises
        torch.fx.symbolic_trace(model)
    up, down = torch.ones(1, 1, 4, 4), -torch.ones(1, 1, 4, 4)
    assert input_signs(model, up, [model.conv, model.fc]) == [DATA, NONNEG]
    assert input_signs(model, down, [model.fc]) == [SIGNED]


def test_shared_module_gets_the_weakest_sign_and_model_is_restored():
    fc = nn.Linear(4, 4)
    model = nn.Sequential(nn.ReLU(), fc, fc).train()
    assert input_signs(model, torch.randn(2, 4), [fc]) == [SIGNED]  # 2nd call reads fc's output
    assert model.training and all(m.training for m in model.modules())
    assert not torch.overrides._is_torch_function_mode_enabled()


def test_failures_name_the_problem():
    model = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(TraceError, match=r"model 'Sequential' must run on the example input"):
        input_signs(model, torch.randn(1, 5), [model[0]])
    unused = nn.Linear(2, 2)
    with pytest.raises(TraceError, match=r"every layer must run .*got \['Linear'\] not run"):
        input_signs(model, torch.randn(1, 4), [model[0], unused])
