"""Accuracy evaluations per minute with 1, 2, ... workers: local processes and Ray actors.

Measures :class:`haqsearch.accuracy.TorchAccuracyOracle` on a built-in model (quantize, short
fine-tune, validate: the cost of one search episode) for the same ``evaluations`` distinct random
policies:

* ``serial``: in this process, torch allowed ``--threads`` threads (default: every core), the
  baseline of the speedup; and again with one thread, for reference;
* ``process``: a :class:`haqsearch.parallel.ProcessOraclePool` of N single-threaded workers;
* ``ray``: a :class:`haqsearch.parallel.RayOraclePool` of N single-CPU actors on a local Ray
  instance (skipped if Ray is not installed, or with ``--no-ray``).

Pools are started (replicas built) and warmed up with one policy per worker before the clock
starts; their start-up time is printed apart. The header says how many cores were free for the
benchmark before and after (processes spinning for a second): below the core count, other work
shared the machine and the table is noisy. Speedup is relative to the first ``serial`` row;
parallel efficiency is speedup / workers. ``same acc`` compares each row's accuracies with the
serial row of the same thread count (torch's CPU kernels round differently with another number
of threads, and the fine-tune amplifies it: the header shows by how much).

Usage: python benchmarks/bench_scaling.py [--model digits_mobilenet] [--workers 1 2 4]
       [--evaluations 16] [--finetune-steps 20] [--no-ray]
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from haqsearch.parallel import OraclePool, ProcessOraclePool, RayOraclePool, TorchOracleSpec


@dataclass
class Args:
    model: str = "digits_mobilenet"
    workers: tuple[int, ...] = (1, 2)
    evaluations: int = 16
    finetune_steps: int = 20
    lr: float = 1e-2
    seed: int = 0
    threads: int = os.cpu_count() or 1
    ray: bool = True


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for field in dataclasses.fields(Args):
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif isinstance(default, tuple):
            parser.add_argument(flag, nargs="+", type=int, default=list(default))
        else:
            parser.add_argument(flag, type=type(default), default=default)
    ns = parser.parse_args()
    values = {f.name: getattr(ns, f.name) for f in dataclasses.fields(Args)}
    values["workers"] = tuple(values["workers"])
    return Args(**values)


def policies(n_layers: int, count: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` distinct random policies (2 to 8 bits), none cached by another."""
    rng = np.random.default_rng(seed)
    seen: set[tuple] = set()
    out = []
    while len(out) < count:
        w, a = rng.integers(2, 9, n_layers), rng.integers(2, 9, n_layers)
        key = (tuple(w), tuple(a))
        if key not in seen:
            seen.add(key)
            out.append((w, a))
    return out


def _spin(seconds: float) -> float:
    """Busy-loop for ``seconds`` of wall time; the CPU seconds this process got meanwhile."""
    wall, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds:
        pass
    return time.process_time() - cpu


def available_cores(n: int) -> float:
    """Cores this benchmark can get now: ``n`` processes spin for a second, their CPU seconds
    are added up (less than ``n`` when other work shares the machine)."""
    with multiprocessing.get_context("spawn").Pool(n) as pool:
        return sum(pool.map(_spin, [1.0] * n))


def measure_serial(spec: TorchOracleSpec, threads: int, todo: list, warm: list) -> dict:
    torch.set_num_threads(threads)
    start = time.perf_counter()
    oracle = spec()
    startup = time.perf_counter() - start
    oracle(*warm[0])
    start = time.perf_counter()
    accs = [oracle(w, a) for w, a in todo]
    seconds = time.perf_counter() - start
    row = {"backend": "serial", "workers": 1, "threads": threads, "startup_s": startup}
    return {**row, "seconds": seconds, "accuracies": accs}


def measure_pool(kind: str, workers: int, spec: TorchOracleSpec, todo: list, warm: list) -> dict:
    start = time.perf_counter()
    pool: OraclePool
    if kind == "process":
        pool = ProcessOraclePool(spec, workers)
    else:
        pool = RayOraclePool(spec, workers)
    with pool:
        startup = time.perf_counter() - start
        pool.evaluate_many(warm[:workers])  # one per worker, on its own (first) replica
        start = time.perf_counter()
        got = pool.evaluate_many(todo)
        seconds = time.perf_counter() - start
        threads = pool.info[0].torch_threads
    row = {"backend": kind, "workers": workers, "threads": threads, "startup_s": startup}
    return {**row, "seconds": seconds, "accuracies": [acc for acc, _ in got]}


def main() -> None:
    args = parse_args()
    spec = TorchOracleSpec(
        args.model, finetune_steps=args.finetune_steps, lr=args.lr, seed=args.seed
    )
    n_layers = spec().n_layers  # trains and caches a built-in model on first use
    every = policies(n_layers, args.evaluations + max(args.workers), args.seed)
    warm, todo = every[args.evaluations :], every[: args.evaluations]
    spread = max(max(args.workers), args.threads)
    cores0 = available_cores(spread)
    rows = [measure_serial(spec, t, todo, warm) for t in sorted({args.threads, 1}, reverse=True)]
    backends = ["process"]
    if args.ray:
        try:
            import ray  # noqa: F401
        except ImportError:
            print("ray is not installed: skipping the Ray rows (pip install 'haqsim[ray]')")
        else:
            backends.append("ray")
    for kind in backends:
        for n in args.workers:
            rows.append(measure_pool(kind, n, spec, todo, warm))
    cores1 = available_cores(spread)

    base = rows[0]["seconds"]
    serial = {r["threads"]: r["accuracies"] for r in rows if r["backend"] == "serial"}
    diff = np.abs(np.subtract(*(serial[t] for t in sorted(serial)))) if len(serial) > 1 else [0]
    print(
        f"\n{args.model}: {args.evaluations} evaluations (finetune_steps={args.finetune_steps}) "
        f"on {os.cpu_count()} cores ({cores0:.1f} free before, {cores1:.1f} after); serial "
        f"accuracies with 1 vs {args.threads} threads differ by up to {max(diff):.4f}"
    )
    print(
        f"{'backend':<8} {'workers':>7} {'threads':>7} {'start s':>8} {'seconds':>8} "
        f"{'eval/min':>9} {'speedup':>8} {'effic.':>7} {'same acc':>8}"
    )
    for r in rows:
        speedup = base / r["seconds"]
        ref = serial.get(r["threads"])
        same = "-" if ref is None else ("yes" if r["accuracies"] == ref else "NO")
        print(
            f"{r['backend']:<8} {r['workers']:>7} {r['threads']:>7} {r['startup_s']:>8.1f} "
            f"{r['seconds']:>8.1f} {60 * args.evaluations / r['seconds']:>9.1f} "
            f"{speedup:>7.2f}x {speedup / r['workers']:>6.0%} {same:>8}"
        )


if __name__ == "__main__":
    main()
