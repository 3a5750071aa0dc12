"""Tests of haqsearch.trace and the model definitions that trace to haqsim's zoo."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import haqsearch
from haqsearch import HaqsearchError, Traced, trace
from haqsearch.errors import TraceError
from haqsearch.models import mobilenet_v1, mobilenet_v2, resnet18, resnet50
from haqsim import zoo
from haqsim.workload import KERNEL_COLUMNS, LayerKind, LayerTable


def _image(size: int = 32, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


def _column(traced: Traced, field: str) -> list[int]:
    return [int(v) for v in getattr(traced.workload, field)]


# ---------------------------------------------------------------------------- zoo equality
ZOO_CASES = {
    "mobilenet_v1": (lambda: mobilenet_v1(), lambda: zoo.mobilenet_v1()),
    "mobilenet_v2": (lambda: mobilenet_v2(), lambda: zoo.mobilenet_v2()),
    "resnet18": (lambda: resnet18(), lambda: zoo.resnet18()),
    "resnet50": (lambda: resnet50(), lambda: zoo.resnet50()),
}


@pytest.fixture(scope="module", params=sorted(ZOO_CASES))
def traced_and_zoo(request: pytest.FixtureRequest) -> tuple[str, Traced, LayerTable]:
    make_model, make_table = ZOO_CASES[request.param]
    torch.manual_seed(0)
    return request.param, trace(make_model(), _image(224)), make_table()


def test_models_trace_to_zoo_shapes(traced_and_zoo: tuple[str, Traced, LayerTable]) -> None:
    name, traced, table = traced_and_zoo
    got, want = traced.workload, table
    assert len(got) == len(want), name
    for i in range(len(want)):
        assert got.kernel_array()[i].tolist() == want.kernel_array()[i].tolist(), (
            f"{name} row {i}: traced {got[i]} != zoo {want[i]} (columns {KERNEL_COLUMNS})"
        )
    np.testing.assert_array_equal(got.macs, want.macs)
    np.testing.assert_array_equal(got.params, want.params)
    assert got.total_macs == want.total_macs
    assert got.total_params == want.total_params
    assert got.batch is None and want.batch is None


def test_models_trace_to_zoo_names(traced_and_zoo: tuple[str, Traced, LayerTable]) -> None:
    _, traced, table = traced_and_zoo
    assert traced.workload.names == table.names
    assert traced.names == table.names


def test_model_totals_are_the_published_ones(
    traced_and_zoo: tuple[str, Traced, LayerTable],
) -> None:
    # Published MAC / weight counts (biases and batch norm excluded).
    expected = {
        "mobilenet_v1": (568_740_352, 4_209_088),
        "mobilenet_v2": (300_774_272, 3_469_760),
        "resnet18": (1_814_073_344, 11_678_912),
        "resnet50": (4_089_184_256, 25_502_912),
    }
    name, traced, _ = traced_and_zoo
    assert (traced.workload.total_macs, traced.workload.total_params) == expected[name]


@pytest.mark.parametrize(
    ("make_model", "make_table"),
    [
        (lambda: mobilenet_v2(width=0.5, num_classes=10),
         lambda: zoo.mobilenet_v2(width=0.5, resolution=96, num_classes=10)),
        (lambda: mobilenet_v2(width=1.4, num_classes=10),
         lambda: zoo.mobilenet_v2(width=1.4, resolution=96, num_classes=10)),
        (lambda: mobilenet_v1(width=0.25, num_classes=10),
         lambda: zoo.mobilenet_v1(width=0.25, resolution=96, num_classes=10)),
        (lambda: mobilenet_v1(width=0.75, num_classes=10),
         lambda: zoo.mobilenet_v1(width=0.75, resolution=96, num_classes=10)),
        (lambda: resnet18(num_classes=10), lambda: zoo.resnet18(num_classes=10, resolution=96)),
        (lambda: resnet18(num_classes=10, width=0.5),
         lambda: zoo.resnet18(num_classes=10, resolution=96, width=0.5)),
        (lambda: resnet50(num_classes=10, width=0.25),
         lambda: zoo.resnet50(num_classes=10, resolution=64, width=0.25)),
    ],
    ids=["mobilenet_v2-0.5", "mobilenet_v2-1.4", "mobilenet_v1-0.25", "mobilenet_v1-0.75",
         "resnet18", "resnet18-0.5", "resnet50-0.25"],
)  # fmt: skip
def test_width_resolution_and_classes_match_zoo(make_model, make_table) -> None:
    table = make_table()
    traced = trace(make_model(), _image(int(table.in_h[0])))
    np.testing.assert_array_equal(traced.workload.kernel_array(), table.kernel_array())
    assert traced.workload.total_macs == table.total_macs
    assert traced.names == table.names


def test_model_module_names_are_torchvision_style() -> None:
    v2 = dict(mobilenet_v2().named_modules())
    for name in ("features.0.0", "features.1.conv.0.0", "features.1.conv.1",
                 "features.2.conv.0.0", "features.2.conv.1.0", "features.2.conv.2",
                 "features.18.0", "classifier.1"):  # fmt: skip
        assert name in v2, name
    v1 = dict(mobilenet_v1().named_modules())
    for name in ("conv1.0", "features.0.0", "features.0.3", "features.12.3", "classifier.0"):
        assert name in v1, name
    r50 = dict(resnet50().named_modules())
    for name in ("conv1", "layer1.0.conv1", "layer1.0.conv3", "layer1.0.downsample.0", "fc"):
        assert name in r50, name
    assert isinstance(r50["layer1.0.downsample.0"], nn.Conv2d)


def test_mobilenet_v2_rows_first_read_image_and_kinds() -> None:
    traced = trace(mobilenet_v2(num_classes=10), _image(32))
    table = traced.workload
    assert table.reads_image.tolist() == [True] + [False] * (len(table) - 1)
    assert table.names[0] == "features.0.0"
    assert table.kind[-1] == LayerKind.LINEAR and table.names[-1] == "classifier.1"
    assert table.cout[-1] == 10
    depthwise = [
        n for n, k in zip(table.names, table.kind, strict=True) if k == LayerKind.DEPTHWISE
    ]
    assert len(depthwise) == 17
    assert all(n.endswith(("conv.0.0", "conv.1.0")) for n in depthwise)


def test_resnet_width_options_give_grouped_and_wide_layers() -> None:
    resnext = trace(resnet50(num_classes=10, groups=32, width_per_group=4), _image(32))
    grouped = resnext.workload.kind == LayerKind.GROUPED
    assert int(grouped.sum()) == 16
    assert set(resnext.workload.groups[grouped].tolist()) == {32}
    wide = trace(resnet50(num_classes=10, width_per_group=128), _image(32)).workload
    assert wide.cout[wide.names.index("layer1.0.conv1")] == 128


# ---------------------------------------------------------------------------- small models
class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 1))
        self.skip = nn.Conv2d(8, 8, 1)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.body(x) + self.skip(x)
        return self.head(x.mean((2, 3)))


def test_residual_model_rows_in_execution_order() -> None:
    traced = trace(Residual(), _image(16))
    table = traced.workload
    assert table.names == ("stem", "body.0", "body.2", "skip", "head")
    assert traced.names == table.names
    assert len(traced) == 5
    model_modules = dict(Residual().named_modules())
    assert [type(m) for m in traced.modules] == [type(model_modules[n]) for n in table.names]
    assert table[0] == table[0].__class__(
        "stem", LayerKind.CONV, 3, 8, 3, 3, 2, 1, 1, 16, 16, 8, 8, reads_image=True
    )
    assert _column(traced, "in_h") == [16, 8, 8, 8, 1]
    assert table.kind.tolist() == [LayerKind.CONV] * 4 + [LayerKind.LINEAR]
    assert table.batch is None
    assert table.name == "Residual"
    assert trace(Residual(), _image(16), name="res").workload.name == "res"


def test_modules_are_the_model_objects() -> None:
    model = Residual()
    traced = trace(model, _image(16))
    assert traced.modules[0] is model.stem
    assert traced.modules[1] is model.body[0]
    assert traced.modules[-1] is model.head


def test_batch_size_does_not_change_per_image_shapes() -> None:
    one = trace(Residual(), _image(16, batch=1)).workload
    four = trace(Residual(), _image(16, batch=4)).workload
    assert one == four


class Grouped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.grouped = nn.Conv2d(16, 32, 3, stride=2, padding=1, groups=4)
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.dw_mult = nn.Conv2d(32, 64, 3, padding=1, groups=32)  # channel multiplier 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dw_mult(self.dw(self.grouped(self.conv(x))))


def test_grouped_depthwise_kinds() -> None:
    table = trace(Grouped(), _image(16)).workload
    assert table.kind.tolist() == [
        LayerKind.CONV, LayerKind.GROUPED, LayerKind.DEPTHWISE, LayerKind.GROUPED
    ]  # fmt: skip
    assert table.groups.tolist() == [1, 4, 32, 32]
    assert table.macs.tolist() == [
        16 * 16 * 16 * 3 * 9,
        8 * 8 * 32 * 4 * 9,
        8 * 8 * 32 * 1 * 9,
        8 * 8 * 64 * 1 * 9,
    ]
    assert table.params.tolist() == [16 * 3 * 9, 32 * 4 * 9, 32 * 9, 64 * 9]


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = nn.Conv2d(8, 8, 3, padding=1)
        self.alias = self.block  # the same module under a second name
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.alias(self.block(self.stem(x)))
        return self.fc(x.mean((2, 3)))


def test_shared_module_raises_by_default() -> None:
    with pytest.raises(TraceError, match=r"'block' \(Conv2d\) 2 times.*shared='rows'"):
        trace(Shared(), _image(8))


def test_shared_module_message_takes_the_callers_hint() -> None:
    match = r"must run once per forward pass, got 'block' \(Conv2d\) 2 times; use copies$"
    with pytest.raises(TraceError, match=match):
        trace(Shared(), _image(8), hint="use copies")


def test_shared_module_rows_mode() -> None:
    model = Shared()
    traced = trace(model, _image(8), shared="rows")
    assert traced.names == ("stem", "block#1", "block#2", "fc")
    assert traced.modules[1] is traced.modules[2] is model.block
    assert traced.workload.macs[1] == traced.workload.macs[2]


def test_bad_shared_mode() -> None:
    with pytest.raises(HaqsearchError, match="'shared' must be one of"):
        trace(Shared(), _image(8), shared="first")  # type: ignore[arg-type]


class Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleDict(
            {
                "a": nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()),
                "b": nn.ModuleList([nn.Sequential(nn.Sequential(nn.Conv2d(4, 6, 1)))]),
            }
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(6 * 4 * 4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks["a"](x)
        x = self.blocks["b"][0](x)
        return self.head(x)


def test_nested_containers_use_qualified_names() -> None:
    table = trace(Nested(), _image(4)).workload
    assert table.names == ("blocks.a.0", "blocks.b.0.0.0", "head.1")
    assert table.cin[-1] == 96 and table.kind[-1] == LayerKind.LINEAR


class DataDependent(nn.Module):
    """Not fx-traceable: the branch depends on the input's values."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.c = nn.Conv2d(4, 4, 5, padding=2)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a(x)
        x = self.b(x) if x.sum() > 0 else self.c(x)
        for _ in range(int(x.shape[-1]) // 4):  # shape-dependent loop
            x = torch.relu(x)
        return self.fc(x.mean((2, 3)))


def test_fx_untraceable_model_traces_the_branch_taken() -> None:
    model = DataDependent()
    with pytest.raises(Exception):  # noqa: B017 - whatever fx raises
        torch.fx.symbolic_trace(model)
    x = _image(8).abs()
    with torch.no_grad():
        branch = "b" if model.a(x).sum() > 0 else "c"
    assert trace(model, x).names == ("a", branch, "fc")


class Signal(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 8, 5, stride=2, padding=2)
        self.valid = nn.Conv1d(8, 8, 3)
        self.same = nn.Conv1d(8, 8, 4, padding="same")
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.same(self.valid(self.conv(x))).mean(-1))


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_conv1d_rows() -> None:
    x = torch.randn(1, 2, 64)
    traced = trace(Signal(), x)
    rows = list(traced.workload)
    conv, valid, same = rows[:3]
    # padding folded into the input width: 64 + 2 + 2
    assert (conv.kind, conv.kh, conv.kw, conv.stride, conv.pad) == (LayerKind.CONV, 1, 5, 2, 0)
    assert (conv.in_h, conv.in_w, conv.out_h, conv.out_w) == (1, 68, 1, 32)
    assert conv.reads_image
    assert (valid.pad, valid.in_w, valid.out_w) == (0, 32, 30)
    assert (same.kw, same.in_w, same.out_w) == (4, 33, 30)  # even kernel: 1 before, 2 after
    assert [r.macs for r in rows[:3]] == [32 * 8 * 2 * 5, 30 * 8 * 8 * 3, 30 * 8 * 8 * 4]
    assert rows[3].kind == LayerKind.LINEAR


def test_conv2d_unequal_padding_is_folded_and_exact() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, (3, 5), padding=(1, 2)), nn.Conv2d(4, 4, 3, padding=1))
    rows = list(trace(model, _image(10)).workload)
    assert (rows[0].kh, rows[0].kw, rows[0].pad, rows[0].in_h, rows[0].in_w) == (3, 5, 0, 12, 14)
    assert (rows[0].out_h, rows[0].out_w) == (10, 10)
    assert rows[0].macs == 10 * 10 * 4 * 3 * 15
    assert (rows[1].pad, rows[1].in_h) == (1, 10)


def test_linear_on_tokens_is_a_1x1_conv_over_the_token_map() -> None:
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    table = trace(model, torch.randn(2, 3, 5, 16)).workload
    assert table.kind.tolist() == [LayerKind.CONV, LayerKind.CONV]
    assert (table.in_h.tolist(), table.in_w.tolist()) == ([1, 1], [15, 15])
    assert table.macs.tolist() == [15 * 16 * 32, 15 * 32 * 8]
    flat = trace(model, torch.randn(7, 16)).workload
    assert flat.kind.tolist() == [LayerKind.LINEAR, LayerKind.LINEAR]
    assert flat.macs.tolist() == [16 * 32, 32 * 8]
    assert not flat.reads_image.any()


def test_root_module_and_tuple_input() -> None:
    traced = trace(nn.Linear(4, 2), (torch.randn(1, 4),))
    assert traced.names == ("Linear",)


def test_example_input_view_reads_image_only_for_first_conv() -> None:
    class TwoReaders(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3, padding=1)
            self.b = nn.Conv2d(3, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x.detach()) + self.b(x)

    assert trace(TwoReaders(), _image(8)).workload.reads_image.tolist() == [True, False]

    class Normalised(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x * 2)

    assert trace(Normalised(), _image(8)).workload.reads_image.tolist() == [False]


# ---------------------------------------------------------------------------- errors
class NoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(3)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.relu(self.bn(x)))


def test_model_without_quantizable_layers_raises() -> None:
    with pytest.raises(HaqsearchError, match=r"model 'NoLayers' must have at least one quantiz"):
        trace(NoLayers(), _image(8))
    assert issubclass(HaqsearchError, ValueError)


def test_quantizable_layers_that_never_run_raise() -> None:
    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    with pytest.raises(TraceError, match=r"model 'Unused' has 1 quantizable layer\(s\) but none"):
        trace(Unused(), _image(8))


def test_dilation_and_unequal_stride_raise_naming_the_module() -> None:
    dilated = nn.Sequential(nn.Conv2d(3, 4, 3, padding=2, dilation=2))
    with pytest.raises(TraceError, match=r"module '0' \(Conv2d\) dilation must be 1.*\(2, 2\)"):
        trace(dilated, _image(8))
    strided = nn.Sequential(nn.Identity(), nn.Conv2d(3, 4, 3, stride=(1, 2)))
    with pytest.raises(TraceError, match=r"module '1' \(Conv2d\) stride must be equal"):
        trace(strided, _image(8))


def test_failing_forward_and_bad_arguments_raise() -> None:
    with pytest.raises(TraceError, match=r"model 'Residual' must run on the example input"):
        trace(Residual(), torch.randn(1, 5, 8, 8))
    with pytest.raises(TraceError, match=r"'model' must be a torch\.nn\.Module"):
        trace("resnet", _image(8))  # type: ignore[arg-type]
    with pytest.raises(TraceError, match="'example_input' must be a tensor or a tuple"):
        trace(Residual(), [_image(8)])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- no side effects
@pytest.mark.parametrize("training", [True, False])
def test_model_is_unchanged(training: bool) -> None:
    model = mobilenet_v2(width=0.35, num_classes=10)
    model.train(training)
    model.features[3].eval()  # a mixed flag must survive too
    flags = {n: m.training for n, m in model.named_modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    trace(model, _image(32))
    assert {n: m.training for n, m in model.named_modules()} == flags
    after = model.state_dict()
    assert state.keys() == after.keys()
    assert all(torch.equal(state[k], after[k]) for k in state)  # BN stats untouched
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


def test_hooks_removed_after_failure() -> None:
    model = Residual()
    model.train()
    with pytest.raises(TraceError):
        trace(model, torch.randn(1, 5, 8, 8))
    assert model.training and model.stem.training
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_grad_mode_and_public_api() -> None:
    assert torch.is_grad_enabled()
    trace(Residual(), _image(8))
    assert torch.is_grad_enabled()
    assert set(haqsearch.__all__) >= {"trace", "Traced", "HaqsearchError"}
