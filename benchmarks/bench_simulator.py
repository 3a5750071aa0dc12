"""Simulator speed: CostTable build time, kernel vs pure-Python reference, policy throughput.

For MobileNet-V2 and ResNet-50 on every preset, prints:

* table build time (all layers x all 64 (w, a) pairs), after warm-up, on one thread and on all;
* per-layer cost: the Numba kernels (the table build above, one thread, per layer and bit pair)
  against the pure-Python reference of ``tests/reference.py`` (random layers and bit pairs of the
  same network) in the same process, and the ratio;
* ``estimate`` time per layer (one call for the whole network, one thread);
* policies per second priced by ``CostTable.evaluate`` on 100,000 random policies;
* first-call time: kernels compiled from scratch (empty Numba cache) and loaded from the cache,
  each measured in a fresh interpreter.

Usage: python benchmarks/bench_simulator.py [--policies 100000] [--ref-samples 24] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

import haqsim
from haqsim import CostTable, zoo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import reference


@dataclass
class Args:
    policies: int = 100_000
    ref_samples: int = 24
    seed: int = 0
    workloads: tuple[str, ...] = ("mobilenet_v2", "resnet50")


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def first_call_seconds(cache_dir: str) -> float:
    code = (
        "import time; t = time.perf_counter(); import haqsim; haqsim.warmup(); "
        "print(time.perf_counter() - t)"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return float(out.stdout.strip().splitlines()[-1])


def reference_seconds_per_pair(wl, hw, rng, samples: int) -> float:
    """Mean time of the pure-Python reference on ``samples`` random (layer, w, a) of ``wl``."""
    ref = (
        reference.bitfusion_layer if isinstance(hw, haqsim.BitFusionConfig)
        else reference.bitserial_layer
    )  # fmt: skip
    batch = hw.batch if wl.batch is None else wl.batch
    total = 0.0
    for i, w, a in zip(
        rng.integers(0, len(wl), samples).tolist(),
        rng.integers(1, 9, samples).tolist(),
        rng.integers(1, 9, samples).tolist(),
        strict=True,
    ):
        start = time.perf_counter()
        ref(wl[i], w, a, hw, batch)
        total += time.perf_counter() - start
    return total / samples


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--policies", type=int, default=Args.policies)
    p.add_argument("--ref-samples", type=int, default=Args.ref_samples)
    p.add_argument("--seed", type=int, default=Args.seed)
    args = Args(**vars(p.parse_args(argv)))
    rng = np.random.default_rng(args.seed)

    with tempfile.TemporaryDirectory() as cache:
        cold = first_call_seconds(cache)
        warm = first_call_seconds(cache)
    haqsim.warmup()
    threads = numba.get_num_threads()
    print(f"first call (compile + run warmup): cold {cold:.1f} s, from Numba cache {warm:.2f} s")
    print(f"numba threads available: {threads}\n")

    header = (
        f"{'workload':<13} {'preset':<15} {'layers':>6} {'build 1 thr':>11} "
        f"{f'build {threads} thr':>11} {'kernel/pair':>11} {'python/pair':>11} {'speedup':>9} "
        f"{'estimate/layer':>14} {'policies/s':>12}"
    )
    print(header)
    print("-" * len(header))
    results: dict[tuple[str, str], tuple[float, float, float]] = {}
    for wl_name in args.workloads:
        wl = zoo.get(wl_name)
        for hw_name in haqsim.preset_names():
            hw = haqsim.preset(hw_name)
            numba.set_num_threads(1)
            one = timed(lambda wl=wl, hw=hw: CostTable.build(wl, hw, cache=False))
            numba.set_num_threads(threads)
            many = timed(lambda wl=wl, hw=hw: CostTable.build(wl, hw, cache=False))
            table = CostTable.build(wl, hw, cache=False)
            kernel_pair = one / (len(wl) * 64)
            python_pair = reference_seconds_per_pair(wl, hw, rng, args.ref_samples)
            numba.set_num_threads(1)
            per_layer = timed(lambda wl=wl, hw=hw: haqsim.estimate(wl, hw, 4, 4)) / len(wl)
            numba.set_num_threads(threads)
            w = rng.integers(1, 9, (args.policies, len(wl)))
            a = rng.integers(1, 9, (args.policies, len(wl)))
            table.evaluate(w[:10], a[:10])
            ev = timed(lambda table=table, w=w, a=a: table.evaluate(w, a))
            print(
                f"{wl_name:<13} {hw_name:<15} {len(wl):>6} {one * 1e3:>9.2f}ms "
                f"{many * 1e3:>9.2f}ms "
                f"{kernel_pair * 1e6:>9.2f}us {python_pair * 1e3:>9.2f}ms "
                f"{python_pair / kernel_pair:>8.0f}x {per_layer * 1e6:>12.2f}us "
                f"{args.policies / ev:>12,.0f}"
            )
            results[wl_name, hw_name] = (one, python_pair / kernel_pair, args.policies / ev)
    print(
        "\nkernel/pair: the one-thread table build per (layer, w, a); python/pair: the reference "
        f"on {args.ref_samples}\nrandom (layer, w, a) of the same network; estimate/layer: one "
        f"thread, W4A4; policies/s: CostTable.evaluate,\n{threads} threads."
    )
    print("\ntargets:")
    if ("resnet50", "bitfusion") in results:
        build = results["resnet50", "bitfusion"][0]
        print(f"  Bit Fusion table, ResNet-50, one thread: {build:.3f} s (< 2 s: {build < 2})")
    for name, cond in (("bit-serial", False), ("Bit Fusion", True)):
        ratios = [r[1] for (_, hw), r in results.items() if ("bitfusion" in hw) == cond]
        if ratios:
            low = min(ratios)
            print(f"  {name} kernels vs reference per layer: at least {low:,.0f}x (>= 1000x: "
                  f"{low >= 1000})")  # fmt: skip
    mb = [r[2] for (wl, _), r in results.items() if wl == "mobilenet_v2"]
    if mb:
        low = min(mb)
        print(f"  MobileNet-V2 policies/s: at least {low:,.0f} (>= 5 million: {low >= 5e6})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
