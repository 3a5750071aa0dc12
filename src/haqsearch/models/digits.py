"""Small models trained on scikit-learn's digits, the built-in workloads with real accuracy.

Two models, both trained from scratch on first use (seeded, seconds on a laptop CPU) and cached:

- ``digits_cnn``: three 3 x 3 convolutions with BatchNorm and ReLU, then a linear classifier,
  on the 8 x 8 images (4 quantizable layers).
- ``digits_mobilenet``: a compact MobileNet-V2: a stride-2 stem convolution, five inverted
  residual blocks (1 x 1 expansion, 3 x 3 depthwise, linear 1 x 1 projection, identity shortcut
  where shapes allow), a final 1 x 1 convolution and a linear classifier, on the images upsampled
  to 32 x 32 (17 quantizable layers).

The trained ``state_dict`` is cached under ``$HAQSIM_CACHE_DIR`` (or ``~/.cache/haqsim``) in
``models/<name>-<hash>.pt``, the hash covering the training configuration and the model's
architecture, so a change to either retrains.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from haqsearch.data import DIGITS_CLASSES, Batches, digits
from haqsearch.errors import HaqsearchError
from haqsim.cache import cache_dir as haqsim_cache_dir

__all__ = [
    "BUILTIN_MODELS",
    "BuiltinModel",
    "Pretrained",
    "TrainConfig",
    "model_cache_dir",
    "digits_cnn",
    "digits_mobilenet",
    "load_builtin",
    "pretrained",
]


def _conv_bn(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=False))
    return nn.Sequential(*layers)


class DigitsCNN(nn.Module):
    """Small CNN for 1 x 8 x 8 digits: conv16, conv32, pool, conv64, pool, linear."""

    input_shape: tuple[int, ...] = (1, 8, 8)

    def __init__(self, width: int = 16, n_classes: int = DIGITS_CLASSES) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * w),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1, bias=False),
            nn.BatchNorm2d(4 * w),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(4 * w * 2 * 2, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(N, n_classes)``."""
        return self.classifier(torch.flatten(self.features(x), 1))


class InvertedResidual(nn.Module):
    """MobileNet-V2 block: 1 x 1 expansion (if ``expand > 1``), 3 x 3 depthwise, 1 x 1 projection.

    The projection is linear (no activation); the block adds its input when the stride is 1 and
    the channel count is unchanged.
    """

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn(cin, hidden, 1))
        layers += [
            _conv_bn(hidden, hidden, 3, stride, groups=hidden),
            _conv_bn(hidden, cout, 1, act=False),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Block output."""
        out = self.conv(x)
        return x + out if self.use_residual else out


class DigitsMobileNet(nn.Module):
    """Compact MobileNet-V2 for 1 x 32 x 32 (upsampled) digits."""

    input_shape: tuple[int, ...] = (1, 32, 32)

    #: (expansion, out channels, stride) per inverted residual block.
    blocks: tuple[tuple[int, int, int], ...] = (
        (1, 16, 1),
        (4, 24, 2),
        (4, 24, 1),
        (4, 32, 2),
        (4, 32, 1),
    )

    def __init__(self, n_classes: int = DIGITS_CLASSES, last_channels: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(1, 16, 3, stride=2)]
        cin = 16
        for expand, cout, stride in self.blocks:
            layers.append(InvertedResidual(cin, cout, stride, expand))
            cin = cout
        layers.append(_conv_bn(cin, last_channels, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last_channels, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(N, n_classes)``."""
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def digits_cnn() -> DigitsCNN:
    """A fresh (untrained) small CNN for 1 x 8 x 8 digits; see :func:`pretrained`."""
    return DigitsCNN()


def digits_mobilenet() -> DigitsMobileNet:
    """A fresh (untrained) compact MobileNet-V2 for 1 x 32 x 32 digits; see :func:`pretrained`."""
    return DigitsMobileNet()


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a built-in model is trained (every field enters the cache key).

    Attributes:
        epochs: Passes over the training split.
        lr: Peak learning rate of AdamW (cosine decay to zero).
        weight_decay: AdamW weight decay.
        batch_size: Training batch size.
        seed: Seed of the weights' initialisation and the batch order.
        split_seed: Seed of the train/val split of the digits data.
        image_size: Side of the input images (8, or larger for upsampled inputs).
    """

    epochs: int = 30
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    seed: int = 0
    split_seed: int = 0
    image_size: int = 8


@dataclasses.dataclass(frozen=True)
class BuiltinModel:
    """A registered built-in model: its constructor, input size and training recipe."""

    name: str
    factory: Callable[[], nn.Module]
    train: TrainConfig
    description: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one input sample (channels, height, width)."""
        return (1, self.train.image_size, self.train.image_size)

    def data(self, batch_size: int = 64) -> tuple[Batches, Batches]:
        """The digits ``(train, val)`` batches at this model's input size and split."""
        return digits(self.train.image_size, seed=self.train.split_seed, batch_size=batch_size)

    def cache_key(self) -> str:
        """Name plus a hash of the training configuration and the architecture."""
        arch = repr(self.factory())
        blob = json.dumps({"train": dataclasses.asdict(self.train), "arch": arch}, sort_keys=True)
        return f"{self.name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


#: The built-in models, by name.
BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "digits_cnn": BuiltinModel(
        "digits_cnn",
        digits_cnn,
        TrainConfig(epochs=30, lr=3e-3, image_size=8),
        "small CNN, 3 conv + 1 linear, 8 x 8 digits",
    ),
    "digits_mobilenet": BuiltinModel(
        "digits_mobilenet",
        digits_mobilenet,
        TrainConfig(epochs=15, lr=5e-3, image_size=32),
        "compact MobileNet-V2, 16 conv + 1 linear, 32 x 32 upsampled digits",
    ),
}


@dataclasses.dataclass
class Pretrained:
    """A trained built-in model with its data and float accuracy.

    Attributes:
        name: The model's name in :data:`BUILTIN_MODELS`.
        model: The trained model, in eval mode.
        train_data: Training batches (shuffled per epoch).
        val_data: Held-out validation batches.
        float_accuracy: Top-1 accuracy of the float model on ``val_data``, in [0, 1].
        train_seconds: Training time when it was trained (0 if only loaded from the cache).
        path: The cache file.
    """

    name: str
    model: nn.Module
    train_data: Batches
    val_data: Batches
    float_accuracy: float
    train_seconds: float
    path: Path


def model_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where trained models are cached: the argument, else the ``models`` folder of
    :func:`haqsim.cache.cache_dir` (``$HAQSIM_CACHE_DIR/models`` or ``~/.cache/haqsim/models``)."""
    if cache_dir is not None:
        return Path(cache_dir)
    return haqsim_cache_dir("models")


@torch.no_grad()
def _accuracy(model: nn.Module, batches: Batches) -> float:
    model.eval()
    correct = total = 0
    for x, y in batches:
        correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
    return correct / total


def _train(spec: BuiltinModel, train: Batches) -> nn.Module:
    cfg = spec.train
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = spec.factory()
        loader = Batches(train.inputs, train.labels, cfg.batch_size, shuffle=True)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=cfg.epochs * len(loader), pct_start=0.15
        )
        loss_fn = nn.CrossEntropyLoss()
        model.train()
        for _ in range(cfg.epochs):
            for x, y in loader:
                opt.zero_grad(set_to_none=True)
                loss_fn(model(x), y).backward()
                opt.step()
                sched.step()
    return model.eval()


def load_builtin(
    name: str, cache_dir: str | os.PathLike[str] | None = None, *, verbose: bool = False
) -> Pretrained:
    """A trained built-in model with its data and float accuracy; trains and caches on first use.

    Args:
        name: A key of :data:`BUILTIN_MODELS`.
        cache_dir: Directory of cached weights (default: see :func:`model_cache_dir`).
        verbose: Print a line when training.

    Returns:
        The :class:`Pretrained` bundle.

    Raises:
        HaqsearchError: If ``name`` is not a built-in model.
    """
    if name not in BUILTIN_MODELS:
        raise HaqsearchError(
            f"built-in model name must be one of {sorted(BUILTIN_MODELS)}, got {name!r}"
        )
    spec = BUILTIN_MODELS[name]
    train, val = spec.data()
    folder = model_cache_dir(cache_dir)
    path = folder / f"{spec.cache_key()}.pt"
    seconds = 0.0
    model = spec.factory()
    if path.exists():
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        model.eval()
    else:
        if verbose:
            print(f"training built-in model {name!r} (cached at {path})")
        t0 = time.perf_counter()
        model = _train(spec, train)
        seconds = time.perf_counter() - t0
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        os.close(fd)
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, path)  # atomic: concurrent first uses never see a partial file
    return Pretrained(name, model, train, val, _accuracy(model, val), seconds, path)


def pretrained(name: str, cache_dir: str | os.PathLike[str] | None = None) -> nn.Module:
    """A trained built-in model (eval mode); trains it on first use and caches the weights.

    Args:
        name: ``"digits_cnn"`` or ``"digits_mobilenet"`` (see :data:`BUILTIN_MODELS`).
        cache_dir: Directory of cached weights (default: see :func:`model_cache_dir`).

    Raises:
        HaqsearchError: If ``name`` is not a built-in model.
    """
    return load_builtin(name, cache_dir).model


# ------------------------------------------------------------------------------------------
# MobileNets with exactly the layer sequence of the full-size ImageNet workloads
# (haqsim.zoo.mobilenet_v1 / mobilenet_v2), narrow and on 1 x 32 x 32 digits: accuracy comes from
# these, costs from the full-size workloads (benchmarks/reproduce_haq.py).

#: Width multipliers of the sequence-matched digits MobileNets.
SEQ_V1_WIDTH = 0.25
SEQ_V2_WIDTH = 0.35


def _one_channel_stem(stem: nn.Conv2d) -> nn.Conv2d:
    """``stem`` with one input channel (grey digits); same kernel, stride, padding and outputs."""
    conv1 = nn.Conv2d(
        1,
        stem.out_channels,
        stem.kernel_size,
        stem.stride,
        stem.padding,
        groups=1,
        bias=stem.bias is not None,
    )
    nn.init.kaiming_normal_(conv1.weight, mode="fan_out")
    return conv1


def digits_mobilenet_v1_seq() -> nn.Module:
    """MobileNet-V1 (width 0.25, 10 classes) for 1 x 32 x 32 digits, untrained.

    Its 28 quantizable layers are, in order and kind, those of :func:`haqsim.zoo.mobilenet_v1`
    (stem, 13 depthwise/pointwise pairs, classifier) with the same names and strides; only the
    stem's input channels (1) and the widths differ. Global pooling handles the 1 x 1 final map.
    """
    from haqsearch.models.mobilenet import mobilenet_v1

    net = mobilenet_v1(width=SEQ_V1_WIDTH, num_classes=DIGITS_CLASSES)
    net.conv1[0] = _one_channel_stem(net.conv1[0])
    net.input_shape = (1, 32, 32)
    return net


def digits_mobilenet_v2_seq() -> nn.Module:
    """MobileNet-V2 (width 0.35, 10 classes) for 1 x 32 x 32 digits, untrained.

    Its 53 quantizable layers are, in order and kind, those of :func:`haqsim.zoo.mobilenet_v2`
    (torchvision's layer order and names, strides kept); only the stem's input channels (1) and
    the widths differ (the last 1 x 1 layer keeps 1280 channels, as in torchvision).
    """
    from haqsearch.models.mobilenet import mobilenet_v2

    net = mobilenet_v2(width=SEQ_V2_WIDTH, num_classes=DIGITS_CLASSES)
    net.features[0][0] = _one_channel_stem(net.features[0][0])
    net.input_shape = (1, 32, 32)
    return net


BUILTIN_MODELS["digits_mobilenet_v1_seq"] = BuiltinModel(
    "digits_mobilenet_v1_seq",
    digits_mobilenet_v1_seq,
    TrainConfig(epochs=15, lr=5e-3, image_size=32),
    "MobileNet-V1 x0.25 with zoo.mobilenet_v1's 28-layer sequence, 32 x 32 upsampled digits",
)
BUILTIN_MODELS["digits_mobilenet_v2_seq"] = BuiltinModel(
    "digits_mobilenet_v2_seq",
    digits_mobilenet_v2_seq,
    TrainConfig(epochs=15, lr=5e-3, image_size=32),
    "MobileNet-V2 x0.35 with zoo.mobilenet_v2's 53-layer sequence, 32 x 32 upsampled digits",
)
__all__ += ["digits_mobilenet_v1_seq", "digits_mobilenet_v2_seq"]
