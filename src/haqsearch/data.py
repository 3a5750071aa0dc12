"""The built-in dataset (scikit-learn's digits) and helpers for user data.

Data enters haqsearch as *batches*: any iterable of ``(inputs, labels)`` pairs, such as a
:class:`torch.utils.data.DataLoader`. A map-style dataset (``len`` and ``__getitem__`` returning
one ``(input, label)`` sample) is batched for you, and numpy arrays are converted to tensors.
Everything here runs on the CPU in well under a second; nothing is downloaded (the digits data set
ships with scikit-learn).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from haqsearch.errors import HaqsearchError

__all__ = [
    "DIGITS_CLASSES",
    "Batches",
    "as_batches",
    "check_batch",
    "digits",
    "first_batch",
    "materialize",
]

#: Number of classes of the digits data set.
DIGITS_CLASSES = 10

Batch = tuple[torch.Tensor, torch.Tensor]


class Batches:
    """A re-iterable sequence of ``(inputs, labels)`` batches over two tensors.

    Each ``iter()`` starts a new epoch. With ``shuffle=True`` the order is drawn from torch's
    global random generator (like a :class:`~torch.utils.data.DataLoader` without a generator), so
    ``torch.manual_seed`` before iterating makes the order reproducible.

    Args:
        inputs: Inputs, first dimension the sample.
        labels: Integer class labels, shape ``(n,)``.
        batch_size: Samples per batch; the last batch may be smaller.
        shuffle: Draw a fresh random order at every epoch.

    Raises:
        HaqsearchError: If the tensors disagree in length or the batch size is not positive.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int = 64,
        *,
        shuffle: bool = False,
    ) -> None:
        if len(inputs) != len(labels):
            raise HaqsearchError(
                f"Batches inputs and labels must have the same length, "
                f"got {len(inputs)} and {len(labels)}"
            )
        if batch_size < 1:
            raise HaqsearchError(f"Batches batch_size must be >= 1, got {batch_size}")
        self.inputs = inputs
        self.labels = labels
        self.batch_size = int(batch_size)
        self.shuffle = shuffle

    def __len__(self) -> int:
        """Number of batches per epoch."""
        return -(-len(self.inputs) // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        """Yield one epoch of batches."""
        n = len(self.inputs)
        order = torch.randperm(n) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            if order is None:
                idx: slice | torch.Tensor = slice(start, start + self.batch_size)
            else:
                idx = order[start : start + self.batch_size]
            yield self.inputs[idx], self.labels[idx]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one input sample."""
        return tuple(self.inputs.shape[1:])

    def __repr__(self) -> str:
        return (
            f"Batches(n={len(self.inputs)}, sample_shape={self.sample_shape}, "
            f"batch_size={self.batch_size}, shuffle={self.shuffle})"
        )


def digits(
    image_size: int = 8,
    *,
    val_fraction: float = 0.3,
    seed: int = 0,
    batch_size: int = 64,
) -> tuple[Batches, Batches]:
    """scikit-learn's digits data set: 1,797 grey 8 x 8 images of 10 digits, split train/val.

    The split is stratified and fixed by ``seed``. Pixels (0 to 16) are standardised with the
    training set's mean and standard deviation, so inputs are signed. With ``image_size`` above 8
    the images are upsampled with bilinear interpolation (e.g. 32 for the MobileNet-style model).

    Args:
        image_size: Side of the square images returned, 8 or more.
        val_fraction: Fraction of the samples held out for validation, in (0, 1).
        seed: Seed of the train/val split.
        batch_size: Batch size of both returned :class:`Batches`.

    Returns:
        ``(train, val)``: the training batches (shuffled at every epoch) and the validation batches
        (fixed order). Inputs are ``float32`` of shape ``(n, 1, image_size, image_size)``, labels
        ``int64`` of shape ``(n,)``.

    Raises:
        HaqsearchError: If ``image_size`` or ``val_fraction`` is out of range.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if image_size < 8:
        raise HaqsearchError(f"digits image_size must be >= 8, got {image_size}")
    if not 0.0 < val_fraction < 1.0:
        raise HaqsearchError(f"digits val_fraction must be in (0, 1), got {val_fraction}")
    bunch = load_digits()
    x = bunch.images.astype(np.float32)
    y = bunch.target.astype(np.int64)
    x_tr, x_va, y_tr, y_va = train_test_split(
        x, y, test_size=val_fraction, random_state=seed, stratify=y
    )
    mean, std = float(x_tr.mean()), float(x_tr.std())

    def to_tensor(a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy((a - mean) / std).unsqueeze(1)
        if image_size != 8:
            t = F.interpolate(
                t, size=(image_size, image_size), mode="bilinear", align_corners=False
            )
        return t.contiguous()

    train = Batches(to_tensor(x_tr), torch.from_numpy(y_tr), batch_size, shuffle=True)
    val = Batches(to_tensor(x_va), torch.from_numpy(y_va), batch_size, shuffle=False)
    return train, val


def _to_tensor(value: Any, what: str, where: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    raise HaqsearchError(
        f"{where}: {what} must be a torch.Tensor or numpy array, got {type(value).__name__}"
    )


def _is_map_dataset(data: Any) -> bool:
    if isinstance(data, torch.utils.data.DataLoader):
        return False
    if not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        return False
    if isinstance(data, (list, tuple)):
        # A list of batches, unless its items are single (input, label) samples.
        return len(data) > 0 and _looks_like_sample(data[0])
    return isinstance(data, torch.utils.data.Dataset)


def _looks_like_sample(item: Any) -> bool:
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        return False
    label = item[1]
    return isinstance(label, (int, np.integer)) or (
        isinstance(label, (torch.Tensor, np.ndarray)) and label.ndim == 0
    )


def as_batches(data: Any, *, batch_size: int = 64, name: str = "data") -> Iterable[Batch]:
    """Turn user data into an iterable of ``(inputs, labels)`` tensor batches.

    Accepts a :class:`~torch.utils.data.DataLoader`, any iterable of ``(inputs, labels)`` pairs
    (tensors or numpy arrays), or a map-style dataset of single samples (batched here, in order).
    Iterables that can be iterated again stay lazy; a one-shot iterator (a generator) is returned
    as is, so use :func:`materialize` if you need several passes.

    Args:
        data: The data.
        batch_size: Batch size used when ``data`` is a dataset of single samples.
        name: What to call the data in error messages.

    Returns:
        An iterable whose items are ``(inputs, labels)`` tensor pairs.

    Raises:
        HaqsearchError: If ``data`` is not iterable.
    """
    if _is_map_dataset(data):
        return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    if not isinstance(data, Iterable):
        raise HaqsearchError(
            f"{name} must be an iterable of (inputs, labels) batches or a DataLoader, "
            f"got {type(data).__name__}"
        )
    return _Converted(data, name)


class _Converted:
    """Iterable wrapper converting each item to a ``(Tensor, Tensor)`` pair."""

    def __init__(self, data: Iterable[Any], name: str) -> None:
        self.data = data
        self.name = name

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Batch]:
        for i, item in enumerate(self.data):
            where = f"{self.name} batch {i}"
            if not (isinstance(item, (tuple, list)) and len(item) >= 2):
                raise HaqsearchError(
                    f"{where} must be an (inputs, labels) pair, got {type(item).__name__}"
                )
            yield _to_tensor(item[0], "inputs", where), _to_tensor(item[1], "labels", where)


def materialize(data: Any, *, max_batches: int | None = None, name: str = "data") -> list[Batch]:
    """Collect up to ``max_batches`` batches of ``data`` into a list (see :func:`as_batches`).

    Raises:
        HaqsearchError: If ``data`` is not iterable or yields no batch.
    """
    batches = list(itertools.islice(as_batches(data, name=name), max_batches))
    if not batches:
        raise HaqsearchError(f"{name} must yield at least one (inputs, labels) batch, got none")
    return batches


def first_batch(data: Any, *, name: str = "data") -> Batch:
    """The first ``(inputs, labels)`` batch of ``data`` (consumes it if ``data`` is an iterator).

    Raises:
        HaqsearchError: If ``data`` is not iterable or yields no batch.
    """
    return materialize(data, max_batches=1, name=name)[0]


def check_batch(
    inputs: torch.Tensor,
    labels: torch.Tensor | None,
    sample_shape: Sequence[int] | None,
    *,
    where: str = "batch",
    n_classes: int | None = None,
) -> None:
    """Check one batch: inputs of shape ``(N, *sample_shape)``, integer labels of shape ``(N,)``.

    Args:
        inputs: The batch's inputs.
        labels: Its labels, or ``None`` to check the inputs only.
        sample_shape: Expected shape of one sample, or ``None`` to accept any shape.
        where: What to call the batch in error messages (e.g. ``"calibration_data batch 3"``).
        n_classes: If given, labels must lie in ``[0, n_classes)``.

    Raises:
        HaqsearchError: Naming the batch, the rule and the value found.
    """
    if not isinstance(inputs, torch.Tensor):
        raise HaqsearchError(f"{where}: inputs must be a torch.Tensor, got {type(inputs).__name__}")
    if not inputs.is_floating_point():
        raise HaqsearchError(f"{where}: inputs must be floating point, got dtype {inputs.dtype}")
    if sample_shape is not None:
        expected = tuple(int(s) for s in sample_shape)
        if inputs.ndim != len(expected) + 1 or tuple(inputs.shape[1:]) != expected:
            want = ", ".join(["N", *map(str, expected)])
            raise HaqsearchError(
                f"{where}: inputs must have shape ({want}), got {tuple(inputs.shape)}"
            )
    if labels is None:
        return
    if not isinstance(labels, torch.Tensor):
        raise HaqsearchError(f"{where}: labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise HaqsearchError(f"{where}: labels must be integer class indices, got {labels.dtype}")
    if labels.shape != (inputs.shape[0],):
        raise HaqsearchError(
            f"{where}: labels must have shape ({inputs.shape[0]},) to match the inputs, "
            f"got {tuple(labels.shape)}"
        )
    if n_classes is not None and labels.numel():
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= n_classes:
            raise HaqsearchError(
                f"{where}: labels must be in [0, {n_classes}), got values in [{lo}, {hi}]"
            )
