"""The built-in data and models, and TorchAccuracyOracle."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from haqsearch.accuracy import TorchAccuracyOracle
from haqsearch.data import Batches, as_batches, check_batch, digits
from haqsearch.errors import HaqsearchError
from haqsearch.models.digits import BUILTIN_MODELS, load_builtin, pretrained
from haqsearch.quant import quantize
from haqsearch.signs import input_signs
from haqsim.oracle import AccuracyOracle

UNIFORM = [8, 6, 5, 4, 3, 2]
NOISE = 0.01  # accuracy may rise by this much from one bit width to the next lower one


@pytest.fixture(scope="module")
def cnn():
    return load_builtin("digits_cnn")


@pytest.fixture(scope="module")
def oracle(cnn):
    return TorchAccuracyOracle(
        cnn.model, cnn.train_data, cnn.val_data, finetune_steps=10, lr=1e-2, seed=0
    )


def _uniform(n: int, bits: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full(n, bits, np.int64), np.full(n, bits, np.int64)


# ----------------------------------------------------------------------------- data and models


def test_digits_split_and_shapes():
    train, val = digits()
    assert len(train.inputs) + len(val.inputs) == 1797
    assert len(val.inputs) == 540
    assert train.sample_shape == (1, 8, 8) and val.labels.dtype == torch.int64
    assert abs(float(train.inputs.mean())) < 1e-4 and float(train.inputs.std()) == pytest.approx(
        1, abs=1e-4
    )
    assert sorted(val.labels.unique().tolist()) == list(range(10))
    _, val32 = digits(32)
    assert val32.sample_shape == (1, 32, 32) and torch.equal(val32.labels, val.labels)
    x, y = next(iter(val))
    assert x.shape == (64, 1, 8, 8) and y.shape == (64,)
    with pytest.raises(HaqsearchError, match="image_size must be >= 8, got 4"):
        digits(4)


def test_batches_shuffle_follows_torch_seed():
    train, _ = digits()
    torch.manual_seed(3)
    a = next(iter(train))[1]
    torch.manual_seed(3)
    b = next(iter(train))[1]
    assert torch.equal(a, b)


def test_as_batches_accepts_datasets_loaders_and_arrays():
    x, y = torch.randn(10, 3), torch.arange(10)
    from_dataset = list(as_batches(TensorDataset(x, y), batch_size=4))
    assert [len(b[1]) for b in from_dataset] == [4, 4, 2]
    from_loader = list(as_batches(DataLoader(TensorDataset(x, y), batch_size=5)))
    assert len(from_loader) == 2
    from_numpy = list(as_batches([(x.numpy(), y.numpy())]))
    assert isinstance(from_numpy[0][0], torch.Tensor)
    with pytest.raises(HaqsearchError, match="must be an iterable"):
        as_batches(42)
    with pytest.raises(HaqsearchError, match=r"data batch 0 must be an \(inputs, labels\) pair"):
        list(as_batches([x]))


def test_check_batch_messages():
    x = torch.randn(4, 1, 8, 8)
    check_batch(x, torch.zeros(4, dtype=torch.long), (1, 8, 8))
    with pytest.raises(HaqsearchError, match=r"val batch 2: inputs must have shape \(N, 1, 8, 8\)"):
        check_batch(x.flatten(1), None, (1, 8, 8), where="val batch 2")
    with pytest.raises(HaqsearchError, match="labels must be integer class indices"):
        check_batch(x, torch.zeros(4), (1, 8, 8))
    with pytest.raises(HaqsearchError, match=r"labels must be in \[0, 10\), got values in"):
        check_batch(x, torch.tensor([0, 1, 2, 10]), None, n_classes=10)


def test_builtin_cnn_accuracy_and_cache(cnn):
    assert cnn.float_accuracy >= 0.97
    assert cnn.path.exists()
    again = load_builtin("digits_cnn")
    assert again.train_seconds == 0.0  # loaded from the cache, not retrained
    for k, v in cnn.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k])
    assert isinstance(pretrained("digits_cnn"), nn.Module)
    assert BUILTIN_MODELS["digits_cnn"].cache_key().startswith("digits_cnn-")
    with pytest.raises(HaqsearchError, match="built-in model name must be one of"):
        load_builtin("resnet9000")


@pytest.mark.slow
def test_builtin_mobilenet_accuracy_and_oracle():
    mbv2 = load_builtin("digits_mobilenet")
    assert mbv2.float_accuracy >= 0.95
    o = TorchAccuracyOracle(
        mbv2.model, mbv2.train_data, mbv2.val_data, finetune_steps=0, eval_batches=4
    )
    assert o.n_layers == 17
    kinds = o.workload.kind.tolist()
    assert kinds.count(1) == 5  # five depthwise convolutions
    assert o(*_uniform(o.n_layers, 8)) >= o.reference_accuracy - 0.01


# ----------------------------------------------------------------------------- the oracle


def test_oracle_follows_protocol_and_trace(oracle, cnn):
    assert isinstance(oracle, AccuracyOracle)
    assert oracle.n_layers == 4
    assert oracle.layer_names == ("features.0", "features.3", "features.7", "classifier")
    assert list(oracle.workload.names) == list(oracle.layer_names)
    assert oracle.reference_accuracy == pytest.approx(cnn.float_accuracy)


def test_accuracy_falls_monotonically_with_bits(oracle):
    acc = {b: oracle(*_uniform(oracle.n_layers, b)) for b in UNIFORM}
    assert all(0.0 <= v <= 1.0 for v in acc.values())
    assert acc[8] >= oracle.reference_accuracy - 0.005  # 8-bit within 0.5 point of float
    for hi, lo in itertools.pairwise(UNIFORM):
        assert acc[lo] <= acc[hi] + NOISE, acc
    assert acc[2] < acc[8] - 0.01, acc  # 2 bits clearly hurts


def test_cache_hits_and_timing(oracle):
    w, a = np.array([8, 4, 4, 8]), np.array([8, 4, 4, 8])
    first = oracle(w, a)
    timing = dict(oracle.last_timing)
    assert set(timing) == {"calibration_s", "finetune_s", "evaluation_s", "total_s"}
    assert all(v > 0 for v in timing.values())
    assert timing["total_s"] == pytest.approx(
        timing["calibration_s"] + timing["finetune_s"] + timing["evaluation_s"]
    )
    evaluations, calls = oracle.n_evaluations, oracle.n_calls
    assert oracle(list(w), tuple(a)) == first  # any sequence type hits the same entry
    assert oracle.n_evaluations == evaluations and oracle.n_calls == calls + 1
    assert oracle.last_timing == timing
    assert oracle.timing["total_s"] >= timing["total_s"]


def test_oracle_is_deterministic_under_a_seed(cnn):
    w, a = np.array([6, 3, 3, 5]), np.array([8, 3, 2, 4])

    def run(seed: int, warm_up: bool = False) -> float:
        o = TorchAccuracyOracle(
            cnn.model, cnn.train_data, cnn.val_data, finetune_steps=5, lr=1e-2, seed=seed
        )
        if warm_up:  # another policy first: results must not depend on the call order
            o(np.full(4, 2), np.full(4, 2))
        return o(w, a)

    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    assert run(0) == run(0, warm_up=True)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched


def test_oracle_leaves_model_untouched(cnn):
    model = copy.deepcopy(cnn.model).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    o = TorchAccuracyOracle(model, cnn.train_data, cnn.val_data, finetune_steps=3, eval_batches=2)
    o(*_uniform(o.n_layers, 3))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert model.training


def test_oracle_accepts_dataloaders_and_generators(cnn):
    train = DataLoader(TensorDataset(cnn.train_data.inputs, cnn.train_data.labels), 64, True)
    val_gen = ((x, y) for x, y in cnn.val_data)  # one-shot iterator
    o = TorchAccuracyOracle(cnn.model, train, val_gen, finetune_steps=2, eval_batches=3)
    assert len(o.val_data) == 3
    assert 0.9 < o(*_uniform(o.n_layers, 8)) <= 1.0
    assert o(*_uniform(o.n_layers, 8)) == o(*_uniform(o.n_layers, 8))


@pytest.mark.parametrize(
    ("w_bits", "a_bits", "match"),
    [
        ([8, 8, 8], [8, 8, 8, 8], r"w_bits must have one entry per quantizable layer \(4\)"),
        ([8, 8, 8, 8], [8, 8, 8, 17], r"layer 3 'classifier' a_bits must be in \[1, 8\]"),
        ([-1, 8, 8, 8], [8, 8, 8, 8], r"layer 0 'features.0' w_bits must be in .*, got -1"),
    ],
)
def test_oracle_rejects_bad_policies(oracle, w_bits, a_bits, match):
    calls = oracle.n_calls
    with pytest.raises(HaqsearchError, match=match):
        oracle(np.array(w_bits), np.array(a_bits))
    assert oracle.n_calls == calls


def test_oracle_rejects_bad_data_and_options(cnn):
    before = {k: v.clone() for k, v in cnn.model.state_dict().items()}
    flat_val = [(x.flatten(1), y) for x, y in cnn.val_data]
    with pytest.raises(HaqsearchError, match=r"val_data batch 0: inputs must have shape \(N, 1, 8"):
        TorchAccuracyOracle(cnn.model, cnn.train_data, flat_val)
    flat_train = Batches(cnn.train_data.inputs.flatten(1), cnn.train_data.labels)
    with pytest.raises(HaqsearchError, match=r"train_data batch 0: inputs must have shape"):
        TorchAccuracyOracle(cnn.model, flat_train, cnn.val_data)
    with pytest.raises(HaqsearchError, match="val_data must yield at least one"):
        TorchAccuracyOracle(cnn.model, cnn.train_data, [])
    with pytest.raises(HaqsearchError, match="finetune_steps must be >= 0, got -1"):
        TorchAccuracyOracle(cnn.model, cnn.train_data, cnn.val_data, finetune_steps=-1)
    with pytest.raises(HaqsearchError, match="device must be 'auto' or a torch device"):
        TorchAccuracyOracle(cnn.model, cnn.train_data, cnn.val_data, device="tpu:9")
    for k, v in cnn.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not cnn.model.training


def _toy_data(n: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(n, 1, 4, 4, generator=g), torch.randint(0, 2, (n,), generator=g))]


def test_oracle_rejects_model_without_quantizable_layers_and_leaves_it():
    model = nn.Sequential(nn.BatchNorm2d(1), nn.Flatten()).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(HaqsearchError, match="must have at least one quantizable layer"):
        TorchAccuracyOracle(model, _toy_data(), _toy_data())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert model.training


class _Reused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 16)
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.fc(torch.relu(self.fc(x.flatten(1))))))


def test_oracle_rejects_module_run_twice_with_a_fix():
    match = r"'fc' \(Linear\) 2 times; give each call its own module instance"
    with pytest.raises(HaqsearchError, match=match):
        TorchAccuracyOracle(_Reused(), _toy_data(), _toy_data(), finetune_steps=0)


def test_oracle_finds_input_signs_once_and_results_match_quantize(cnn, monkeypatch):
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return input_signs(*args, **kwargs)

    monkeypatch.setattr("haqsearch.accuracy.input_signs", counted)
    monkeypatch.setattr("haqsearch.quant.input_signs", counted)
    o = TorchAccuracyOracle(cnn.model, cnn.train_data, cnn.val_data, finetune_steps=0,
                            eval_batches=2, calibration_batches=1)  # fmt: skip
    policies = [_uniform(4, 8), _uniform(4, 3), (np.array([8, 3, 4, 6]), np.array([8, 4, 3, 5]))]
    accuracies = [o(w, a) for w, a in policies]
    assert len(calls) == 1 and o.n_evaluations == 3
    for (w, a), accuracy in zip(policies, accuracies, strict=True):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(o.seed)
            q = quantize(o.model, w, a, o.train_data, example_input=o._example,
                         calibration_batches=1, **o.quant_options)  # fmt: skip
        assert o._evaluate(q) == accuracy  # signs found per call, on the folded copy: the same
    assert len(calls) == 1 + len(policies)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_oracle_on_cuda_matches_cpu(cnn):
    kwargs = {"finetune_steps": 3, "eval_batches": 4, "lr": 1e-2, "seed": 0}
    cpu = TorchAccuracyOracle(cnn.model, cnn.train_data, cnn.val_data, device="cpu", **kwargs)
    gpu = TorchAccuracyOracle(cnn.model, cnn.train_data, cnn.val_data, device="cuda", **kwargs)
    assert gpu.device.type == "cuda"
    assert next(gpu.model.parameters()).is_cuda
    assert gpu.reference_accuracy == pytest.approx(cpu.reference_accuracy, abs=2 / 256)
    for w, a in [_uniform(4, 8), _uniform(4, 4), (np.array([8, 3, 4, 6]), np.array([8, 4, 3, 5]))]:
        assert gpu(w, a) == pytest.approx(cpu(w, a), abs=0.03)


def test_learned_clip_and_fine_tune_help_at_two_bits(cnn):
    kwargs = {"eval_batches": 4, "seed": 0}
    plain = TorchAccuracyOracle(cnn.model, cnn.train_data, cnn.val_data, finetune_steps=0, **kwargs)
    tuned = TorchAccuracyOracle(
        cnn.model, cnn.train_data, cnn.val_data, finetune_steps=20, lr=1e-2, learn_clip=True,
        **kwargs,
    )  # fmt: skip
    policy = _uniform(4, 2)
    assert tuned(*policy) > plain(*policy)
