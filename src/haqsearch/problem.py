"""The search problem every searcher works on: a cost table, a budget, an accuracy oracle.

:class:`SearchProblem` is the one place where a policy becomes an evaluation: it enforces the
budget (HAQ's action limiting by default), asks the oracle for the accuracy (cached by policy),
prices the policy from the cost table, computes HAQ's reward and records the result. Searchers
only propose policies; environments built with :meth:`SearchProblem.make_env` call back into the
same oracle, so every searcher is accounted for in the same way: one evaluation per proposed
policy.

Resuming: the accuracy cache can be pre-filled from an earlier run's history
(:meth:`SearchProblem.preload`). A searcher run again with the same seed then replays the same
proposals, gets the cached accuracies instantly, and continues where the earlier run stopped.

Parallel evaluation: with an :class:`~haqsearch.parallel.OraclePool` attached as ``pool``, every
uncached accuracy is measured by one of the pool's replicas instead of ``oracle`` (which then only
gives the reference accuracy). :meth:`SearchProblem.evaluate_many` measures a batch of proposals on
all workers at once and records them in proposal order, so a batch searcher's history equals its
serial history; :meth:`SearchProblem.accuracy` is thread-safe, so environments stepping in threads
share one cache and one pool (:class:`haqsearch.searchers.rl.PoolVecEnv`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from haqsim.budget import Budget
from haqsim.cost import CostTable
from haqsim.limit import BudgetEnforcer, bit_ranges
from haqsim.oracle import AccuracyOracle

if TYPE_CHECKING:
    from haqsearch.parallel import OraclePool

__all__ = ["Evaluation", "SearchProblem"]

Key = tuple[tuple[int, ...], tuple[int, ...]]


def _key(w_bits: Any, a_bits: Any) -> Key:
    return tuple(int(b) for b in w_bits), tuple(int(b) for b in a_bits)


@attrs.frozen(eq=False)
class Evaluation:
    """One evaluated policy.

    Attributes:
        index: Position in the history (0-based).
        w_bits, a_bits: The enforced policy (``int64[L]``).
        accuracy: Oracle accuracy in [0, 1].
        reward: ``reward_scale * (accuracy - reference_accuracy)``.
        latency_s, energy_j, size_bytes, bitops: Costs of the policy.
        cost: The budget metric's value (base unit: s, J, B or BitOps).
        cost_ratio: ``cost`` relative to the uniform 8-bit policy.
        limited: Whether enforcement changed the proposed policy.
        seconds: Oracle time for this evaluation (0 for a cache hit).
        source: Which searcher proposed it.
    """

    index: int
    w_bits: np.ndarray
    a_bits: np.ndarray
    accuracy: float
    reward: float
    latency_s: float
    energy_j: float
    size_bytes: float
    bitops: float
    cost: float
    cost_ratio: float
    limited: bool
    seconds: float
    source: str

    def key(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return tuple(int(b) for b in self.w_bits), tuple(int(b) for b in self.a_bits)


class SearchProblem:
    """A budgeted mixed-precision search over one cost table with one accuracy oracle.

    Args:
        table: Cost table of the workload on the target hardware.
        budget: A :class:`haqsim.budget.Budget` or its string form (``"latency=0.5x"``).
        oracle: Accuracy oracle (``haqsearch.TorchAccuracyOracle``, ``haqsim.proxy`` or own).
        min_bits, max_bits: Per-layer bit bounds (scalar, ``(L,)`` or ``(L, 2)``).
        pin: ``{layer: (w_bits, a_bits)}`` fixed layers (negative indices from the end).
        reward_scale: HAQ's lambda in ``lambda * (acc - acc_reference)``.
        enforcement: ``"limit"`` (HAQ) or ``"project"``.

    Attributes:
        pool: An :class:`~haqsearch.parallel.OraclePool` measuring accuracies in parallel, or
            ``None`` (the default: ``oracle`` measures them in this thread).
    """

    def __init__(
        self,
        table: CostTable,
        budget: Budget | str,
        oracle: AccuracyOracle,
        *,
        min_bits: Any = 2,
        max_bits: Any = 8,
        pin: dict[int, tuple[int, int]] | None = None,
        reward_scale: float = 0.1,
        enforcement: str = "limit",
    ) -> None:
        if enforcement not in ("limit", "project"):
            raise ValueError(f"enforcement must be 'limit' or 'project', got {enforcement!r}")
        self.table = table
        self.oracle = oracle
        self.reward_scale = float(reward_scale)
        self.enforcement = enforcement
        self.min_bits, self.max_bits, self.pin = min_bits, max_bits, pin
        self.w_lo, self.w_hi, self.a_lo, self.a_hi = bit_ranges(
            table.n_layers, table.lo, table.hi, min_bits, max_bits, pin
        )
        self.enforcer = BudgetEnforcer(table, budget, self.w_lo, self.w_hi, self.a_lo, self.a_hi)
        self.budget = self.enforcer.budget
        self.history: list[Evaluation] = []
        self.best: Evaluation | None = None
        self.listeners: list[Callable[[Evaluation], None]] = []
        self.pool: OraclePool | None = None
        self._cache: dict[Key, float] = {}
        self._inflight: dict[Key, Future[tuple[float, float]]] = {}
        self._lock = threading.Lock()
        self.oracle_seconds = 0.0
        self.oracle_calls = 0

    # ------------------------------------------------------------------ basics
    @property
    def n_layers(self) -> int:
        return self.table.n_layers

    @property
    def names(self) -> tuple[str, ...]:
        return self.table.workload.names

    @property
    def workers(self) -> int:
        """Policies measured at once: the pool's workers, or 1 without a pool."""
        return self.pool.workers if self.pool is not None else 1

    @property
    def reference_accuracy(self) -> float:
        return float(self.oracle.reference_accuracy)

    def clip(self, w_bits: Any, a_bits: Any) -> tuple[np.ndarray, np.ndarray]:
        """Round and clip a proposal into the per-layer bit ranges (pinned layers fixed)."""
        w = np.clip(np.rint(np.asarray(w_bits, np.float64)), self.w_lo, self.w_hi)
        a = np.clip(np.rint(np.asarray(a_bits, np.float64)), self.a_lo, self.a_hi)
        return w.astype(np.int64), a.astype(np.int64)

    def random_policy(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Bits drawn uniformly from each layer's range."""
        w = rng.integers(self.w_lo, self.w_hi + 1)
        a = rng.integers(self.a_lo, self.a_hi + 1)
        return w.astype(np.int64), a.astype(np.int64)

    def enforce(self, w_bits: Any, a_bits: Any) -> tuple[np.ndarray, np.ndarray, bool]:
        """The policy after budget enforcement, and whether it changed."""
        w, a = self.clip(w_bits, a_bits)
        enforce = (
            self.enforcer.limit_actions_many
            if self.enforcement == "limit"
            else (self.enforcer.project_many)
        )
        w2, a2, changed = enforce(w[None], a[None])
        return w2[0], a2[0], bool(changed[0])

    def cost_ratio(self, w_bits: np.ndarray, a_bits: np.ndarray) -> float:
        return self.enforcer.total(w_bits, a_bits) / self.enforcer.reference

    def reward(self, accuracy: float) -> float:
        return self.reward_scale * (accuracy - self.reference_accuracy)

    # ------------------------------------------------------------------ accuracy
    def _measure(self, w_bits: np.ndarray, a_bits: np.ndarray) -> tuple[float, float]:
        """``(accuracy, seconds)`` from the pool if attached, else from the oracle here."""
        if self.pool is not None:
            return self.pool.evaluate(w_bits, a_bits)
        start = time.perf_counter()
        acc = float(self.oracle(np.asarray(w_bits, np.int64), np.asarray(a_bits, np.int64)))
        return acc, time.perf_counter() - start

    def _remember(self, key: Key, accuracy: float, seconds: float) -> float:
        """Check a measured accuracy, cache it and count the call."""
        acc = float(accuracy)
        if not 0.0 <= acc <= 1.0:
            raise ValueError(f"oracle accuracy must be in [0, 1], got {acc!r} for policy {key}")
        with self._lock:
            self._cache[key] = acc
            self.oracle_seconds += seconds
            self.oracle_calls += 1
        return acc

    def accuracy(self, w_bits: np.ndarray, a_bits: np.ndarray) -> tuple[float, float]:
        """(accuracy, oracle seconds) of an already enforced policy; cached by policy.

        Thread-safe: a policy being measured for another thread is waited for, not measured
        twice (the waiting caller gets 0 seconds, as for a cache hit).
        """
        key = _key(w_bits, a_bits)
        with self._lock:
            if key in self._cache:
                return self._cache[key], 0.0
            pending = self._inflight.get(key)
            if pending is None:
                pending = self._inflight[key] = Future()
                owner = True
            else:
                owner = False
        if not owner:
            return pending.result()[0], 0.0
        try:
            acc, seconds = self._measure(w_bits, a_bits)
            acc = self._remember(key, acc, seconds)
        except BaseException as exc:
            pending.set_exception(exc)
            raise
        finally:
            with self._lock:
                self._inflight.pop(key, None)
        pending.set_result((acc, seconds))
        return acc, seconds

    def accuracy_many(
        self,
        policies: Sequence[tuple[Any, Any]],
        on_result: Callable[[int, float, float], None] | None = None,
    ) -> list[tuple[float, float]]:
        """``(accuracy, oracle seconds)`` of already enforced policies, in order.

        The uncached policies are measured on all the pool's workers at once (serially without
        a pool). As in a serial run, a cached policy, or a repeat within the batch, costs 0
        seconds. Every result is cached as soon as it arrives.

        Args:
            policies: ``(w_bits, a_bits)`` pairs.
            on_result: Called as ``on_result(index, accuracy, seconds)`` when each result is
                known (cache hits first, then in completion order).
        """
        out: list[tuple[float, float] | None] = [None] * len(policies)
        todo: dict[Key, list[int]] = {}
        for i, (w, a) in enumerate(policies):
            key = _key(w, a)
            with self._lock:
                hit = self._cache.get(key)
            if hit is not None:
                out[i] = (hit, 0.0)
            else:
                todo.setdefault(key, []).append(i)

        def deliver(key: Key, accuracy: float, seconds: float) -> None:
            acc = self._remember(key, accuracy, seconds)
            for n, i in enumerate(todo[key]):
                out[i] = (acc, seconds if n == 0 else 0.0)
                if on_result is not None:
                    on_result(i, *out[i])

        if on_result is not None:
            for i, res in enumerate(out):
                if res is not None:
                    on_result(i, *res)
        keys = list(todo)
        if self.pool is not None and len(keys) > 1:
            self.pool.evaluate_many(
                [(np.array(w, np.int64), np.array(a, np.int64)) for w, a in keys],
                on_result=lambda j, acc, seconds: deliver(keys[j], acc, seconds),
            )
        else:
            for key in keys:
                deliver(key, *self._measure(np.array(key[0]), np.array(key[1])))
        return [r for r in out if r is not None]

    def preload(self, records: list[tuple[np.ndarray, np.ndarray, float]]) -> None:
        """Pre-fill the accuracy cache with ``(w_bits, a_bits, accuracy)`` from an earlier run."""
        with self._lock:
            for w, a, acc in records:
                self._cache[_key(w, a)] = float(acc)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, w_bits: Any, a_bits: Any, source: str = "") -> Evaluation:
        """Enforce the budget on a proposal, measure it, record it and return the evaluation."""
        w, a, limited = self.enforce(w_bits, a_bits)
        acc, seconds = self.accuracy(w, a)
        return self.record(w, a, acc, limited, source, seconds)

    def evaluate_many(
        self, proposals: Sequence[tuple[Any, Any]], source: str = ""
    ) -> list[Evaluation]:
        """:meth:`evaluate` for a batch of proposals, measured on all the pool's workers at once.

        Evaluations are recorded in proposal order (the history equals that of evaluating the
        proposals one by one), each as soon as it and all before it are measured. If the batch
        is interrupted (an error, Ctrl-C), the measured evaluations not yet recorded are recorded
        before the exception propagates, so no completed measurement is lost.
        """
        enforced = [self.enforce(w, a) for w, a in proposals]
        results: dict[int, tuple[float, float]] = {}
        done: list[Evaluation] = []
        recorded: set[int] = set()

        def put(i: int) -> None:
            w, a, limited = enforced[i]
            acc, seconds = results[i]
            done.append(self.record(w, a, acc, limited, source, seconds))
            recorded.add(i)

        def arrived(i: int, accuracy: float, seconds: float) -> None:
            results[i] = (accuracy, seconds)
            while len(recorded) < len(enforced) and len(done) in results:
                put(len(done))

        try:
            self.accuracy_many([(w, a) for w, a, _ in enforced], on_result=arrived)
        except BaseException:
            for i in sorted(set(results) - recorded):
                put(i)
            raise
        return done

    def record(
        self,
        w_bits: np.ndarray,
        a_bits: np.ndarray,
        accuracy: float,
        limited: bool,
        source: str,
        seconds: float = 0.0,
    ) -> Evaluation:
        """Add an evaluated, enforced policy to the history (used by env-driven searchers)."""
        w = np.array(w_bits, np.int64)
        a = np.array(a_bits, np.int64)
        costs = self.table.evaluate(w, a)
        cost = float(costs.metric(self.enforcer.metric)[0])
        ev = Evaluation(
            index=len(self.history),
            w_bits=w,
            a_bits=a,
            accuracy=float(accuracy),
            reward=self.reward(float(accuracy)),
            latency_s=float(costs.latency_s[0]),
            energy_j=float(costs.energy_j[0]),
            size_bytes=float(costs.size_bytes[0]),
            bitops=float(costs.bitops[0]),
            cost=cost,
            cost_ratio=cost / self.enforcer.reference,
            limited=bool(limited),
            seconds=float(seconds),
            source=source,
        )
        self.history.append(ev)
        if self.best is None or (ev.reward, -ev.cost) > (self.best.reward, -self.best.cost):
            self.best = ev
        for listener in self.listeners:
            listener(ev)
        return ev

    def fits(self, w_bits: np.ndarray, a_bits: np.ndarray) -> bool:
        return self.enforcer.fits(w_bits, a_bits)
