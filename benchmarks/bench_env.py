"""Environment speed: steps and episodes per second, and the env's overhead over a bare lookup.

For one workload on one accelerator (default MobileNet-V2 on ``bismo-edge``, the proxy oracle,
a ``latency=0.6x`` budget), prints:

* steps per second and episodes per second of the sequential environment (continuous and
  discrete actions; HAQ's limiting and the projection), of the same environment behind
  ``gymnasium.make``'s wrappers, and of the one-shot environment;
* the bare ``CostTable`` lookup of one policy (``table.evaluate`` on one policy, and per policy in
  a batch of 10,000), and the environment's time per episode as a multiple of it;
* where an episode's time goes (sequential, continuous, limit): the reset and every step but the
  last, and the final step (limiting, totals, the oracle, the info dict), each timed; within the
  final step, limiting, totals and the oracle timed alone on this run's own end-of-episode
  policies (not a worst case).

Target: at least 20,000 sequential steps per second in one process.

Usage: python benchmarks/bench_env.py [--workload mobilenet_v2] [--hardware bismo-edge]
       [--budget latency=0.6x] [--episodes 300] [--seed 0] [--repeat 3]
       (``--episodes 2 --repeat 1`` checks that it runs, in seconds; its figures mean nothing.)
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


def time_episode_parts(
    env, actions: list, repeat: int
) -> tuple[float, float, list[tuple[np.ndarray, ...]]]:
    """Seconds per sequential episode (best of ``repeat``) of its reset and every step but the
    last, and of its final step (limiting, pricing, the oracle, the info dict), each timed; and
    each episode's ``(requested w, requested a, enforced w, enforced a)`` policy, read from the
    final step's info (after its timing)."""
    n = env.unwrapped.n_decisions
    starts = range(0, len(actions) - n + 1, n)
    keys = ("requested_w_bits", "requested_a_bits", "w_bits", "a_bits")
    policies: list[tuple[np.ndarray, ...]] = []
    best_body = best_final = float("inf")
    for r in range(repeat):
        body = final = 0.0
        for start in starts:
            t0 = time.perf_counter()
            env.reset()
            for action in actions[start : start + n - 1]:
                env.step(action)
            t1 = time.perf_counter()
            info = env.step(actions[start + n - 1])[4]
            final += time.perf_counter() - t1
            body += t1 - t0
            if r == 0:
                policies.append(tuple(np.array(info[key], np.int64) for key in keys))
        best_body, best_final = min(best_body, body), min(best_final, final)
    return best_body / len(starts), best_final / len(starts), policies


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
    discrete = MixedPrecisionEnv(**common, action_type="discrete")
    cont = [a.reshape(1) for a in rng.uniform(-1, 1, steps).astype(np.float32)]
    disc = [int(a) for a in rng.integers(0, discrete.action_space.n, steps)]
    whole = list(rng.uniform(-1, 1, (args.episodes, 2 * L)).astype(np.float32))

    cases = [
        ("sequential, continuous, limit", seq, cont, n),
        (
            "sequential, continuous, project",
            MixedPrecisionEnv(**common, enforcement="project"),
            cont,
            n,
        ),
        ("sequential, discrete, limit", discrete, disc, n),
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

    # Bare CostTable lookups of one policy, drawn from the environment's bit ranges.
    w_lo, w_hi, a_lo, a_hi = seq.bit_ranges
    W = rng.integers(w_lo, w_hi + 1, (10_000, L))
    A = rng.integers(a_lo, a_hi + 1, (10_000, L))
    table.evaluate(W[:2], A[:2])
    k = 2_000
    single = best_of(lambda: [table.evaluate(W[i], A[i]) for i in range(k)], args.repeat) / k
    batched = best_of(lambda: table.evaluate(W, A), args.repeat) / len(W)

    # Where an episode's time goes (sequential, continuous, limit): the steps before the last and
    # the final step, timed apart; limiting, totals and the oracle on this run's own policies.
    decisions, final_step, policies = time_episode_parts(seq, cont, args.repeat)
    e, oracle = seq.enforcer, seq.oracle
    limit_s = best_of(
        lambda: [e.limit_actions_inplace(rw.copy(), ra.copy()) for rw, ra, _, _ in policies],
        args.repeat,
    )
    limit_s /= args.episodes
    totals_s = best_of(lambda: [e.totals(w, a) for _, _, w, a in policies], args.repeat)
    totals_s /= args.episodes
    oracle_s = best_of(lambda: [oracle(w, a) for _, _, w, a in policies], args.repeat)
    oracle_s /= args.episodes
    limited = sum(
        not (np.array_equal(rw, w) and np.array_equal(ra, a)) for rw, ra, w, a in policies
    )

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
    print(f"{'episode breakdown (sequential, continuous, limit)':<50} {'us':>8}")
    steps_label = f"reset + {n - 1} decision steps ({1e6 * decisions / max(n - 1, 1):.2f} us/step)"
    print(f"  {steps_label:<48} {1e6 * decisions:>8.1f}")
    print(f"  {'final step (limit, price, oracle, info)':<48} {1e6 * final_step:>8.1f}")
    print(
        f"    {f'limiting (this run, {limited}/{len(policies)} limited)':<46} {1e6 * limit_s:>8.1f}"
    )
    print(f"    {'totals (cycles, energy, size, BitOps)':<46} {1e6 * totals_s:>8.1f}")
    print(f"    {'proxy oracle':<46} {1e6 * oracle_s:>8.1f}")
    rate = steps / (ep * args.episodes)
    print()
    print(f"target >= 20,000 steps/s: {'met' if rate >= 20_000 else 'NOT met'} ({rate:,.0f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
