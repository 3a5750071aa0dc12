"""Search quality: DDPG vs random vs evolution vs greedy vs the best uniform policy.

For the built-in digits MobileNet (accuracy from a real quantize + fine-tune + evaluate oracle)
on ``bismo-edge``, ``bismo-cloud`` and ``bitfusion``, under a budget relative to uniform 8-bit,
every searcher gets the same number of accuracy evaluations, for several seeds. Prints accuracy
(mean and spread over seeds), the budget metric's ratio to 8-bit, wall time, and the best uniform
policy that fits.

Where a preset cannot reach the requested ratio (the cheapest allowed policy costs more), the
budget is set halfway between that minimum and 8-bit, and the table says so.

Usage: python benchmarks/bench_search.py [--quick] [--episodes 100] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from haqsearch.accuracy import TorchAccuracyOracle
from haqsearch.problem import SearchProblem
from haqsearch.search import load_model, parse_pin
from haqsearch.searchers import get_searcher
from haqsim import CostTable
from haqsim.budget import Budget
from haqsim.errors import BudgetError


@dataclass
class Args:
    model: str = "digits_mobilenet"
    presets: list[str] = field(default_factory=lambda: ["bismo-edge", "bismo-cloud", "bitfusion"])
    metric: str = "latency"
    ratio: float = 0.55
    searchers: list[str] = field(default_factory=lambda: ["ddpg", "random", "evolution", "greedy"])
    episodes: int = 100
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    finetune_steps: int = 10
    threads: int = 1
    quick: bool = False


def budget_for(table: CostTable, metric: str, ratio: float, pin: dict) -> tuple[str, str]:
    try:
        SearchProblem(table, f"{metric}={ratio}x", _Null(), min_bits=2, max_bits=8, pin=pin)
        return f"{metric}={ratio}x", ""
    except BudgetError:
        probe = SearchProblem(table, f"{metric}=1x", _Null(), min_bits=2, max_bits=8, pin=pin)
        floor = probe.enforcer.min_cost / probe.enforcer.reference
        mid = round((floor + 1.0) / 2, 4)
        return f"{metric}={mid}x", f"{ratio}x infeasible (minimum {floor:.3f}x)"


class _Null:
    reference_accuracy = 1.0

    def __call__(self, w: np.ndarray, a: np.ndarray) -> float:
        return 1.0


def target_check(
    results: dict[str, list[tuple[float, float, float]]], acc8: float, uniform: Any
) -> str:
    """The issue's target for DDPG's mean best accuracy, each part answered yes or no."""
    ddpg = float(np.mean([r[0] for r in results["ddpg"]]))
    parts = [f"within 1 point of 8-bit {'yes' if ddpg >= acc8 - 0.01 else 'no'}"]
    if "random" in results:
        rand = float(np.mean([r[0] for r in results["random"]]))
        parts.append(f">= random {'yes' if ddpg >= rand else 'no'}")
    if uniform is not None:
        parts.append(f"> best uniform {'yes' if ddpg > uniform.accuracy else 'no'}")
    return "ddpg " + ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=Args.model)
    p.add_argument("--presets", nargs="+", default=Args().presets)
    p.add_argument("--metric", default=Args.metric, choices=["latency", "energy"])
    p.add_argument("--ratio", type=float, default=Args.ratio)
    p.add_argument("--searchers", nargs="+", default=Args().searchers)
    p.add_argument("--episodes", type=int, default=Args.episodes)
    p.add_argument("--seeds", type=int, nargs="+", default=Args().seeds)
    p.add_argument("--finetune-steps", type=int, default=Args.finetune_steps)
    p.add_argument(
        "--threads",
        type=int,
        default=Args.threads,
        help="torch threads (1 is robust "
        "when the machine is shared; tiny models gain little from more)",
    )
    p.add_argument("--quick", action="store_true", help="40 episodes, seeds 0 1")
    args = Args(**vars(p.parse_args(argv)))
    if args.quick:
        args.episodes, args.seeds = 40, [0, 1]

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    net, train, val, name = load_model(args.model)
    oracles = {
        s: TorchAccuracyOracle(net, train, val, args.finetune_steps, lr=1e-2, seed=s)
        for s in args.seeds
    }
    wl = oracles[args.seeds[0]].workload
    pin = parse_pin("first,last", 8)
    eight = np.full(len(wl), 8)
    acc8 = float(np.mean([oracles[s](eight, eight) for s in args.seeds]))
    print(
        f"model {name}: {len(wl)} quantizable layers, float accuracy "
        f"{oracles[args.seeds[0]].reference_accuracy:.2%}, uniform 8-bit {acc8:.2%} (mean over "
        f"seeds); {args.episodes} evaluations per searcher per seed; seeds {args.seeds}; first "
        f"and last layer pinned at 8 bits\n"
    )
    header = (
        f"{'preset':<12} {'budget':<16} {'searcher':<10} {'accuracy mean':>13} "
        f"{'spread':>7} {'cost/8b':>8} {'wall s':>7}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for preset in args.presets:
        table = CostTable.build(wl, preset)
        budget, note = budget_for(table, args.metric, args.ratio, pin)
        results: dict[str, list[tuple[float, float, float]]] = {}
        uniform = None
        for searcher in args.searchers:
            for seed in args.seeds:
                pr = SearchProblem(
                    table, Budget.parse(budget), oracles[seed], min_bits=2, max_bits=8, pin=pin
                )
                t0 = time.perf_counter()
                get_searcher(searcher).run(pr, args.episodes, seed)
                dt = time.perf_counter() - t0
                results.setdefault(searcher, []).append((pr.best.accuracy, pr.best.cost_ratio, dt))
                print(
                    f"  {preset} {searcher} seed {seed}: {pr.best.accuracy:.2%} at "
                    f"{pr.best.cost_ratio:.3f}x in {dt:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
                if uniform is None:
                    uni = SearchProblem(
                        table, Budget.parse(budget), oracles[seed], min_bits=2, max_bits=8, pin=pin
                    )
                    get_searcher("uniform").run(uni, 10, seed)
                    uniform = uni.best
        for searcher, res in results.items():
            acc = np.array([r[0] for r in res])
            cost = np.mean([r[1] for r in res])
            wall = np.mean([r[2] for r in res])
            rows.append((preset, budget, searcher, acc.mean(), acc.max() - acc.min(), cost, wall))
            print(
                f"{preset:<12} {budget:<16} {searcher:<10} {acc.mean():>12.2%} "
                f"{100 * (acc.max() - acc.min()):>6.2f}p {cost:>8.3f} {wall:>7.1f}"
            )
        if uniform is not None:
            bits = int(uniform.w_bits[1])
            print(
                f"{preset:<12} {budget:<16} {f'uniform {bits}b':<10} {uniform.accuracy:>12.2%} "
                f"{'':>7} {uniform.cost_ratio:>8.3f} {'':>7}"
            )
        else:
            print(f"{preset:<12} {budget:<16} {'uniform':<10} {'none fits':>13}")
        if note:
            print(f"{'':<12} note: {note}")
        if "ddpg" in results:
            print(f"{'':<12} target: {target_check(results, acc8, uniform)}")
        print()
    print(f"total wall time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
