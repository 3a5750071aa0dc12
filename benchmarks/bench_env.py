"""Environment speed: steps and episodes per second, and the env's overhead over a bare lookup.

For one workload on one accelerator (default MobileNet-V2 on ``bismo-edge``, the proxy oracle,
a ``latency=0.6x`` budget), prints:

* steps per second and episodes per second of the sequential environment (continuous and
  discrete actions; HAQ's limiting and the projection), of the same environment behind
  ``gymnasium.make``'s wrappers, and of the one-shot environment;
* the bare ``CostTable`` lookup of one policy (``table.evaluate`` on one policy, and per policy in
  a batch of 10,000), and the environment's time per episode as a multiple of it;
* where an episode's time goes: the per-step part, limiting, totals and the oracle.

Target: at least 20,000 sequential steps per second in one process.

Usage: python benchmarks/bench_env.py [--workload mobilenet_v2] [--hardware bismo-edge]
       [--budget latency=0.6x] [--episodes 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from haqsim import CostTable, zoo
from haqsim.env import ENV_IDS, MixedPrecisionEnv, MixedPrecisionOneShotEnv


@dataclass
class Args:
    workload: str = "mobilenet_v2"
    hardware: str = "bismo-edge"
    budget: str = "latency=0.6x"
    episodes: int = 300
    seed: int = 0
    repeat: int = 3


def best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def run_sequential(env, actions: list) -> None:
    i = 0
    for _ in range(len(actions) // env.unwrapped.n_decisions):
        env.reset()
        terminated = False
        while not terminated:
            terminated = env.step(actions[i])[2]
            i += 1


def run_one_shot(env, actions: list) -> None:
    for action in actions:
        env.reset()
        env.step(action)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in vars(Args()).items():
        parser.add_argument(f"--{name}", type=type(default), default=default)
    args = Args(**vars(parser.parse_args(argv)))
    rng = np.random.default_rng(args.seed)

    wl = zoo.get(args.workload)
    table = CostTable.build(wl, args.hardware)
    L = len(wl)
    common = {"table": table, "budget": args.budget}
    seq = MixedPrecisionEnv(**common)
    n = seq.n_decisions
    steps = args.episodes * n
    cont = [a.reshape(1) for a in rng.uniform(-1, 1, steps).astype(np.float32)]
    disc = [int(a) for a in rng.integers(0, 7, steps)]
    whole = list(rng.uniform(-1, 1, (args.episodes, 2 * L)).astype(np.float32))

    cases = [
        ("sequential, continuous, limit", seq, cont, n),
        (
            "sequential, continuous, project",
            MixedPrecisionEnv(**common, enforcement="project"),
            cont,
            n,
        ),
        (
            "sequential, discrete, limit",
            MixedPrecisionEnv(**common, action_type="discrete"),
            disc,
            n,
        ),
        ("gym.make(MixedPrecision-v0) (wrapped)", gym.make(ENV_IDS[0], **common), cont, n),
        ("one-shot, continuous, limit", MixedPrecisionOneShotEnv(**common), whole, 1),
        (
            "one-shot, continuous, project",
            MixedPrecisionOneShotEnv(**common, enforcement="project"),
            whole,
            1,
        ),
    ]
    print(
        f"# {wl.name} ({L} layers, {n} decisions) on {args.hardware}, budget {args.budget}, "
        f"{args.episodes} episodes, best of {args.repeat}"
    )
    print(f"{'environment':<40} {'steps/s':>12} {'episodes/s':>12} {'us/episode':>12}")
    episode_s = {}
    for name, env, actions, per_episode in cases:
        runner = run_one_shot if per_episode == 1 else run_sequential
        runner(env, actions[: 2 * per_episode])  # warm-up (JIT, caches)
        t = best_of(
            lambda env=env, actions=actions, runner=runner: runner(env, actions), args.repeat
        )
        episodes = len(actions) // per_episode
        episode_s[name] = t / episodes
        print(
            f"{name:<40} {len(actions) / t:>12,.0f} {episodes / t:>12,.0f} "
            f"{1e6 * t / episodes:>12.1f}"
        )

    # Bare CostTable lookups of one policy.
    W = rng.integers(2, 9, (10_000, L))
    A = rng.integers(2, 9, (10_000, L))
    table.evaluate(W[:2], A[:2])
    k = 2_000
    single = best_of(lambda: [table.evaluate(W[i], A[i]) for i in range(k)], args.repeat) / k
    batched = best_of(lambda: table.evaluate(W, A), args.repeat) / len(W)

    # Where an episode's time goes (sequential, limit).
    e, oracle = seq.enforcer, seq.oracle
    w8, a8 = np.full(L, 8, np.int64), np.full(L, 8, np.int64)
    limit_s = (
        best_of(
            lambda: [e.limit_actions_inplace(w8.copy(), a8.copy()) for _ in range(k)], args.repeat
        )
        / k
    )
    totals_s = best_of(lambda: [e.totals(w8, a8) for _ in range(k)], args.repeat) / k
    oracle_s = best_of(lambda: [oracle(w8, a8) for _ in range(k)], args.repeat) / k

    print()
    print(f"{'bare CostTable lookup (one policy)':<40} {'us/policy':>12} {'env / bare':>12}")
    ep = episode_s["sequential, continuous, limit"]
    one = episode_s["one-shot, continuous, limit"]
    print(
        f"{'table.evaluate, one policy per call':<40} {1e6 * single:>12.2f} "
        f"{ep / single:>11.1f}x  (one-shot env: {one / single:.1f}x)"
    )
    print(
        f"{'table.evaluate, batch of 10,000':<40} {1e6 * batched:>12.3f} "
        f"{ep / batched:>11.0f}x  (one-shot env: {one / batched:.0f}x)"
    )
    print()
    print("episode breakdown (sequential, limit)           us")
    per_step = ep - limit_s - totals_s - oracle_s
    print(f"  {n} steps (per step {1e6 * per_step / n:.2f} us){'':<18} {1e6 * per_step:>8.1f}")
    print(f"  limiting (a policy at 8 bits, worst case)       {1e6 * limit_s:>8.1f}")
    print(f"  totals (cycles, energy, size, BitOps)           {1e6 * totals_s:>8.1f}")
    print(f"  proxy oracle                                    {1e6 * oracle_s:>8.1f}")
    rate = steps / (ep * args.episodes)
    print()
    print(f"target >= 20,000 steps/s: {'met' if rate >= 20_000 else 'NOT met'} ({rate:,.0f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
