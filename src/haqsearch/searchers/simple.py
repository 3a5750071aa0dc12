"""Baseline searchers: uniform policies, random search, regularised evolution, greedy.

Random search and evolution propose batches of ``problem.workers`` policies
(:meth:`~haqsearch.problem.SearchProblem.evaluate_many`), so a problem with an oracle pool measures
them in parallel; greedy measures its sensitivity probes as one batch.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from haqsearch.problem import Evaluation, SearchProblem
from haqsearch.searchers.base import register

__all__ = ["EvolutionSearcher", "GreedySearcher", "RandomSearcher", "UniformSearcher"]


@register("uniform")
class UniformSearcher:
    """The uniform policies: every free layer at ``b`` bits (weights and activations), for ``b``
    from the largest allowed down, stopping at the first (largest) ``b`` whose policy fits the
    budget without any limiting. Uses at most ``max_bits - min_bits + 1`` evaluations."""

    name = "uniform"

    def run(self, problem: SearchProblem, episodes: int, seed: int) -> None:
        top = int(max(problem.w_hi.max(), problem.a_hi.max()))
        bottom = int(min(problem.w_lo.min(), problem.a_lo.min()))
        used = 0
        for bits in range(top, bottom - 1, -1):
            w, a = problem.clip(np.full(problem.n_layers, bits), np.full(problem.n_layers, bits))
            if not problem.fits(w, a):
                continue
            if used >= episodes:
                return
            problem.evaluate(w, a, self.name)
            used += 1
            return


@register("random")
class RandomSearcher:
    """Uniformly random bits per layer, then the problem's budget enforcement.

    Proposes ``problem.workers`` policies at a time from one generator, so the history is the
    same for any number of workers.
    """

    name = "random"

    def run(self, problem: SearchProblem, episodes: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        used = 0
        while used < episodes:
            n = min(problem.workers, episodes - used)
            problem.evaluate_many([problem.random_policy(rng) for _ in range(n)], self.name)
            used += n


@register("evolution")
class EvolutionSearcher:
    """Regularised (ageing) evolution (Real et al., AAAI 2019) over enforced policies.

    A population of ``population`` policies starts random; each step samples ``sample``
    members, mutates the best of them (each free bit moves by +-1 with probability
    ``mutation_rate``, at least one moves), evaluates the child and retires the oldest member.

    Batched (``batch`` > 1, by default ``problem.workers``): each round breeds ``batch`` children
    from the population as it stands, evaluates them together, then adds them and retires as
    many of the oldest members, in order. The random draws are the same as in the serial
    algorithm, so ``batch=1`` is exactly the serial algorithm; with ``batch`` > 1 the children of
    a round cannot descend from one another, so the history differs from the serial one (it is
    the same for the same ``batch``, whatever the number of workers). The initial random
    population is the same for every ``batch``.

    Args:
        population: Population size.
        sample: Tournament size.
        mutation_rate: Per-decision mutation probability.
        batch: Children per round; ``None`` uses ``problem.workers``.
    """

    name = "evolution"

    def __init__(
        self,
        population: int = 20,
        sample: int = 5,
        mutation_rate: float = 0.1,
        batch: int | None = None,
    ) -> None:
        if population < 2 or not 1 <= sample <= population:
            raise ValueError(
                f"evolution needs population >= 2 and 1 <= sample <= population, got population="
                f"{population}, sample={sample}"
            )
        if batch is not None and (not isinstance(batch, int) or batch < 1):
            raise ValueError(f"evolution batch must be an integer >= 1 or None, got {batch!r}")
        self.population, self.sample, self.mutation_rate = population, sample, mutation_rate
        self.batch = batch

    def _mutate(
        self, problem: SearchProblem, parent: Evaluation, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        bits = np.concatenate([parent.w_bits, parent.a_bits]).astype(np.int64)
        lo = np.concatenate([problem.w_lo, problem.a_lo])
        hi = np.concatenate([problem.w_hi, problem.a_hi])
        free = np.flatnonzero(hi > lo)
        if free.size == 0:
            return parent.w_bits, parent.a_bits
        mask = rng.random(free.size) < self.mutation_rate
        if not mask.any():
            mask[rng.integers(free.size)] = True
        idx = free[mask]
        bits[idx] = np.clip(bits[idx] + rng.choice([-1, 1], idx.size), lo[idx], hi[idx])
        L = problem.n_layers
        return bits[:L], bits[L:]

    def run(self, problem: SearchProblem, episodes: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        batch = self.batch or problem.workers
        pop: deque[Evaluation] = deque()
        used = 0
        while used < episodes:
            if used < self.population:
                n = min(batch, self.population - used, episodes - used)
                pop.extend(
                    problem.evaluate_many([problem.random_policy(rng) for _ in range(n)], self.name)
                )
            else:
                n = min(batch, episodes - used)
                children = []
                for _ in range(n):
                    contenders = [pop[int(i)] for i in rng.choice(len(pop), self.sample, False)]
                    parent = max(contenders, key=lambda e: (e.reward, -e.cost))
                    children.append(self._mutate(problem, parent, rng))
                for child in problem.evaluate_many(children, self.name):
                    pop.popleft()
                    pop.append(child)
            used += n


def _noise(bits: int | np.ndarray) -> float | np.ndarray:
    """Relative quantization-noise power at ``bits`` (uniform quantizer: 4 ** -bits)."""
    return 4.0 ** -np.asarray(bits, np.float64)


@register("greedy")
class GreedySearcher:
    """Sensitivity-guided greedy bit lowering (in the manner of HAWQ-style methods).

    1. Sensitivity: for every free decision (a layer's weight or activation bits), measure the
       accuracy with only that decision lowered from the maximum to ``probe_bits`` (one
       evaluation each; decisions beyond the evaluation budget get the mean sensitivity). The
       loss is modelled as proportional to the quantization-noise power ``4 ** -bits``, so a
       probe fixes the loss of every step ``b -> b - 1``.
    2. Greedy: starting from the maximum bits, repeatedly lower by one bit the decision with the
       smallest estimated accuracy loss per unit of cost saved, until the policy fits the budget.
    3. Refine: with the evaluations left, try raising the most sensitive lowered decisions by one
       bit where the budget allows, keeping a change when measured accuracy improves.

    The probes of step 1 are measured as one batch (in parallel with an oracle pool); steps 2 and
    3 are sequential. Results do not depend on the number of workers.

    Args:
        probe_bits: The bitwidth each decision is probed at (clipped to its range).
    """

    name = "greedy"

    def __init__(self, probe_bits: int = 3) -> None:
        self.probe_bits = probe_bits

    @staticmethod
    def _step_loss(sensitivity: float, bits: int, top: int) -> float:
        """Estimated accuracy loss of lowering a decision from ``bits`` to ``bits - 1``."""
        return sensitivity * (_noise(bits - 1) - _noise(bits))

    def run(self, problem: SearchProblem, episodes: int, seed: int) -> None:
        L = problem.n_layers
        lo = np.concatenate([problem.w_lo, problem.a_lo])
        hi = np.concatenate([problem.w_hi, problem.a_hi])
        free = np.flatnonzero(hi > lo)
        if episodes <= 0:
            return
        top = hi.copy()
        # Probes are measured as they are (not enforced, so mostly over budget): they count
        # against the evaluation budget but do not enter the history of feasible policies.
        budget_left = episodes - 1
        sens = np.full(2 * L, np.nan)
        order = np.random.default_rng(seed).permutation(free)
        probes = []
        for d in order[: max(0, budget_left - 1)]:
            bits = top.copy()
            bits[d] = int(np.clip(self.probe_bits, lo[d], hi[d]))
            probes.append((int(d), bits))
        measured = problem.accuracy_many([(top[:L], top[L:])] + [(b[:L], b[L:]) for _, b in probes])
        ref_acc = measured[0][0]
        for (d, bits), (acc, _) in zip(probes, measured[1:], strict=True):
            sens[d] = max(ref_acc - acc, 0.0) / max(_noise(bits[d]) - _noise(top[d]), 1e-300)
            budget_left -= 1
        known = sens[free][~np.isnan(sens[free])]
        fill = float(known.mean()) if known.size else 1.0
        sens[np.isnan(sens)] = fill

        bits = top.copy()
        total = problem.enforcer.total
        while not problem.fits(bits[:L], bits[L:]):
            current = total(bits[:L], bits[L:])
            best_d, best_score = -1, np.inf
            for d in free:
                if bits[d] <= lo[d]:
                    continue
                bits[d] -= 1
                saved = current - total(bits[:L], bits[L:])
                bits[d] += 1
                if saved <= 0:
                    continue
                score = (self._step_loss(sens[d], int(bits[d]), int(top[d])) + 1e-12) / saved
                if score < best_score:
                    best_d, best_score = d, score
            if best_d < 0:
                break  # nothing lowers the cost further; enforcement takes over
            bits[best_d] -= 1
        if budget_left <= 0:
            return
        best = problem.evaluate(bits[:L], bits[L:], self.name)
        budget_left -= 1
        bits = np.concatenate([best.w_bits, best.a_bits])
        for d in sorted(free, key=lambda d: -sens[d]):
            if budget_left <= 0:
                break
            if bits[d] >= hi[d]:
                continue
            trial = bits.copy()
            trial[d] += 1
            if not problem.fits(trial[:L], trial[L:]):
                continue
            ev = problem.evaluate(trial[:L], trial[L:], self.name)
            budget_left -= 1
            if ev.reward > best.reward:
                best, bits = ev, trial
