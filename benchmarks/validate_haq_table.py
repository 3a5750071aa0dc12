"""Check the bit-serial model against HAQ's released MobileNet-V2 latency table.

HAQ (mit-han-lab/haq) published one cost table: MobileNet-V2 (224 x 224, width 1.0, a 1280 -> 100
classifier), batch 16, its cloud bit-serial accelerator, in cycles, indexed
``[layer, w_bits - 1, a_bits - 1]``. This script prices the same 53 layers x 64 (w, a) pairs with
``haqsim`` on the ``bismo-cloud`` preset and prints the rank correlation, the unit scale and the
per-layer agreement.

Usage:
    python benchmarks/validate_haq_table.py PATH/qmobilenetv2_imagenet100_batch16_latency_table.npy
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np

from haqsim import zoo
from haqsim.cost import CostTable
from haqsim.errors import HaqsimError
from haqsim.hardware import Hardware, preset

#: HAQ's table: 53 MobileNet-V2 layers x 8 weight bitwidths x 8 activation bitwidths.
SHAPE = (53, 8, 8)


@dataclass
class Args:
    table: str
    hardware: str = "bismo-cloud"


def rank(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), as Spearman's rho needs."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), np.float64)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0
        i = j + 1
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(rank(x), rank(y))[0, 1])


def load_reference(path: str) -> np.ndarray:
    """HAQ's table as ``int64`` cycles.

    Raises:
        HaqsimError: ``path`` is unreadable, not a ``.npy`` array, or not a
            :data:`SHAPE`-shaped table of positive, finite cycle counts.
    """
    try:
        ref = np.load(path, allow_pickle=False)
    except OSError as exc:
        raise HaqsimError(f"table {path!r} must be a readable file: {exc}") from None
    except (ValueError, EOFError):
        raise HaqsimError(
            f"table {path!r} must be a numeric array in .npy format (numpy.save), got a file "
            "numpy cannot load as one"
        ) from None
    if not isinstance(ref, np.ndarray):  # an .npz archive
        raise HaqsimError(f"table {path!r} must be a single .npy array, got {type(ref).__name__}")
    if ref.shape != SHAPE:
        raise HaqsimError(f"table {path!r} must have shape {SHAPE}, got {ref.shape}")
    if ref.dtype.kind not in "iuf":
        raise HaqsimError(f"table {path!r} must hold numbers of cycles, got dtype {ref.dtype}")
    if not np.all(np.isfinite(ref) & (ref > 0)):
        raise HaqsimError(f"table {path!r} must hold positive cycle counts, got min {ref.min()}")
    return ref.astype(np.int64)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("table", help="path to HAQ's .npy latency table")
    p.add_argument("--hardware", default=Args.hardware)
    args = Args(**vars(p.parse_args(argv)))

    try:
        ref = load_reference(args.table)
        hardware: Hardware = preset(args.hardware)
    except HaqsimError as exc:
        print(f"validate_haq_table: error: {exc}", file=sys.stderr)
        return 2
    wl = zoo.mobilenet_v2(num_classes=100)
    ours = CostTable.build(wl, hardware, batch=16, cache=False).cycles
    x, y = ours.ravel().astype(float), ref.ravel().astype(float)
    rho = spearman(x, y)
    pearson = float(np.corrcoef(x, y)[0, 1])
    log_ratio = np.log(x / y)
    print(f"haqsim {args.hardware} vs HAQ's released table: 53 layers x 64 (w, a) pairs")
    print(f"  Spearman rank correlation (all 3392 entries): {rho:.4f}")
    print(f"  Pearson correlation:                          {pearson:.4f}")
    print(f"  unit scale, geometric mean ours/HAQ:          {np.exp(log_ratio.mean()):.4f}")
    print(f"  median |ours/HAQ - 1|:                        {np.median(np.abs(x / y - 1)):.2%}")
    for bits in (8, 4, 2):
        o = int(ours[:, bits - 1, bits - 1].sum())
        r = int(ref[:, bits - 1, bits - 1].sum())
        print(f"  total W{bits}A{bits}: ours {o:>12,}  HAQ {r:>12,}  ratio {o / r:.4f}")
    per_layer = [spearman(ours[i].ravel(), ref[i].ravel()) for i in range(53)]
    print(
        f"  per-layer rank correlation over the 64 pairs: min {min(per_layer):.4f}, "
        f"median {np.median(per_layer):.4f}"
    )
    print("\n  layer  name                         kind       ours W8A8    HAQ W8A8  ratio")
    for i in range(53):
        o, r = int(ours[i, 7, 7]), int(ref[i, 7, 7])
        kind = ["conv", "depthwise", "grouped", "linear"][int(wl.kind[i])]
        print(f"  {i:5d}  {wl.names[i]:<28} {kind:<9} {o:>11,} {r:>11,}  {o / r:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
